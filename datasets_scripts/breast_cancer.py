"""Breast-cancer EHR corpus (Chen et al., JMIR Med Inform 2025) from a Label Studio export.

``load_breast_cancer`` and ``python -m clinical_ner_zh.datasets_scripts.breast_cancer``. The records are split 6:2:2 into train,
validation and test by hashing each record id, so a record always lands in the same split, also after records are
added to the export. The real corpus is private; the project ships only simulated records
(:mod:`clinical_ner_zh.datasets_scripts.simulated`).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import datasets

from clinical_ner_zh.cli_errors import run_command

from .export import add_output_arguments, check_output_dir, configure_logging, finish
from .label_studio import read_label_studio
from .labels import BREAST_CANCER_TYPES
from .schema import to_dataset

SPLITS = ("train", "validation", "test")
_SPLIT_OF_BUCKET = ("train",) * 6 + ("validation",) * 2 + ("test",) * 2  # 6:2:2 over ten buckets

DESCRIPTION = """\
Chinese breast-cancer electronic health records annotated in Label Studio with 16 entity types in 4 classes
(Symptoms, Tests, Treatments, Time), after Chen et al., "Named Entity Recognition for Chinese Cancer Electronic
Health Records", JMIR Med Inform 2025;13:e76912. Splits are 6:2:2 by a hash of the task id. Clinical text: keep
this dataset private.
"""


def split_of(record_id: str, salt: str = "") -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a record id: SHA-256 of ``salt + id``, ten buckets, 6:2:2."""
    digest = hashlib.sha256(f"{salt}{record_id}".encode()).digest()
    return _SPLIT_OF_BUCKET[int.from_bytes(digest[:8], "big") % 10]


def load_breast_cancer(
    export_file: str | Path, *, text_key: str = "text", salt: str = "", strict: bool = False
) -> datasets.DatasetDict:
    """Read a Label Studio JSON or JSON-MIN export into train/validation/test (see :func:`split_of`).

    The :class:`~clinical_ner_zh.datasets_scripts.schema.ReadReport` is attached as the ``read_report`` attribute.
    """
    result = read_label_studio(export_file, text_key=text_key, strict=strict)
    by_split: dict[str, list] = {split: [] for split in SPLITS}
    for record in result.records:
        by_split[split_of(record["id"], salt)].append(record)
    dataset_dict = datasets.DatasetDict({split: to_dataset(records) for split, records in by_split.items()})
    dataset_dict.read_report = result.report
    return dataset_dict


def main(argv: list[str] | None = None) -> None:
    """Convert a Label Studio export to Parquet with a dataset card."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input", type=Path, help="Label Studio JSON or JSON-MIN export")
    parser.add_argument("--text-key", default="text", help="the task data field holding the text")
    parser.add_argument("--salt", default="", help="changes the split assignment (keep it fixed once published)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    check_output_dir(args)
    configure_logging(args.verbose)
    dataset_dict = load_breast_cancer(args.input, text_key=args.text_key, salt=args.salt, strict=args.strict)
    finish(
        args,
        dataset_dict,
        pretty_name="Breast-cancer EHR NER",
        types=BREAST_CANCER_TYPES,
        description=DESCRIPTION,
        license_name="other",
    )


if __name__ == "__main__":
    run_command(main)
