"""KGE speed and accuracy: TransE, TransH and TransR on CMeKG (or any triples file), same budget for each.

For each model: training throughput (positive triples per second, evaluation excluded), the training time until
the validation filtered MRR first reaches ``--target-mrr`` (checked every ``--eval-every`` epochs, so the time is
rounded up to an evaluation point), and the final filtered MRR / Hits@1/3/10 on a seeded sample of test triples.

    python benchmarks/kge_speed.py [--triples FILE] [--models transe,transh,transr] [--minutes 3] \\
        [--dim 100] [--batch-size 8192] [--target-mrr 0.05] [--threads 1]

Without ``--triples`` it imports CMeKG from the installed ``pycmekg`` package (``pip install 'clinical-ner-zh[kg]'``)
and exits 0 with a message when that is missing. On a shared machine pass ``--threads 1``: two OpenMP threads
competing with other processes for two cores were ten times slower per step than one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from clinical_ner_zh.kg.config import MODELS
from clinical_ner_zh.kg.io import read_triples
from clinical_ner_zh.kg.training import train


def load_triples(path: Path | None, max_name_length: int) -> list | None:
    if path is not None:
        return read_triples(path)
    from clinical_ner_zh.kg.cmekg import find_cmekg_pickle, import_cmekg, load_cmekg

    try:
        find_cmekg_pickle()
    except FileNotFoundError as error:
        print(f"skipping: {error}")
        return None
    return import_cmekg(load_cmekg(), max_name_length=max_name_length).triples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triples", type=Path, default=None, help="head<TAB>relation<TAB>tail (default: CMeKG)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--minutes", type=float, default=3.0, help="training-time budget per model")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--p-norm", type=int, choices=(1, 2), default=1)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--eval-triples", type=int, default=500)
    parser.add_argument("--target-mrr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows (and histories) here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    triples = load_triples(args.triples, max_name_length=30)
    if triples is None:
        return
    print(f"{len(triples)} triples loaded in {time.perf_counter() - started:.1f} s; {torch.get_num_threads()} threads")

    rows = []
    for model in args.models.split(","):
        result = train(
            triples,
            model=model,
            dim=args.dim,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            margin=args.margin,
            p_norm=args.p_norm,
            epochs=10_000,
            max_minutes=args.minutes,
            eval_every=args.eval_every,
            eval_triples=args.eval_triples,
            progress=sys.stderr.isatty(),
        )
        reached = next((h for h in result.history if h.get("valid_mrr", -1.0) >= args.target_mrr), None)
        rows.append(
            {
                "model": model,
                "epochs": result.epochs_completed,
                "triples_per_s": result.triples_per_second,
                "seconds_to_target": reached["train_seconds"] if reached else None,
                **{name: result.metrics[name] for name in ("mrr", "hits@1", "hits@3", "hits@10")},
                "history": result.history,
            }
        )
        print(f"{model}: done, test {json.dumps({k: round(v, 4) for k, v in result.metrics.items()})}", flush=True)

    print(f"\nfiltered link prediction, {args.eval_triples} test triples, {args.minutes} min budget, dim {args.dim}")
    print(f"{'model':<8} {'epochs':>6} {'triples/s':>10} {f't(MRR>={args.target_mrr})':>14} {'MRR':>7} "
          f"{'H@1':>6} {'H@3':>6} {'H@10':>6}")  # fmt: skip
    for row in rows:
        to_target = f"{row['seconds_to_target']:.0f} s" if row["seconds_to_target"] is not None else "not reached"
        print(
            f"{row['model']:<8} {row['epochs']:>6} {row['triples_per_s']:>10,.0f} {to_target:>14} {row['mrr']:>7.4f} "
            f"{row['hits@1']:>6.3f} {row['hits@3']:>6.3f} {row['hits@10']:>6.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
