"""Label sets, spans <-> tags, overlap policy and window merging at the token level."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling.tagging import (
    allowed_transitions,
    build_label_list,
    char_to_token_spans,
    merge_window_tags,
    plan_windows,
    resolve_overlaps,
    spans_to_tags,
    tags_to_spans,
    token_to_char_spans,
    window_owners,
    window_spans,
)

TYPES = ["Drug", "Disease", "Time"]


@st.composite
def spans_in(draw, length_range=(0, 60)):
    """A length and random non-overlapping spans inside it."""
    length = draw(st.integers(*length_range))
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=12)))
    spans = []
    for start, end in itertools.pairwise(cuts):
        if draw(st.booleans()):
            spans.append((start, end, draw(st.sampled_from(TYPES))))
    return length, spans


def test_label_lists():
    assert build_label_list(["A", "B"], "BIO") == ["O", "B-A", "I-A", "B-B", "I-B"]
    assert build_label_list(["A", "A"], "BIOES") == ["O", "B-A", "I-A", "E-A", "S-A"]
    with pytest.raises(ValueError, match="unknown label scheme 'IOB1'"):
        build_label_list(["A"], "IOB1")


@settings(max_examples=200, deadline=None)
@given(case=spans_in(), scheme=st.sampled_from(["BIO", "BIOES"]))
def test_spans_tags_round_trip_and_tags_are_legal(case, scheme):
    length, spans = case
    tags = spans_to_tags(spans, length, scheme)
    assert tags_to_spans(tags, scheme) == spans
    labels = build_label_list(TYPES, scheme)
    start, end, pairs = allowed_transitions(labels, scheme)
    ids = [labels.index(tag) for tag in tags]
    if ids:
        assert start[ids[0]] and end[ids[-1]]
        assert all(pairs[a][b] for a, b in itertools.pairwise(ids))


def test_allowed_transitions_bioes_rules():
    labels = build_label_list(["A", "B"], "BIOES")
    start, end, pairs = allowed_transitions(labels, "BIOES")
    index = labels.index
    assert not start[index("I-A")] and not start[index("E-A")] and start[index("S-A")]
    assert not end[index("B-A")] and not end[index("I-A")] and end[index("E-A")]
    assert pairs[index("B-A")][index("E-A")] and not pairs[index("B-A")][index("E-B")]
    assert not pairs[index("B-A")][index("O")] and not pairs[index("O")][index("I-A")]
    assert pairs[index("E-A")][index("B-B")] and not pairs[index("E-A")][index("I-A")]


def test_ill_formed_sequences_decode_leniently():
    assert tags_to_spans(["O", "I-A", "I-A", "B-B", "I-A"], "BIO") == [(1, 3, "A"), (3, 4, "B"), (4, 5, "A")]
    assert tags_to_spans(["B-A", "E-B", "S-A"], "BIOES") == [(0, 1, "A"), (1, 2, "B"), (2, 3, "A")]


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([(2, 2, "A")], "empty or outside"),
        ([(3, 1, "A")], "empty or outside"),
        ([(0, 9, "A")], "outside a sequence of length 5"),
        ([(0, 3, "A"), (2, 4, "B")], "overlaps another span"),
    ],
)
def test_spans_to_tags_rejects_bad_spans(spans, message):
    with pytest.raises(ValueError, match=message):
        spans_to_tags(spans, 5, "BIO")


def test_bad_label_names_are_rejected():
    with pytest.raises(ValueError, match="label 'E-A' is not valid in the BIO scheme"):
        allowed_transitions(["O", "B-A", "E-A"], "BIO")


def test_overlap_policy_keeps_the_longest_then_earliest_then_first_label():
    kept, dropped = resolve_overlaps([(0, 5, "Op"), (0, 5, "Disease"), (2, 4, "Anatomy"), (4, 9, "Drug"), (9, 10, "X")])
    assert kept == [(0, 5, "Disease"), (9, 10, "X")]
    assert dropped == [(0, 5, "Op"), (2, 4, "Anatomy"), (4, 9, "Drug")]


def test_char_token_alignment_reports_unrepresentable_spans():
    # "[CLS] HER2 阳 性 [SEP]" as a WordPiece tokenizer might split "HER2阳性": her | ##2 | 阳 | 性
    offsets = [(0, 0), (0, 3), (3, 4), (4, 5), (5, 6), (0, 0)]
    mapped, lost = char_to_token_spans([(0, 4, "HER2"), (0, 6, "Test"), (1, 4, "Bad")], offsets)
    assert mapped == [(1, 3, "HER2"), (1, 5, "Test")]
    assert lost == [(1, 4, "Bad")]
    assert token_to_char_spans(mapped, offsets) == [(0, 4, "HER2"), (0, 6, "Test")]


@settings(max_examples=200, deadline=None)
@given(
    case=spans_in((1, 80)),
    window=st.integers(4, 20),
    overlap=st.integers(2, 19),
    scheme=st.sampled_from(["BIO", "BIOES"]),
)
def test_windows_merge_back_to_the_whole_sequence(case, window, overlap, scheme):
    """Entities clipped at window edges come back whole once each token takes its owner window's tag."""
    length, spans = case
    stride = min(overlap, window - 1)
    windows = plan_windows(length, window, stride)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(a[1] - b[0] >= stride and b[1] - b[0] == window for a, b in itertools.pairwise(windows))
    window_tags = [spans_to_tags(window_spans(spans, start, end), end - start, scheme) for start, end in windows]
    assert tags_to_spans(merge_window_tags(windows, window_tags, length), scheme) == spans


def test_window_owner_prefers_the_most_context():
    windows = plan_windows(20, 10, 4)
    assert windows == [(0, 10), (6, 16), (10, 20)]
    owners = window_owners(windows, 20)
    # token 7: 2 tokens after it in window 0, 1 before it in window 1; token 8: 1 vs 2
    assert owners == [0] * 8 + [1] * 5 + [2] * 7


def test_plan_windows_validates_its_arguments():
    with pytest.raises(ValueError, match="0 <= stride < window"):
        plan_windows(10, 4, 4)


@settings(max_examples=200, deadline=None)
@given(num_tokens=st.integers(0, 200), window=st.integers(1, 30), data=st.data())
def test_window_owners_equal_a_search_over_every_window(num_tokens, window, data):
    windows = plan_windows(num_tokens, window, data.draw(st.integers(0, window - 1)))
    expected = []
    for token in range(num_tokens):
        holding = [(min(token - s, e - 1 - token), -i) for i, (s, e) in enumerate(windows) if s <= token < e]
        expected.append(-max(holding)[1])
    assert window_owners(windows, num_tokens) == expected
