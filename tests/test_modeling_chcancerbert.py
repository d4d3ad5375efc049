"""ChCancerBertForCrfTagging: every ablation survives save -> trust_remote_code load; heads on plain BERT
checkpoints start sane and train; bf16 keeps the CRF in float32; bad input fails clearly."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging
from clinical_ner_zh.modeling.crf_tagger import CrfTaggerOutput
from clinical_ner_zh.modeling.tagging import build_label_list

from .conftest import TINY_BERT

hf_logging.set_verbosity_error()

LABELS = build_label_list(["Drug", "Disease", "Time"], "BIO")
HEAD = dict(lstm_hidden_size=8, fusion_hidden_size=16, fusion_num_heads=2, dgcnn_dilations=[1, 2])
CLS, SEP, PAD = 2, 3, 0

ABLATIONS = {
    "bert-crf": dict(use_bilstm=False, use_dgcnn=False),
    "bert-bilstm-crf": dict(use_dgcnn=False),
    "bert-dgcnn-crf": dict(use_bilstm=False),
    "bert-dgcnn-bilstm-crf": dict(fusion="concat"),
    "bert-dgcnn-bilstm-mha-crf": dict(),
    "bert-dgcnn-bilstm-self-mha-crf": dict(fusion="self_attention"),
    "bioes-2-layer-lstm": dict(label_scheme="BIOES", lstm_num_layers=2),
}


def tiny_config(**overrides) -> ChCancerBertConfig:
    scheme = overrides.get("label_scheme", "BIO")
    scheme = scheme if scheme in ("BIO", "BIOES") else "BIO"  # an invalid scheme is the config's to reject
    labels = build_label_list(["Drug", "Disease", "Time"], scheme)
    fields = {**TINY_BERT, **HEAD, "id2label": dict(enumerate(labels)), "special_token_ids": [PAD, CLS, SEP]}
    return ChCancerBertConfig(**{**fields, **overrides})


def batch(seed=0, lengths=(12, 7, 3)):
    """Right-padded [CLS] ... [SEP] sequences with labels -100 on special tokens and padding."""
    generator = torch.Generator().manual_seed(seed)
    seq = max(lengths) + 2
    input_ids = torch.full((len(lengths), seq), PAD)
    labels = torch.full((len(lengths), seq), -100)
    for row, length in enumerate(lengths):
        input_ids[row, 0] = CLS
        input_ids[row, 1 : length + 1] = torch.randint(5, TINY_BERT["vocab_size"], (length,), generator=generator)
        input_ids[row, length + 1] = SEP
        labels[row, 1 : length + 1] = 0
        labels[row, 2:4] = torch.tensor([LABELS.index("B-Drug"), LABELS.index("I-Drug")])
    labels[:, 0] = -100
    return {"input_ids": input_ids, "attention_mask": (input_ids != PAD).long()}, labels


@pytest.fixture(scope="module")
def saved_variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    inputs, _ = batch()
    expected = {}
    for name, overrides in ABLATIONS.items():
        torch.manual_seed(0)
        model = ChCancerBertForCrfTagging(tiny_config(**overrides)).eval()
        model.save_pretrained(root / name)
        with torch.no_grad():
            expected[name] = (model(**inputs).logits, model.decode(**inputs))
    torch.save({"inputs": inputs, "expected": expected}, root / "expected.pt")
    return root


def test_every_ablation_loads_in_a_fresh_process_with_trust_remote_code(saved_variants, run_isolated):
    folders = sorted(p.name for p in saved_variants.iterdir() if p.is_dir())
    assert folders == sorted(ABLATIONS)
    for name in folders:
        files = {p.name for p in (saved_variants / name).iterdir()}
        assert {"config.json", "model.safetensors", "modeling_chcancerbert.py", "crf.py", "layers.py"} <= files
        auto_map = json.loads((saved_variants / name / "config.json").read_text())["auto_map"]
        assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForTokenClassification"}
    output = run_isolated(f"""
        import torch
        from transformers import AutoConfig, AutoModelForTokenClassification
        root = {str(saved_variants)!r}
        data = torch.load(root + "/expected.pt")
        for name, (logits, paths) in sorted(data["expected"].items()):
            config = AutoConfig.from_pretrained(f"{{root}}/{{name}}", trust_remote_code=True)
            assert type(config).__name__ == "ChCancerBertConfig", type(config)
            model = AutoModelForTokenClassification.from_pretrained(f"{{root}}/{{name}}", trust_remote_code=True)
            assert not type(model).__module__.startswith("clinical_ner_zh.modeling."), type(model).__module__
            model.eval()
            with torch.no_grad():
                got = model(**data["inputs"]).logits
            assert torch.equal(got, logits), (name, (got - logits).abs().max())
            assert model.decode(**data["inputs"]) == paths, name
            print("ok", name)
    """)
    assert output.split() == [word for name in sorted(ABLATIONS) for word in ("ok", name)]


def test_automodel_loads_the_tagger_too(saved_variants):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(saved_variants / "bert-crf", trust_remote_code=True)
    assert type(model).__name__ == "ChCancerBertForCrfTagging"


@pytest.mark.parametrize("encoder_class", [BertModel, BertForMaskedLM, BertForPreTraining])
def test_heads_on_a_plain_bert_checkpoint_start_sane_and_learn(encoder_class, tmp_path):
    torch.manual_seed(0)
    encoder = encoder_class(BertConfig(**TINY_BERT))
    encoder.save_pretrained(tmp_path)
    model = ChCancerBertForCrfTagging.from_pretrained(
        tmp_path, id2label=dict(enumerate(LABELS)), special_token_ids=[PAD, CLS, SEP], **HEAD
    )
    assert isinstance(model.config, ChCancerBertConfig)
    reference = encoder if encoder_class is BertModel else encoder.bert
    expected = reference.state_dict()
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for name, parameter in model.named_parameters():
        if not name.startswith("bert."):
            assert torch.isfinite(parameter).all(), name
            assert parameter.abs().max() <= 1.0, (name, parameter.abs().max())
    assert model.crf.transition_allowed.sum() < len(LABELS) ** 2  # constraints rebuilt, not left empty

    inputs, labels = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**inputs, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] * 0.7, losses


def test_head_keywords_given_to_from_pretrained_shape_the_head(tmp_path):
    """from_pretrained sets keyword arguments after the config is built: the fusion width still follows the LSTM
    that was asked for, label2id follows id2label, and a bad value is refused, not built."""
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(tmp_path)
    labels = dict(enumerate(LABELS))
    model = ChCancerBertForCrfTagging.from_pretrained(
        tmp_path, id2label=labels, lstm_hidden_size=6, fusion_num_heads=3, dgcnn_dilations=[1, 2]
    )
    assert model.config.fusion_size == 12 and model.config.fusion_hidden_size is None
    assert model.fusion.output_size == 12 and model.bilstm.output_size == 12
    assert model.config.label2id == {label: index for index, label in labels.items()}
    model.save_pretrained(tmp_path / "tagger")
    saved = json.loads((tmp_path / "tagger" / "config.json").read_text())
    assert saved["lstm_hidden_size"] == 6 and saved["label2id"]["B-Drug"] == LABELS.index("B-Drug")
    with pytest.raises(ValueError, match=r"fusion_hidden_size \(10 = 2 \* lstm_hidden_size\) must be divisible"):
        ChCancerBertForCrfTagging.from_pretrained(tmp_path, id2label=labels, lstm_hidden_size=5, fusion_num_heads=4)
    with pytest.raises(ValueError, match="head_dropout must be in"):
        ChCancerBertForCrfTagging.from_pretrained(tmp_path, id2label=labels, head_dropout=1.0)


def test_bfloat16_loading_keeps_the_crf_in_float32(saved_variants):
    model = ChCancerBertForCrfTagging.from_pretrained(
        saved_variants / "bert-dgcnn-bilstm-mha-crf", dtype=torch.bfloat16
    )
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.crf.parameters()} == {torch.float32}
    inputs, labels = batch()
    output = model(**inputs, labels=labels)
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    assert [len(p) for p in model.decode(**inputs)] == [12, 7, 3]


def test_crf_sees_only_real_tokens():
    model = ChCancerBertForCrfTagging(tiny_config()).eval()
    inputs, _ = batch()
    assert [len(p) for p in model.decode(**inputs)] == [12, 7, 3]
    special = (inputs["input_ids"] == CLS) | (inputs["input_ids"] == SEP)
    explicit = model.decode(**inputs, special_tokens_mask=special.long())
    assert explicit == model.decode(**inputs)
    assert model(**inputs).tag_mask.sum().item() == 22


def test_every_ablation_is_a_config_switch():
    modules = {name: ChCancerBertForCrfTagging(tiny_config(**o)) for name, o in ABLATIONS.items()}
    present = {name: {part for part in ("bilstm", "dgcnn", "fusion") if getattr(m, part) is not None}
               for name, m in modules.items()}  # fmt: skip
    assert present["bert-crf"] == set()
    assert present["bert-bilstm-crf"] == {"bilstm"}
    assert present["bert-dgcnn-crf"] == {"dgcnn"}
    assert present["bert-dgcnn-bilstm-crf"] == {"bilstm", "dgcnn"}
    assert present["bert-dgcnn-bilstm-mha-crf"] == {"bilstm", "dgcnn", "fusion"}
    assert present["bert-dgcnn-bilstm-self-mha-crf"] == {"bilstm", "dgcnn", "fusion"}
    assert type(modules["bert-dgcnn-bilstm-self-mha-crf"].fusion).__name__ == "SelfAttentionFusion"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(label_scheme="IOBES"), "label_scheme must be one of"),
        (dict(fusion="sum"), "fusion must be one of"),
        (dict(dgcnn_dilations=[1, 0]), "dgcnn_dilations must be a non-empty list"),
        (dict(fusion_hidden_size=10, fusion_num_heads=4), r"fusion_hidden_size \(10\) must be divisible"),
        (dict(head_dropout=1.5), r"head_dropout must be in \[0, 1\)"),
        (dict(id2label={0: "O", 1: "S-Drug"}), "label 'S-Drug' is not valid in the BIO scheme"),
        (dict(id2label={0: "O", 2: "B-Drug"}), "id2label must map 0..1"),
        (dict(window_max_length=65), r"window_max_length \(65\) exceeds the 64 tokens the encoder takes"),
        (dict(window_max_length=2), r"window_max_length must be an integer >= 3"),
        (dict(window_max_length=32, window_stride=30), r"window_stride must be an integer in \[0, 30\)"),
        (dict(window_stride=8), r"window_stride \(8\) needs window_max_length"),
    ],
)
def test_bad_config_raises_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_training_windows_are_saved_and_older_configs_load_without_them(tmp_path):
    from .helpers import tiny_config as kg_config

    for name, config in (("a", tiny_config(window_max_length=32, window_stride=8)),
                         ("b", kg_config(window_max_length=32, window_stride=8))):  # fmt: skip
        config.save_pretrained(tmp_path / name)
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert (saved["window_max_length"], saved["window_stride"]) == (32, 8)
        loaded = type(config).from_pretrained(tmp_path / name)
        assert (loaded.window_max_length, loaded.window_stride) == (32, 8)
        # A model saved before the fields existed
        del saved["window_max_length"], saved["window_stride"]
        (tmp_path / name / "config.json").write_text(json.dumps(saved))
        loaded = type(config).from_pretrained(tmp_path / name)
        assert (loaded.window_max_length, loaded.window_stride) == (None, None)


def test_bad_inputs_raise_value_error():
    model = ChCancerBertForCrfTagging(tiny_config())
    inputs, labels = batch()
    with pytest.raises(ValueError, match=r"label ids in \[0, 7\).*7 labels.*got values in \[0, 9\]"):
        model(**inputs, labels=labels.masked_fill(labels == 1, 9))
    with pytest.raises(ValueError, match=r"labels of shape \(3, 14\), got \(3, 13\)"):
        model(**inputs, labels=labels[:, :-1])
    with pytest.raises(ValueError, match="expected input_ids or inputs_embeds"):
        model(attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match=r"special_tokens_mask of shape \(3, 14\), got \(3, 2\)"):
        model(**inputs, special_tokens_mask=torch.zeros(3, 2))


def test_modeling_imports_only_stdlib_torch_transformers_and_siblings():
    import sys

    allowed = {"torch", "transformers"} | set(sys.stdlib_module_names)
    for path in sorted(Path("modeling").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
                assert all(root in allowed for root in roots), (path, roots)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    # `from . import x` is not copied with a saved model: only `from .x import y` is.
                    assert node.module, (path, "use `from .module import name`")
                else:
                    assert node.module.split(".")[0] in allowed, (path, node.module)


def test_return_dict_false_gives_a_tuple_as_transformers_models_do():
    model = ChCancerBertForCrfTagging(tiny_config()).eval()
    inputs, labels = batch()
    output = model(**inputs, labels=labels, output_hidden_states=True)
    as_tuple = model(**inputs, labels=labels, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 4
    for got, expected in zip(as_tuple, (output.loss, output.logits, output.tag_mask)):
        torch.testing.assert_close(got, expected)
    assert len(as_tuple[3]) == TINY_BERT["num_hidden_layers"] + 1
    model.config.return_dict = False  # the config's setting applies when the call does not say
    logits, tag_mask = model(**inputs)
    torch.testing.assert_close(logits, output.logits)
    assert torch.equal(tag_mask, output.tag_mask)
    assert model.decode(**inputs) == model.crf.decode(output.logits, output.tag_mask)
    torch.testing.assert_close(model.marginals(**inputs), model.crf.marginals(output.logits, output.tag_mask))
    assert isinstance(model(**inputs, return_dict=True), CrfTaggerOutput)


def test_inputs_embeds_keep_special_tokens_outside_the_crf():
    """Without input_ids, [CLS], [SEP] and padding are recognised by their embeddings (they used to be tagged)."""
    model = ChCancerBertForCrfTagging(tiny_config()).eval()
    inputs, labels = batch()
    embedded = {"inputs_embeds": model.get_input_embeddings()(inputs["input_ids"]), **inputs}
    del embedded["input_ids"]
    by_ids = model(**inputs, labels=labels)
    by_embeddings = model(**embedded, labels=labels)
    assert torch.equal(by_embeddings.tag_mask, by_ids.tag_mask)
    torch.testing.assert_close(by_embeddings.loss, by_ids.loss)
    assert model.decode(**embedded) == model.decode(**inputs)
