"""The span schema every reader returns, and the problem reporting shared by the readers.

A record is ``{"id": str, "text": str, "entities": [{"start", "end", "label", "text"}]}`` with ``end`` exclusive
and ``label`` an entity-type code from :mod:`clinical_ner_zh.datasets_scripts.labels`. Messages about bad input name the file,
the line or record id, the entity's offsets and the reason, never the patient text.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from clinical_ner_zh.cli_errors import UserError

logger = logging.getLogger(__name__)

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "entities": datasets.List(
            {
                "start": datasets.Value("int32"),
                "end": datasets.Value("int32"),
                "label": datasets.Value("string"),
                "text": datasets.Value("string"),
            }
        ),
    }
)

Record = dict[str, Any]


class CorpusError(UserError, ValueError):
    """A problem in a corpus file, raised in strict mode; ``problem`` holds where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file. ``entity`` is the entity's index in its record, if it is about one."""

    kind: str
    reason: str
    path: str
    line: int | None = None
    record_id: str | None = None
    entity: int | None = None

    @property
    def message(self) -> str:
        """``file:line: record ID: entity N: reason``, with only the parts that are known."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where]
        if self.record_id is not None:
            parts.append(f"record {self.record_id}")
        if self.entity is not None:
            parts.append(f"entity {self.entity}")
        return ": ".join([*parts, self.reason])


@dataclass
class ReadReport:
    """What a reader did: counts, and each problem it skipped (in strict mode it raises at the first one).

    ``records_unannotated`` counts the Label Studio tasks left out because nobody has annotated them yet (or the
    annotator skipped them): not a defect of the file, so not among ``records_skipped`` nor the problems.
    """

    records: int = 0
    entities: int = 0
    records_skipped: int = 0
    entities_skipped: int = 0
    records_unannotated: int = 0
    problems: list[Problem] = field(default_factory=list)

    def problem_counts(self) -> Counter[str]:
        """Number of problems per kind."""
        return Counter(problem.kind for problem in self.problems)

    def merge(self, other: ReadReport) -> None:
        """Add another report's counts and problems to this one."""
        self.records += other.records
        self.entities += other.entities
        self.records_skipped += other.records_skipped
        self.entities_skipped += other.entities_skipped
        self.records_unannotated += other.records_unannotated
        self.problems.extend(other.problems)

    def summary(self) -> str:
        """One line: records and entities read and skipped, problems per kind."""
        kinds = counts_text(self.problem_counts()) or "none"
        unannotated = f"; left out {self.records_unannotated} tasks not annotated" if self.records_unannotated else ""
        return (
            f"{self.records} records and {self.entities} entities read; skipped {self.records_skipped} records and "
            f"{self.entities_skipped} entities; problems: {kinds}{unannotated}"
        )


@dataclass
class ProblemSink:
    """Where a reader sends problems: raise in strict mode, else log and record them in ``report``."""

    path: Path | str
    strict: bool = False
    report: ReadReport = field(default_factory=ReadReport)

    def __call__(
        self,
        kind: str,
        reason: str,
        *,
        line: int | None = None,
        record_id: str | None = None,
        entity: int | None = None,
    ) -> None:
        problem = Problem(kind, reason, str(self.path), line, record_id, entity)
        if self.strict:
            raise CorpusError(problem)
        logger.warning("%s", problem.message)
        self.report.problems.append(problem)


def counts_text(counts: Mapping[str, int]) -> str:
    """``bad_json 2, wrong_type 1``: each name with its count, in name order (empty when nothing was counted)."""
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def read_json_lines(path: Path, sink: ProblemSink, parse: Callable[[bytes, int], Record | None]) -> list[Record]:
    """The records of a JSON-lines file, ``parse(raw_line, line_number)`` for each non-blank line; a line it refuses
    (``None``, after telling ``sink`` why) is counted as skipped. A UTF-8 byte-order mark and CRLF ends are
    tolerated, as the official CCKS files have them: the mark at the start of any line, since files joined with
    ``cat`` carry one where each part starts (it can never begin JSON); ``sink.report`` counts what was read."""

    def parsed() -> Iterator[tuple[int, Record | None]]:
        for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            raw = raw.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")
            if raw.strip():  # not a blank line, such as the empty last line most files end with
                yield number, parse(raw, number)

    return collect_records(parsed(), sink)


def collect_records(parsed: Iterable[tuple[int, Record | None]], sink: ProblemSink) -> list[Record]:
    """The records of ``(line, record)`` pairs, a record ``None`` where the line was refused (``sink`` told why),
    counted in ``sink.report``; a record whose text cannot be stored (:func:`not_unicode`) is refused here."""
    records: list[Record] = []
    for number, record in parsed:
        if record is not None and (reason := not_unicode(record["text"])):
            sink("bad_encoding", reason, line=number, record_id=record["id"])
            record = None
        if record is None:
            sink.report.records_skipped += 1
        else:
            records.append(record)
    sink.report.records = len(records)
    sink.report.entities = sum(len(record["entities"]) for record in records)
    return records


def not_unicode(text: str) -> str | None:
    """Why ``text`` cannot be stored (a lone UTF-16 surrogate, which JSON's ``"\\ud800"`` gives and UTF-8 cannot
    encode: pyarrow then fails on the whole corpus without naming a record), or ``None``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"the text holds a lone surrogate at character {error.start}"
    return None


def json_object(raw: bytes, line: int, record_id: str, sink: ProblemSink, fields: dict[str, type]) -> dict | None:
    """One line's JSON object holding ``fields`` of the given types, or ``None`` after telling ``sink`` why not."""
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
    for key, kind in fields.items():
        if key not in obj:
            sink("missing_field", f"missing field {key!r}", line=line, record_id=record_id)
            return None
        if not isinstance(obj[key], kind):
            sink("wrong_type", f"field {key!r} must be {kind.__name__}", line=line, record_id=record_id)
            return None
    return obj


def check_entity(
    text_length: int, start: Any, end: Any, label: Any, labels: dict[str, str] | None
) -> tuple[str, str] | tuple[None, str]:
    """Validate one entity's offsets and label.

    Returns ``(None, code)`` when it is good, else ``(kind, reason)``. ``labels`` maps accepted spellings to codes
    (see :func:`clinical_ner_zh.datasets_scripts.labels.alias_table`); ``None`` takes any label name as its own code.
    """
    from .labels import to_code

    if not isinstance(start, int) or isinstance(start, bool) or not isinstance(end, int) or isinstance(end, bool):
        return "wrong_type", f"offsets must be integers, got start={type(start).__name__}, end={type(end).__name__}"
    if not isinstance(label, str):
        return "wrong_type", f"label must be a string, got {type(label).__name__}"
    if start == end:
        return "empty_span", f"empty span (start={start}, end={end})"
    if start > end:
        return "reversed_span", f"reversed span (start={start}, end={end})"
    if start < 0 or end > text_length:
        return "out_of_range", f"offsets out of range (start={start}, end={end}, text length {text_length})"
    code = label if labels is None else to_code(label, labels)
    if code is None:
        known = ", ".join(sorted(set(labels.values())))
        return "unknown_label", f"unknown label {label!r} (start={start}, end={end}): expected one of {known}"
    return None, code


def make_record(record_id: str, text: str, spans: list[tuple[int, int, str]]) -> Record:
    """A record in the span schema, entities sorted by position and exact duplicates removed."""
    entities = [
        {"start": start, "end": end, "label": label, "text": text[start:end]}
        for start, end, label in sorted(set(spans))
    ]
    return {"id": record_id, "text": text, "entities": entities}


def to_dataset(records: list[Record]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with the schema's explicit features."""
    columns = {name: [record[name] for record in records] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)
