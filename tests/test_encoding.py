"""Window encoding: spans -> windows -> tags -> merged tags -> spans is the identity where it can be."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clinical_ner_zh.datasets_scripts.char_tokenizer import build_char_tokenizer, build_wordpiece_tokenizer
from clinical_ner_zh.datasets_scripts.encoding import IGNORE_INDEX, WindowEncoder, decode_dataset, encode_dataset
from clinical_ner_zh.datasets_scripts.labels import BREAST_CANCER_CODES, CCKS_CODES
from clinical_ner_zh.datasets_scripts.schema import to_dataset
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.modeling.tagging import plan_windows

from .helpers import ccks2020_records

TYPES = ("Drug", "Time", "TNM")
# Pieces of random texts: CJK, ASCII words and digits, spaces and other whitespace, full-width forms, "㎎", emoji.
PIECES = [
    *"患者乳腺结节化疗阴性阳",
    "HER2",
    "Ki",
    "67",
    "2019",
    "pT2N1M0",
    " ",
    "  ",
    "\t",
    "\n",
    "\u3000",
    "ＣＴ",
    "％",
    "㎎",
    "😀",
    "(",
    "+",
    ")",
    "，",
]
ALPHABET = "".join(PIECES)


@pytest.fixture(scope="module")
def char_tokenizer():
    return build_char_tokenizer([ALPHABET])


@pytest.fixture(scope="module")
def wordpiece_tokenizer():
    return build_wordpiece_tokenizer([ALPHABET, "HER2 2019 Ki67 pT2N1M0"])


@st.composite
def records(draw):
    """A text made of random pieces and random non-overlapping character spans in it."""
    text = "".join(draw(st.lists(st.sampled_from(PIECES), min_size=0, max_size=40)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=16))))
    spans = []
    for start, end in zip(cuts[::2], cuts[1::2]):
        if start < end:
            spans.append((start, end, draw(st.sampled_from(TYPES))))
    return text, spans


def _round_trip(encoder, text, spans):
    batch = {"id": ["r"], "text": [text], "entities": [[{"start": s, "end": e, "label": t} for s, e, t in spans]]}
    windows = encoder.encode_batch(batch)
    rows = [{name: windows[name][i] for name in windows} for i in range(len(windows["labels"]))]
    for row in rows:
        assert len(row["input_ids"]) <= encoder.max_length
        assert row["labels"][0] == row["labels"][-1] == IGNORE_INDEX
    paths = [[label for label in row["labels"] if label != IGNORE_INDEX] for row in rows]
    return encoder.decode_record(rows, paths), rows


def _token_boundaries(tokenizer, text):
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return {a for a, b in offsets if b > a}, {b for a, b in offsets if b > a}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records(), scheme=st.sampled_from(["BIO", "BIOES"]), window=st.integers(3, 12), data=st.data())
def test_char_tokenizer_round_trip_is_identity(char_tokenizer, record, scheme, window, data):
    text, spans = record
    stride = data.draw(st.integers(2 if scheme == "BIOES" else 1, window - 1))
    encoder = WindowEncoder(char_tokenizer, TYPES, scheme=scheme, max_length=window + 2, stride=stride)
    decoded, _ = _round_trip(encoder, text, spans)
    assert decoded == sorted(spans)
    assert encoder.stats.not_representable == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records(), scheme=st.sampled_from(["BIO", "BIOES"]), window=st.integers(3, 12), data=st.data())
def test_wordpiece_round_trip_loses_exactly_the_unrepresentable(wordpiece_tokenizer, record, scheme, window, data):
    text, spans = record
    stride = data.draw(st.integers(2 if scheme == "BIOES" else 1, window - 1))
    encoder = WindowEncoder(wordpiece_tokenizer, TYPES, scheme=scheme, max_length=window + 2, stride=stride)
    decoded, _ = _round_trip(encoder, text, spans)
    starts, ends = _token_boundaries(wordpiece_tokenizer, text)
    representable = [(s, e, t) for s, e, t in spans if s in starts and e in ends]
    assert decoded == sorted(representable)
    reported = sorted((x.start, x.end, x.label) for x in encoder.stats.skipped)
    assert reported == sorted(set(spans) - set(representable))
    assert sum(encoder.stats.unrepresentable.values()) == len(reported)


def test_window_layout(char_tokenizer):
    encoder = WindowEncoder(char_tokenizer, TYPES, scheme="BIOES", max_length=6, stride=2)
    text = "2019年HER2阳性"
    decoded, rows = _round_trip(encoder, text, [(0, 5, "Time"), (5, 9, "Drug")])
    assert [row["window_start"] for row in rows] == [start for start, _ in plan_windows(len(text), 4, 2)]
    first = rows[0]
    assert (
        first["input_ids"][0] == char_tokenizer.cls_token_id and first["input_ids"][-1] == char_tokenizer.sep_token_id
    )
    assert first["special_tokens_mask"] == [1, 0, 0, 0, 0, 1]
    assert first["offset_mapping"] == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (0, 0)]
    assert [encoder.labels[i] for i in first["labels"][1:-1]] == ["B-Time", "I-Time", "I-Time", "E-Time"]
    assert first["token_type_ids"] == [0] * 6 and first["attention_mask"] == [1] * 6
    assert decoded == [(0, 5, "Time"), (5, 9, "Drug")]


def test_windows_cut_inside_an_entity_label_its_part_as_an_entity(char_tokenizer):
    """A window that starts or ends inside an entity holds a well-formed part of it (B- first, E- last for BIOES), so
    its gold tags are a path the constrained CRF allows; merged, the parts give the entity back whole."""
    text = "2019年HER2阳性，ER(+)"
    for scheme, first, middle in [
        ("BIO", ["B-Time", "I-Time", "I-Time", "I-Time"], ["B-Time", "I-Time", "I-Time", "B-Drug"]),
        ("BIOES", ["B-Time", "I-Time", "I-Time", "E-Time"], ["B-Time", "I-Time", "E-Time", "S-Drug"]),
    ]:
        encoder = WindowEncoder(char_tokenizer, TYPES, scheme=scheme, max_length=6, stride=2)
        decoded, rows = _round_trip(encoder, text, [(0, 5, "Time"), (5, 11, "Drug")])
        assert [encoder.labels[i] for i in rows[0]["labels"][1:-1]] == first
        # The second window starts inside the time and ends inside the drug.
        assert [encoder.labels[i] for i in rows[1]["labels"][1:-1]] == middle
        assert decoded == [(0, 5, "Time"), (5, 11, "Drug")]


@pytest.mark.parametrize(
    ("scheme", "tags", "message"),
    [
        ("BIO", ["I-Drug", "O", "O", "O"], r"record r7 window 1 token 2 \(characters 2-3\): gold tags I-Drug after \[CLS\]"),
        ("BIOES", ["O", "B-Drug", "O", "O"], r"record r7 window 1 token 4 \(characters 4-5\): gold tags O after B-Drug"),
        ("BIOES", ["O", "O", "O", "B-Drug"], r"record r7 window 1 token 5 \(characters 5-6\): gold tags B-Drug before \[SEP\]"),
    ],
)  # fmt: skip
def test_window_with_an_ill_formed_gold_path_names_the_record(char_tokenizer, monkeypatch, scheme, tags, message):
    """Gold tags the constrained CRF forbids (here from a broken span -> tag step in the second window) stop the
    encoding with record id, window, token and character offsets, and no text."""
    import clinical_ner_zh.datasets_scripts.encoding as encoding

    real, calls = encoding.spans_to_tags, []

    def broken(spans, length, scheme):
        calls.append(length)
        return real(spans, length, scheme) if len(calls) == 1 else tags

    monkeypatch.setattr(encoding, "spans_to_tags", broken)
    encoder = WindowEncoder(char_tokenizer, TYPES, scheme=scheme, max_length=6, stride=2)
    text = "2019年HER2阳性"
    encoded = char_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    with pytest.raises(ValueError, match=message) as error:
        encoder.encode_record(text, [], encoded["input_ids"], encoded["offset_mapping"], "r7")
    assert "年" not in str(error.value)


@pytest.mark.parametrize(("scheme", "stride"), [("BIOES", 1), ("BIO", 0), ("BIO", 8)])
def test_stride_is_validated(char_tokenizer, scheme, stride):
    with pytest.raises(ValueError, match=rf"<= stride < 8 \(max_length - 2\) for {scheme}, got {stride}"):
        WindowEncoder(char_tokenizer, TYPES, scheme=scheme, max_length=10, stride=stride)


def test_slow_tokenizer_is_refused():
    with pytest.raises(ValueError, match="expected a fast tokenizer"):
        WindowEncoder(object(), TYPES)


def test_overlaps_resolved_longest_wins_and_counted(char_tokenizer, caplog):
    records = ccks2020_records()[:1]  # a nested span and a span with two labels
    tokenizer = build_char_tokenizer([records[0]["text"]])
    encoder = WindowEncoder(tokenizer, CCKS_CODES, scheme="BIO", max_length=16, stride=4)
    spans = [(e["start"], e["end"], e["label"]) for e in records[0]["entities"]]
    with caplog.at_level("INFO", logger="clinical_ner_zh.datasets_scripts.encoding"):
        decoded, _ = _round_trip(encoder, records[0]["text"], spans)
    assert decoded == [(3, 8, "Operation"), (11, 16, "Disease")]
    assert encoder.stats.overlap_dropped == {"Anatomy": 1, "Operation": 1}
    assert "record r [3, 5) Anatomy: overlaps a longer entity" in caplog.text
    assert records[0]["text"][3:5] not in caplog.text  # offsets only, never the text


def test_unrepresentable_reasons(wordpiece_tokenizer):
    encoder = WindowEncoder(wordpiece_tokenizer, TYPES, max_length=16, stride=4)
    text = "HER2 阳性"
    decoded, _ = _round_trip(encoder, text, [(0, 3, "TNM"), (4, 7, "Drug")])
    assert decoded == []
    reasons = [x.reason for x in encoder.stats.skipped]
    assert reasons == ["end inside a token", "start on whitespace without a token"]
    assert encoder.stats.unrepresentable == {"TNM": 1, "Drug": 1}


def test_decode_accepts_full_length_and_padded_paths(char_tokenizer):
    encoder = WindowEncoder(char_tokenizer, TYPES, max_length=8, stride=2, pad_to_max_length=True)
    batch = {"id": ["a"], "text": ["患者HER2"], "entities": [[{"start": 2, "end": 6, "label": "Drug"}]]}
    windows = encoder.encode_batch(batch)
    rows = [{name: windows[name][i] for name in windows} for i in range(len(windows["labels"]))]
    assert all(len(row["input_ids"]) == 8 for row in rows)
    paths = [[0 if label == IGNORE_INDEX else label for label in row["labels"]] for row in rows]
    assert encoder.decode_record(rows, paths) == [(2, 6, "Drug")]
    with pytest.raises(ValueError, match="expected a path of"):
        encoder.decode_record(rows, [[0] * 20 for _ in rows])


def test_dataset_map_and_long_record_round_trip():
    records = simulated_breast_cancer_records(count=6, seed=3)
    assert len(records[-1]["text"]) > 5000
    tokenizer = build_char_tokenizer(r["text"] for r in records)
    encoder = WindowEncoder(tokenizer, BREAST_CANCER_CODES, scheme="BIOES", max_length=128, stride=16)
    windows = encode_dataset(to_dataset(records), encoder)
    assert len(windows) == encoder.stats.windows > len(records)
    assert set(windows["record_index"]) == set(range(len(records)))
    paths = [[label for label in labels if label != IGNORE_INDEX] for labels in windows["labels"]]
    decoded = decode_dataset(windows, paths, encoder)
    skipped = {(x.record_id, x.start, x.end, x.label) for x in encoder.stats.skipped}
    for index, record in enumerate(records):
        gold = {(e["start"], e["end"], e["label"]) for e in record["entities"]}
        kept = {span for span in gold if (record["id"], *span) not in skipped}
        assert set(decoded[index]) == kept
    assert encoder.stats.unrepresentable == {}


@pytest.mark.parametrize("pad", [False, True])
def test_text_features_once_per_record_equal_the_per_window_computation(wordpiece_tokenizer, pad):
    """Family B's lexicon features: computed once per record over all its tokens, sliced per window; each window
    gets what a per-window computation over the whole text gives, also where a term crosses a window edge."""
    from clinical_ner_zh.modeling.lexicon import FEATURE_NAMES, TermLexicon

    lexicon = TermLexicon([("乳腺结节", "Disease", 0), ("HER2阳性", "Check", 1), ("化疗", "Drug")])
    calls = []

    def text_features(text, offsets):
        calls.append(len(offsets))
        return lexicon.token_features(text, offsets)

    texts = ["患者乳腺结节，HER2阳性，化疗 " * 3, "乳腺结节", ""]
    encoder = WindowEncoder(wordpiece_tokenizer, TYPES, max_length=7, stride=2, pad_to_max_length=pad,
                            text_features=text_features, text_feature_names=FEATURE_NAMES)  # fmt: skip
    windows = encode_dataset(to_dataset([{"id": str(i), "text": t, "entities": []} for i, t in enumerate(texts)]),
                             encoder, batch_size=2)  # fmt: skip
    assert len(calls) == len(texts) - 1 < len(windows)  # once per record with tokens, with all of them
    crossing = 0
    for window in windows:
        expected = lexicon.token_features(texts[window["record_index"]], window["offset_mapping"])
        assert {name: window[name] for name in FEATURE_NAMES} == expected
        first = window["kg_position_ids"][1]
        crossing += first in (2, 3)  # the window starts inside a term (I or E)
    assert crossing >= 2
    with pytest.raises(ValueError, match="text_features and text_feature_names together"):
        WindowEncoder(wordpiece_tokenizer, TYPES, text_features=text_features)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_evaluation_merge_invents_no_entity_where_windows_disagree(char_tokenizer, scheme):
    """Training evaluation merges windows as the pipeline does: windows (0, 6) and (3, 9), the first seeing an entity
    start at its edge and the second none, give no entity (the old merge gave tokens 4-5 as B-Drug, O)."""
    encoder = WindowEncoder(char_tokenizer, TYPES, scheme=scheme, max_length=8, stride=3)
    _, rows = _round_trip(encoder, "患者乳腺结节化疗阴", [])
    assert [(row["window_start"], len(row["input_ids"]) - 2) for row in rows] == [(0, 6), (3, 6)]
    first = ["O", "O", "O", "O", "B-Drug", "I-Drug" if scheme == "BIO" else "E-Drug"]
    paths = [[encoder.label2id[tag] for tag in first], [0] * 6]
    assert encoder.decode_record(rows, paths) == []


@pytest.mark.parametrize("tokenizer_name", ["char_tokenizer", "wordpiece_tokenizer"])
def test_records_without_tokens_get_no_window_and_train_and_decode_with_the_others(tokenizer_name, request):
    """An empty record, and whitespace that a WordPiece tokenizer drops, used to give a window holding only [CLS]
    and [SEP]: the CRF likelihood of any batch holding it failed ("every sequence needs at least one position")."""
    import torch

    import train_ner

    from .pipeline_helpers import random_model

    tokenizer = request.getfixturevalue(tokenizer_name)
    records = [
        {"id": "a", "text": "患者HER2阳性", "entities": [{"start": 2, "end": 6, "label": "TNM"}]},
        {"id": "empty", "text": "", "entities": []},
        {"id": "blank", "text": "\u3000 \u3000" if tokenizer_name == "wordpiece_tokenizer" else "", "entities": []},
        {"id": "b", "text": "化疗2019", "entities": [{"start": 2, "end": 6, "label": "Time"}]},
    ]
    encoder = WindowEncoder(tokenizer, TYPES, max_length=6, stride=2)
    windows = encode_dataset(to_dataset(records), encoder)
    assert set(windows["record_index"]) == {0, 3} and encoder.stats.records == 4
    batch = train_ner.collate(list(windows), tokenizer.pad_token_id)
    model = random_model(tokenizer, types=list(TYPES))
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    paths = [[label for label in labels if label != IGNORE_INDEX] for labels in windows["labels"]]
    decoded = decode_dataset(windows, paths, encoder)
    assert decoded == {0: [(2, 6, "TNM")], 3: [(2, 6, "Time")]}  # train_ner.evaluate reads a missing record as []
