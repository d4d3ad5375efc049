"""JSON-lines files in the span schema itself (``train_ner.py --corpus spans``): one ``{"id", "text", "entities":
[{"start", "end", "label", "text"?}]}`` object a line, any label names; an entity's ``text``, when given, must be
``text[start:end]`` (offsets count characters, code points).

Read like the CCKS files: a line that cannot be used is skipped and a bad entity dropped from its record, each
logged by file, line, record id and offsets and counted in the report (``strict=True`` raises at the first).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .ccks import ReadResult
from .schema import ProblemSink, Record, check_entity, collect_records, json_object, make_record, read_json_lines

logger = logging.getLogger(__name__)


def read_span_jsonl(path: str | Path, *, strict: bool = False) -> ReadResult:
    """Read a span-schema JSON-lines file; a record without ``id`` is named ``<file stem>:<line>``."""
    path = Path(path)
    sink = ProblemSink(path, strict)
    records = read_json_lines(path, sink, lambda raw, line: _parse_line(raw, line, f"{path.stem}:{line}", sink))
    logger.info("%s: %s", path, sink.report.summary())
    return ReadResult(records, sink.report)


def read_span_rows(rows: Iterable[dict[str, Any]], source: str, *, strict: bool = False) -> ReadResult:
    """Span-schema records already parsed (a Parquet file's rows, a ``datasets`` split), checked as the lines of a
    JSON-lines file are; ``source`` names them in messages, and the n-th row is reported as line n."""
    sink = ProblemSink(Path(source), strict)
    stem = Path(source).stem
    records = collect_records(
        ((line, _record(row, line, f"{stem}:{line}", sink)) for line, row in enumerate(rows, start=1)), sink
    )
    logger.info("%s: %s", source, sink.report.summary())
    return ReadResult(records, sink.report)


def _parse_line(raw: bytes, line: int, record_id: str, sink: ProblemSink) -> Record | None:
    obj = json_object(raw, line, record_id, sink, {"text": str, "entities": list})
    return None if obj is None else _record(obj, line, record_id, sink)


def _record(obj: dict[str, Any], line: int, record_id: str, sink: ProblemSink) -> Record | None:
    """The record of one span-schema object, its bad entities dropped (each told to ``sink``)."""
    record_id = record_id if obj.get("id") is None else str(obj["id"])
    text = obj.get("text")
    if not isinstance(text, str) or not isinstance(obj.get("entities"), list):
        sink("wrong_type", "a record needs a text (a string) and entities (a list)", line=line, record_id=record_id)
        return None
    spans: list[tuple[int, int, str]] = []
    for index, entity in enumerate(obj["entities"]):
        if not isinstance(entity, dict) or not {"start", "end", "label"} <= entity.keys():
            kind, reason = "missing_field", "an entity needs start, end and label"
        else:
            start, end = entity["start"], entity["end"]
            kind, reason = check_entity(len(text), start, end, entity["label"], None)
            # The schema's own "text" is the check that offsets count characters: offsets in UTF-16 units or bytes
            # (other tools') shift every entity after an astral character or a non-ASCII one.
            if kind is None and entity.get("text") is not None and entity["text"] != text[start:end]:
                kind, reason = "text_mismatch", f"entity text disagrees with text[{start}:{end}]"
            if kind is None:
                spans.append((entity["start"], entity["end"], reason))  # reason is the label when kind is None
                continue
        sink(kind, reason, line=line, record_id=record_id, entity=index)
        sink.report.entities_skipped += 1
    return make_record(record_id, text, spans)
