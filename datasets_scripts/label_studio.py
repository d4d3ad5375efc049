"""Reader for Label Studio text-span exports: the full JSON export and the JSON-MIN export.

JSON: a list of tasks ``{"id", "data": {"text": ...}, "annotations": [{"id", "result": [...], "was_cancelled",
"created_at", "updated_at"}]}``; each result of ``"type": "labels"`` holds ``value: {start, end, text, labels}``.
Of several annotations per task the newest one that is not cancelled is used (by ``updated_at``, then
``created_at``, then annotation id); a region with several labels gives one entity per label. A task without an
annotation that is not cancelled (not annotated yet, or skipped) is left out and counted apart from bad records.

JSON-MIN: a list of flat rows ``{"id", "text", <control name>: [{start, end, text, labels}], "annotation_id",
"created_at", "updated_at", ...}``, one row per annotation; the newest row per task id is used. A task that has no
annotation yet is a row with ``"annotation_id": null``.

With ``predictions=True`` the newest prediction of each task is read instead of its annotations (from a JSON
export with predictions serialised; JSON-MIN holds none): entities then carry their region's ``score`` and records
the prediction's ``model_version``, so pre-annotations can be compared with what the model wrote.

Record ids are the task ids. Offsets are checked against ``value.text``, whitespace aside (see :func:`_names_span`);
messages name the task id and offsets only.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .ccks import ReadResult
from .labels import BREAST_CANCER_TYPES, EntityType, alias_table
from .schema import CorpusError, Problem, ProblemSink, Record, check_entity, make_record, not_unicode

logger = logging.getLogger(__name__)


def read_label_studio(
    path: str | Path,
    *,
    types: tuple[EntityType, ...] | None = BREAST_CANCER_TYPES,
    text_key: str = "text",
    strict: bool = False,
    predictions: bool = False,
) -> ReadResult:
    """Read a Label Studio JSON or JSON-MIN export (detected from its content). Region labels are matched to
    ``types`` (their names and aliases become codes); ``types=None`` keeps every label as it is.

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
    labels = None if types is None else alias_table(types)
    is_full = any(isinstance(task, dict) and ("data" in task or "annotations" in task) for task in tasks)
    if predictions and not is_full:
        raise CorpusError(Problem("wrong_type", "predictions are only in a JSON export, not in JSON-MIN", str(path)))
    source = "predictions" if predictions else "annotations"
    if is_full:
        rows = _newest_rows(_full_export_entries(tasks, text_key, sink, source), f"data.{text_key}", sink, source)
    else:
        rows = _newest_rows(_min_export_entries(tasks, text_key, sink), text_key, sink, source)
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
# One annotation (or prediction) that is not cancelled: (its _newest_key, its regions, its model version).
Candidate = tuple[tuple[float, float, float], list[Any], str | None]
# What an export says of one task: (record id, text, its candidates). JSON gives one entry per task, JSON-MIN one per
# annotation row, so one task may come as several entries.
Entry = tuple[str, Any, list[Candidate]]


def _full_export_entries(tasks: list[Any], text_key: str, sink: ProblemSink, source: str) -> list[Entry]:
    entries = []
    for index, task in enumerate(tasks):
        record_id = _task_id(task, index, sink)
        if record_id is None:
            sink.report.records_skipped += 1
            continue
        data = task.get("data")
        candidates = []
        for annotation in task.get(source) or []:
            if isinstance(annotation, dict) and not annotation.get("was_cancelled"):
                result = annotation.get("result") or []
                regions = [r for r in result if isinstance(r, dict) and r.get("type") == "labels"]
                values = [_value(region, source == "predictions") for region in regions]
                model_version = annotation.get("model_version") if source == "predictions" else None
                candidates.append((_newest_key(annotation, "id"), values, model_version))
        entries.append((record_id, data.get(text_key) if isinstance(data, dict) else None, candidates))
    return entries


def _value(region: dict[str, Any], with_score: bool) -> Any:
    """A region's ``value``, with the region's ``score`` added when asked and both are there."""
    value = region.get("value")
    if with_score and isinstance(value, dict) and region.get("score") is not None:
        return {**value, "score": region["score"]}
    return value


def _min_export_entries(tasks: list[Any], text_key: str, sink: ProblemSink) -> list[Entry]:
    entries = []
    for index, task in enumerate(tasks):
        record_id = _task_id(task, index, sink)
        if record_id is None:
            sink.report.records_skipped += 1
            continue
        # Label Studio writes a task that has no annotation yet as one row with "annotation_id": null and no regions
        # (with download_all_tasks): it is no annotation, no more than a cancelled one.
        not_annotated = "annotation_id" in task and task["annotation_id"] is None
        if task.get("was_cancelled") or not_annotated:
            entries.append((record_id, task.get(text_key), []))
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
        entries.append((record_id, task.get(text_key), [(_newest_key(task, "annotation_id"), regions, None)]))
    return entries


def _newest_rows(entries: list[Entry], text_field: str, sink: ProblemSink, source: str) -> list[Row]:
    """A row per task, in the order the tasks first appear, from its newest candidate. Entries of one id are one
    task when they hold the same text; with different texts, they are all left out (``duplicate_id``).

    A task without any (not annotated yet, or every annotation cancelled, i.e. skipped by the annotator) is left out
    and counted in ``records_unannotated``: it is no defect of the file, so it does not count toward the share of bad
    records. A task without a prediction, when predictions are read, is a problem (``no_prediction``).
    """
    by_id: dict[str, list[tuple[Any, list[Candidate]]]] = {}
    for record_id, text, candidates in entries:
        by_id.setdefault(record_id, []).append((text, candidates))
    rows = []
    for record_id, tasks in by_id.items():
        texts = [text for text, _ in tasks]
        candidates = [candidate for _, task_candidates in tasks for candidate in task_candidates]
        distinct = dict.fromkeys(texts)
        if not all(isinstance(text, str) for text in texts):
            sink("missing_field", f"missing field '{text_field}' (a string)", record_id=record_id)
            sink.report.records_skipped += 1
        elif len(distinct) > 1:
            # Not annotations of one task but different tasks (exports of two projects joined: ids restart at 1). Ids
            # key the splits and the matching of gold and predictions, and which text the id stands for is unknown.
            for number in range(1, len(distinct) + 1):
                reason = (
                    f"task {number} of {len(distinct)} with this id and different texts: left out (task ids must be "
                    f"unique in a file; were exports of two projects joined?)"
                )
                sink("duplicate_id", reason, record_id=record_id)
            sink.report.records_skipped += len(distinct)
        elif reason := not_unicode(texts[0]):
            sink("bad_encoding", reason, record_id=record_id)
            sink.report.records_skipped += 1
        elif candidates:
            _, regions, model_version = max(candidates, key=lambda candidate: candidate[0])
            rows.append((record_id, texts[0], regions, model_version))
        elif source == "predictions":
            sink("no_prediction", "no prediction", record_id=record_id)
            sink.report.records_skipped += 1
        else:
            sink.report.records_unannotated += 1
    return rows


def _to_record(
    record_id: str,
    text: str,
    regions: list[Any],
    model_version: str | None,
    labels: dict[str, str] | None,
    sink: ProblemSink,
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
    value: Any, text: str, labels: dict[str, str] | None, spans: dict[tuple[int, int, str], Any]
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
        if kind is None and "text" in value and not _names_span(value["text"], text[start:end]):
            kind, detail = "text_mismatch", f"value.text disagrees with text[{start}:{end}]"
        if kind is not None:
            problems.append((kind, detail))
        elif (start, end, detail) in spans:
            problems.append(("duplicate_entity", f"duplicate entity (start={start}, end={end}, {detail})"))
        else:
            spans[start, end, detail] = value.get("score")
    return problems


def _names_span(region_text: Any, covered: str) -> bool:
    """Whether a region's ``value.text`` is the text its offsets cover, whitespace aside: Label Studio's browser
    selection collapses runs of whitespace in ``value.text`` while ``start``/``end`` stay right
    (HumanSignal/label-studio#3078), and the offsets are what it stores."""
    return isinstance(region_text, str) and "".join(region_text.split()) == "".join(covered.split())
