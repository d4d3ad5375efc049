"""JSON-lines files in the span schema itself (``train_ner.py --corpus spans``): one ``{"id", "text", "entities":
[{"start", "end", "label"}]}`` object a line, any label names.

Read like the CCKS files: a line that cannot be used is skipped and a bad entity dropped from its record, each
logged by file, line, record id and offsets and counted in the report (``strict=True`` raises at the first).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .ccks import ReadResult
from .schema import ProblemSink, Record, check_entity, make_record

logger = logging.getLogger(__name__)


def read_span_jsonl(path: str | Path, *, strict: bool = False) -> ReadResult:
    """Read a span-schema JSON-lines file; a record without ``id`` is named ``<file stem>:<line>``."""
    path = Path(path)
    sink = ProblemSink(path, strict)
    records: list[Record] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            record = _parse_line(raw, number, f"{path.stem}:{number}", sink)
            if record is None:
                sink.report.records_skipped += 1
            else:
                records.append(record)
    sink.report.records = len(records)
    sink.report.entities = sum(len(record["entities"]) for record in records)
    logger.info("%s: %s", path, sink.report.summary())
    return ReadResult(records, sink.report)


def _parse_line(raw: bytes, line: int, record_id: str, sink: ProblemSink) -> Record | None:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        sink("bad_encoding", f"not UTF-8 text (byte {error.start})", line=line, record_id=record_id)
        return None
    except json.JSONDecodeError as error:
        # error.msg and the column name the place, not the content, so no patient text leaks
        sink("bad_json", f"invalid JSON: {error.msg} at column {error.colno}", line=line, record_id=record_id)
        return None
    if not isinstance(obj, dict):
        sink("wrong_type", f"expected a JSON object, got {type(obj).__name__}", line=line, record_id=record_id)
        return None
    record_id = str(obj.get("id", record_id))
    for key, kind in (("text", str), ("entities", list)):
        if key not in obj:
            sink("missing_field", f"missing field {key!r}", line=line, record_id=record_id)
            return None
        if not isinstance(obj[key], kind):
            sink("wrong_type", f"field {key!r} must be {kind.__name__}", line=line, record_id=record_id)
            return None
    text: str = obj["text"]
    spans: list[tuple[int, int, str]] = []
    for index, entity in enumerate(obj["entities"]):
        if not isinstance(entity, dict) or not {"start", "end", "label"} <= entity.keys():
            kind, reason = "missing_field", "an entity needs start, end and label"
        else:
            kind, reason = check_entity(len(text), entity["start"], entity["end"], entity["label"], None)
            if kind is None:
                spans.append((entity["start"], entity["end"], reason))  # reason is the label when kind is None
                continue
        sink(kind, reason, line=line, record_id=record_id, entity=index)
        sink.report.entities_skipped += 1
    return make_record(record_id, text, spans)
