"""Reader for the CCKS 2019 (Yidu-S4K) and CCKS 2020 JSON-lines files.

Each line is ``{"originalText": str, "entities": [{"label_type", "start_pos", "end_pos", "overlap"?}]}`` with
0-based, end-exclusive character offsets. The official files start with a UTF-8 BOM, may use CRLF line ends and
end with an empty line; the 2019 test file and the 2020 files have no ``overlap`` key, and 2020 has overlapping
spans (kept here: the encoder resolves them and counts what it drops). Record ids are ``<file stem>:<line>``.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from .export import add_output_arguments, check_output_dir, configure_logging, finish
from .labels import CCKS_TYPES, alias_table
from .schema import ProblemSink, ReadReport, Record, check_entity, json_object, make_record, read_json_lines, to_dataset

logger = logging.getLogger(__name__)

_LABELS = alias_table(CCKS_TYPES)
_ENTITY_FIELDS = ("label_type", "start_pos", "end_pos")


@dataclass
class ReadResult:
    """Records in the span schema and the report of what was read and skipped."""

    records: list[Record]
    report: ReadReport


def read_ccks(path: str | Path, *, strict: bool = False) -> ReadResult:
    """Read one CCKS JSON-lines file.

    With ``strict=True`` the first problem raises :class:`~clinical_ner_zh.datasets_scripts.schema.CorpusError`; otherwise a bad
    line is skipped, a bad entity is dropped from its record, and each problem is logged and kept in the report.
    """
    path = Path(path)
    sink = ProblemSink(path, strict)
    records = read_json_lines(path, sink, lambda raw, line: _parse_line(raw, line, path.stem, sink))
    logger.info("%s: %s", path, sink.report.summary())
    return ReadResult(records, sink.report)


def _parse_line(raw: bytes, line: int, stem: str, sink: ProblemSink) -> Record | None:
    record_id = f"{stem}:{line}"
    obj = json_object(raw, line, record_id, sink, {"originalText": str, "entities": list})
    if obj is None:
        return None
    text: str = obj["originalText"]
    spans: list[tuple[int, int, str]] = []
    for index, entity in enumerate(obj["entities"]):
        missing = [key for key in _ENTITY_FIELDS if key not in entity] if isinstance(entity, dict) else ["all"]
        if missing:
            reason = f"missing field {missing[0]!r}" if isinstance(entity, dict) else "entity is not a JSON object"
            kind = "missing_field" if isinstance(entity, dict) else "wrong_type"
        else:
            kind, reason = check_entity(
                len(text), entity["start_pos"], entity["end_pos"], entity["label_type"], _LABELS
            )
            span = (entity["start_pos"], entity["end_pos"], reason)  # reason is the label code when kind is None
            if kind is None and span in spans:
                kind, reason = "duplicate_entity", f"duplicate entity (start={span[0]}, end={span[1]}, {span[2]})"
            elif kind is None:
                spans.append(span)
                continue
        sink(kind, reason, line=line, record_id=record_id, entity=index)
        sink.report.entities_skipped += 1
    return make_record(record_id, text, spans)


def carve_dev(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (train, dev) with a seeded shuffle; both keep the file order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dev fraction must be in [0, 1), got {fraction}")
    indices = list(range(len(records)))
    random.Random(seed).shuffle(indices)
    dev = set(indices[: round(fraction * len(records))])
    return [r for i, r in enumerate(records) if i not in dev], [r for i, r in enumerate(records) if i in dev]


def load_ccks(
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
    *,
    dev_fraction: float = 0.0,
    seed: int = 42,
    strict: bool = False,
) -> datasets.DatasetDict:
    """Read the official train and/or test file into a ``DatasetDict`` (splits ``train``, ``validation``, ``test``).

    ``validation`` is carved from train when ``dev_fraction > 0`` (seeded). The combined
    :class:`~clinical_ner_zh.datasets_scripts.schema.ReadReport` is attached as the ``read_report`` attribute.
    """
    if train_file is None and test_file is None:
        raise ValueError("expected a train file, a test file or both, got neither")
    report = ReadReport()
    splits: dict[str, datasets.Dataset] = {}
    if train_file is not None:
        result = read_ccks(train_file, strict=strict)
        report.merge(result.report)
        train, dev = carve_dev(result.records, dev_fraction, seed)
        splits["train"] = to_dataset(train)
        if dev_fraction > 0:
            splits["validation"] = to_dataset(dev)
    if test_file is not None:
        result = read_ccks(test_file, strict=strict)
        report.merge(result.report)
        splits["test"] = to_dataset(result.records)
    dataset_dict = datasets.DatasetDict(splits)
    dataset_dict.read_report = report
    return dataset_dict


def convert_main(argv: list[str] | None, load, *, pretty_name: str, description: str) -> None:
    """The command line of ``python -m clinical_ner_zh.datasets_scripts.ccks2019`` / ``ccks2020``: official files to Parquet with a
    dataset card."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("input", type=Path, help="the training file (train.jsonl)")
    parser.add_argument("--test-file", type=Path, help="the official test file")
    parser.add_argument("--dev-fraction", type=float, default=0.0, help="carve a seeded validation split from train")
    parser.add_argument("--seed", type=int, default=42)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    check_output_dir(args)
    configure_logging(args.verbose)
    dataset_dict = load(args.input, args.test_file, dev_fraction=args.dev_fraction, seed=args.seed, strict=args.strict)
    finish(args, dataset_dict, pretty_name=pretty_name, types=CCKS_TYPES, description=description)
