"""A notebook view of entities: the text as HTML with each entity highlighted, a colour per label and a legend.

>>> from clinical_ner_zh.modeling.display import render_entities
>>> render_entities(text, pipe(text))   # shows itself in Jupyter (``_repr_html_``); ``.html`` is the markup

Entities are dicts with ``start``, ``end`` (character offsets, end exclusive) and ``entity_group`` or ``label``;
``score`` and ``class`` show in the tooltip and the legend when present. The text is HTML-escaped and its line
breaks (CRLF included) are kept. Nested entities are drawn inside one another; an entity that crosses another
(overlaps without nesting) cannot be drawn as markup and is counted in the legend instead.

Standard library only: the pipeline imports this module, so it ships inside every model repository.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Light colours readable under black text; labels take them in order and wrap around after the last one.
PALETTE = (
    "#8ecae6", "#ffb703", "#90be6d", "#f4a261", "#cdb4db", "#ffafcc", "#a8dadc", "#e9c46a",
    "#b5e48c", "#f28482", "#bde0fe", "#ffd6a5", "#caffbf", "#fdffb6", "#d0f4de", "#e4c1f9",
    "#fcbf49", "#95d5b2", "#ffc8dd", "#c9ada7",
)  # fmt: skip

_LABEL_KEYS = ("entity_group", "label")


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label, in the order given (pass a model's entity types for colours stable across texts)."""
    return {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(dict.fromkeys(labels))}


def _label_of(entity: Mapping[str, Any]) -> str:
    for key in _LABEL_KEYS:
        if entity.get(key) is not None:
            return str(entity[key])
    raise ValueError(f"expected an entity with 'entity_group' or 'label', got keys {sorted(entity)}")


@dataclass(frozen=True)
class EntityView:
    """HTML of a text with its entities; Jupyter displays it through ``_repr_html_``."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _mark(entity: Mapping[str, Any], label: str, colour: str, inner: str) -> str:
    tip = label
    if entity.get("class"):
        tip += f" ({entity['class']})"
    if entity.get("score") is not None:
        tip += f" {float(entity['score']):.3f}"
    return (
        f'<mark style="background:{colour};padding:0.1em 0.2em;margin:0 0.1em;border-radius:0.3em;'
        f'line-height:2" title="{html.escape(tip)}">{inner}'
        f'<sub style="font-size:0.65em;font-weight:bold;margin-left:0.2em">{html.escape(label)}</sub></mark>'
    )


def render_entities(
    text: str, entities: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None
) -> EntityView:
    """HTML of ``text`` with ``entities`` highlighted and a legend (label, class, count).

    Args:
        text: the text the entities' offsets point into.
        entities: pipeline output (or span-schema entities) for ``text``.
        labels: labels in the order that fixes their colours; labels not listed follow, sorted.

    Raises ``ValueError`` for an entity without a label or with offsets outside the text (naming the offsets only).
    """
    parsed = []
    for index, entity in enumerate(entities):
        start, end, label = int(entity["start"]), int(entity["end"]), _label_of(entity)
        if not 0 <= start < end <= len(text):
            raise ValueError(f"entity {index}: offsets ({start}, {end}) are outside a text of {len(text)} characters")
        parsed.append((start, end, label, entity))
    seen = sorted({label for _, _, label, _ in parsed})
    colours = label_colours([*(labels or ()), *seen])

    # Outer entities first: sorted by start, then longest first, so a stack of open entities nests them.
    parsed.sort(key=lambda item: (item[0], -item[1]))
    pieces: list[str] = []
    stack: list[tuple[int, str, str, Mapping[str, Any], list[str]]] = []  # end, label, colour, entity, inner pieces
    position, crossing = 0, 0
    drawn: list[tuple[str, Mapping[str, Any]]] = []

    def emit(piece: str) -> None:
        (stack[-1][4] if stack else pieces).append(piece)

    def close_until(limit: int) -> None:
        nonlocal position
        while stack and stack[-1][0] <= limit:
            end, label, colour, entity, inner = stack.pop()
            inner.append(html.escape(text[position:end]))
            position = end
            emit(_mark(entity, label, colour, "".join(inner)))

    for start, end, label, entity in parsed:
        close_until(start)
        if stack and end > stack[-1][0]:
            crossing += 1  # crosses the entity it starts in: not drawable as nested markup
            continue
        emit(html.escape(text[position:start]))
        position = start
        drawn.append((label, entity))
        stack.append((end, label, colours[label], entity, []))
    close_until(len(text))
    pieces.append(html.escape(text[position:]))

    counts: dict[str, int] = {}
    classes: dict[str, str] = {}
    for label, entity in drawn:
        counts[label] = counts.get(label, 0) + 1
        if entity.get("class"):
            classes.setdefault(label, str(entity["class"]))
    legend = "".join(
        f'<span style="background:{colours[label]};padding:0.1em 0.4em;margin-right:0.4em;border-radius:0.3em">'
        f"{html.escape(label)}{html.escape(f' ({classes[label]})') if label in classes else ''}: {counts[label]}"
        "</span>"
        for label in colours
        if label in counts
    )
    if crossing:
        legend += f'<span style="margin-left:0.4em">{crossing} crossing entities not shown</span>'
    body = (
        '<div class="clinical-ner">'
        f'<div style="margin-bottom:0.5em;font-size:0.9em">{legend or "no entities"}</div>'
        f'<div style="white-space:pre-wrap;line-height:2">{"".join(pieces)}</div>'
        "</div>"
    )
    return EntityView(body)
