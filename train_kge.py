"""Train TransE, TransH or TransR knowledge-graph embeddings and export them for the CBT-KG model.

Reads a triples file (``head<TAB>relation<TAB>tail``, e.g. from ``python -m clinical_ner_zh.kg.cmekg``), trains with the margin
ranking loss on a seeded train/valid/test split, reports filtered MRR and Hits@1/3/10 on the held-out test sample,
beside a relation-popularity baseline on the same triples (the last line printed:
``filtered MRR = x, Hits@10 = y (relation-popularity baseline: MRR b, Hits@10 c)``), and writes to ``--output-dir``. No triple is dropped, so there is no ``--max_bad_fraction``: a line that is not a
UTF-8 triple (or ``--entities`` row) stops the run naming file and line; a triple listed twice counts once.

* ``entity_embeddings.safetensors``: ``entity_embeddings`` (num_entities x dim) and the relation parameters;
* ``entities.tsv``: row ``i`` = ``name<TAB>type`` of embedding row ``i`` (types from ``--entities``, else Other;
  the run says how many entities the table types, and stops when it types none);
* ``relations.tsv``, ``kge_config.json`` (model, dim, hyper-parameters, metrics, timing);
* ``checkpoint.pt`` after every epoch (``--resume`` continues from it; ``--epochs`` may be raised; a run that
  stopped on ``--max-minutes`` or ``--target-mrr`` trains on only when that is raised).

Examples::

    python -m clinical_ner_zh.kg.cmekg --output-dir outputs/cmekg
    python train_kge.py --triples outputs/cmekg/triples.tsv --entities outputs/cmekg/entities.tsv \\
        --model transe --dim 100 --epochs 50 --max-minutes 5 --output-dir outputs/kge_transe
    python train_kge.py ... --output-dir outputs/kge_transe --epochs 80 --resume
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from clinical_ner_zh.cli_errors import UserError, add_debug_flag, run_command
from clinical_ner_zh.kg.config import MODELS, KgeConfig
from clinical_ner_zh.kg.export import EMBEDDINGS_NAME, save_kge
from clinical_ner_zh.kg.io import KgFormatError, read_entities, read_triples
from clinical_ner_zh.kg.training import CHECKPOINT_NAME, train
from clinical_ner_zh.training.common import check_output_dir, clear_output_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = KgeConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triples", required=True, type=Path, help="head<TAB>relation<TAB>tail file")
    parser.add_argument("--entities", type=Path, default=None, help="name<TAB>type file giving entity types")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt")
    parser.add_argument(
        "--overwrite-output-dir",
        "--overwrite_output_dir",
        action="store_true",
        help="replace the contents of a non-empty output folder (a previous run's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="output folder of an earlier run on the same triples (e.g. TransE) to start from, as TransR's paper does",
    )
    parser.add_argument("--model", choices=MODELS, default=defaults.model)
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--relation-dim", type=int, default=None, help="TransR relation space (default: --dim)")
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--p-norm", type=int, choices=(1, 2), default=defaults.p_norm, help="L1 or L2 distance")
    parser.add_argument("--negative-sampling", choices=("uniform", "bernoulli"), default=defaults.negative_sampling)
    parser.add_argument("--num-negatives", type=int, default=defaults.num_negatives)
    parser.add_argument(
        "--negative-entities",
        choices=("uniform", "degree"),
        default=defaults.negative_entities,
        help="replacing entities drawn uniformly, or in proportion to degree^0.75 (popular entities as negatives)",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--optimizer", choices=("adam", "adagrad"), default=defaults.optimizer)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-minutes", type=float, default=None, help="training-time budget (checked per epoch)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default=defaults.clock,
        help="training time for --max-minutes and the speed: elapsed, or the process's CPU time (fair on a shared "
        "machine: with --threads 1, 10 CPU minutes are what one free core does in 10 minutes)",
    )
    parser.add_argument("--constraint-weight", type=float, default=defaults.constraint_weight)
    parser.add_argument("--valid-fraction", type=float, default=defaults.valid_fraction)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--eval-triples", type=int, default=defaults.eval_triples, help="0: all held-out triples")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="epochs; 0: only at the end")
    parser.add_argument("--target-mrr", type=float, default=None, help="stop once validation MRR reaches this")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads; 1 is much faster on a machine shared with other jobs"
    )
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = KgeConfig(
        model=args.model,
        dim=args.dim,
        relation_dim=args.relation_dim,
        margin=args.margin,
        p_norm=args.p_norm,
        negative_sampling=args.negative_sampling,
        num_negatives=args.num_negatives,
        negative_entities=args.negative_entities,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        clock=args.clock,
        constraint_weight=args.constraint_weight,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        eval_triples=args.eval_triples or None,
        eval_every=args.eval_every,
        target_mrr=args.target_mrr,
        seed=args.seed,
    )

    resuming = args.resume and (args.output_dir / CHECKPOINT_NAME).is_file()
    inputs = {"--triples": args.triples, "--entities": args.entities, "--init-from": args.init_from}
    check_output_dir(args.output_dir, args.overwrite_output_dir, resuming, "--resume", inputs)
    triples = read_triples(args.triples)
    if not triples:
        raise KgFormatError(f"{args.triples}: no triples in the file")
    entity_types = None
    if args.entities is not None:
        entity_types = {entity.name: entity.type for entity in read_entities(args.entities)}
    print(f"{len(triples)} triples from {args.triples}")
    if entity_types is not None:
        print(typed_entities(triples, entity_types, args.entities))
    if args.init_from is not None and not (args.init_from / EMBEDDINGS_NAME).is_file():
        raise UserError(
            f"--init-from {args.init_from}: no {EMBEDDINGS_NAME}: expected the output folder of train_kge.py"
        )
    if args.overwrite_output_dir and not resuming:
        clear_output_dir(args.output_dir)

    result = train(
        triples,
        config,
        checkpoint_dir=args.output_dir,
        resume=args.resume,
        init_from=args.init_from,
        progress=not args.no_progress,
    )
    paths = save_kge(result, args.output_dir, entity_types)

    print(json.dumps({"model": config.model, "dim": config.dim, **result.metrics}, indent=2))
    print(
        f"{result.epochs_completed} epochs, {result.train_seconds:.1f} s training, "
        f"{result.triples_per_second:,.0f} triples/s; wrote {', '.join(str(p) for p in paths.values())}"
    )
    print(score_line(result.metrics, result.baseline))


def typed_entities(triples, entity_types: dict[str, str], path: Path) -> str:
    """How many KG entities ``--entities`` types (the others are ``Other``), said before training; none is an error:
    a table of another graph, or names spelt otherwise, would make every entity ``Other`` without a word."""
    names = {name for head, _, tail in triples for name in (head, tail)}
    typed = len(names & entity_types.keys())
    if not typed:
        raise KgFormatError(
            f"--entities {path}: none of its {len(entity_types)} names is an entity of the triples ({len(names)} "
            "entities), so every entity would be typed Other: give the type table of this graph (names as in the "
            "triples)"
        )
    return (
        f"{typed} of {len(names)} entities typed from {path} (the others: Other); "
        f"{len(entity_types) - typed} of its {len(entity_types)} names are not in the triples"
    )


def score_line(metrics: dict[str, float], baseline: dict[str, float]) -> str:
    """The run's verdict, last line of the output: the test scores beside those of the relation-popularity baseline
    on the same test triples (an embedding below it has learnt nothing a frequency table does not know)."""
    if not metrics:
        return "no test triples (--test-fraction 0): nothing scored"
    return (
        f"filtered MRR = {metrics['mrr']:.4f}, Hits@10 = {metrics['hits@10']:.4f} "
        f"(relation-popularity baseline: MRR {baseline['mrr']:.4f}, Hits@10 {baseline['hits@10']:.4f})"
    )


if __name__ == "__main__":
    run_command(main)
