"""Records -> model windows with BIO/BIOES label ids, and predicted windows -> character spans.

Encoding tokenises each record once (through ``offset_mapping``, so it works for the character tokenizer and for
WordPiece vocabularies alike), covers it with windows of ``max_length`` tokens including ``[CLS]`` and ``[SEP]``,
consecutive windows overlapping by ``stride`` tokens, and labels each window's tokens. Special tokens get label
-100 and ``special_tokens_mask`` 1: the CRF never sees them. A model's extra per-token inputs (family B's lexicon
features, ``text_features``) are computed once per record over all its tokens and sliced per window, as the
``clinical-ner`` pipeline does: a term crossing a window edge keeps the features it has in the whole text, and the
cost stays linear in the record's length.

Gold entities that cannot be written into one tag sequence are never lost silently. An entity whose boundary
falls inside a token (or on whitespace that produced no token) is *not representable*; of overlapping entities
one is kept by :func:`clinical_ner_zh.modeling.tagging.resolve_overlaps` (the longest in characters wins, then the earlier start,
then the label that sorts first) and the others are *dropped*. Both are counted per type in
:class:`EncodingStats` and logged with record id and offsets only.

A window cut inside an entity labels the entity's part it holds as an entity of its own (``B-X`` first, and
``E-X`` last for BIOES), so every window's gold tags form a path the CRF's constraints allow; a window that does not
(a bug, never a valid corpus) is an error naming the record, window and token, because constrained training would
score it as a loss of about 1e4 instead of failing.

Decoding merges per-window tag paths with :func:`clinical_ner_zh.modeling.tagging.merge_windows`, the merge the ``clinical-ner``
pipeline uses (consecutive windows joined where they agree, so the merged entities are entities the windows
decoded, or stitched where both windows continue them), and maps the spans back to characters.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

from clinical_ner_zh.modeling.tagging import (
    Span,
    WindowPlanner,
    allowed_transitions,
    build_label_list,
    char_to_token_spans,
    check_scheme,
    merge_windows,
    resolve_overlaps,
    spans_to_tags,
    special_token_layout,
    token_to_char_spans,
    window_spans,
)

from .schema import counts_text

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of special and padding tokens: ignored by the loss, never shown to the CRF
MIN_STRIDE = {"BIO": 1, "BIOES": 2}

WINDOW_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "attention_mask": datasets.List(datasets.Value("int8")),
        "token_type_ids": datasets.List(datasets.Value("int8")),
        "special_tokens_mask": datasets.List(datasets.Value("int8")),
        "labels": datasets.List(datasets.Value("int32")),
        "offset_mapping": datasets.List(datasets.List(datasets.Value("int32"), length=2)),
        "record_index": datasets.Value("int64"),
        "record_id": datasets.Value("string"),
        "window_index": datasets.Value("int32"),
        "window_start": datasets.Value("int32"),
    }
)


@dataclass(frozen=True)
class SkippedEntity:
    """A gold entity left out of the tag sequences: where it is and why (no text)."""

    record_id: str
    start: int
    end: int
    label: str
    reason: str

    @property
    def message(self) -> str:
        """``record ID [start, end) LABEL: reason``."""
        return f"record {self.record_id} [{self.start}, {self.end}) {self.label}: {self.reason}"


@dataclass
class EncodingStats:
    """Counts of an encoding run; ``skipped`` lists every entity not written into the tags."""

    records: int = 0
    windows: int = 0
    entities: int = 0
    encoded: int = 0
    unrepresentable: Counter[str] = field(default_factory=Counter)
    overlap_dropped: Counter[str] = field(default_factory=Counter)
    skipped: list[SkippedEntity] = field(default_factory=list)

    @property
    def not_representable(self) -> int:
        """Entities that are not in the tags: boundary inside a token, or dropped as an overlap."""
        return sum(self.unrepresentable.values()) + sum(self.overlap_dropped.values())

    def summary(self) -> str:
        """One line of counts, those left out also per type."""
        return (
            f"{self.records} records, {self.windows} windows, {self.entities} entities: {self.encoded} encoded, "
            f"{sum(self.unrepresentable.values())} not representable by the tokenizer{_per_type(self.unrepresentable)}, "
            f"{sum(self.overlap_dropped.values())} dropped as overlaps{_per_type(self.overlap_dropped)}"
        )


def _per_type(counts: Counter[str]) -> str:
    """`` (Disease 3, Drug 1)``, or nothing when nothing was counted."""
    return f" ({counts_text(counts)})" if counts else ""


def _skip_reason(start: int, end: int, offsets: Sequence[tuple[int, int]], text: str) -> str:
    """Why a span has no token span: a boundary splits a token, or falls on a character that made no token."""
    starts = {a for a, b in offsets if b > a}
    ends = {b for a, b in offsets if b > a}
    reasons = []
    for name, offset, known in (("start", start, starts), ("end", end, ends)):
        if offset in known:
            continue
        if any(a < offset < b for a, b in offsets):
            reasons.append(f"{name} inside a token")
        else:
            char = text[offset if name == "start" else offset - 1]
            kind = "whitespace" if char.isspace() else "a character"
            reasons.append(f"{name} on {kind} without a token")
    return "; ".join(reasons) or "no token span"


class WindowEncoder:
    """Encode records into labelled windows, and decode predicted windows back into character spans.

    Use as the function of ``Dataset.map(encoder, batched=True, with_indices=True, remove_columns=...)``, or via
    :func:`encode_dataset`. Statistics accumulate in ``stats`` (per process: with ``num_proc > 1`` each worker
    keeps its own copy).

    Args:
        tokenizer: a fast tokenizer (offsets are required); each window gets its special tokens where the tokenizer
            puts them, with the token type ids it gives them and the text (:func:`special_token_layout`:
            ``[CLS] x [SEP]`` for BERT, ``x <sep> <cls>`` for XLNet, its ``<cls>`` in segment 2).
        entity_types: the type codes, in label-list order.
        scheme: ``"BIO"`` or ``"BIOES"``.
        max_length: tokens per window, special tokens included.
        stride: tokens shared by consecutive windows; at least 1 for BIO and 2 for BIOES.
        pad_to_max_length: pad every window to ``max_length`` (labels -100, special mask 1, offsets (0, 0)).
        text_features: a model's ``text_features(text, offsets) -> {name: one int per token}`` (the pipeline's hook
            for extra per-token inputs), called once per record with the offsets of all its tokens; each window gets
            its tokens' values in a column per name, 0 at special and padding positions.
        text_feature_names: the names ``text_features`` returns (extra columns of ``features``, the window schema).
    """

    def __init__(
        self,
        tokenizer: Any,
        entity_types: Sequence[str],
        *,
        scheme: str = "BIO",
        max_length: int = 512,
        stride: int = 64,
        pad_to_max_length: bool = False,
        text_features: Callable[[str, Sequence[tuple[int, int]]], Mapping[str, Sequence[int]]] | None = None,
        text_feature_names: Sequence[str] = (),
    ) -> None:
        self.scheme = check_scheme(scheme)
        self.labels = build_label_list(entity_types, scheme)
        self.label2id = {label: index for index, label in enumerate(self.labels)}
        self.id2label = dict(enumerate(self.labels))
        self.allowed = allowed_transitions(self.labels, scheme)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"expected a fast tokenizer (offset_mapping is needed), got {type(tokenizer).__name__}")
        layout = special_token_layout(tokenizer)
        specials = len(layout.special_ids)
        if max_length < specials + 1:
            raise ValueError(f"expected max_length >= {specials + 1} (special tokens and a token), got {max_length}")
        window = max_length - specials
        if not MIN_STRIDE[scheme] <= stride < window:
            raise ValueError(
                f"expected {MIN_STRIDE[scheme]} <= stride < {window} (max_length - {specials}) for {scheme}, got "
                f"{stride}: "
                f"merging overlapping windows loses entities that cross a window edge with a smaller stride"
            )
        self.tokenizer = tokenizer
        self.max_length, self.window, self.stride = max_length, window, stride
        self.planner = WindowPlanner(window, stride, layout)
        self.pad_to_max_length = pad_to_max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if (text_features is None) != (not text_feature_names):
            raise ValueError("expected text_features and text_feature_names together, got only one of them")
        self.text_features, self.text_feature_names = text_features, tuple(text_feature_names)
        # The columns of a window: WINDOW_FEATURES plus one per text feature.
        self.features = datasets.Features(
            {**WINDOW_FEATURES, **{name: datasets.List(datasets.Value("int32")) for name in self.text_feature_names}}
        )
        self.stats = EncodingStats()

    # ----- encoding -----------------------------------------------------------------------------------------------

    def __call__(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        """Encode a batch of records (columns ``id``, ``text``, ``entities``) into a batch of windows."""
        return self.encode_batch(batch, indices)

    def encode_batch(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        """Columns of windows for a batch of records; ``indices`` are the records' dataset indices."""
        texts = batch["text"]
        indices = range(len(texts)) if indices is None else indices
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        out: dict[str, list] = {name: [] for name in self.features}
        for position, text in enumerate(texts):
            entities = batch["entities"][position]
            spans = [(e["start"], e["end"], e["label"]) for e in entities]
            record_id = batch["id"][position] if "id" in batch else str(indices[position])
            windows = self.encode_record(
                text, spans, encoded["input_ids"][position], encoded["offset_mapping"][position], record_id
            )
            for window_index, window in enumerate(windows):
                for name, value in window.items():
                    out[name].append(value)
                out["record_index"].append(indices[position])
                out["record_id"].append(record_id)
                out["window_index"].append(window_index)
        return out

    def token_spans(
        self, text: str, spans: Sequence[Span], offsets: Sequence[tuple[int, int]], record_id: str
    ) -> list[Span]:
        """The token spans written into the tags; counts and logs the entities left out."""
        self.stats.entities += len(spans)
        mapped, unrepresentable = char_to_token_spans(spans, offsets)
        for start, end, label in unrepresentable:
            self._skip(record_id, start, end, label, _skip_reason(start, end, offsets, text), "unrepresentable")
        missing = set(unrepresentable)
        representable = [span for span in spans if span not in missing]
        token_of = dict(zip(representable, mapped))
        kept, dropped = resolve_overlaps(representable)
        for start, end, label in dropped:
            self._skip(record_id, start, end, label, "overlaps a longer entity that is kept", "overlap")
        # Duplicates of one span collapse into one kept entity; count each copy beyond the first as dropped.
        for span, copies in Counter(representable).items():
            for _ in range(copies - 1):
                self._skip(record_id, *span, "duplicate of another entity", "overlap")
        self.stats.encoded += len(kept)
        return [token_of[span] for span in kept]

    def _skip(self, record_id: str, start: int, end: int, label: str, reason: str, kind: str) -> None:
        skipped = SkippedEntity(record_id, start, end, label, reason)
        (self.stats.unrepresentable if kind == "unrepresentable" else self.stats.overlap_dropped)[label] += 1
        self.stats.skipped.append(skipped)
        logger.info("not encoded: %s", skipped.message)

    def encode_record(
        self,
        text: str,
        spans: Sequence[Span],
        input_ids: Sequence[int],
        offsets: Sequence[tuple[int, int]],
        record_id: str,
    ) -> list[dict[str, list]]:
        """Windows of one record already tokenised without special tokens.

        A record without tokens (an empty text, or whitespace that a WordPiece tokenizer drops) gets no window: the
        CRF has nothing to score there (its likelihood needs a token per sequence), and decoding gives it no
        entities. Its gold entities are still counted, as not representable.
        """
        token_spans = self.token_spans(text, spans, offsets, record_id)
        if not input_ids:
            self.stats.records += 1
            return []
        features = self._record_features(text, offsets, record_id)
        windows = []
        for start, end in self.planner.plan(len(input_ids)):
            tags = spans_to_tags(window_spans(token_spans, start, end), end - start, self.scheme)
            label_ids = [self.label2id[tag] for tag in tags]
            self._check_path(label_ids, record_id, len(windows), start, offsets)
            before, after = len(self.planner.layout.prefix), len(self.planner.layout.suffix)
            size = before + end - start + after
            window = {
                **self.planner.inputs(input_ids, start, end, features),
                "labels": [*[IGNORE_INDEX] * before, *label_ids, *[IGNORE_INDEX] * after],
                "offset_mapping": [*[(0, 0)] * before, *offsets[start:end], *[(0, 0)] * after],
                "window_start": start,
            }
            if self.pad_to_max_length:
                self._pad(window, self.max_length - size)
            windows.append(window)
        self.stats.records += 1
        self.stats.windows += len(windows)
        return windows

    def _record_features(self, text: str, offsets: Sequence[tuple[int, int]], record_id: str) -> dict[str, list[int]]:
        if self.text_features is None:
            return {}
        features = self.text_features(text, offsets)
        if sorted(features) != sorted(self.text_feature_names):
            raise ValueError(
                f"record {record_id}: expected text features {self.text_feature_names}, got {sorted(features)}"
            )
        for name, values in features.items():
            if len(values) != len(offsets):
                raise ValueError(
                    f"record {record_id}: text_features gave {len(values)} values for {name!r}, expected one per "
                    f"token ({len(offsets)})"
                )
        return {name: list(features[name]) for name in self.text_feature_names}

    def _check_path(
        self,
        label_ids: Sequence[int],
        record_id: str,
        window_index: int,
        window_start: int,
        offsets: Sequence[tuple[int, int]],
    ) -> None:
        """``ValueError`` naming record, window and token (labels and offsets only, no text) at the first tag of
        a window that the CRF's constraints forbid where it stands."""
        allowed_start, allowed_end, pairs = self.allowed
        for position, label in enumerate(label_ids):
            previous = label_ids[position - 1] if position else None
            if previous is None and not allowed_start[label]:
                move = f"{self.labels[label]} after [CLS]"
            elif previous is not None and not pairs[previous][label]:
                move = f"{self.labels[label]} after {self.labels[previous]}"
            elif position == len(label_ids) - 1 and not allowed_end[label]:
                move = f"{self.labels[label]} before [SEP]"
            else:
                continue
            token = window_start + position
            raise ValueError(
                f"record {record_id} window {window_index} token {token} (characters "
                f"{offsets[token][0]}-{offsets[token][1]}): gold tags {move} are not a path the {self.scheme} "
                f"constraints allow"
            )

    def _pad(self, window: dict[str, Any], count: int) -> None:
        for name, value in (
            ("input_ids", self.pad_id),
            ("attention_mask", 0),
            ("token_type_ids", 0),
            ("special_tokens_mask", 1),
            ("labels", IGNORE_INDEX),
            ("offset_mapping", (0, 0)),
            *((name, 0) for name in self.text_feature_names),
        ):
            window[name].extend([value] * count)

    # ----- decoding -----------------------------------------------------------------------------------------------

    def decode_record(self, windows: Sequence[Mapping[str, Any]], paths: Sequence[Sequence[int]]) -> list[Span]:
        """Character spans of one record from its windows and a predicted label-id path per window.

        Each path covers either the window's content tokens only (what a CRF decodes) or every position of the
        window (then special and padding positions are ignored). Windows may come in any order but must cover the
        record's tokens without gaps.
        """
        if len(windows) != len(paths):
            raise ValueError(f"expected one path per window, got {len(paths)} paths for {len(windows)} windows")
        pieces = []
        for window, path in zip(windows, paths):
            mask = window["special_tokens_mask"]
            content = [i for i, special in enumerate(mask) if not special]
            if len(path) == len(content):
                tags = list(path)
            elif len(path) >= (content[-1] + 1 if content else 0) and len(path) <= len(mask):
                tags = [path[i] for i in content]
            else:
                raise ValueError(
                    f"expected a path of {len(content)} (content tokens) or {len(mask)} (all positions) labels for "
                    f"the window at token {window['window_start']}, got {len(path)}"
                )
            offsets = [tuple(window["offset_mapping"][i]) for i in content]
            pieces.append((window["window_start"], [self.id2label[int(t)] for t in tags], offsets))
        pieces.sort(key=lambda piece: piece[0])
        num_tokens = max((start + len(tags) for start, tags, _ in pieces), default=0)
        record_offsets: list[tuple[int, int] | None] = [None] * num_tokens
        for start, _, offsets in pieces:
            record_offsets[start : start + len(offsets)] = offsets
        if any(offset is None for offset in record_offsets):
            raise ValueError("the windows do not cover the record's tokens without gaps")
        windows_planned = [(start, start + len(tags)) for start, tags, _ in pieces]
        spans, _ = merge_windows(windows_planned, [tags for _, tags, _ in pieces], num_tokens, self.scheme)
        return sorted(token_to_char_spans(spans, record_offsets))


def encode_dataset(dataset: datasets.Dataset, encoder: WindowEncoder, *, batch_size: int = 64) -> datasets.Dataset:
    """Map a span-schema ``Dataset`` to windows (one row per window) with the columns of ``encoder.features``.

    Runs in this process, without the cache, so that ``encoder.stats`` counts every record.
    """
    return dataset.map(
        encoder,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=encoder.features,
        load_from_cache_file=False,
        desc="encoding windows",
    )


def decode_dataset(
    windows: datasets.Dataset | Sequence[Mapping[str, Any]], paths: Sequence[Sequence[int]], encoder: WindowEncoder
) -> dict[int, list[Span]]:
    """Character spans per record index from encoded windows (rows of :func:`encode_dataset`) and one path each."""
    if len(windows) != len(paths):
        raise ValueError(f"expected one path per window, got {len(paths)} paths for {len(windows)} windows")
    by_record: dict[int, tuple[list, list]] = {}
    for window, path in zip(windows, paths):
        group = by_record.setdefault(int(window["record_index"]), ([], []))
        group[0].append(window)
        group[1].append(path)
    return {index: encoder.decode_record(group[0], group[1]) for index, group in sorted(by_record.items())}
