"""``python -m metrics GOLD PRED``: score a JSON-lines prediction file against a gold one.

Both files hold one record per line in the span schema, ``{"id": ..., "text": ..., "entities": [{"start", "end",
"label"}]}``; prediction entities may name their type ``entity_group`` (pipeline and ``predict.py`` output), and
``text`` is optional. Records are matched by ``id`` (compared as strings, so ``7`` and ``"7"`` are the same
record). The table goes to stdout, the JSON report to ``--output``.

Bad input stops the run with a message naming the file and line (and the record id and entity index where there
is one), never the record's text.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from cli_errors import UserError, add_debug_flag

from .entity_scores import Span, _class_of_type, format_report, normalize_span, score_entities

logger = logging.getLogger(__name__)


class InputFileError(UserError, ValueError):
    """A JSON-lines input that cannot be scored; the message names the file and line."""


def read_span_records(path: str | Path) -> dict[str, list[Span]]:
    """``{id: spans}`` from a span-schema JSON-lines file, in file order.

    Blank lines are skipped and a byte-order mark at the start is ignored (CCKS files carry one). Raises
    :class:`InputFileError` for invalid JSON, a record that is not an object or lacks ``id`` or ``entities``, a
    repeated id, an invalid entity, or an entity ending past the end of ``text`` when the record has one.
    """
    path = Path(path)
    records: dict[str, list[Span]] = {}
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
            records[record_id] = spans
    return records


def _pair_records(
    gold: dict[str, list[Span]], predicted: dict[str, list[Span]], gold_path: str, predicted_path: str
) -> list[str]:
    """The ids to score, in gold order; an id found in only one file is an error naming it and the file."""
    for ids, other, path, other_path in (
        (gold, predicted, gold_path, predicted_path),
        (predicted, gold, predicted_path, gold_path),
    ):
        lonely = [record_id for record_id in ids if record_id not in other]
        if lonely:
            shown = ", ".join(repr(record_id) for record_id in lonely[:10])
            more = f" and {len(lonely) - 10} more" if len(lonely) > 10 else ""
            raise InputFileError(f"{len(lonely)} ids in {path} are missing from {other_path}: {shown}{more}")
    return list(gold)


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
        prog="python -m metrics", description="Entity-level scores of span predictions against gold spans."
    )
    parser.add_argument("gold", help="gold JSON-lines file in the span schema")
    parser.add_argument("predictions", help="predicted JSON-lines file (entities may use 'entity_group')")
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
    """Run the command line; bad input raises :class:`InputFileError` (``python -m metrics`` reports it)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    gold = read_span_records(args.gold)
    predicted = read_span_records(args.predictions)
    ids = _pair_records(gold, predicted, args.gold, args.predictions)
    classes = _read_classes(args.classes) if args.classes else None
    entity_types = [name.strip() for name in args.entity_types.split(",")] if args.entity_types else None
    report = score_entities(
        [gold[record_id] for record_id in ids],
        [predicted[record_id] for record_id in ids],
        entity_types=entity_types,
        classes=classes,
        record_ids=ids,
    )
    print(report.to_json() if args.format == "json" else format_report(report, digits=args.digits))
    if args.output:
        Path(args.output).write_text(report.to_json() + "\n", encoding="utf-8")
        logger.info("wrote %s", args.output)
    return 0
