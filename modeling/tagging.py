"""Label sets, span <-> tag conversion, token alignment and windows: the project's only implementation.

Spans are ``(start, end, label)`` with ``end`` exclusive, in whatever unit the caller works in (characters for
records, tokens for tag sequences). Tags are strings such as ``"B-Drug"``; ``"O"`` is outside every entity.

Two schemes are supported:

* ``BIO`` (IOB2): ``B-X`` begins an entity of type X, ``I-X`` continues it.
* ``BIOES``: ``S-X`` is a single-token entity, ``B-X`` / ``I-X`` / ``E-X`` begin, continue and end a longer one.

This module is pure Python: it runs inside a model repository as remote code (the pipeline imports it), so it
may import nothing but the standard library.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SCHEMES = ("BIO", "BIOES")
OUTSIDE = "O"
_PREFIXES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}

Span = tuple[int, int, str]


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` if it is supported, else raise ``ValueError``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    return scheme


def build_label_list(entity_types: Iterable[str], scheme: str = "BIO") -> list[str]:
    """``["O", "B-X", "I-X", ...]`` for the entity types in the order given (duplicates removed)."""
    prefixes = _PREFIXES[check_scheme(scheme)]
    labels = [OUTSIDE]
    for entity_type in dict.fromkeys(entity_types):
        if not entity_type or "-" in entity_type[:2] or entity_type == OUTSIDE:
            raise ValueError(f"invalid entity type {entity_type!r}: expected a non-empty name that is not 'O'")
        labels.extend(f"{prefix}-{entity_type}" for prefix in prefixes)
    return labels


def parse_label(label: str, scheme: str) -> tuple[str, str | None]:
    """Split ``"B-Drug"`` into ``("B", "Drug")``; ``"O"`` gives ``("O", None)``."""
    if label == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, entity_type = label.partition("-")
    if not sep or not entity_type or prefix not in _PREFIXES[check_scheme(scheme)]:
        raise ValueError(
            f"label {label!r} is not valid in the {scheme} scheme: expected 'O' or one of "
            f"{'/'.join(_PREFIXES[scheme])} followed by '-TYPE'"
        )
    return prefix, entity_type


def entity_types_of(labels: Sequence[str], scheme: str) -> list[str]:
    """The entity types named by a label list, in first-seen order."""
    types = (parse_label(label, scheme)[1] for label in labels)
    return list(dict.fromkeys(t for t in types if t is not None))


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "BIO") -> list[str]:
    """Tag sequence of ``length`` positions for non-overlapping spans.

    Raises ``ValueError`` for an empty, reversed, out-of-range or overlapping span: resolve overlaps first with
    :func:`resolve_overlaps`.
    """
    check_scheme(scheme)
    tags = [OUTSIDE] * length
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span ({start}, {end}, {label!r}) is empty or outside a sequence of length {length}")
        if any(tag != OUTSIDE for tag in tags[start:end]):
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps another span")
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{label}"
            continue
        tags[start] = f"B-{label}"
        for position in range(start + 1, end):
            tags[position] = f"I-{label}"
        if scheme == "BIOES":
            tags[end - 1] = f"E-{label}"
    return tags


def tags_to_spans(tags: Sequence[str], scheme: str = "BIO") -> list[Span]:
    """Spans encoded by a tag sequence.

    Well-formed sequences (those :func:`allowed_transitions` permits) decode exactly. Ill-formed ones are read
    leniently, as conlleval does: an ``I-X`` or ``E-X`` that does not continue an open ``X`` entity starts a new one.
    """
    spans: list[Span] = []
    start, open_type = None, None

    def close(end: int) -> None:
        nonlocal start, open_type
        if open_type is not None:
            spans.append((start, end, open_type))
        start, open_type = None, None

    for position, tag in enumerate(tags):
        prefix, entity_type = parse_label(tag, scheme)
        continues = prefix in ("I", "E") and entity_type == open_type
        if not continues:
            close(position)
            if prefix != OUTSIDE:
                start, open_type = position, entity_type
        if prefix in ("E", "S"):
            close(position + 1)
    close(len(tags))
    return spans


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[list[bool], list[bool], list[list[bool]]]:
    """Which tags may start or end a sequence, and which may follow which.

    Returns ``(start, end, pairs)`` where ``pairs[i][j]`` says whether ``labels[j]`` may follow ``labels[i]``.
    BIO: ``I-X`` only after ``B-X`` or ``I-X``, so never first. BIOES additionally: ``B-X``/``I-X`` must be followed
    by ``I-X`` or ``E-X``, so they never end a sequence, and ``E-X``/``S-X``/``O`` are followed by ``B``, ``S`` or ``O``.
    """
    parsed = [parse_label(label, scheme) for label in labels]
    inside = ("I", "E")  # prefixes that continue an open entity

    def may_follow(previous: tuple[str, str | None], current: tuple[str, str | None]) -> bool:
        prev_prefix, prev_type = previous
        prefix, entity_type = current
        entity_open = prev_prefix in ("B", "I") and (scheme == "BIO" or prev_prefix in ("B", "I"))
        if prefix in inside:
            return entity_open and prev_type == entity_type
        # O, B or S: allowed unless BIOES requires the open entity to continue
        return not (scheme == "BIOES" and prev_prefix in ("B", "I"))

    start = [prefix not in inside for prefix, _ in parsed]
    end = [not (scheme == "BIOES" and prefix in ("B", "I")) for prefix, _ in parsed]
    pairs = [[may_follow(previous, current) for current in parsed] for previous in parsed]
    return start, end, pairs


def _is_placeholder(labels: Sequence[str]) -> bool:
    """transformers names labels ``LABEL_0``, ``LABEL_1``, ... when a config is built without any."""
    return all(label == f"LABEL_{index}" for index, label in enumerate(labels))


def check_label_map(id2label: dict[int, str], scheme: str) -> list[str]:
    """The label list of a config's ``id2label``, checked against ``scheme`` (``ValueError`` on a bad label).

    transformers' ``LABEL_i`` placeholders are accepted so that a bare config still builds a model.
    """
    check_scheme(scheme)
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"id2label must map 0..{len(id2label) - 1} to labels, got ids {sorted(id2label)}")
    labels = [id2label[index] for index in range(len(id2label))]
    if not _is_placeholder(labels):
        allowed_transitions(labels, scheme)
    return labels


def transition_constraints(id2label: dict[int, str], scheme: str) -> dict[str, list]:
    """Keyword arguments ``allowed_start``, ``allowed_end``, ``allowed_transitions`` for the CRF (empty for
    placeholder labels, which leaves the CRF unconstrained)."""
    labels = check_label_map(id2label, scheme)
    if _is_placeholder(labels):
        return {}
    start, end, pairs = allowed_transitions(labels, scheme)
    return {"allowed_start": start, "allowed_end": end, "allowed_transitions": pairs}


def resolve_overlaps(spans: Iterable[Span]) -> tuple[list[Span], list[Span]]:
    """Choose a non-overlapping subset of spans, deterministically.

    Policy: the longest span wins; among equally long ones the earlier start, then the label that sorts first.
    Spans are taken greedily in that order and kept when they overlap nothing kept so far, so of two nested
    entities the outer one is kept, and a span carrying two labels keeps one. Returns ``(kept, dropped)``, each
    sorted by position; callers count the dropped ones, they are never discarded silently.
    """
    kept: list[Span] = []
    dropped: list[Span] = []
    for span in sorted(set(spans), key=lambda s: (s[0] - s[1], s[0], s[2])):
        if any(span[0] < other[1] and other[0] < span[1] for other in kept):
            dropped.append(span)
        else:
            kept.append(span)
    return sorted(kept), sorted(dropped)


def char_to_token_spans(spans: Iterable[Span], offsets: Sequence[tuple[int, int]]) -> tuple[list[Span], list[Span]]:
    """Map character spans onto token spans through a tokenizer's ``offset_mapping``.

    ``offsets[i]`` is the character range of token ``i``; empty ranges (special tokens, ``(0, 0)``) are ignored. A
    span is representable when one token starts exactly at its start and one ends exactly at its end; otherwise
    (a boundary inside a word piece, or on whitespace that produced no token) it is returned in the second list.
    """
    starts, ends = {}, {}
    for index, (char_start, char_end) in enumerate(offsets):
        if char_end > char_start:
            starts.setdefault(char_start, index)
            ends[char_end] = index + 1
    mapped, unrepresentable = [], []
    for span in spans:
        start, end, label = span
        if start in starts and end in ends and starts[start] < ends[end]:
            mapped.append((starts[start], ends[end], label))
        else:
            unrepresentable.append(span)
    return mapped, unrepresentable


def token_to_char_spans(spans: Iterable[Span], offsets: Sequence[tuple[int, int]]) -> list[Span]:
    """Inverse of :func:`char_to_token_spans`: token spans to character spans via ``offset_mapping``."""
    return [(offsets[start][0], offsets[end - 1][1], label) for start, end, label in spans]


def plan_windows(num_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Cover ``num_tokens`` tokens with windows of ``window`` tokens, consecutive windows sharing ``stride`` or more.

    ``stride`` is the overlap, as in transformers' tokenizers. The last window is moved back to end at
    ``num_tokens`` with a full width, so it overlaps its neighbour by more and has more context. Returns
    ``[(start, end), ...]``; a sequence that fits gives one window.
    """
    if window <= 0 or not 0 <= stride < window:
        raise ValueError(f"expected window > 0 and 0 <= stride < window, got window={window}, stride={stride}")
    windows = [(0, min(window, num_tokens))]
    while windows[-1][1] < num_tokens:
        start = min(windows[-1][1] - stride, num_tokens - window)
        windows.append((start, start + window))
    return windows


@dataclass(frozen=True)
class TokenLayout:
    """What a tokenizer puts around the tokens of one text (:func:`special_token_layout`): the special token ids
    before and after them, and the token type (segment) ids of those and of the text's own tokens. BERT:
    ``[CLS] x [SEP]``, all segment 0; XLNet: ``x <sep> <cls>``, ``<cls>`` in segment 2 as in its pretraining.
    Type ids left out are 0."""

    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    prefix_type_ids: tuple[int, ...] | None = None
    suffix_type_ids: tuple[int, ...] | None = None
    text_type_id: int = 0

    def __post_init__(self):
        for ids, types in (("prefix", "prefix_type_ids"), ("suffix", "suffix_type_ids")):
            if getattr(self, types) is None:
                object.__setattr__(self, types, (0,) * len(getattr(self, ids)))

    @property
    def special_ids(self) -> tuple[int, ...]:
        """The special token ids of a window, before and after its text."""
        return (*self.prefix, *self.suffix)


def special_token_layout(tokenizer) -> TokenLayout:
    """The special token ids a tokenizer puts before and after a text's tokens, and the token type ids it gives
    them and the text: ``[CLS] x [SEP]`` for BERT, ``x <sep> <cls>`` with ``<cls>`` in segment 2 for XLNet, nothing
    for a tokenizer without special tokens.

    Read from the tokenizer itself (a one-token text with and without special tokens); ``ValueError`` for a layout
    that is not prefix + the text's tokens + suffix.
    """
    for text in ("a", "x", "0", "\u4e00"):
        inner = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if inner:
            break
    else:
        raise ValueError(f"{type(tokenizer).__name__} gives no token for a one-character text")
    encoding = tokenizer(text, add_special_tokens=True, return_token_type_ids=True)
    full, types = list(encoding["input_ids"]), list(encoding["token_type_ids"])
    starts = [i for i in range(len(full) - len(inner) + 1) if full[i : i + len(inner)] == inner]
    if len(starts) != 1:
        raise ValueError(
            f"{type(tokenizer).__name__} lays a text out as {full} around its tokens {inner}: expected special tokens "
            "before and/or after the text's tokens"
        )
    start, end = starts[0], starts[0] + len(inner)
    return TokenLayout(tuple(full[:start]), tuple(full[end:]), tuple(types[:start]), tuple(types[end:]), types[start])


@dataclass(frozen=True)
class WindowPlanner:
    """How a text's tokens become model windows, for training (``clinical_ner_zh.datasets_scripts.encoding``) and the pipeline alike.

    ``window`` tokens per window, consecutive windows sharing ``stride`` or more (:func:`plan_windows`), each laid
    out as the tokenizer lays out a text (``layout``, :func:`special_token_layout`): wrapped in its special tokens
    (``[CLS]`` and ``[SEP]`` for BERT, nothing and ``<sep> <cls>`` for XLNet; none for a tokenizer without special
    tokens), with the token type ids it gives them and the text.
    """

    window: int
    stride: int
    layout: TokenLayout = TokenLayout()

    def plan(self, num_tokens: int) -> list[tuple[int, int]]:
        """The windows ``[(start, end), ...]`` over ``num_tokens`` tokens (:func:`plan_windows`)."""
        return plan_windows(num_tokens, self.window, self.stride)

    def inputs(
        self, input_ids: Sequence[int], start: int, end: int, features: Mapping[str, Sequence[int]] | None = None
    ) -> dict[str, list[int]]:
        """The model inputs of the window over tokens ``[start, end)`` of a text (``input_ids`` and ``features``
        cover all its tokens, without special tokens): ``input_ids``, ``attention_mask``, ``token_type_ids`` (the
        tokenizer's), ``special_tokens_mask`` (1 on the prefix and suffix) and each per-token feature, 0 on the
        prefix and suffix."""
        layout = self.layout
        before, after = [0] * len(layout.prefix), [0] * len(layout.suffix)
        content = end - start
        inputs = {
            "input_ids": [*layout.prefix, *input_ids[start:end], *layout.suffix],
            "attention_mask": [1] * (len(before) + content + len(after)),
            "token_type_ids": [*layout.prefix_type_ids, *[layout.text_type_id] * content, *layout.suffix_type_ids],
            "special_tokens_mask": [1] * len(before) + [0] * content + [1] * len(after),
        }
        for name, values in (features or {}).items():
            inputs[name] = [*before, *values[start:end], *after]
        return inputs


def window_owners(windows: Sequence[tuple[int, int]], num_tokens: int) -> list[int]:
    """For each token, the index of the window where it has the most context on both sides.

    Context is ``min(tokens before it, tokens after it)`` inside the window; ties go to the earlier window. Windows
    are sorted by start with non-decreasing ends, as :func:`plan_windows` makes them; only the few windows holding
    a token are looked at, so this is linear in the number of tokens. Tokens owned by one window form a contiguous
    run; :func:`merge_windows` joins consecutive runs where the windows agree.
    """
    owners = []
    first = 0  # the first window that has not ended before the current token
    for token in range(num_tokens):
        while first < len(windows) and windows[first][1] <= token:
            first += 1
        best, best_context = -1, -1
        index = first
        while index < len(windows) and windows[index][0] <= token:
            start, end = windows[index]
            context = min(token - start, end - 1 - token)
            if context > best_context:
                best, best_context = index, context
            index += 1
        owners.append(best)
    return owners


def owned_ranges(windows: Sequence[tuple[int, int]], num_tokens: int) -> list[tuple[int, int]]:
    """For each window, the tokens ``[lo, hi)`` it owns under :func:`window_owners` (``lo == hi`` for none)."""
    ranges = [(start, start) for start, _ in windows]
    for token, owner in enumerate(window_owners(windows, num_tokens)):
        lo, hi = ranges[owner]
        ranges[owner] = (token, token + 1) if lo == hi else (lo, token + 1)
    return ranges


def merge_windows(
    windows: Sequence[tuple[int, int]], window_tags: Sequence[Sequence[str]], num_tokens: int, scheme: str = "BIO"
) -> tuple[list[Span], list[int]]:
    """The entities of the whole sequence from the tags of overlapping windows (as :func:`plan_windows` makes them).

    Returns ``(spans, sources)``: token spans, and for each token the index of the window it was read from.

    Consecutive windows that own tokens (:func:`owned_ranges`) are joined at one cut inside their overlap: tokens
    before it are read from the left window, the others from the right one. A cut is *clean* when no entity of
    either window crosses it, or when both continue an entity of the same type across it; an entity that reaches
    its window's own edge at the cut counts as continuing there, since that window cannot see further. Of the
    cuts that leave out the fewest entities (none, when a clean one exists), the one where the tokens have the
    most context in the windows they are read from is taken (:func:`window_owners` when the windows agree).

    So every entity is one a window decoded, or one stitched at cuts where the windows on both sides continue it:
    it starts where the window its first token is read from starts one, ends where the window of its last token
    ends one, and each token lies inside an entity of that type in its own window. An entity crossing a window
    edge comes out whole when a window sees it whole, or when the windows agree across their overlaps. Entities
    cut through by a cut that is not clean are left out: no window saw them as they would come out.
    """
    check_scheme(scheme)
    spans = [
        [(start + s, start + e, label) for s, e, label in tags_to_spans(tags, scheme)]
        for (start, _), tags in zip(windows, window_tags)
    ]
    order = [index for index, (lo, hi) in enumerate(owned_ranges(windows, num_tokens)) if lo < hi]
    cuts = [0]
    for left, right in itertools.pairwise(order):
        cuts.append(_best_cut(windows[left], windows[right], spans[left], spans[right], cuts[-1], num_tokens))
    cuts.append(num_tokens)
    sources: list[int] = []
    pieces = []  # each window's entities clipped to the tokens read from it, with how they are open at a cut
    for window, lo, hi in zip(order, cuts, cuts[1:]):
        sources.extend([window] * (hi - lo))
        window_start, window_end = windows[window]
        for start, end, label in spans[window]:
            if start < hi and lo < end:
                left = _opening(start < lo, start == lo == window_start > 0)
                right = _opening(end > hi, end == hi == window_end < num_tokens)
                pieces.append((max(start, lo), min(end, hi), label, left, right))
    return _join_pieces(pieces), sources


def _opening(cut: bool, edge: bool) -> str | None:
    """How an entity is open at a cut: ``"cut"`` it goes on past it, ``"edge"`` it meets its window's edge there."""
    return "cut" if cut else "edge" if edge else None


def _join_pieces(pieces: Sequence[tuple[int, int, str, str | None, str | None]]) -> list[Span]:
    """Stitch pieces that meet at a cut, both open there with the same type; drop chains cut on one side only."""
    merged: list[Span] = []

    def close(chain: list | None) -> None:
        # chain: [start, end, label, starts whole, how it is open on the right]
        if chain is not None and chain[3] and chain[4] != "cut":
            merged.append((chain[0], chain[1], chain[2]))

    chain = None
    for start, end, label, left, right in pieces:
        if chain is not None and chain[4] and left and chain[1] == start and chain[2] == label:
            chain[1], chain[4] = end, right
        else:
            close(chain)
            chain = [start, end, label, left != "cut", right]
        if right is None:
            close(chain)
            chain = None
    close(chain)
    return merged


def _best_cut(
    left: tuple[int, int],
    right: tuple[int, int],
    left_spans: Sequence[Span],
    right_spans: Sequence[Span],
    previous: int,
    num_tokens: int,
) -> int:
    """Where to switch from window ``left`` to window ``right`` (see :func:`merge_windows`); not before ``previous``."""
    lo, hi = max(previous, right[0]), left[1]
    left_at = {t: span for span in left_spans for t in range(max(span[0], lo - 1, previous), min(span[1], hi))}
    right_at = {t: span for span in right_spans for t in range(max(span[0], lo), min(span[1], hi + 1))}

    def context(window: tuple[int, int], token: int) -> int:
        return min(token - window[0], window[1] - 1 - token)

    candidates = []
    score = sum(context(right, t) for t in range(lo, hi))  # context of the tokens read, for a cut at lo
    for cut in range(lo, hi + 1):
        if cut > lo:
            score += context(left, cut - 1) - context(right, cut - 1)
        before, after = left_at.get(cut - 1), right_at.get(cut)
        left_open = before and _opening(before[1] > cut, before[1] == cut == left[1] < num_tokens)
        right_open = after and _opening(after[0] < cut, after[0] == cut == right[0] > 0)
        stitched = bool(left_open and right_open) and before[2] == after[2]
        lost = 0 if stitched else (left_open == "cut") + (right_open == "cut")
        # Ties go to the later cut: the left window keeps a tied token, as in window_owners.
        candidates.append((-lost, score, cut))
    return max(candidates)[2]


def window_spans(spans: Iterable[Span], start: int, end: int) -> list[Span]:
    """Token spans clipped to the window ``[start, end)``, in window coordinates.

    An entity crossing the window's edge is kept as its clipped part, so that :func:`merge_windows` stitches it
    back whole.
    """
    return [(max(s, start) - start, min(e, end) - start, label) for s, e, label in spans if s < end and start < e]
