"""CCKS 2019 Task 1 (Yidu-S4K): ``load_ccks2019`` and ``python -m datasets_scripts.ccks2019``."""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets

from .ccks import load_ccks
from .export import add_output_arguments, configure_logging, finish
from .labels import CCKS_TYPES

DESCRIPTION = """\
CCKS 2019 Task 1 (Yidu-S4K) clinical named-entity recognition: Chinese electronic medical records annotated with
six entity types. Public release by Yidu Cloud / OpenKG; no license is stated, research use only. Record ids are
`<file stem>:<line>` of the original JSON-lines file.
"""


def load_ccks2019(
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
    *,
    dev_fraction: float = 0.0,
    seed: int = 42,
    strict: bool = False,
) -> datasets.DatasetDict:
    """Read the CCKS 2019 train and/or test file; see :func:`datasets_scripts.ccks.load_ccks`."""
    return load_ccks(train_file, test_file, dev_fraction=dev_fraction, seed=seed, strict=strict)


def main(argv: list[str] | None = None) -> None:
    """Convert the official files to Parquet with a dataset card."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input", type=Path, help="the training file (train.jsonl)")
    parser.add_argument("--test-file", type=Path, help="the official test file")
    parser.add_argument("--dev-fraction", type=float, default=0.0, help="carve a seeded validation split from train")
    parser.add_argument("--seed", type=int, default=42)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    dataset_dict = load_ccks2019(
        args.input, args.test_file, dev_fraction=args.dev_fraction, seed=args.seed, strict=args.strict
    )
    finish(
        args, dataset_dict, pretty_name="CCKS 2019 clinical NER (Yidu-S4K)", types=CCKS_TYPES, description=DESCRIPTION
    )


if __name__ == "__main__":
    main()
