"""Label sets, spans <-> tags, overlap policy and window merging at the token level."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinical_ner_zh.modeling.tagging import (
    allowed_transitions,
    build_label_list,
    char_to_token_spans,
    merge_windows,
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
    merged, sources = merge_windows(windows, window_tags, length, scheme)
    assert merged == spans
    assert sources == window_owners(windows, length)  # windows that agree are joined where each token has most context


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


# ---------------------------------------------------------------------------------------------- merging that disagrees


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_windows_that_disagree_invent_no_entity(scheme):
    """The first window sees an entity start at its edge, the second (with more context there) sees none: the old
    token-by-token merge read B-X from the first window and O from the second, an entity neither decoded."""
    first = ["O", "O", "O", "O", "B-X", "I-X" if scheme == "BIO" else "E-X"]
    merged, sources = merge_windows([(0, 6), (3, 9)], [first, ["O"] * 6], 9, scheme)
    assert merged == []
    assert len(sources) == 9 and all(windows_hold(sources, [(0, 6), (3, 9)]))


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_an_entity_one_window_sees_whole_comes_out_whole(scheme):
    """Tokens 4-6 are an entity that crosses the first window's edge; the second window sees it whole. Whatever the
    first window makes of its clipped view, the entity comes out as the second window decoded it."""
    windows = [(0, 6), (3, 9)]
    second = spans_to_tags([(1, 4, "X")], 6, scheme)  # tokens 4..6 in the record
    for first_spans in ([], [(4, 6, "X")], [(4, 6, "Y")], [(5, 6, "X")], [(2, 6, "X")]):
        first = spans_to_tags(first_spans, 6, scheme)
        merged, _ = merge_windows(windows, [first, second], 9, scheme)
        expected = [(2, 7, "X")] if first_spans == [(2, 6, "X")] else [(4, 7, "X")]  # (2, 6): both continue it
        assert merged == expected, first_spans


@st.composite
def covering_windows(draw, num_tokens):
    """Windows sorted by start with non-decreasing ends covering every token: plan_windows's, or any such list."""
    if num_tokens == 0 or draw(st.booleans()):
        window = draw(st.integers(1, max(1, num_tokens)))
        return plan_windows(num_tokens, window, draw(st.integers(0, window - 1)))
    windows = [(0, draw(st.integers(1, num_tokens)))]
    while windows[-1][1] < num_tokens:
        start = draw(st.integers(windows[-1][0], windows[-1][1]))
        end = draw(st.integers(max(windows[-1][1], start + 1), num_tokens))
        windows.append((start, end))
    return windows


def windows_hold(sources, windows):
    return (windows[window][0] <= token < windows[window][1] for token, window in enumerate(sources))


@settings(max_examples=400, deadline=None)
@given(num_tokens=st.integers(0, 40), scheme=st.sampled_from(["BIO", "BIOES"]), data=st.data())
def test_merged_entities_are_decoded_or_consistently_stitched(num_tokens, scheme, data):
    """Adversarial windows (any tags, ill-formed included): every merged entity is an entity its windows decoded,
    or one stitched at cuts where the windows on both sides continue it with the same type."""
    windows = data.draw(covering_windows(num_tokens))
    labels = build_label_list(["X", "Y"], scheme)
    window_tags = [data.draw(st.lists(st.sampled_from(labels), min_size=e - s, max_size=e - s)) for s, e in windows]
    merged, sources = merge_windows(windows, window_tags, num_tokens, scheme)

    assert len(sources) == num_tokens and all(windows_hold(sources, windows))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(merged)) and all(s < e for s, e, _ in merged)
    decoded = [
        {t: (ws + s, ws + e, label) for s, e, label in tags_to_spans(tags, scheme) for t in range(ws + s, ws + e)}
        for (ws, _), tags in zip(windows, window_tags)
    ]
    for start, end, label in merged:
        own = [decoded[sources[t]].get(t) for t in range(start, end)]  # the entity each token is in, in its window
        assert all(span is not None and span[2] == label for span in own)
        assert own[0][0] == start and own[-1][1] == end
        for t in range(start + 1, end):
            before, after = own[t - 1 - start], own[t - start]
            if sources[t] == sources[t - 1]:
                assert before == after  # one entity of one window, not two adjacent ones
            else:  # a cut inside the entity: both windows continue it, or meet their own edge there
                assert before[1] > t or before[1] == t == windows[sources[t - 1]][1]
                assert after[0] < t or after[0] == t == windows[sources[t]][0]
        if len(set(sources[start:end])) == 1:
            assert (start, end, label) in decoded[sources[start]].values()
