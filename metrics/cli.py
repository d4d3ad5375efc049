"""``python -m clinical_ner_zh.metrics GOLD PRED``: score a prediction file against a gold one.

Each file is read in any format ``predict.py --gold`` reads, detected from its content: JSON lines in the span
schema, ``{"id": ..., "text": ..., "entities": [{"start", "end", "label"}]}`` (prediction entities may name their
type ``entity_group``, as pipeline and ``predict.py`` output do, and ``text`` is optional), a CCKS file (records
named ``<file stem>:<line>``, as ``predict.py`` names them) or a Label Studio export. Records are matched by ``id``
(compared as strings, so ``7`` and ``"7"`` are the same record), and where both files give a record's text the
texts must agree: the same ids on different texts mean the files were made from different inputs. A file without
records is an error. The table goes to stdout, the JSON report to ``--output``. Labels are scored by one rule in
every format (see :func:`read_scored_records`), and a Label Studio export as PRED is read for its predictions.

Bad input stops the run with a message naming the file and line (and the record id and entity index where there
is one), never the record's text.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clinical_ner_zh.cli_errors import UserError, add_debug_flag
from clinical_ner_zh.datasets_scripts.labels import BREAST_CANCER_TYPES, CCKS_TYPES, alias_table, to_code

from .entity_scores import Span, _class_of_type, format_report, normalize_span, score_entities

logger = logging.getLogger(__name__)

KNOWN_TYPES = (*CCKS_TYPES, *BREAST_CANCER_TYPES)
KNOWN_LABELS = alias_table(KNOWN_TYPES)


class InputFileError(UserError, ValueError):
    """An input that cannot be scored; the message names the file and line."""


@dataclass
class ScoredRecord:
    """What scoring needs of a record: its text (``None`` when the file does not give it) and its spans."""

    text: str | None
    spans: list[Span]


def read_scored_records(path: str | Path, predictions: bool = False) -> dict[str, ScoredRecord]:
    """``{id: record}`` from a span-schema JSON-lines file, a CCKS file or a Label Studio export (detected from the
    content), in file order. A file without records is an error.

    Labels are scored by one rule whatever the format: a name of a CCKS or breast-cancer type (``药物``, ``Ki-67``)
    becomes its code (``Drug``, ``Ki67``), as the corpus readers do, and any other label is kept as it is, so that
    the same name in two formats is the same type and a model's own labels are accepted. ``predictions=True`` (the
    PRED side) reads a Label Studio export's newest predictions rather than its annotations.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).removeprefix(b"\xef\xbb\xbf").lstrip()
    except OSError as error:
        raise InputFileError(f"{path}: cannot read the file ({error.strerror})") from None
    first_line = head.split(b"\n", 1)[0]
    if head.startswith(b"["):
        from clinical_ner_zh.datasets_scripts import read_label_studio

        records = _from_reader(read_label_studio(path, types=None, strict=True, predictions=predictions).records)
    elif b'"originalText"' in first_line and _is_json_object(first_line):
        from clinical_ner_zh.datasets_scripts import read_ccks

        records = _from_reader(read_ccks(path, strict=True).records)
    else:
        records = read_span_records(path)
    for record in records.values():  # a known type's name becomes its code in every format, as the readers do
        record.spans = [(start, end, canonical_label(label)) for start, end, label in record.spans]
    if not records:
        raise InputFileError(f"{path}: the file holds no records")
    return records


def canonical_label(label: str) -> str:
    """The code of a CCKS or breast-cancer type name, any other label as it is."""
    return to_code(label, KNOWN_LABELS) or label


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False  # the span-schema reader names the line and the problem


def _from_reader(records) -> dict[str, ScoredRecord]:
    return {
        r["id"]: ScoredRecord(r["text"], [(e["start"], e["end"], e["label"]) for e in r["entities"]]) for r in records
    }


def read_span_records(path: str | Path) -> dict[str, ScoredRecord]:
    """``{id: record}`` from a span-schema JSON-lines file, in file order.

    Blank lines are skipped and a byte-order mark at the start is ignored (CCKS files carry one). Raises
    :class:`InputFileError` for invalid JSON, a record that is not an object or lacks ``id`` or ``entities``, a
    repeated id, an invalid entity, or an entity ending past the end of ``text`` when the record has one.
    """
    path = Path(path)
    records: dict[str, ScoredRecord] = {}
    try:
        handle = path.open(encoding="utf-8-sig")
    except OSError as error:
        raise InputFileError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                # error.msg and the column say what is wrong without quoting the line, which holds patient text
                raise InputFileError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(record, dict):
                raise InputFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in ("id", "entities") if key not in record]
            if missing:
                raise InputFileError(f"{where}: the record has no {' or '.join(repr(key) for key in missing)} key")
            record_id = str(record["id"])
            if record_id in records:
                raise InputFileError(f"{where}: id {record_id!r} appears twice in the file")
            if not isinstance(record["entities"], list):
                raise InputFileError(f"{where}: record {record_id!r}: 'entities' must be a list")
            text = record.get("text")
            spans = []
            for index, entity in enumerate(record["entities"]):
                try:
                    span = normalize_span(entity, f"record {record_id!r}, entity {index}")
                except ValueError as error:
                    raise InputFileError(f"{where}: {error}") from None
                if isinstance(text, str) and span[1] > len(text):
                    raise InputFileError(
                        f"{where}: record {record_id!r}, entity {index}: end {span[1]} is past the end of the text "
                        f"({len(text)} characters)"
                    )
                spans.append(span)
            records[record_id] = ScoredRecord(text if isinstance(text, str) else None, spans)
    return records


def pair_records(
    gold: dict[str, ScoredRecord],
    predicted: dict[str, ScoredRecord],
    gold_path: str | Path,
    predicted_path: str | Path,
    every_prediction_in_gold: bool = True,
) -> list[str]:
    """The ids to score, in gold order. An id found in only one file (a predicted id missing from gold is allowed
    with ``every_prediction_in_gold=False``) or a record whose texts differ is an error naming the ids."""
    pairs = [(gold, predicted, gold_path, predicted_path)]
    if every_prediction_in_gold:
        pairs.append((predicted, gold, predicted_path, gold_path))
    for ids, other, path, other_path in pairs:
        lonely = [record_id for record_id in ids if record_id not in other]
        if lonely:
            raise InputFileError(f"{len(lonely)} ids in {path} are missing from {other_path}: {_some(lonely)}")
    differ = [
        record_id
        for record_id, record in gold.items()
        if None not in (record.text, predicted[record_id].text) and record.text != predicted[record_id].text
    ]
    if differ:
        raise InputFileError(
            f"{len(differ)} records have one text in {gold_path} and another in {predicted_path} (records are "
            f"matched by id: were both made from the same input?): {_some(differ)}"
        )
    return list(gold)


def _some(ids: list[str]) -> str:
    shown = ", ".join(repr(record_id) for record_id in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _read_classes(path: str) -> dict:
    """The ``--classes`` mapping: ``{type: class}`` or ``{class: [types]}``."""
    try:
        classes = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(f"{path}: cannot read a JSON class mapping ({error})") from None
    if not isinstance(classes, dict):
        raise InputFileError(f"{path}: expected a JSON object mapping types to classes or classes to type lists")
    try:
        _class_of_type(classes)
    except ValueError as error:  # a type in two classes
        raise InputFileError(f"{path}: {error}") from None
    return classes


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m clinical_ner_zh.metrics",
        description="Entity-level scores of span predictions against gold spans.",
    )
    parser.add_argument("gold", help="gold file: span-schema or CCKS JSON lines, or a Label Studio export")
    parser.add_argument("predictions", help="predictions, in the same formats (entities may use 'entity_group')")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="what to print (default: table)")
    parser.add_argument("--output", help="write the JSON report to this file")
    parser.add_argument("--classes", help="JSON file mapping type -> class or class -> [types], for per-class scores")
    parser.add_argument(
        "--entity-types", help="comma-separated types to report first and in this order (default: all seen, sorted)"
    )
    parser.add_argument("--digits", type=int, default=4, help="decimals in the table (default: 4)")
    add_debug_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input raises :class:`InputFileError` (``python -m clinical_ner_zh.metrics`` reports it)."""
    args = build_parser().parse_args(argv)
    if args.digits < 0:
        raise InputFileError(f"--digits {args.digits}: expected 0 or more decimals")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name, path in (("GOLD", args.gold), ("PRED", args.predictions)):
        if args.output and Path(args.output).resolve() == Path(path).resolve():
            raise InputFileError(f"--output {args.output} is {name}: choose another path for the report")
    gold = read_scored_records(args.gold)
    predicted = read_scored_records(args.predictions, predictions=True)
    ids = pair_records(gold, predicted, args.gold, args.predictions)
    classes = _read_classes(args.classes) if args.classes else None
    entity_types = (
        [canonical_label(name.strip()) for name in args.entity_types.split(",")] if args.entity_types else None
    )
    report = score_entities(
        [gold[record_id].spans for record_id in ids],
        [predicted[record_id].spans for record_id in ids],
        entity_types=entity_types,
        classes=classes,
        record_ids=ids,
    )
    print(report.to_json() if args.format == "json" else format_report(report, digits=args.digits))
    if args.output:
        Path(args.output).write_text(report.to_json() + "\n", encoding="utf-8")
        logger.info("wrote %s", args.output)
    return 0
