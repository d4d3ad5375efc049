"""Entity-level scores over character spans of whole records: strict, partial, micro, macro, per type and per class.

A span is ``(start, end, label)`` with ``end`` exclusive, in characters of the record's text. Scoring works on
spans, never on tags, so nested and overlapping entities (breast-cancer EHRs, CCKS2020) are scored as they are.

Counting, per record (spans never match across records):

* Duplicate spans (same start, end and label) are counted once, in gold and in predictions alike; a warning says
  how many were dropped. After that, gold and predictions are sets.
* **Strict**: a predicted span is a true positive when the gold set holds the same ``(start, end, label)``.
  ``precision = TP / predicted``, ``recall = TP / gold``, ``f1`` their harmonic mean. These are the CoNLL/seqeval
  strict scores; where both apply (non-overlapping spans written as IOB2 tags) they are equal to seqeval's with
  ``mode="strict", scheme=IOB2``, which the tests check.
* **Partial, type overlap** (``type_overlap``): a predicted and a gold span *match* when they have the same label
  and share at least one character (``p.start < g.end and g.start < p.end``). Each span takes part in at most one
  match, and the count of matches ``M`` is the largest possible one (a maximum bipartite matching, per label and
  record), so the number does not depend on the order of the spans. ``precision = M / predicted``,
  ``recall = M / gold``. An exact match is also an overlap, so these scores are never below the strict ones.
* **Partial, exact boundary** (``exact_boundary``): a predicted and a gold span match when they have the same start
  and end, whatever their labels. Again one-to-one and maximal: for each ``(start, end)`` the count is
  ``min(gold spans there, predicted spans there)``. Only reported micro, since a match may join two labels.
* **Micro** scores pool the counts of all types; **macro** scores are the unweighted means of the per-type precision,
  recall and F1 (the F1 mean, not the F1 of the mean precision and recall, as in seqeval and scikit-learn) over the
  types seen in gold or predictions: a listed type with neither gets its row but stays out of the mean (as in
  seqeval), so the same files give the same macro scores whichever types a caller lists. **Per class** scores pool the counts of the types mapped to the class (micro within the class).
* Any ratio with a zero denominator is ``0.0``.

The reported types are the ``entity_types`` given (in that order, so types without support still get a row),
followed by any other type seen in gold or predictions, sorted. Without ``entity_types``, all types seen, sorted.

This module needs nothing but the standard library.
"""

from __future__ import annotations

import json
import logging
import operator
import unicodedata
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Span = tuple[int, int, str]
#: What a span may be given as: ``(start, end, label)`` or a dict with ``start``, ``end`` and ``label`` or
#: ``entity_group`` (the clinical-ner and token-classification pipelines' key). Other keys are ignored.
SpanLike = Sequence[Any] | Mapping[str, Any]

LABEL_KEYS = ("label", "entity_group")


@dataclass(frozen=True)
class Score:
    """Precision, recall and F1 with the counts they come from.

    For micro, per-type and per-class scores ``precision = true_positives / predicted`` and
    ``recall = true_positives / support``. For macro scores the three ratios are means over types and the counts
    are sums over types.
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted: int
    support: int

    @classmethod
    def from_counts(cls, true_positives: int, predicted: int, support: int) -> Score:
        """Scores of ``true_positives`` matches among ``predicted`` predicted and ``support`` gold spans."""
        precision = _ratio(true_positives, predicted)
        recall = _ratio(true_positives, support)
        return cls(precision, recall, _f1(precision, recall), true_positives, predicted, support)


@dataclass(frozen=True)
class EntityReport:
    """Entity-level scores of a set of records; see the module docstring for how each is counted."""

    micro: Score
    macro: Score
    per_type: dict[str, Score]
    per_class: dict[str, Score]
    type_overlap: Score
    type_overlap_per_type: dict[str, Score]
    exact_boundary: Score
    num_records: int
    #: Types seen in the data or listed in ``entity_types`` that the class mapping does not name (empty when no
    #: mapping was given): they count in micro and macro scores but in no class.
    unclassified_types: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts, lists, numbers and strings, in the report's order."""
        return asdict(self) | {"unclassified_types": list(self.unclassified_types)}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON; labels are written as UTF-8 text, not escaped."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EntityReport:
        """The report that ``to_dict`` wrote (e.g. read back from a saved ``eval_results.json``)."""

        def table(name: str) -> dict[str, Score]:
            return {key: Score(**score) for key, score in values[name].items()}

        return cls(
            micro=Score(**values["micro"]),
            macro=Score(**values["macro"]),
            per_type=table("per_type"),
            per_class=table("per_class"),
            type_overlap=Score(**values["type_overlap"]),
            type_overlap_per_type=table("type_overlap_per_type"),
            exact_boundary=Score(**values["exact_boundary"]),
            num_records=values["num_records"],
            unclassified_types=tuple(values["unclassified_types"]),
        )


def _ratio(numerator: float, denominator: float) -> float:
    # The zero-division convention is 0.0 everywhere (seqeval's zero_division=0)
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _describe(record: int, record_ids: Sequence[Any] | None) -> str:
    # Errors name records by id (or position) and spans by offsets only: never by text, which is patient data
    return f"record {record_ids[record]!r}" if record_ids is not None else f"record {record}"


def normalize_span(span: SpanLike, where: str = "span") -> Span:
    """``(start, end, label)`` from a tuple or a span dict, validated.

    Raises ``ValueError`` naming ``where`` and the offsets (never the span's text) when the span has no label, when
    the offsets are not integers, or when ``not 0 <= start < end``.
    """
    if isinstance(span, Mapping):
        label = next((span[key] for key in LABEL_KEYS if span.get(key) is not None), None)
        if "start" not in span or "end" not in span or label is None:
            raise ValueError(
                f"{where}: expected keys 'start', 'end' and 'label' or 'entity_group', got keys {sorted(span)}"
            )
        start, end = span["start"], span["end"]
    elif isinstance(span, Sequence) and not isinstance(span, str) and len(span) == 3:
        start, end, label = span
    else:
        raise ValueError(f"{where}: expected (start, end, label) or a dict, got a {type(span).__name__}")
    try:
        # operator.index accepts Python and NumPy integers but not floats or bools-as-strings
        start, end = operator.index(start), operator.index(end)
    except TypeError:
        raise ValueError(
            f"{where}: offsets must be integers, got {type(start).__name__} and {type(end).__name__}"
        ) from None
    if not isinstance(label, str) or not label:
        raise ValueError(f"{where}: the label must be a non-empty string, got a {type(label).__name__}")
    if not 0 <= start < end:
        raise ValueError(f"{where}: expected 0 <= start < end, got start={start}, end={end}")
    return start, end, label


def _span_set(spans: Iterable[SpanLike], where: str) -> tuple[set[Span], int]:
    """The distinct spans of one record, and how many duplicates were dropped."""
    normalized = [normalize_span(span, f"{where}, span {index}") for index, span in enumerate(spans)]
    distinct = set(normalized)
    return distinct, len(normalized) - len(distinct)


def _maximum_matching(adjacency: Sequence[Sequence[int]], num_right: int) -> int:
    """Size of a maximum matching of a bipartite graph (Kuhn's augmenting paths).

    ``adjacency[left]`` lists the right vertices joined to ``left``. The depth-first search is iterative so that a
    record with thousands of entities of one type cannot hit Python's recursion limit.
    """
    match_of_right = [-1] * num_right
    size = 0
    for root in range(len(adjacency)):
        visited: set[int] = set()
        lefts = [root]  # the alternating path: lefts[i] -rights[i]- lefts[i + 1] ...
        rights: list[int] = []
        frontier = [iter(adjacency[root])]
        while frontier:
            right = next((r for r in frontier[-1] if r not in visited), None)
            if right is None:  # dead end: back up one step on the path
                frontier.pop()
                lefts.pop()
                if rights:
                    rights.pop()
                continue
            visited.add(right)
            rights.append(right)
            if match_of_right[right] == -1:  # augmenting path found: flip it
                for left, matched_right in zip(lefts, rights, strict=True):
                    match_of_right[matched_right] = left
                size += 1
                break
            lefts.append(match_of_right[right])
            frontier.append(iter(adjacency[match_of_right[right]]))
    return size


def _type_overlap_matches(gold: Iterable[Span], predicted: Iterable[Span]) -> int:
    """Maximum number of one-to-one (predicted, gold) pairs of one type that share a character."""
    gold, predicted = sorted(gold), sorted(predicted)
    starts = [start for start, _, _ in gold]
    longest = max((end - start for start, end, _ in gold), default=0)
    adjacency = []
    for p_start, p_end, _ in predicted:
        # Only gold spans starting in [p_start - longest, p_end) can overlap: a bisect keeps a 100,000-character
        # record with thousands of entities from comparing every pair
        first, last = bisect_left(starts, p_start - longest + 1), bisect_left(starts, p_end)
        adjacency.append([index for index in range(first, last) if p_start < gold[index][1]])
    return _maximum_matching(adjacency, len(gold))


def _exact_boundary_matches(gold: Iterable[Span], predicted: Iterable[Span]) -> int:
    """Maximum number of one-to-one (predicted, gold) pairs with the same start and end, any labels."""
    gold_at = Counter((start, end) for start, end, _ in gold)
    predicted_at = Counter((start, end) for start, end, _ in predicted)
    return sum(min(count, gold_at[boundary]) for boundary, count in predicted_at.items())


def _class_of_type(classes: Mapping[str, Any]) -> dict[str, str]:
    """Accept ``{type: class}`` or ``{class: [types]}``; return ``{type: class}``."""
    class_of: dict[str, str] = {}
    for key, value in classes.items():
        if isinstance(value, str):
            pairs = [(key, value)]
        elif isinstance(value, Iterable):
            pairs = [(entity_type, key) for entity_type in value]
        else:
            raise ValueError(f"class mapping: expected a class name or a list of types for {key!r}")
        for entity_type, class_name in pairs:
            if class_of.setdefault(entity_type, class_name) != class_name:
                raise ValueError(f"class mapping: type {entity_type!r} is in two classes")
    return class_of


def score_entities(
    gold: Sequence[Iterable[SpanLike]],
    predicted: Sequence[Iterable[SpanLike]],
    *,
    entity_types: Sequence[str] | None = None,
    classes: Mapping[str, Any] | None = None,
    record_ids: Sequence[Any] | None = None,
) -> EntityReport:
    """Score predicted against gold entities, record by record.

    Args:
        gold: for each record, its gold spans (``(start, end, label)`` tuples or span dicts).
        predicted: for each record, in the same order, its predicted spans; dicts may name the type
            ``entity_group`` as pipelines do.
        entity_types: the types to report first and in this order, even without support; other types seen are
            appended, sorted. Macro scores average over the types seen in gold or predictions.
        classes: a type -> class mapping (``{"Nodule": "Symptoms", ...}``) or class -> types
            (``{"Symptoms": ["Nodule"], ...}``); classes are reported in the order they first appear in the
            mapping, each with a row even when none of its types occur.
        record_ids: used only to name records in error messages and warnings.

    Returns:
        An :class:`EntityReport`; see the module docstring for the exact counting.

    Raises:
        ValueError: for lists of different lengths, an invalid span (naming record, span index and offsets) or a
            type placed in two classes.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"expected as many predicted records as gold records, got {len(predicted)} and {len(gold)}")
    if record_ids is not None and len(record_ids) != len(gold):
        raise ValueError(f"expected one record id per record, got {len(record_ids)} ids for {len(gold)} records")

    strict_hits: Counter[str] = Counter()
    overlap_hits: Counter[str] = Counter()
    gold_count: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter()
    boundary_hits = 0
    duplicates: list[str] = []
    for record, (gold_spans, predicted_spans) in enumerate(zip(gold, predicted, strict=True)):
        where = _describe(record, record_ids)
        gold_set, gold_dropped = _span_set(gold_spans, f"{where}, gold")
        predicted_set, predicted_dropped = _span_set(predicted_spans, f"{where}, predictions")
        if gold_dropped or predicted_dropped:
            duplicates.append(f"{where} ({gold_dropped} gold, {predicted_dropped} predicted)")

        gold_by_type: defaultdict[str, list[Span]] = defaultdict(list)
        predicted_by_type: defaultdict[str, list[Span]] = defaultdict(list)
        for span in gold_set:
            gold_by_type[span[2]].append(span)
        for span in predicted_set:
            predicted_by_type[span[2]].append(span)
        for span in gold_set & predicted_set:
            strict_hits[span[2]] += 1
        for entity_type, spans in gold_by_type.items():
            gold_count[entity_type] += len(spans)
        for entity_type, spans in predicted_by_type.items():
            predicted_count[entity_type] += len(spans)
            if entity_type in gold_by_type:
                overlap_hits[entity_type] += _type_overlap_matches(gold_by_type[entity_type], spans)
        boundary_hits += _exact_boundary_matches(gold_set, predicted_set)

    if duplicates:
        logger.warning("duplicate spans counted once in %d records: %s", len(duplicates), "; ".join(duplicates[:5]))

    listed = list(dict.fromkeys(entity_types or ()))
    seen = sorted((set(gold_count) | set(predicted_count)) - set(listed))
    types = listed + seen

    per_type = {t: Score.from_counts(strict_hits[t], predicted_count[t], gold_count[t]) for t in types}
    overlap_per_type = {t: Score.from_counts(overlap_hits[t], predicted_count[t], gold_count[t]) for t in types}
    total_gold, total_predicted = sum(gold_count.values()), sum(predicted_count.values())
    micro = Score.from_counts(sum(strict_hits.values()), total_predicted, total_gold)
    seen_scores = [per_type[t] for t in types if gold_count[t] or predicted_count[t]]
    macro = Score(
        precision=_ratio(sum(s.precision for s in seen_scores), len(seen_scores)),
        recall=_ratio(sum(s.recall for s in seen_scores), len(seen_scores)),
        f1=_ratio(sum(s.f1 for s in seen_scores), len(seen_scores)),
        true_positives=micro.true_positives,
        predicted=total_predicted,
        support=total_gold,
    )

    per_class: dict[str, Score] = {}
    unclassified: tuple[str, ...] = ()
    if classes is not None:
        class_of = _class_of_type(classes)
        # Every class gets a row, in mapping order (the paper's table order), even when none of its types occur
        members: dict[str, list[str]] = {class_name: [] for class_name in class_of.values()}
        for entity_type in types:
            if entity_type in class_of:
                members[class_of[entity_type]].append(entity_type)
        per_class = {
            name: Score.from_counts(
                sum(strict_hits[t] for t in member_types),
                sum(predicted_count[t] for t in member_types),
                sum(gold_count[t] for t in member_types),
            )
            for name, member_types in members.items()
        }
        unclassified = tuple(t for t in types if t not in class_of)
        if unclassified:
            logger.warning("types in no class (counted in micro and macro only): %s", ", ".join(unclassified))

    return EntityReport(
        micro=micro,
        macro=macro,
        per_type=per_type,
        per_class=per_class,
        type_overlap=Score.from_counts(sum(overlap_hits.values()), total_predicted, total_gold),
        type_overlap_per_type=overlap_per_type,
        exact_boundary=Score.from_counts(boundary_hits, total_predicted, total_gold),
        num_records=len(gold),
        unclassified_types=unclassified,
    )


def _display_width(text: str) -> int:
    # Chinese labels take two terminal columns per character; padding by len() would break the table's columns
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def format_report(report: EntityReport, digits: int = 4) -> str:
    """A fixed-width text table: per-type rows, micro and macro averages, per-class rows, then partial scores.

    Columns are aligned for terminals that show CJK characters two columns wide.
    """
    rows: list[tuple[str, Score] | None] = [(name, score) for name, score in report.per_type.items()]
    rows += [None, ("micro avg", report.micro), ("macro avg", report.macro)]
    if report.per_class:
        rows += [None] + [(f"class {name}", score) for name, score in report.per_class.items()]
    rows += [
        None,
        ("partial: type overlap", report.type_overlap),
        ("partial: exact boundary", report.exact_boundary),
    ]
    name_width = max([_display_width("entity type")] + [_display_width(row[0]) for row in rows if row is not None])
    number_width = max(digits + 3, len("precision"))
    header = _pad("entity type", name_width) + "".join(
        f"  {column:>{number_width}}" for column in ("precision", "recall", "f1", "support", "predicted")
    )
    lines = [header, "-" * _display_width(header)]
    for row in rows:
        if row is None:
            lines.append("")
            continue
        name, score = row
        ratios = "".join(f"  {value:>{number_width}.{digits}f}" for value in (score.precision, score.recall, score.f1))
        counts = "".join(f"  {value:>{number_width}d}" for value in (score.support, score.predicted))
        lines.append(_pad(name, name_width) + ratios + counts)
    lines += ["", f"records: {report.num_records}"]
    if report.unclassified_types:
        lines.append(f"types in no class: {', '.join(report.unclassified_types)}")
    return "\n".join(lines)
