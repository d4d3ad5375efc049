"""CCKS 2019 Task 1 (Yidu-S4K): ``load_ccks2019`` and ``python -m clinical_ner_zh.datasets_scripts.ccks2019``."""

from __future__ import annotations

from pathlib import Path

import datasets

from clinical_ner_zh.cli_errors import run_command

from .ccks import convert_main, load_ccks

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
    """Read the CCKS 2019 train and/or test file; see :func:`clinical_ner_zh.datasets_scripts.ccks.load_ccks`."""
    return load_ccks(train_file, test_file, dev_fraction=dev_fraction, seed=seed, strict=strict)


def main(argv: list[str] | None = None) -> None:
    """Convert the official files to Parquet with a dataset card."""
    convert_main(argv, load_ccks2019, pretty_name="CCKS 2019 clinical NER (Yidu-S4K)", description=DESCRIPTION)


if __name__ == "__main__":
    run_command(main)
