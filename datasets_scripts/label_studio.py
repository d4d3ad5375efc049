"""Reader for Label Studio text-span exports: the full JSON export and the JSON-MIN export.

JSON: a list of tasks ``{"id", "data": {"text": ...}, "annotations": [{"id", "result": [...], "was_cancelled",
"created_at", "updated_at"}]}``; each result of ``"type": "labels"`` holds ``value: {start, end, text, labels}``.
Of several annotations per task the newest one that is not cancelled is used (by ``updated_at``, then
``created_at``, then annotation id); a region with several labels gives one entity per label.

JSON-MIN: a list of flat rows ``{"id", "text", <control name>: [{start, end, text, labels}], "annotation_id",
"created_at", "updated_at", ...}``, one row per annotation; the newest row per task id is used.

With ``predictions=True`` the newest prediction of each task is read instead of its annotations (from a JSON
export with predictions serialised; JSON-MIN holds none): entities then carry their region's ``score`` and records
the prediction's ``model_version``, so pre-annotations can be compared with what the model wrote.

Record ids are the task ids. Offsets are checked against ``value.text``; messages name the task id and offsets only.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .ccks import ReadResult
from .labels import BREAST_CANCER_TYPES, EntityType, alias_table
from .schema import CorpusError, Problem, ProblemSink, Record, check_entity, make_record

logger = logging.getLogger(__name__)


def read_label_studio(
    path: str | Path,
    *,
    types: tuple[EntityType, ...] = BREAST_CANCER_TYPES,
    text_key: str = "text",
    strict: bool = False,
    predictions: bool = False,
) -> ReadResult:
    """Read a Label Studio JSON or JSON-MIN export (detected from its content).

    A file that is not valid JSON raises :class:`~clinical_ner_zh.datasets_scripts.schema.CorpusError` even when not strict, since
    nothing in it can be read. Otherwise see :func:`clinical_ner_zh.datasets_scripts.ccks.read_ccks` for ``strict``.
    """
    path = Path(path)
    sink = ProblemSink(path, strict)
    try:
        tasks = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise CorpusError(Problem("bad_encoding", f"not UTF-8 text (byte {error.start})", str(path))) from None
    except json.JSONDecodeError as error:
        reason = f"invalid JSON: {error.msg} at column {error.colno}"
        raise CorpusError(Problem("bad_json", reason, str(path), line=error.lineno)) from None
    if not isinstance(tasks, list):
        raise CorpusError(
            Problem("wrong_type", f"expected a JSON list of tasks, got {type(tasks).__name__}", str(path))
        )
    labels = alias_table(types)
    is_full = any(isinstance(task, dict) and ("data" in task or "annotations" in task) for task in tasks)
    if predictions and not is_full:
        raise CorpusError(Problem("wrong_type", "predictions are only in a JSON export, not in JSON-MIN", str(path)))
    if is_full:
        rows = _full_export_rows(tasks, text_key, sink, "predictions" if predictions else "annotations")
    else:
        rows = _min_export_rows(tasks, text_key, sink)
    records = [record for row in rows if (record := _to_record(*row, labels, sink)) is not None]
    sink.report.records = len(records)
    sink.report.entities = sum(len(record["entities"]) for record in records)
    logger.info("%s: %s", path, sink.report.summary())
    return ReadResult(records, sink.report)


def _timestamp(value: Any) -> float:
    """Seconds since the epoch of an ISO-8601 string (naive ones read as UTC); unknown values sort first."""
    if not isinstance(value, str):
        return float("-inf")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _newest_key(annotation: dict[str, Any], id_key: str) -> tuple[float, float, float]:
    identifier = annotation.get(id_key)
    number = float(identifier) if isinstance(identifier, (int, float)) and not isinstance(identifier, bool) else -1.0
    created = _timestamp(annotation.get("created_at"))
    return (max(_timestamp(annotation.get("updated_at")), created), created, number)


def _task_id(task: Any, index: int, sink: ProblemSink) -> str | None:
    if not isinstance(task, dict):
        sink("wrong_type", f"task {index} is {type(task).__name__}, expected a JSON object")
        return None
    if "id" not in task:
        sink("missing_field", f"task {index}: missing field 'id'")
        return None
    return str(task["id"])


# A row is (record id, text, regions, model version): regions are the {start, end, text, labels} dicts of one
# annotation, or of one prediction with each region's "score" added; the model version is a prediction's, else None.
Row = tuple[str, str, list[Any], str | None]


def _full_export_rows(tasks: list[Any], text_key: str, sink: ProblemSink, source: str) -> list[Row]:
    rows = []
    for index, task in enumerate(tasks):
        record_id = _task_id(task, index, sink)
        if record_id is None:
            sink.report.records_skipped += 1
            continue
        data = task.get("data")
        text = data.get(text_key) if isinstance(data, dict) else None
        candidates = [a for a in task.get(source) or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not isinstance(text, str):
            sink("missing_field", f"missing field 'data.{text_key}' (a string)", record_id=record_id)
        elif not candidates:
            kind, reason = (
                ("no_prediction", "no prediction")
                if source == "predictions"
                else ("no_annotation", "no annotation that is not cancelled")
            )
            sink(kind, reason, record_id=record_id)
        else:
            newest = max(candidates, key=lambda a: _newest_key(a, "id"))
            regions = [r for r in newest.get("result") or [] if isinstance(r, dict) and r.get("type") == "labels"]
            values = [_value(region, source == "predictions") for region in regions]
            model_version = newest.get("model_version") if source == "predictions" else None
            rows.append((record_id, text, values, model_version))
            continue
        sink.report.records_skipped += 1
    return rows


def _value(region: dict[str, Any], with_score: bool) -> Any:
    """A region's ``value``, with the region's ``score`` added when asked and both are there."""
    value = region.get("value")
    if with_score and isinstance(value, dict) and region.get("score") is not None:
        return {**value, "score": region["score"]}
    return value


def _min_export_rows(tasks: list[Any], text_key: str, sink: ProblemSink) -> list[Row]:
    newest: dict[str, dict[str, Any]] = {}
    for index, task in enumerate(tasks):
        record_id = _task_id(task, index, sink)
        if record_id is None or task.get("was_cancelled"):
            sink.report.records_skipped += 1
            continue
        older = record_id in newest and _newest_key(task, "annotation_id") <= _newest_key(
            newest[record_id], "annotation_id"
        )
        if older:  # another annotation of the same task is newer: keep that row
            continue
        newest[record_id] = task
    rows = []
    for record_id, task in newest.items():
        text = task.get(text_key)
        if not isinstance(text, str):
            sink("missing_field", f"missing field {text_key!r} (a string)", record_id=record_id)
            sink.report.records_skipped += 1
            continue
        # The regions sit under the labels control's name ("label" by default): any list of region-like dicts.
        regions = [
            region
            for key, value in task.items()
            if key != text_key
            and isinstance(value, list)
            and value
            and all(isinstance(v, dict) for v in value)
            and any("labels" in v or "start" in v for v in value)
            for region in value
        ]
        rows.append((record_id, text, regions, None))
    return rows


def _to_record(
    record_id: str, text: str, regions: list[Any], model_version: str | None, labels: dict[str, str], sink: ProblemSink
) -> Record:
    spans: dict[tuple[int, int, str], Any] = {}  # entity -> its region's score (None when it has none)
    for index, value in enumerate(regions):
        problems = _check_region(value, text, labels, spans)
        for kind, reason in problems:
            sink(kind, reason, record_id=record_id, entity=index)
            sink.report.entities_skipped += 1
    record = make_record(record_id, text, sorted(spans))
    for entity in record["entities"]:
        score = spans[entity["start"], entity["end"], entity["label"]]
        if score is not None:
            entity["score"] = score
    if model_version is not None:
        record["model_version"] = model_version
    return record


def _check_region(
    value: Any, text: str, labels: dict[str, str], spans: dict[tuple[int, int, str], Any]
) -> list[tuple[str, str]]:
    """Add the region's entities (one per label, with the region's score) to ``spans``; return the problems, one
    per skipped entity."""
    if not isinstance(value, dict):
        return [("wrong_type", "region value is not a JSON object")]
    for key in ("start", "end", "labels"):
        if key not in value:
            return [("missing_field", f"missing field 'value.{key}'")]
    names = value["labels"]
    if not isinstance(names, list) or not names:
        return [("missing_field", "'value.labels' must be a non-empty list")]
    start, end = value["start"], value["end"]
    problems = []
    for name in names:
        kind, detail = check_entity(len(text), start, end, name, labels)
        if kind is None and "text" in value and value["text"] != text[start:end]:
            kind, detail = "text_mismatch", f"value.text disagrees with text[{start}:{end}]"
        if kind is not None:
            problems.append((kind, detail))
        elif (start, end, detail) in spans:
            problems.append(("duplicate_entity", f"duplicate entity (start={start}, end={end}, {detail})"))
        else:
            spans[start, end, detail] = value.get("score")
    return problems
