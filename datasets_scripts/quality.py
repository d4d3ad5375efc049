"""Data-quality findings on span-schema records: what a careful annotator would want pointed out.

Each finding names a record id and offsets, never the text. The checks:

* ``boundary_whitespace``: an entity starts or ends with whitespace;
* ``boundary_punctuation``: an entity starts or ends with punctuation, other than a bracket or quote that is
  balanced inside the entity ("CT（腹部）" is fine, "（腹部" is not) and "%";
* ``overlap``: two entities of a record overlap (same span with two labels, nested, or crossing);
* ``duplicate_text``: records with the same text but different entities;
* ``misaligned``: a record whose entities, shifted by one character, would match surface forms annotated with the
  same label in *other* records much more often than they do unshifted (see :func:`find_misaligned`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .schema import Record

_OPENING = {"(": ")", "（": "）", "[": "]", "【": "】", "《": "》", "“": "”", "‘": "’", "「": "」", "<": ">"}
_CLOSING = {closing: opening for opening, closing in _OPENING.items()}
_HARMLESS = {"%", "％", "'", '"'}


@dataclass(frozen=True)
class Finding:
    """One data-quality observation: kind, record id and a description made of offsets and labels only."""

    kind: str
    record_id: str
    detail: str

    @property
    def message(self) -> str:
        """``record ID: detail``."""
        return f"record {self.record_id}: {self.detail}"


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P") and char not in _HARMLESS


def _balanced(surface: str) -> bool:
    stack = []
    for char in surface:
        if char in _OPENING:
            stack.append(char)
        elif char in _CLOSING:
            if not stack or stack[-1] != _CLOSING[char]:
                return False
            stack.pop()
    return not stack


def boundary_findings(records: Sequence[Record]) -> list[Finding]:
    """Entities starting or ending with whitespace or (unbalanced) punctuation."""
    findings = []
    for record in records:
        for entity in record["entities"]:
            surface, where = entity["text"], f"[{entity['start']}, {entity['end']}) {entity['label']}"
            if surface[0].isspace() or surface[-1].isspace():
                side = "starts" if surface[0].isspace() else "ends"
                findings.append(Finding("boundary_whitespace", record["id"], f"{where} {side} with whitespace"))
                continue
            first, last = surface[0], surface[-1]
            bracketed = (first in _OPENING or last in _CLOSING) and _balanced(surface)
            stray_first = _is_punctuation(first) and not (bracketed and first in _OPENING)
            stray_last = _is_punctuation(last) and not (bracketed and last in _CLOSING)
            if stray_first or stray_last:
                side = "starts and ends" if stray_first and stray_last else "starts" if stray_first else "ends"
                findings.append(Finding("boundary_punctuation", record["id"], f"{where} {side} with punctuation"))
    return findings


def overlap_findings(records: Sequence[Record]) -> list[Finding]:
    """Pairs of overlapping entities within a record."""
    findings = []
    for record in records:
        spans = sorted((e["start"], e["end"], e["label"]) for e in record["entities"])
        for index, (start, end, label) in enumerate(spans):
            for other_start, other_end, other_label in spans[index + 1 :]:
                if other_start >= end:
                    break
                if (start, end) == (other_start, other_end):
                    kind = "same span with two labels"
                elif other_end <= end or (other_start == start and other_end > end):
                    kind = "nested"
                else:
                    kind = "crossing"
                detail = f"[{start}, {end}) {label} and [{other_start}, {other_end}) {other_label}: {kind}"
                findings.append(Finding("overlap", record["id"], detail))
    return findings


def duplicate_text_findings(records: Sequence[Record]) -> list[Finding]:
    """Records sharing one text but not one set of entities."""
    by_text: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_text[record["text"]].append(record)
    findings = []
    for group in by_text.values():
        if len(group) < 2:
            continue
        first = {(e["start"], e["end"], e["label"]) for e in group[0]["entities"]}
        for other in group[1:]:
            second = {(e["start"], e["end"], e["label"]) for e in other["entities"]}
            if first != second:
                detail = (
                    f"same text as record {other['id']}, annotated differently "
                    f"({len(first - second)} entities only here, {len(second - first)} only there)"
                )
                findings.append(Finding("duplicate_text", group[0]["id"], detail))
    return findings


def find_misaligned(records: Sequence[Record], min_votes: int = 3, min_share: float = 0.3) -> list[Finding]:
    """Records whose entities look shifted by one character.

    The evidence is the other records: a surface form annotated with label X elsewhere is "known" for X. For each
    entity, if its own surface is unknown but the surface one character to the left (or right) is known, that is
    a vote for a shift in that direction; a known surface is a vote against. A record is flagged when a
    direction gets at least ``min_votes`` votes and ``min_share`` of its entities, and more than the votes
    against. Counts exclude the record itself, so one record cannot vouch for its own offsets.
    """
    lexicon: Counter[tuple[str, str]] = Counter()
    for record in records:
        lexicon.update((e["text"], e["label"]) for e in record["entities"])
    findings = []
    for record in records:
        own = Counter((e["text"], e["label"]) for e in record["entities"])
        text = record["text"]

        def known(surface: str, label: str, own: Counter[tuple[str, str]] = own) -> bool:
            return lexicon[(surface, label)] - own[(surface, label)] > 0

        votes: Counter[int] = Counter()
        for entity in record["entities"]:
            start, end, label = entity["start"], entity["end"], entity["label"]
            if known(entity["text"], label):
                votes[0] += 1
                continue
            for shift in (-1, 1):
                if start + shift >= 0 and end + shift <= len(text) and known(text[start + shift : end + shift], label):
                    votes[shift] += 1
        total = len(record["entities"])
        for shift in (-1, 1):
            if votes[shift] >= max(min_votes, min_share * total) and votes[shift] > votes[0]:
                detail = (
                    f"suspected misaligned: {votes[shift]} of {total} entities match entities of other records when "
                    f"shifted by {shift:+d} character, {votes[0]} match as they are"
                )
                findings.append(Finding("misaligned", record["id"], detail))
    return findings


def all_findings(records: Sequence[Record]) -> list[Finding]:
    """Every check of this module, in the order of the module docstring."""
    return [
        *boundary_findings(records),
        *overlap_findings(records),
        *duplicate_text_findings(records),
        *find_misaligned(records),
    ]
