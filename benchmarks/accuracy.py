"""Accuracy within a time budget: train a small from-scratch model (optionally after continued pretraining with
train_mlm.py on the training texts), then print strict entity P/R/F1 on the eval file, per type, beside the
papers' numbers for the same corpus. The last line is ``strict F1 = 0.xxxx``.

    python benchmarks/accuracy.py --family chcancerbert --format ccks2019 \\
        --train ../shared/data/ccks2019/train.jsonl --eval-fraction 0.2 --minutes 60 [--pretrain-mlm]
    python benchmarks/accuracy.py --family clinicalbert-kg --kg-embeddings out/kge --lexicon terms.tsv \\
        --train ../shared/data/ccks2019/train.jsonl --minutes 30

Any other flag (``--token_dropout 0.1``) is passed to ``train_ner.py`` as it is, after the defaults here.

The family-B ablation (with and without each knowledge feature, several seeds) is benchmarks/kg_ablation.py.

With ``--eval-fraction`` (instead of ``--eval FILE``) a seeded share of the training file's records is held out as
the eval file. Model selection uses a dev split carved from the remaining training records, never the eval file.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Strict micro scores the papers report (official test sets; ours is a held-out share of the training set).
PAPERS = {
    "ccks2019": [
        ("Chen et al. 2025, ChCancerBERT-DGCNN-BiLSTM-MHA-CRF", 87.26, 87.27, 87.26),
        ("Xu et al. 2025, CBT-KG (TransE)", 90.47, 88.37, 89.44),
        ("Xu et al. 2025, baseline BiLSTM-CRF", None, None, 81.92),
        ("Xu et al. 2025, baseline Lattice-LSTM", None, None, 82.12),
        ("Xu et al. 2025, baseline FLAT", None, None, 83.55),
    ],
    "breast_cancer": [("Chen et al. 2025, ChCancerBERT-DGCNN-BiLSTM-MHA-CRF", 87.63, 86.34, 86.98)],
    "ccks2020": [("Xu et al. 2025, CBT-KG (TransE)", None, None, 89.29)],
}

# A from-scratch configuration sized for CPU: a small encoder (in effect contextual character embeddings), the
# heads at the encoder's width, long windows so that most records fit in one or two.
SCRATCH = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 512,
}
NER = {
    "lstm_hidden_size": 128,
    "head_dropout": 0.3,
    "max_length": 256,
    "stride": 64,
    "per_device_train_batch_size": 16,
    "encoder_learning_rate": 1e-3,
    "head_learning_rate": 2e-3,
    "warmup_ratio": 0.03,
    "num_train_epochs": 40,
    "early_stopping_patience": 0,
    "dev_fraction": 0.1,
    "logging_steps": 50,
}


def hold_out(train: Path, fraction: float, seed: int, folder: Path) -> tuple[Path, Path]:
    """Split a JSON-lines file into train and eval files by a seeded shuffle of its lines."""
    lines = [line for line in train.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    held = set(order[: round(fraction * len(lines))])
    train_out, eval_out = folder / "train.jsonl", folder / "eval.jsonl"
    train_out.write_text("".join(lines[i] + "\n" for i in range(len(lines)) if i not in held), encoding="utf-8")
    eval_out.write_text("".join(lines[i] + "\n" for i in sorted(held)), encoding="utf-8")
    return train_out, eval_out


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def corpus_texts(path: Path, folder: Path) -> Path:
    """The training texts as a plain-text corpus for train_mlm.py (one record per line)."""
    out = folder / "texts.txt"
    with out.open("w", encoding="utf-8") as handle:
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                record = json.loads(line)
                handle.write(record.get("originalText", record.get("text", "")).replace("\n", " ") + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="chcancerbert", choices=["chcancerbert", "clinicalbert-kg"])
    parser.add_argument("--format", default="ccks2019", choices=["ccks2019", "ccks2020"])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--eval", type=Path, help="eval file in the same format")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="without --eval: held-out share")
    parser.add_argument("--variant", help="default: the family's full model")
    parser.add_argument("--kg-embeddings", type=Path, help="family B: train_kge.py output folder")
    parser.add_argument("--lexicon", type=Path, help="family B: term list, name<TAB>type")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-time budget for all training")
    parser.add_argument("--pretrain-mlm", action="store_true", help="continued pretraining on the training texts")
    parser.add_argument("--mlm-share", type=float, default=0.3, help="share of the budget for pretraining")
    parser.add_argument("--seed", type=int, default=42, help="training seed; also the eval split's unless --split-seed")
    parser.add_argument(
        "--split-seed",
        type=int,
        help="seed of the held-out eval split (default: --seed); fix it and vary --seed to "
        "see the spread between training runs on one eval file (the dev split follows --seed)",
    )
    parser.add_argument("--output-dir", type=Path, help="keep the models here (default: a temporary folder)")
    args, extra = parser.parse_known_args()  # anything else goes to train_ner.py as it is

    default_variant = {"chcancerbert": "dgcnn-bilstm-mha-crf", "clinicalbert-kg": "kg"}[args.family]
    variants = [args.variant or default_variant]
    knowledge = [f"--{name}={value}" for name, value in
                 (("kg_embeddings", args.kg_embeddings), ("lexicon", args.lexicon)) if value]  # fmt: skip

    split_seed = args.seed if args.split_seed is None else args.split_seed
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.output_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        train, evaluation = (
            (args.train, args.eval) if args.eval else hold_out(args.train, args.eval_fraction, split_seed, folder)
        )
        for variant in variants:
            started = time.monotonic()
            ner_minutes = args.minutes
            encoder: list[str] = []
            if args.pretrain_mlm:
                mlm_dir = folder / f"mlm-{variant}"
                # The schedule is planned for up to 20 epochs; the time budget ends the run first on small machines.
                steps = 20 * len(corpus_texts(train, folder).read_text(encoding="utf-8").splitlines()) // 16
                run([sys.executable, "train_mlm.py", "--train_files", str(corpus_texts(train, folder)),
                     "--output_dir", str(mlm_dir), "--max_seq_length", "256", "--per_device_train_batch_size", "32",
                     "--learning_rate", "1e-3", "--max_steps", str(steps), "--warmup_ratio", "0.05",
                     "--max_train_minutes", f"{args.minutes * args.mlm_share:.1f}",
                     "--logging_steps", "100", "--checkpointing_steps", str(10**9), "--seed", str(args.seed),
                     *[f"--{k}={v}" for k, v in SCRATCH.items()]])  # fmt: skip
                ner_minutes = args.minutes - (time.monotonic() - started) / 60
                encoder = ["--encoder", str(mlm_dir)]
            ner_dir = folder / f"ner-{variant}"
            run([sys.executable, "train_ner.py", "--family", args.family, "--variant", variant,
                 "--corpus", args.format, "--train_file", str(train), "--test_file", str(evaluation),
                 "--output_dir", str(ner_dir), "--max_train_minutes", f"{max(ner_minutes, 1):.1f}",
                 "--seed", str(args.seed), *encoder, *knowledge, *[f"--{k}={v}" for k, v in NER.items()],
                 *([] if encoder else [f"--{k}={v}" for k, v in SCRATCH.items()]), *extra])  # fmt: skip
            report = json.loads((ner_dir / "test_results.json").read_text(encoding="utf-8"))
            results.append((variant, report, (time.monotonic() - started) / 60))

    for variant, report, minutes in results:
        print(f"\n{args.family} {variant}{' + MLM' if args.pretrain_mlm else ''}: eval file {evaluation.name} "
              f"({report['num_records']} records), wall time {minutes:.1f} min")  # fmt: skip
        print(f"{'type':<14}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}")
        for name, score in report["per_type"].items():
            cells = "".join(f"{score[k]:>8.4f}" for k in ("precision", "recall", "f1"))
            print(f"{name:<14}{cells}{score['support']:>9}")
        micro = report["micro"]
        cells = "".join(f"{micro[k]:>8.4f}" for k in ("precision", "recall", "f1"))
        print(f"{'micro':<14}{cells}{micro['support']:>9}")
    print("\nPapers (official test set) vs ours (held-out share), strict micro P / R / F1:")
    for name, p, r, f in PAPERS.get(args.format, []):
        cells = "".join(f"{v:>8.2f}" if v is not None else f"{'-':>8}" for v in (p, r, f))
        print(f"  {name:<56}{cells}")
    for variant, report, _ in results:
        ours = "".join(f"{100 * report['micro'][k]:>8.2f}" for k in ("precision", "recall", "f1"))
        print(f"  {'ours, ' + args.family + ' ' + variant + (' + MLM' if args.pretrain_mlm else ''):<56}{ours}")
    print(f"strict F1 = {results[0][1]['micro']['f1']:.4f}")


if __name__ == "__main__":
    main()
