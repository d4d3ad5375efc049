"""Any encoder: both taggers on tiny BERT, RoBERTa, ALBERT, ERNIE and XLNet checkpoints built here, through
train_ner.build_model, saved, and loaded Hub-natively in a fresh process; folders saved before the encoder was a
sub-config load with the same outputs; a config loads without the torch side of our code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import (
    AlbertConfig,
    AutoConfig,
    AutoModel,
    BertConfig,
    BertTokenizer,
    ErnieConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
    XLNetConfig,
    XLNetTokenizer,
    pipeline,
)
from transformers.utils import logging as hf_logging

import train_ner
from clinical_ner_zh.datasets_scripts.encoding import WindowEncoder
from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging, ClinicalBertKgForCrfTagging
from clinical_ner_zh.modeling.configuration_crf_tagger import POSITION_OFFSET_ENCODERS
from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub
from clinical_ner_zh.modeling.tagging import TokenLayout, build_label_list, plan_windows, special_token_layout
from clinical_ner_zh.training.common import ConfigurationError

hf_logging.set_verbosity_error()

FIXTURES = Path(__file__).parent / "fixtures" / "tagger_v1"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"乳腺癌术后紫杉醇化疗阳性"]
SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
ENCODERS = {
    "bert": BertConfig(vocab_size=len(VOCAB), max_position_embeddings=64, **SMALL),
    # RoBERTa's positions start after its padding id (0 here): of its 66 rows, 65 take tokens
    "roberta": RobertaConfig(vocab_size=len(VOCAB), max_position_embeddings=66, pad_token_id=0, **SMALL),
    "albert": AlbertConfig(vocab_size=len(VOCAB), embedding_size=16, max_position_embeddings=64, **SMALL),
    "ernie": ErnieConfig(vocab_size=len(VOCAB), max_position_embeddings=64, **SMALL),
    "xlnet": XLNetConfig(vocab_size=len(VOCAB), d_model=32, n_layer=1, n_head=2, d_inner=37),
}
FAMILIES = {"chcancerbert": "BIO", "clinicalbert-kg": "BIOES"}
TEXT = "乳腺癌术后紫杉醇化疗"


def bert_tokenizer(folder: Path, vocab: list[str] = VOCAB) -> BertTokenizer:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer(vocab=str(folder / "vocab.txt"))


def checkpoint(folder: Path, architecture: str, seed: int = 0) -> Path:
    """A plain encoder checkpoint as the Hub holds one: the AutoModel's weights (pooler included) and a tokenizer."""
    torch.manual_seed(seed)
    AutoModel.from_config(ENCODERS[architecture]).save_pretrained(folder)
    bert_tokenizer(folder).save_pretrained(folder)
    return folder


def build(folder: Path, family: str, window: tuple[int, int] = (32, 8), **arguments):
    defaults = dict(
        variant=next(iter(train_ner.VARIANTS[family])), lstm_hidden_size=8, fusion_num_heads=2,
        label_scheme=FAMILIES[family], lstm_num_layers=1,
    )  # fmt: skip
    arguments = {**defaults, **arguments}
    model_args = train_ner.ModelArguments(family=family, encoder=str(folder), **arguments)
    tokenizer = train_ner.build_tokenizer(model_args, [])
    labels = build_label_list(["Disease", "Drug"], FAMILIES[family])
    return train_ner.build_model(model_args, labels, tokenizer, {}, window=window), tokenizer


def model_inputs(tokenizer, family: str) -> dict[str, torch.Tensor]:
    inputs = dict(tokenizer([TEXT, TEXT[:4]], padding=True, return_tensors="pt"))
    if family == "clinicalbert-kg":  # features of a text no lexicon term matches
        inputs.update({name: torch.zeros_like(inputs["input_ids"]) for name in train_ner.KG_FEATURES})
    return inputs


@pytest.mark.parametrize("architecture", sorted(ENCODERS))
def test_each_family_builds_on_the_encoder_and_keeps_its_weights(tmp_path, architecture):
    folder = checkpoint(tmp_path / architecture, architecture)
    weights = load_file(folder / "model.safetensors")
    for family in FAMILIES:
        model, _ = build(folder, family)
        assert type(model.config.encoder) is type(ENCODERS[architecture])
        encoder = model.base_model.state_dict()
        assert encoder.keys() == {key for key in weights if not key.startswith("pooler.")}, family
        for key, value in encoder.items():
            assert torch.equal(value, weights[key]), (family, key)
        # heads initialised, not the empty memory a missing weight starts as
        transitions = model.crf.transitions.detach()
        assert transitions.abs().max() <= 0.1 and transitions.abs().max() > 0, family


@pytest.mark.parametrize("architecture", sorted(ENCODERS))
def test_special_tokens_stay_outside_the_crf_given_ids_or_embeddings(tmp_path, architecture):
    """config.special_token_ids found in input_ids, or by their embedding in inputs_embeds, or special_tokens_mask:
    the same tag mask and the same emissions on every encoder."""
    model, tokenizer = build(checkpoint(tmp_path / architecture, architecture), "chcancerbert")
    model.eval()
    inputs = model_inputs(tokenizer, "chcancerbert")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    special = torch.isin(ids, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]))
    with torch.no_grad():
        by_ids = model(input_ids=ids, attention_mask=mask)
        by_embeddings = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask)
        by_mask = model(input_ids=ids, attention_mask=mask, special_tokens_mask=special.long())
    assert torch.equal(by_ids.tag_mask, mask.bool() & ~special)
    assert torch.equal(by_embeddings.tag_mask, by_ids.tag_mask) and torch.equal(by_mask.tag_mask, by_ids.tag_mask)
    real = by_ids.tag_mask
    torch.testing.assert_close(by_embeddings.logits[real], by_ids.logits[real], atol=1e-5, rtol=1e-5)


def test_saved_taggers_load_hub_natively_in_a_fresh_process(tmp_path, run_isolated):
    """Every architecture and family: save_for_hub, then AutoModelForTokenClassification with trust_remote_code in a
    process that cannot import the project; encoder weights equal the checkpoint's and the outputs are unchanged;
    family A tags a text over several windows with the clinical-ner pipeline as it did before saving."""
    cases, entities = [], {}
    for architecture in ENCODERS:
        folder = checkpoint(tmp_path / "checkpoints" / architecture, architecture)
        for family in FAMILIES:
            model, tokenizer = build(folder, family)
            model.eval()
            inputs = model_inputs(tokenizer, family)
            with torch.no_grad():
                logits = model(**inputs).logits
            saved = save_for_hub(model, tokenizer, tmp_path / "saved" / f"{family}-{architecture}")
            if family == "chcancerbert":  # family B needs a lexicon to tag text
                ner = pipeline("clinical-ner", model=model, tokenizer=tokenizer, max_length=8, stride=2)
                entities[str(saved)] = ner(TEXT)
            torch.save({"inputs": inputs, "logits": logits}, saved.parent / f"{saved.name}.pt")
            cases.append((str(saved), str(folder / "model.safetensors")))
    output = run_isolated(
        f"""
        import json, torch
        from safetensors.torch import load_file
        from transformers import AutoModelForTokenClassification, pipeline
        results = {{}}
        for folder, checkpoint in {cases!r}:
            model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
            expected = torch.load(folder + ".pt")
            encoder = model.base_model.state_dict()
            same_weights = all(torch.equal(encoder[k], v) for k, v in load_file(checkpoint).items() if k in encoder)
            with torch.no_grad():
                logits = model(**expected["inputs"]).logits
            results[folder] = [same_weights, torch.allclose(logits, expected["logits"], atol=1e-5)]
            if "chcancerbert" in folder:
                ner = pipeline("clinical-ner", model=folder, trust_remote_code=True, max_length=8, stride=2)
                results[folder].append(ner({TEXT!r}))
        print(json.dumps(results))
        """
    )
    results = json.loads(output.strip().splitlines()[-1])
    assert results == {folder: [True, True, *([entities[folder]] if folder in entities else [])] for folder, _ in cases}


def test_each_encoder_takes_the_inputs_its_position_table_holds(tmp_path):
    """BERT, ALBERT, ERNIE: max_position_embeddings; RoBERTa: less pad_token_id + 1; XLNet: no limit."""
    lengths = {name: ChCancerBertConfig(encoder=encoder).max_input_length for name, encoder in ENCODERS.items()}
    assert lengths == {"bert": 64, "roberta": 65, "albert": 64, "ernie": 64, "xlnet": None}
    # train_ner.py --max_length past it: refused before training, one line
    roberta = checkpoint(tmp_path / "roberta", "roberta")
    with pytest.raises(ConfigurationError, match=r"^model configuration: window_max_length \(66\) exceeds the 65 "):
        build(roberta, "chcancerbert", window=(66, 8))
    assert build(roberta, "chcancerbert", window=(65, 8))[0].config.window_max_length == 65


@pytest.mark.parametrize("model_type", ["bert", "albert", "ernie", *POSITION_OFFSET_ENCODERS])
def test_the_usable_length_is_what_the_encoder_takes(model_type):
    """Against transformers' own code for every encoder type the table names (MPNet's padding id is fixed at 1,
    the others' is the config's): an input of max_input_length tokens runs, one token more does not."""
    encoder = AutoConfig.for_model(model_type, vocab_size=len(VOCAB), max_position_embeddings=24, pad_token_id=3,
                                   **SMALL)  # fmt: skip
    if model_type == "longformer":
        encoder.attention_window = [4]  # it pads inputs to a multiple of its window: 20 tokens stay 20
    expected = {"bert": 24, "albert": 24, "ernie": 24, "mpnet": 22}.get(model_type, 20)
    assert ChCancerBertConfig(encoder=encoder).max_input_length == expected
    torch.manual_seed(0)
    model = AutoModel.from_config(encoder).eval()
    if model_type == "xmod":
        model.set_default_language(encoder.languages[0])
    with torch.no_grad():
        model(input_ids=torch.randint(5, len(VOCAB), (1, expected)))
        with pytest.raises((IndexError, RuntimeError)):
            model(input_ids=torch.randint(5, len(VOCAB), (1, expected + 1)))


def test_roberta_windows_are_checked_against_the_positions_after_its_padding_id(tmp_path):
    """RoBERTa numbers a text's positions from pad_token_id + 1: of 514 rows, 512 take tokens. Longer windows are
    refused in the config and in the pipeline (they used to fail inside the position embeddings); 512 tags a long
    text, also as the pipeline's default for a model without training windows."""
    tokenizer = bert_tokenizer(tmp_path, ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]", *VOCAB[5:]])
    assert tokenizer.pad_token_id == 1  # where RoBERTa's vocabulary has it
    encoder = RobertaConfig(vocab_size=len(VOCAB), max_position_embeddings=514, pad_token_id=1, **SMALL)
    labels = dict(enumerate(build_label_list(["Disease", "Drug"])))

    def config(**window) -> ChCancerBertConfig:
        return ChCancerBertConfig(encoder=encoder, id2label=labels, lstm_hidden_size=8, fusion_num_heads=2, **window)

    assert config().max_input_length == 512
    why = (
        r"the 512 tokens the encoder takes \(max_position_embeddings 514 less 2: roberta's positions start after "
        r"its padding id 1\)$"
    )
    for length in (513, 514):
        with pytest.raises(ValueError, match=rf"^window_max_length \({length}\) exceeds {why}"):
            config(window_max_length=length)
    text = TEXT * 120  # 1,200 tokens
    for window in ({"window_max_length": 512, "window_stride": 64}, {}):
        torch.manual_seed(0)
        model = ChCancerBertForCrfTagging(config(**window)).eval()
        ner = pipeline("clinical-ner", model=model, tokenizer=tokenizer)
        with pytest.raises(ValueError, match=rf"^max_length \(513\) exceeds {why}"):
            ner(text, max_length=513)
        planned = [(inputs["window"].start, inputs["window"].end) for inputs in ner.preprocess(text)]
        assert planned == plan_windows(len(text), 510, window.get("window_stride", 127)), window
        entities = ner(text)
        assert entities == ner(text, max_length=512) and entities, window
        assert all(entity["word"] == text[entity["start"] : entity["end"]] for entity in entities)


def test_the_fusion_argument_chooses_the_attention_fusion(tmp_path):
    folder = checkpoint(tmp_path / "bert", "bert")
    model, _ = build(folder, "chcancerbert", fusion="self_attention")
    assert type(model.fusion).__name__ == "SelfAttentionFusion" and model.config.fusion == "self_attention"
    with pytest.raises(ConfigurationError, match="only variant dgcnn-bilstm-mha-crf of chcancerbert has an attention"):
        build(folder, "chcancerbert", variant="dgcnn-bilstm-crf", fusion="self_attention")


XLNET_VOCAB = ["<pad>", "<unk>", "<cls>", "<sep>", "a", *VOCAB[5:]]


def xlnet_style_tokenizer(folder: Path, single: str = "$A:0 <sep>:0 <cls>:2") -> Path:
    """A tokenizer laid out as XLNet's: tokens, then <sep> <cls>, <cls> in segment 2, padded on the left; one token
    per Chinese character."""
    backend = Tokenizer(WordLevel({token: i for i, token in enumerate(XLNET_VOCAB)}, "<unk>"))
    backend.normalizer = BertNormalizer(handle_chinese_chars=True, lowercase=False, strip_accents=False)
    backend.pre_tokenizer = Whitespace()
    backend.post_processor = TemplateProcessing(single=single, special_tokens=[("<sep>", 3), ("<cls>", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", cls_token="<cls>", sep_token="<sep>",
        padding_side="left",
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    return folder


def xlnet_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A tiny XLNet encoder with an XLNet-layout tokenizer."""
    torch.manual_seed(seed)
    AutoModel.from_config(
        XLNetConfig(vocab_size=len(XLNET_VOCAB), d_model=32, n_layer=1, n_head=2, d_inner=37)
    ).save_pretrained(folder)
    return xlnet_style_tokenizer(folder)


def test_special_token_layout_is_read_from_the_tokenizer(tmp_path):
    bert = bert_tokenizer(tmp_path / "bert")
    assert special_token_layout(bert) == TokenLayout(
        prefix=(2,), suffix=(3,), prefix_type_ids=(0,), suffix_type_ids=(0,)
    )
    xlnet = PreTrainedTokenizerFast.from_pretrained(xlnet_style_tokenizer(tmp_path / "xlnet"))
    assert special_token_layout(xlnet) == TokenLayout(suffix=(3, 2), suffix_type_ids=(0, 2))
    # transformers' own XLNetTokenizer (a tiny unigram vocabulary) puts <cls> in segment 2 the same way
    pieces = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>", "\u2581", *VOCAB[5:]]
    real = XLNetTokenizer(vocab=[(piece, 0.0) for piece in pieces])
    assert special_token_layout(real) == TokenLayout(suffix=(4, 3), suffix_type_ids=(0, 2))


def test_an_xlnet_style_tokenizer_is_taken_and_another_layout_refused(tmp_path):
    folder = xlnet_style_tokenizer(tmp_path / "xlnet")
    tokenizer = train_ner.build_tokenizer(train_ner.ModelArguments(encoder=str(folder)), [])
    assert tokenizer("a")["input_ids"] == [4, 3, 2]
    # the text's tokens twice: not prefix + tokens + suffix
    folder = xlnet_style_tokenizer(tmp_path / "twice", single="$A <sep> $A")
    with pytest.raises(ConfigurationError, match=r"--encoder .*twice: .* lays a text out as \[4, 3, 4\]"):
        train_ner.build_tokenizer(train_ner.ModelArguments(encoder=str(folder)), [])


ENTITIES = [(0, 3, "Disease"), (5, 8, "Drug")]  # 乳腺癌, 紫杉醇 in TEXT


def xlnet_windows(tokenizer, max_length: int = 8, stride: int = 2) -> list[dict]:
    encoder = WindowEncoder(tokenizer, ["Disease", "Drug"], max_length=max_length, stride=stride)
    record = {"id": ["r"], "text": [TEXT], "entities": [[dict(start=s, end=e, label=t) for s, e, t in ENTITIES]]}
    batch = encoder(record)
    return [{name: batch[name][row] for name in batch} for row in range(len(batch["input_ids"]))]


def test_xlnet_training_windows_end_with_sep_cls_and_labels_stay_on_their_tokens(tmp_path):
    model, tokenizer = build(xlnet_checkpoint(tmp_path / "xlnet"), "chcancerbert")
    assert {0, 2, 3} <= set(model.config.special_token_ids)
    labels = model.config.id2label
    windows = xlnet_windows(tokenizer)
    assert len(windows) > 1
    tagged = {}
    for window in windows:
        content = [i for i, special in enumerate(window["special_tokens_mask"]) if not special]
        first, last = window["offset_mapping"][content[0]][0], window["offset_mapping"][content[-1]][1]
        # the same ids as the tokenizer gives the window's text: its tokens, then <sep> <cls> (segment 2)
        alone = tokenizer(TEXT[first:last], return_token_type_ids=True)
        assert window["input_ids"] == alone["input_ids"] and window["token_type_ids"] == alone["token_type_ids"]
        assert window["token_type_ids"][-1] == 2
        assert window["input_ids"][-2:] == [3, 2] and window["special_tokens_mask"][-2:] == [1, 1]
        assert window["labels"][-2:] == [-100, -100] and content == list(range(len(content)))
        for position in content:
            start, end = window["offset_mapping"][position]
            assert tokenizer.convert_ids_to_tokens(window["input_ids"][position]) == TEXT[start:end]
            tagged[start] = labels[window["labels"][position]]
    expected = {i: "O" for i in range(len(TEXT))}
    for start, end, label in ENTITIES:
        expected.update({i: ("B-" if i == start else "I-") + label for i in range(start, end)})
    assert tagged == expected
    # the XLNet tagger computes a loss on them (right-padded, attention mask on)
    batch = {
        name: torch.tensor([w[name] + [pad] * (8 - len(w[name])) for w in windows])
        for name, pad in (("input_ids", 0), ("attention_mask", 0), ("token_type_ids", 0), ("labels", -100))
    }
    assert torch.isfinite(model(**batch).loss)


def test_xlnet_pipeline_windows_are_the_training_windows_segment_ids_included(tmp_path):
    """The pipeline gives the model what training gave it: the tokenizer's ids and segment ids (<cls> in 2)."""
    model, tokenizer = build(xlnet_checkpoint(tmp_path / "xlnet"), "chcancerbert")
    training = xlnet_windows(tokenizer)
    ner = pipeline("clinical-ner", model=model, tokenizer=tokenizer)
    windows = list(ner.preprocess(TEXT, max_length=8, stride=2))
    assert len(windows) == len(training) > 1
    for ours, theirs in zip(windows, training):
        for name in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"):
            assert ours[name][0].tolist() == theirs[name], name
        assert theirs["token_type_ids"][-2:] == [0, 2]


def test_right_padding_leaves_xlnet_outputs_unchanged(tmp_path):
    """The collates pad on the right with an attention mask: XLNet's real tokens see the same outputs."""
    model, tokenizer = build(xlnet_checkpoint(tmp_path / "xlnet"), "chcancerbert")
    model.eval()
    ids = tokenizer(TEXT[:4])["input_ids"]
    alone = torch.tensor([ids])
    padded = torch.tensor([ids + [0] * 5])
    mask = torch.tensor([[1] * len(ids) + [0] * 5])
    with torch.no_grad():
        expected = model(input_ids=alone, attention_mask=torch.ones_like(alone), token_type_ids=torch.zeros_like(alone))
        got = model(input_ids=padded, attention_mask=mask, token_type_ids=torch.zeros_like(padded))
    torch.testing.assert_close(got.logits[0, : len(ids)], expected.logits[0], atol=1e-5, rtol=1e-5)


def test_an_xlnet_tagger_trained_on_its_windows_tags_the_right_characters(tmp_path):
    """A few steps on the training windows, then the pipeline over the same windows (any batch size) finds the
    entities at their character offsets."""
    model, tokenizer = build(xlnet_checkpoint(tmp_path / "xlnet"), "chcancerbert", head_dropout=0.0)
    windows = xlnet_windows(tokenizer)
    batch = {
        name: torch.tensor([w[name] + [pad] * (8 - len(w[name])) for w in windows])
        for name, pad in (("input_ids", 0), ("attention_mask", 0), ("token_type_ids", 0), ("labels", -100))
    }
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    expected = [(TEXT[s:e], s, e, t) for s, e, t in ENTITIES]
    for batch_size in (1, 4):
        ner = pipeline("clinical-ner", model=model, tokenizer=tokenizer, max_length=8, stride=2, batch_size=batch_size)
        found = [(e["word"], e["start"], e["end"], e["entity_group"]) for e in ner(TEXT)]
        assert found == expected, batch_size


@pytest.mark.parametrize(
    "family, model_class",
    [("chcancerbert", ChCancerBertForCrfTagging), ("clinicalbert_kg", ClinicalBertKgForCrfTagging)],
)
def test_a_folder_saved_before_the_encoder_sub_config_loads_with_the_same_outputs(tmp_path, family, model_class):
    """tests/fixtures/tagger_v1: flat BertConfig fields and bert.* weights, written by the code before the change."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    inputs = {name: torch.tensor(expected[name]) for name in ("input_ids", "attention_mask")}
    if family == "clinicalbert_kg":
        inputs.update({name: torch.tensor(expected[name]) for name in train_ner.KG_FEATURES})
    model = model_class.from_pretrained(FIXTURES / family).eval()
    assert type(model.config.encoder) is BertConfig and model.config.hidden_size == 8
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, torch.tensor(expected[f"{family}_logits"]), atol=1e-6)
    # saved again it has the new layout, and still the same outputs
    model.save_pretrained(tmp_path / "resaved")
    layout = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert layout["encoder"]["model_type"] == "bert" and "hidden_size" not in layout
    again = model_class.from_pretrained(tmp_path / "resaved").eval()
    with torch.no_grad():
        assert torch.allclose(again(**inputs).logits, torch.tensor(expected[f"{family}_logits"]), atol=1e-6)


def test_flat_encoder_fields_make_the_encoder_sub_config():
    """The way configs were written before (and from_pretrained on a plain checkpoint's config.json)."""
    flat = ChCancerBertConfig(vocab_size=40, hidden_size=16, num_attention_heads=2, max_position_embeddings=32)
    assert type(flat.encoder) is BertConfig
    assert (flat.encoder.vocab_size, flat.hidden_size, flat.max_position_embeddings) == (40, 16, 32)
    plain = RobertaConfig(vocab_size=40, hidden_size=16, num_attention_heads=2).to_dict()
    roberta = ChCancerBertConfig(**plain)
    assert type(roberta.encoder) is RobertaConfig and roberta.model_type == "chcancerbert-crf"
    assert ChCancerBertConfig(encoder=XLNetConfig(d_model=16, n_head=2)).max_position_embeddings is None


def test_resize_token_embeddings_grows_the_encoder_vocabulary(tmp_path):
    """transformers sets vocab_size on get_text_config(), the tagger config: it reaches the encoder's."""
    model = ChCancerBertForCrfTagging(ChCancerBertConfig(vocab_size=40, hidden_size=16, num_attention_heads=2))
    model.resize_token_embeddings(48, mean_resizing=False)
    model.save_pretrained(tmp_path)
    loaded = ChCancerBertForCrfTagging.from_pretrained(tmp_path)
    assert loaded.config.encoder.vocab_size == 48
    assert loaded.get_input_embeddings().weight.shape == (48, 16)
