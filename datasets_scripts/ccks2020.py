"""CCKS 2020 clinical NER: ``load_ccks2020`` and ``python -m clinical_ner_zh.datasets_scripts.ccks2020``."""

from __future__ import annotations

from pathlib import Path

import datasets

from clinical_ner_zh.cli_errors import run_command

from .ccks import convert_main, load_ccks

DESCRIPTION = """\
CCKS 2020 clinical named-entity recognition: Chinese electronic medical records annotated with six entity types; a
few spans overlap (nested, or one span with two labels). It contains every CCKS 2019 text, the 2019 test set
included: never score a model trained on it on the 2019 test set. No license is stated, research use only. Record
ids are `<file stem>:<line>` of the original JSON-lines file.
"""


def load_ccks2020(
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
    *,
    dev_fraction: float = 0.0,
    seed: int = 42,
    strict: bool = False,
) -> datasets.DatasetDict:
    """Read the CCKS 2020 train and/or test file; see :func:`clinical_ner_zh.datasets_scripts.ccks.load_ccks`."""
    return load_ccks(train_file, test_file, dev_fraction=dev_fraction, seed=seed, strict=strict)


def main(argv: list[str] | None = None) -> None:
    """Convert the official files to Parquet with a dataset card."""
    convert_main(argv, load_ccks2020, pretty_name="CCKS 2020 clinical NER", description=DESCRIPTION)


if __name__ == "__main__":
    run_command(main)
