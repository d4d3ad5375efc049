"""The clinical-ner pipeline: offsets into the original text, windows that never split an entity, batch invariance,
awkward characters, the text-features hook, the notebook view, and a saved model running alone in a fresh process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import pipeline
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling import ChCancerBertForCrfTagging
from clinical_ner_zh.modeling.display import render_entities
from clinical_ner_zh.modeling.pipeline_clinical_ner import ClinicalNerPipeline, register_pipeline, save_for_hub
from clinical_ner_zh.modeling.tagging import owned_ranges, plan_windows, window_owners

from .pipeline_helpers import (
    ALPHABET,
    CLASSES,
    TYPES,
    char_tokenizer,
    hand_set_model,
    random_model,
    spans,
    wordpiece_tokenizer,
)

hf_logging.set_verbosity_error()

FIXTURES = Path(__file__).parent / "fixtures"
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.text(alphabet=ALPHABET + "龘", max_size=80)


@pytest.fixture(scope="module")
def char_tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def wordpiece_tok():
    return wordpiece_tokenizer()


@pytest.fixture(scope="module")
def random_pipes(char_tok, wordpiece_tok):
    """Random full-architecture models, BIO and BIOES, over both tokenizers."""
    return {
        ("char", "BIO"): ClinicalNerPipeline(model=random_model(char_tok), tokenizer=char_tok, device=-1),
        ("char", "BIOES"): ClinicalNerPipeline(
            model=random_model(char_tok, seed=1, scheme="BIOES"), tokenizer=char_tok, device=-1
        ),
        ("wordpiece", "BIO"): ClinicalNerPipeline(
            model=random_model(wordpiece_tok), tokenizer=wordpiece_tok, device=-1
        ),
    }


@pytest.fixture(scope="module")
def hand_set_pipe(char_tok):
    return ClinicalNerPipeline(model=hand_set_model(char_tok), tokenizer=char_tok, device=-1)


def check_entities(text, entities, scheme_types=TYPES):
    previous_end = 0
    for entity in entities:
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert text[entity["start"] : entity["end"]] == entity["word"]
        assert entity["start"] >= previous_end  # sorted, non-overlapping
        previous_end = entity["end"]
        assert entity["entity_group"] in scheme_types
        assert entity["class"] == CLASSES[entity["entity_group"]]
        assert 0.0 < entity["score"] <= 1.0


# ---------------------------------------------------------------------------------------------- properties


@FAST
@given(text=texts, max_length=st.integers(5, 24), data=st.data())
@pytest.mark.parametrize("key", [("char", "BIO"), ("char", "BIOES"), ("wordpiece", "BIO")])
def test_every_word_is_the_text_between_its_offsets(random_pipes, key, text, max_length, data):
    stride = data.draw(st.integers(0, max_length - 3))
    check_entities(text, random_pipes[key](text, max_length=max_length, stride=stride))


@FAST
@given(text=st.text(alphabet="药物时间结节患者 \r\n😀", max_size=150), max_length=st.integers(6, 24), data=st.data())
def test_windows_give_the_single_window_result(hand_set_pipe, text, max_length, data):
    """The hand-set model's tags do not depend on context, so any window plan must reproduce one whole window."""
    stride = data.draw(st.integers(2, max_length - 3))
    whole = hand_set_pipe(text, max_length=512)
    assert spans(hand_set_pipe(text, max_length=max_length, stride=stride)) == spans(whole)


@pytest.mark.parametrize(("max_length", "stride"), [(10, 2), (16, 5)])
def test_an_entity_across_a_window_edge_is_found_whole(hand_set_pipe, max_length, stride):
    window = max_length - 2
    entity = "药" + "物" * (window - 2)  # nearly a window long
    texts = ["患" * start + entity + "者" * (3 * window) for start in range(2 * window)]
    crossing = 0
    found = hand_set_pipe(texts, max_length=max_length, stride=stride, batch_size=16)
    for start, (text, entities) in enumerate(zip(texts, found)):
        windows = plan_windows(len(text), window, stride)
        crossing += not any(s <= start and start + len(entity) <= e for s, e in windows)
        assert spans(entities) == [(start, start + len(entity), "Drug")], (start, windows)
        assert entities[0]["word"] == entity and entities[0]["score"] == pytest.approx(1.0)
    assert crossing > 0  # some placements are in no single window: only merging can find them whole


@settings(FAST, max_examples=8)
@given(batch=st.lists(texts, min_size=1, max_size=4), max_length=st.integers(10, 24))
def test_batch_size_1_and_8_give_the_same_entities(random_pipes, batch, max_length):
    pipe = random_pipes[("char", "BIO")]
    one = pipe(batch, batch_size=1, max_length=max_length)
    eight = pipe(batch, batch_size=8, max_length=max_length)
    assert [spans(entities) for entities in one] == [spans(entities) for entities in eight]
    for a, b in zip(one, eight):
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=1e-5)
        assert [e["word"] for e in a] == [e["word"] for e in b]


@FAST
@given(num_tokens=st.integers(0, 300), window=st.integers(1, 40), data=st.data())
def test_owned_ranges_follow_window_owners(num_tokens, window, data):
    stride = data.draw(st.integers(0, window - 1))
    windows = plan_windows(num_tokens, window, stride)
    owners = window_owners(windows, num_tokens)
    expected = [(owners.index(k), len(owners) - owners[::-1].index(k)) if k in owners else None
                for k in range(len(windows))]  # fmt: skip
    got = owned_ranges(windows, num_tokens)
    assert [r if r[0] < r[1] else None for r in got] == expected


# ---------------------------------------------------------------------------------------------- awkward texts

AWKWARD = {
    "spaces": ("药物  药物 时间 ", [(0, 2, "Drug"), (4, 6, "Drug"), (7, 9, "Time")]),
    "ascii runs": ("HER2药物ki67时间2019", [(4, 6, "Drug"), (10, 12, "Time")]),
    "full width": ("ＨＥＲ２（＋）药物１２３时间", [(7, 9, "Drug"), (12, 14, "Time")]),
    "emoji": ("😀药物🏥时间😀", [(1, 3, "Drug"), (4, 6, "Time")]),
    "crlf": ("患者\r\n药物\r\n\r\n时间\r\n", [(4, 6, "Drug"), (10, 12, "Time")]),
}


@pytest.mark.parametrize("name", sorted(AWKWARD))
@pytest.mark.parametrize("max_length", [6, 512])
def test_awkward_texts_keep_exact_offsets(hand_set_pipe, name, max_length):
    text, expected = AWKWARD[name]
    found = hand_set_pipe(text, max_length=max_length, stride=2)
    assert spans(found) == expected
    check_entities(text, found)


def test_whitespace_tokens_can_be_inside_entities(char_tok):
    """The character tokenizer gives whitespace a token, so an entity may end with a space ("替吉奥 ")."""
    pipe = ClinicalNerPipeline(model=hand_set_model(char_tok, {**TAGGED_SPACE}), tokenizer=char_tok, device=-1)
    text = "患者药物 \r\n行"
    assert [(e["word"], e["entity_group"]) for e in pipe(text)] == [("药物 \r\n", "Drug")]


TAGGED_SPACE = {"药": "B-Drug", "物": "I-Drug", "[SPACE]": "I-Drug"}


def test_wordpiece_tokenizer_keeps_ascii_runs_whole(wordpiece_tok):
    pipe = ClinicalNerPipeline(
        model=hand_set_model(wordpiece_tok, {"her2": "B-Time", "药": "B-Drug", "物": "I-Drug"}),
        tokenizer=wordpiece_tok,
        device=-1,
    )
    text = "  HER2 药物\r\n😀"
    assert [(e["word"], e["entity_group"]) for e in pipe(text, max_length=4, stride=1)] == [
        ("HER2", "Time"),
        ("药物", "Drug"),
    ]
    assert pipe(" \r\n ") == [] and pipe("") == []


def test_inputs_single_list_tuple_empty_and_generator(hand_set_pipe):
    assert spans(hand_set_pipe("药物")) == [(0, 2, "Drug")]
    assert [spans(r) for r in hand_set_pipe(["药物", "", "时间"])] == [[(0, 2, "Drug")], [], [(0, 2, "Time")]]
    assert [spans(r) for r in hand_set_pipe(("药物",))] == [[(0, 2, "Drug")]]
    assert hand_set_pipe([]) == []
    assert [spans(r) for r in hand_set_pipe(t for t in ["时间", "药物"])] == [[(0, 2, "Time")], [(0, 2, "Drug")]]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_records_without_tokens_get_no_entities_in_any_batch(random_pipes, batch_size):
    """Empty texts and whitespace that WordPiece drops, alone and batched with normal records (their windows hold
    only [CLS] and [SEP]), in the full architecture with its BiLSTM, DGCNN and attention over the window."""
    pipe = random_pipes[("wordpiece", "BIO")]
    texts = ["", "患者药物时间结节", " \u3000\r\n", "HER2阳性", "", "  "]
    found = pipe(texts, batch_size=batch_size, max_length=6, stride=2)
    alone = [pipe(text, max_length=6, stride=2) for text in texts]
    assert [spans(r) for r in found] == [spans(r) for r in alone]
    assert [found[i] for i in (0, 2, 4, 5)] == [[], [], [], []]


def test_bad_arguments_raise_clear_errors(hand_set_pipe, char_tok):
    with pytest.raises(TypeError, match="takes a string or a list of strings, got int"):
        hand_set_pipe(3)
    with pytest.raises(ValueError, match=r"stride must be in \[0, 8\) for windows of 8 tokens, got 8"):
        hand_set_pipe("药物", max_length=10, stride=8)
    with pytest.raises(ValueError, match=r"max_length \(600\) exceeds the 512 tokens the encoder takes"):
        hand_set_pipe("药物", max_length=600)
    from transformers import BertConfig, BertForTokenClassification

    with pytest.raises(ValueError, match="needs a CRF tagger"):
        ClinicalNerPipeline(model=BertForTokenClassification(BertConfig(vocab_size=40, hidden_size=32,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)),
                            tokenizer=char_tok, device=-1)  # fmt: skip


def _planned(pipe, text, **kwargs) -> list[tuple[int, int]]:
    return [(inputs["window"].start, inputs["window"].end) for inputs in pipe.preprocess(text, **kwargs)]


def test_windows_default_to_the_ones_the_model_was_trained_with(char_tok):
    """The config's training window is the default (BERT positions past it never trained); explicit arguments win,
    and a config without it (a model saved before the fields existed) keeps the old default."""
    text = "患者于2019年3月行左乳腺癌改良根治术，药物时间" * 4
    num_tokens = len(char_tok(text, add_special_tokens=False)["input_ids"])
    trained = ClinicalNerPipeline(model=random_model(char_tok, window_max_length=12, window_stride=3),
                                  tokenizer=char_tok, device=-1)  # fmt: skip
    assert _planned(trained, text) == plan_windows(num_tokens, 10, 3)
    assert _planned(trained, text, max_length=12) == plan_windows(num_tokens, 10, 3)
    assert _planned(trained, text, stride=5) == plan_windows(num_tokens, 10, 5)
    assert _planned(trained, text, max_length=8) == plan_windows(num_tokens, 6, 2)  # a quarter of another window
    assert _planned(trained, text, max_length=20, stride=4) == plan_windows(num_tokens, 18, 4)
    with pytest.raises(ValueError, match=r"max_length \(600\) exceeds the 512 tokens the encoder takes"):
        trained(text, max_length=600)
    older = ClinicalNerPipeline(model=random_model(char_tok), tokenizer=char_tok, device=-1)
    assert _planned(older, text) == [(0, num_tokens)]  # one window of up to 510 tokens
    assert spans(trained(text)) == spans(trained(text, max_length=12, stride=3))


# ---------------------------------------------------------------------------------------------- hook, view, save


class _WithFeatures(ChCancerBertForCrfTagging):
    """A model that wants per-token lexicon ids, as family B does; it records what it was given."""

    seen: list = []

    def text_features(self, text, offsets):
        return {"lexicon_ids": [ord(text[start]) % 7 + 1 for start, _ in offsets]}

    def forward(self, input_ids=None, lexicon_ids=None, **kwargs):
        type(self).seen.append((input_ids.clone(), lexicon_ids.clone(), kwargs["attention_mask"].clone()))
        return super().forward(input_ids=input_ids, **kwargs)


def test_text_features_hook_passes_padded_long_tensors(char_tok):
    model = _WithFeatures(random_model(char_tok).config).eval()
    pipe = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)
    texts = ["患者药物时间结节", "药物"]
    _WithFeatures.seen = []
    batched = pipe(texts, batch_size=8, max_length=6, stride=2)
    for input_ids, lexicon_ids, attention_mask in _WithFeatures.seen:
        assert lexicon_ids.dtype == torch.long and lexicon_ids.shape == input_ids.shape
        special = (input_ids == char_tok.cls_token_id) | (input_ids == char_tok.sep_token_id) | (attention_mask == 0)
        assert (lexicon_ids[special] == 0).all() and (lexicon_ids[~special] > 0).all()
    chars = {char_tok.convert_tokens_to_ids(c): ord(c) % 7 + 1 for c in "患者药物时间结节"}
    for input_ids, lexicon_ids, _ in _WithFeatures.seen:
        for token, value in zip(input_ids.flatten().tolist(), lexicon_ids.flatten().tolist()):
            if token in chars:
                assert value == chars[token]
    assert [spans(r) for r in pipe(texts, batch_size=1, max_length=6, stride=2)] == [spans(r) for r in batched]


def test_family_b_features_are_computed_once_per_text_and_sliced_per_window():
    """The lexicon is matched once over each text, not once per window (whose cost grew with the text's length),
    and every window gets what a per-window computation over the whole text gives, terms crossing its edges too."""
    from transformers import BertTokenizer

    from clinical_ner_zh.modeling.lexicon import FEATURE_NAMES

    from .helpers import TEXT, VOCAB, tiny_model

    model = tiny_model(seed=2)
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)})
    scanned = []
    per_window = model.text_features

    def text_features(text, offsets):
        scanned.append(len(offsets))
        return per_window(text, offsets)

    model.text_features = text_features
    pipe = ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1)
    text = TEXT * 4
    windows = list(pipe.preprocess(text, max_length=6, stride=2))
    offsets = windows[0]["window"].document.offsets
    assert scanned == [len(offsets)] and len(windows) > 10  # once, with every token of the text
    crossing = 0
    for inputs in windows:
        start, end = inputs["window"].start, inputs["window"].end
        expected = per_window(text, offsets[start:end])
        for name in FEATURE_NAMES:
            assert inputs[name].tolist() == [[0, *expected[name], 0]]
        crossing += expected["kg_position_ids"][0] in (2, 3)  # the window starts inside a term (I or E)
    assert crossing >= 2
    scanned.clear()
    pipe([text, "乳腺癌", ""], max_length=6, stride=2, batch_size=4)
    assert len(scanned) == 3


def test_render_escapes_text_and_shows_a_legend():
    text = "<b>药物</b> & 时间\r\n结节"
    entities = [
        {"entity_group": "Drug", "start": 3, "end": 5, "word": "药物", "score": 0.9, "class": "Treatments"},
        {"label": "Time", "start": 12, "end": 14},
        {"label": "Drug", "start": 3, "end": 4},  # nested inside the first
        {"label": "Time", "start": 4, "end": 8},  # crosses the first: counted, not drawn
    ]
    view = render_entities(text, entities, labels=["Time", "Drug"])
    html = view._repr_html_()
    assert "<b>" not in html and "&lt;b&gt;" in html and "&amp;" in html
    assert html.count("<mark") == 3 and "1 crossing entities not shown" in html
    assert "Drug (Treatments): 2" in html and "Time: 1" in html
    assert "white-space:pre-wrap" in html and "0.900" in html
    assert str(view) == html
    with pytest.raises(ValueError, match=r"entity 0: offsets \(0, 99\)"):
        render_entities("短", [{"label": "Drug", "start": 0, "end": 99}])


def test_pipeline_render_and_registered_task(hand_set_pipe, char_tok, tmp_path):
    assert "药物" in hand_set_pipe.render("患者药物").html
    register_pipeline()
    register_pipeline()  # idempotent
    pipe = pipeline("clinical-ner", model=hand_set_pipe.model, tokenizer=char_tok, device=-1)
    assert isinstance(pipe, ClinicalNerPipeline) and spans(pipe("药物")) == [(0, 2, "Drug")]
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "pipeline_clinical_ner.py").exists()
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]["clinical-ner"]["impl"] == (
        "pipeline_clinical_ner.ClinicalNerPipeline"
    )


def test_saved_model_moved_alone_runs_in_a_fresh_process(char_tok, tmp_path, run_isolated):
    model = random_model(char_tok, seed=3)
    save_for_hub(model, char_tok, tmp_path / "saved")
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"pipeline_clinical_ner.py", "display.py", "tagging.py", "config.json", "model.safetensors"} <= files
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["custom_pipelines"]["clinical-ner"]
    moved = tmp_path / "moved" / "model"
    moved.parent.mkdir()
    shutil.move(tmp_path / "saved", moved)
    texts = ["患者于2019年3月行左乳腺癌改良根治术，HER2（＋）。\r\n 药物😀" * 3, "时间", ""]
    pipe = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)
    expected = pipe(texts, max_length=20, batch_size=4)
    output = run_isolated(f"""
        import json
        from transformers import pipeline
        pipe = pipeline("clinical-ner", model={str(moved)!r}, trust_remote_code=True, device=-1)
        assert not type(pipe).__module__.startswith("clinical_ner_zh.modeling"), type(pipe).__module__
        print(json.dumps(pipe({texts!r}, max_length=20, batch_size=4)))
    """)
    got = json.loads(output.strip().splitlines()[-1])
    assert [spans(r) for r in got] == [spans(r) for r in expected]
    assert [e["score"] for r in got for e in r] == pytest.approx([e["score"] for r in expected for e in r])


def test_model_save_pretrained_alone_ships_the_pipeline(char_tok, tmp_path):
    """The family-A config names the pipeline and imports its module, so save_pretrained copies its files too."""
    random_model(char_tok).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"]["clinical-ner"]["pt"] == ["AutoModelForTokenClassification"]
    assert config["label_classes"] == CLASSES
    assert {"pipeline_clinical_ner.py", "display.py"} <= {p.name for p in tmp_path.iterdir()}


def test_saved_family_b_model_moved_alone_runs_in_a_fresh_process(tmp_path, run_isolated):
    """Family B needs lexicon features per token: the pipeline computes them through the model's text_features."""
    from transformers import BertTokenizer

    from .helpers import TEXT, VOCAB, tiny_model

    model = tiny_model(seed=2)
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)})
    save_for_hub(model, tokenizer, tmp_path / "saved")
    moved = tmp_path / "moved" / "kg"
    moved.parent.mkdir()
    shutil.move(tmp_path / "saved", moved)
    texts = [TEXT * 4, "乳腺癌", ""]
    expected = ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1)(texts, max_length=12, batch_size=3)
    output = run_isolated(f"""
        import json
        from transformers import pipeline
        pipe = pipeline("clinical-ner", model={str(moved)!r}, trust_remote_code=True, device=-1)
        print(json.dumps(pipe({texts!r}, max_length=12, batch_size=3)))
    """)
    got = json.loads(output.strip().splitlines()[-1])
    assert [spans(r) for r in got] == [spans(r) for r in expected]
    for text, entities in zip(texts, got):
        assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)


def test_a_config_built_by_an_earlier_versions_code_serves_this_pipeline(char_tok, tmp_path):
    """A notebook upgrades the package and passes a model loaded from an older folder: that folder's own
    configuration code (tests/fixtures/config_v21, of the landed version before the encoder's usable length) built the
    config, and this version's pipeline must read only the config's stored fields. It called
    ``config.check_input_length``, which that code does not have (AttributeError)."""
    from transformers import AutoConfig

    model = random_model(char_tok, seed=4)
    saved = save_for_hub(model, char_tok, tmp_path / "saved")
    older = tmp_path / "older"
    older.mkdir()
    for path in [saved / "config.json", saved / "tagging.py"]:
        shutil.copy(path, older / path.name)
    for path in (FIXTURES / "config_v21").glob("*.py.txt"):
        shutil.copy(path, older / path.name.removesuffix(".txt"))
    older_config = AutoConfig.from_pretrained(older, trust_remote_code=True)
    assert not hasattr(older_config, "max_input_length")  # the earlier code, not this version's
    texts = ["患者于2019年3月行左乳腺癌改良根治术，HER2（＋）。" * 4, "时间"]
    pipe = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)
    expected = pipe(texts), pipe(texts, max_length=20)
    model.config = older_config
    for pipe in (
        ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1),
        pipeline("clinical-ner", model=model, tokenizer=char_tok),
    ):
        assert (pipe(texts), pipe(texts, max_length=20)) == expected
