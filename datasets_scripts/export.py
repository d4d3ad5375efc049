"""Write a corpus as Parquet files plus a dataset card, and optionally push it to the Hub.

Shared by the ``python -m clinical_ner_zh.datasets_scripts.<corpus>`` commands.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import datasets

from clinical_ner_zh.cli_errors import add_debug_flag
from clinical_ner_zh.cli_errors.output_folder import OVERWRITE_FLAG, check_output_folder, replacing_folder

from .labels import EntityType

logger = logging.getLogger(__name__)

OUTPUTS = ("data", "README.md")  # what write_corpus puts in the output folder


def type_counts(dataset_dict: datasets.DatasetDict) -> dict[str, Counter[str]]:
    """Entity counts per type code, per split."""
    return {
        split: Counter(entity["label"] for entities in dataset["entities"] for entity in entities)
        for split, dataset in dataset_dict.items()
    }


def dataset_card(
    dataset_dict: datasets.DatasetDict,
    *,
    pretty_name: str,
    types: tuple[EntityType, ...],
    description: str,
    license_name: str = "other",
) -> str:
    """A dataset card (README.md) with YAML metadata, the label table and counts per type and split."""
    splits = list(dataset_dict)
    counts = type_counts(dataset_dict)
    yaml_splits = "\n".join(f"  - split: {split}\n    path: data/{split}.parquet" for split in splits)
    lines = [
        "---",
        "language:",
        "- zh",
        f"license: {license_name}",
        "task_categories:",
        "- token-classification",
        "task_ids:",
        "- named-entity-recognition",
        f"pretty_name: {pretty_name}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        yaml_splits,
        "---",
        "",
        f"# {pretty_name}",
        "",
        description.strip(),
        "",
        "Each record is `{id, text, entities: [{start, end, label, text}]}`; offsets are 0-based character indices "
        "into `text`, `end` exclusive; `label` is the English code below.",
        "",
        "## Records per split",
        "",
        "| split | records | entities |",
        "|---|---:|---:|",
        *(f"| {s} | {len(dataset_dict[s])} | {sum(counts[s].values())} |" for s in splits),
        "",
        "## Entities per type and split",
        "",
        "| code | name | original name | " + " | ".join(splits) + " |",
        "|---|---|---|" + "---:|" * len(splits),
        *(
            f"| {t.code} | {t.name} | {t.name_zh} | " + " | ".join(str(counts[s][t.code]) for s in splits) + " |"
            for t in types
        ),
        "",
    ]
    return "\n".join(lines)


def write_corpus(dataset_dict: datasets.DatasetDict, output_dir: str | Path, card: str) -> list[Path]:
    """Write ``data/<split>.parquet`` per split and ``README.md``; returns the paths written. The folder is replaced
    only once every file is written (see :func:`check_output_dir` for when it may be replaced)."""
    output_dir = Path(output_dir)
    with replacing_folder(output_dir) as staging:
        (staging / "data").mkdir()
        for split, dataset in dataset_dict.items():
            dataset.to_parquet(str(staging / "data" / f"{split}.parquet"))
        (staging / "README.md").write_text(card, encoding="utf-8")
    written = [*(output_dir / "data" / f"{split}.parquet" for split in dataset_dict), output_dir / "README.md"]
    logger.info("wrote %s", ", ".join(str(p) for p in written))
    return written


def push_corpus(dataset_dict: datasets.DatasetDict, repo_id: str, card: str, *, private: bool = True) -> None:
    """Push the splits to a Hub dataset repository (private by default: clinical text) and replace its card."""
    from huggingface_hub import HfApi

    dataset_dict.push_to_hub(repo_id, private=private)
    HfApi().upload_file(
        path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset"
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every corpus command shares."""
    parser.add_argument("--output-dir", required=True, type=Path, help="folder for data/<split>.parquet and README.md")
    parser.add_argument(
        OVERWRITE_FLAG, action="store_true", help="replace a non-empty output folder (one this command wrote)"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="also push to this Hub dataset repository (private)")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem instead of skipping it")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each problem as it is found")
    add_debug_flag(parser)


def check_output_dir(args: argparse.Namespace) -> None:
    """Before reading the corpus: a non-empty ``--output-dir`` is refused unless ``--overwrite-output-dir``."""
    check_output_folder(args.output_dir, args.overwrite_output_dir, OUTPUTS)


def finish(
    args: argparse.Namespace,
    dataset_dict: datasets.DatasetDict,
    *,
    pretty_name: str,
    types: tuple[EntityType, ...],
    description: str,
    license_name: str = "other",
) -> None:
    """Write (and push) the corpus and print what was done; the end of each corpus command's ``main``."""
    card = dataset_card(
        dataset_dict, pretty_name=pretty_name, types=types, description=description, license_name=license_name
    )
    written = write_corpus(dataset_dict, args.output_dir, card)
    if args.push_to_hub:
        push_corpus(dataset_dict, args.push_to_hub, card)
    report = getattr(dataset_dict, "read_report", None)
    if report is not None:
        print(report.summary())
    for split, dataset in dataset_dict.items():
        print(f"{split}: {len(dataset)} records")
    print("wrote " + ", ".join(str(path) for path in written))


def configure_logging(verbose: bool) -> None:
    """Problems are logged as warnings; by default only their summary is printed."""
    logging.basicConfig(level=logging.WARNING if verbose else logging.ERROR, format="%(levelname)s %(message)s")
