"""ClinicalBertKgForCrfTagging: every ablation survives save -> copy alone -> trust_remote_code load and tags text
with features from its own lexicon; heads on plain BERT checkpoints start sane and train; the KG table freezes;
bf16 keeps the CRF in float32; bad input fails clearly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel, BertTokenizer
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling import ClinicalBertKgConfig, ClinicalBertKgForCrfTagging, TermLexicon
from clinical_ner_zh.modeling.lexicon import FEATURE_NAMES
from clinical_ner_zh.modeling.tagging import build_label_list

from .conftest import TINY_BERT
from .helpers import CATEGORIES, CLS, HEAD, NUM_ENTITIES, PAD, SEP, TEXT, VOCAB, lexicon, tiny_config, tiny_model

hf_logging.set_verbosity_error()

LABELS = build_label_list(["Disease", "Drug"], "BIOES")

ABLATIONS = {
    "full": dict(),
    "without-kg": dict(use_kg_embedding=False, use_position_feature=False, use_category_feature=False),
    "without-kg-embedding": dict(use_kg_embedding=False),
    "without-position": dict(use_position_feature=False),
    "without-category": dict(use_category_feature=False),
    "bio-fine-tuned-table": dict(label_scheme="BIO", freeze_kg_embeddings=False),
}


def batch(model, texts=(TEXT, "左侧乳腺癌", "化疗")):
    """Tokenized texts with features from the model's lexicon; labels -100 off the real tokens."""
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)})
    encoded = tokenizer(list(texts), padding=True, return_offsets_mapping=True, return_tensors="pt")
    offsets = [[tuple(pair) for pair in row.tolist()] for row in encoded.pop("offset_mapping")]
    features = model.batch_text_features(list(texts), offsets, length=encoded["input_ids"].shape[1])
    labels = torch.full_like(encoded["input_ids"], -100)
    real = (encoded["attention_mask"] == 1) & (encoded["input_ids"] != CLS) & (encoded["input_ids"] != SEP)
    labels[real] = 0
    labels[0, 1:4] = torch.tensor([LABELS.index("B-Disease"), LABELS.index("I-Disease"), LABELS.index("E-Disease")])
    return {**encoded, **features}, labels


@pytest.fixture(scope="module")
def saved_variants(tmp_path_factory):
    """Each ablation saved with a tokenizer, then copied alone to a new place and the original deleted."""
    root = tmp_path_factory.mktemp("kg-variants")
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(VOCAB)})
    expected = {}
    for name, overrides in ABLATIONS.items():
        model = tiny_model(**overrides)
        model.save_pretrained(root / "saved" / name)
        tokenizer.save_pretrained(root / "saved" / name)
        inputs, _ = batch(model)
        with torch.no_grad():
            expected[name] = (model(**inputs).logits, model.decode(**inputs))
        shutil.copytree(root / "saved" / name, root / "moved" / name)
    shutil.rmtree(root / "saved")
    torch.save({"expected": expected, "inputs": {n: batch(tiny_model(**o))[0] for n, o in ABLATIONS.items()}},
               root / "expected.pt")  # fmt: skip
    return root


def test_every_ablation_loads_alone_in_a_fresh_process_and_tags_text_with_its_own_lexicon(saved_variants, run_isolated):
    for name in ABLATIONS:
        folder = saved_variants / "moved" / name
        files = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "lexicon.tsv", "lexicon.py", "layers.py", "crf.py"} <= files
        config = json.loads((folder / "config.json").read_text())
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForTokenClassification"}
        assert config["lexicon_sha256"] == lexicon().sha256()
    output = run_isolated(f"""
        import torch
        from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer
        root = {str(saved_variants)!r}
        data = torch.load(root + "/expected.pt")
        for name, (logits, paths) in sorted(data["expected"].items()):
            folder = f"{{root}}/moved/{{name}}"
            config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
            assert type(config).__name__ == "ClinicalBertKgConfig", type(config)
            model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
            assert not type(model).__module__.startswith("clinical_ner_zh.modeling."), type(model).__module__
            assert model.lexicon is not None and len(model.lexicon) == 5, name
            inputs = data["inputs"][name]
            with torch.no_grad():
                got = model(**inputs).logits
            assert torch.equal(got, logits), (name, (got - logits).abs().max())
            assert model.decode(**inputs) == paths, name
            # Tag new text end to end: tokenizer and features from the folder alone.
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
            text = {TEXT!r}
            encoded = tokenizer(text, return_offsets_mapping=True)
            features = model.text_features(text, encoded.pop("offset_mapping"))
            tensors = {{k: torch.tensor([v]) for k, v in {{**encoded, **features}}.items()}}
            assert model.decode(**tensors) == paths[:1], name
            if name == "full":
                print("features", features["kg_position_ids"], features["kg_entity_ids"])
            print("ok", name)
    """)
    lines = output.splitlines()
    assert [line for line in lines if line.startswith("ok")] == [f"ok {name}" for name in sorted(ABLATIONS)]
    # [CLS] 乳 腺 癌 术 后 ， her2 阳 性 ， 紫 杉 醇 化 疗 。 [SEP]; "her2" takes the features of "H" (B of HER2)
    assert (
        "features [0, 1, 2, 3, 0, 0, 0, 1, 1, 3, 0, 1, 2, 3, 1, 3, 0, 0] "
        "[0, 1, 1, 1, 0, 0, 0, 6, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0]"
    ) in lines


def test_automodel_loads_the_tagger_and_its_lexicon_too(saved_variants):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(saved_variants / "moved" / "full", trust_remote_code=True)
    assert type(model).__name__ == "ClinicalBertKgForCrfTagging"
    assert model.lexicon.dumps() == lexicon().dumps()  # the remote-code copy of TermLexicon, another class


def test_a_folder_whose_lexicon_is_missing_or_different_loads_without_one(saved_variants, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved_variants / "moved" / "full", folder)
    TermLexicon([("乳腺癌", "Disease")], CATEGORIES).save(folder / "lexicon.tsv")
    model = ClinicalBertKgForCrfTagging.from_pretrained(folder)
    assert model.lexicon is None  # hash mismatch: not trusted
    (folder / "lexicon.tsv").unlink()
    model = ClinicalBertKgForCrfTagging.from_pretrained(folder)
    assert model.lexicon is None
    with pytest.raises(ValueError, match="expected a model with a lexicon"):
        model.text_features(TEXT, [(0, 1)])
    model.set_lexicon(lexicon())
    assert model.text_features("乳腺癌", [(0, 0), (0, 1)])["kg_entity_ids"] == [0, 1]


@pytest.mark.parametrize("encoder_class", [BertModel, BertForMaskedLM, BertForPreTraining])
def test_heads_on_a_plain_bert_checkpoint_start_sane_and_learn(encoder_class, tmp_path):
    torch.manual_seed(0)
    encoder = encoder_class(BertConfig(**TINY_BERT))
    encoder.save_pretrained(tmp_path)
    model = ClinicalBertKgForCrfTagging.from_pretrained(
        tmp_path, id2label=dict(enumerate(LABELS)), special_token_ids=[PAD, CLS, SEP], **HEAD
    )
    assert isinstance(model.config, ClinicalBertKgConfig) and model.lexicon is None
    reference = encoder if encoder_class is BertModel else encoder.bert
    expected = reference.state_dict()
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for name, parameter in model.named_parameters():
        if not name.startswith("bert."):
            assert torch.isfinite(parameter).all(), name
            assert parameter.abs().max() <= 1.0, (name, parameter.abs().max())
    placeholder = model.kg_embeddings.placeholder
    assert 0.005 < placeholder.std() < 0.05, placeholder  # initialised like an embedding, not left empty
    assert torch.equal(model.kg_embeddings.table.weight[0], torch.zeros(HEAD["kg_embedding_dim"]))
    assert model.crf.transition_allowed.sum() < len(LABELS) ** 2  # constraints rebuilt, not left empty

    model.set_lexicon(lexicon())
    inputs, labels = batch(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**inputs, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] * 0.7, losses


def test_head_keywords_given_to_from_pretrained_are_checked_and_label2id_follows(tmp_path):
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(tmp_path)
    labels = dict(enumerate(build_label_list(["Drug", "Disease"], "BIOES")))
    model = ClinicalBertKgForCrfTagging.from_pretrained(tmp_path, id2label=labels)  # BIOES is the default
    assert model.config.label2id == {label: index for index, label in labels.items()}
    with pytest.raises(ValueError, match="lstm_hidden_size must be an integer >= 1, got 0"):
        ClinicalBertKgForCrfTagging.from_pretrained(tmp_path, id2label=labels, label_scheme="BIOES", lstm_hidden_size=0)
    with pytest.raises(ValueError, match="not valid in the BIO scheme"):
        ClinicalBertKgForCrfTagging.from_pretrained(tmp_path, id2label=labels, label_scheme="BIO")


def test_frozen_kg_table_gets_no_gradient_also_after_loading(saved_variants):
    frozen = ClinicalBertKgForCrfTagging.from_pretrained(saved_variants / "moved" / "full")
    tuned = ClinicalBertKgForCrfTagging.from_pretrained(saved_variants / "moved" / "bio-fine-tuned-table")
    for model in (frozen, tuned):
        inputs, _ = batch(model)
        labels = torch.where(inputs["attention_mask"].bool(), 0, -100)
        model.train()
        model(**inputs, labels=labels).loss.backward()
        assert model.kg_embeddings.placeholder.grad is not None and model.kg_embeddings.placeholder.grad.abs().sum() > 0
        assert model.kg_projection.weight.grad is not None
    assert frozen.kg_embeddings.table.weight.grad is None
    grad = tuned.kg_embeddings.table.weight.grad
    assert grad[[1, 3, 6]].abs().sum(dim=1).gt(0).all()  # the linked entities learn
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))  # the padding row never does


def test_frozen_kg_table_is_no_parameter_however_the_model_is_built(saved_variants, tmp_path):
    """Built, loaded, or put on a plain BERT: a frozen table is never a parameter (DDP waits for a gradient of every
    parameter that requires one, and loading creates parameters that do), and the same file loads either way."""
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(tmp_path / "bert")
    head = {**HEAD, "id2label": dict(enumerate(LABELS)), "special_token_ids": [PAD, CLS, SEP]}
    tuned_folder = saved_variants / "moved" / "bio-fine-tuned-table"
    built = {
        "new": tiny_model(),
        "loaded": ClinicalBertKgForCrfTagging.from_pretrained(saved_variants / "moved" / "full"),
        "on plain BERT": ClinicalBertKgForCrfTagging.from_pretrained(tmp_path / "bert", **head),
        "fine-tuned file loaded frozen": ClinicalBertKgForCrfTagging.from_pretrained(
            tuned_folder, freeze_kg_embeddings=True
        ),
    }
    for how, model in built.items():
        assert "kg_embeddings.table.weight" not in dict(model.named_parameters()), how
        table = model.kg_embeddings.table.weight
        assert not table.requires_grad and table.shape == (NUM_ENTITIES + 1, HEAD["kg_embedding_dim"]), how
        assert torch.equal(table[0], torch.zeros_like(table[0])) and 0.005 < table[1:].std() < 0.05, how
    tuned = ClinicalBertKgForCrfTagging.from_pretrained(tuned_folder)
    assert tuned.kg_embeddings.table.weight.requires_grad
    assert "kg_embeddings.table.weight" in dict(tuned.named_parameters())
    frozen = built["fine-tuned file loaded frozen"].kg_embeddings.table.weight
    assert torch.equal(frozen, tuned.kg_embeddings.table.weight.detach())


def test_load_kg_embeddings_fills_rows_from_one():
    model = tiny_model()
    embeddings = torch.randn(NUM_ENTITIES, HEAD["kg_embedding_dim"])
    model.load_kg_embeddings(embeddings)
    ids = torch.tensor([[0, 1, 6]])
    looked_up = model.kg_embeddings(ids)
    assert torch.equal(looked_up[0, 1:], embeddings[[0, 5]])
    assert torch.equal(looked_up[0, 0], model.kg_embeddings.placeholder.detach())
    with pytest.raises(ValueError, match=r"expected KG embeddings of shape \(6, 8\).*got \(5, 8\)"):
        model.load_kg_embeddings(embeddings[:5])
    with pytest.raises(ValueError, match="expected a model with use_kg_embedding=True"):
        tiny_model(use_kg_embedding=False).load_kg_embeddings(embeddings)


def test_bfloat16_loading_keeps_the_crf_in_float32(saved_variants):
    model = ClinicalBertKgForCrfTagging.from_pretrained(saved_variants / "moved" / "full", dtype=torch.bfloat16)
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert model.kg_embeddings.table.weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.crf.parameters()} == {torch.float32}
    inputs, labels = batch(model)
    output = model(**inputs, labels=labels)
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    assert [len(p) for p in model.decode(**inputs)] == [16, 5, 2]


def test_without_kg_needs_no_lexicon_and_features_are_zero():
    torch.manual_seed(0)
    model = ClinicalBertKgForCrfTagging(tiny_config(**ABLATIONS["without-kg"])).eval()
    assert model.kg_embeddings is model.position_embeddings is model.category_embeddings is None
    assert model.text_features(TEXT, [(0, 0), (0, 1), (0, 0)]) == {name: [0, 0, 0] for name in FEATURE_NAMES}
    inputs, _ = batch(model)
    bare = {k: v for k, v in inputs.items() if not k.startswith("kg_")}
    assert model.decode(**bare) == model.decode(**inputs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(label_scheme="IOBES"), "label_scheme must be one of"),
        (dict(lstm_num_layers=0), "lstm_num_layers must be an integer >= 1, got 0"),
        (dict(kg_embedding_dim=0), "kg_embedding_dim must be an integer >= 1, got 0"),
        (dict(num_kg_entities=-1), "num_kg_entities must be an integer >= 0, got -1"),
        (dict(kg_categories=[]), r"kg_categories must be a non-empty list of distinct type names, got \[\]"),
        (dict(kg_categories=["Drug", "Drug"]), "kg_categories must be a non-empty list of distinct"),
        (dict(head_dropout=1.5), r"head_dropout must be in \[0, 1\)"),
        (dict(lexicon_file="../lexicon.tsv"), "lexicon_file must be a file name inside the model folder"),
        (dict(id2label={0: "O", 1: "X-Drug"}), "label 'X-Drug' is not valid in the BIOES scheme"),
    ],
)
def test_bad_config_raises_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_bad_inputs_raise_value_error():
    model = tiny_model()
    inputs, labels = batch(model)  # 3 texts, 18 tokens
    with pytest.raises(
        ValueError, match=r"expected kg_entity_ids \(the model's config has this feature on\), got None"
    ):
        model(**{k: v for k, v in inputs.items() if k != "kg_entity_ids"})
    with pytest.raises(ValueError, match=r"expected kg_position_ids of shape \(3, 18\), got \(3, 17\)"):
        model(**{**inputs, "kg_position_ids": inputs["kg_position_ids"][:, 1:]})
    with pytest.raises(ValueError, match=r"expected kg_category_ids in \[0, 4\), got values in \[0, 7\]"):
        model(**{**inputs, "kg_category_ids": inputs["kg_category_ids"].masked_fill(inputs["kg_category_ids"] == 1, 7)})
    with pytest.raises(ValueError, match=r"expected kg_entity_ids in \[0, 7\), got values in \[-1, 6\]"):
        model(**{**inputs, "kg_entity_ids": inputs["kg_entity_ids"].masked_fill(inputs["kg_entity_ids"] == 0, -1)})
    with pytest.raises(ValueError, match=r"label ids in \[0, 9\).*9 labels.*got values in \[0, 12\]"):
        model(**inputs, labels=labels.masked_fill(labels == 1, 12))
    with pytest.raises(ValueError, match="expected input_ids or inputs_embeds"):
        model(attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match=r"expected one offset list per text \(1\), got 2"):
        model.batch_text_features([TEXT], [[(0, 1)], [(0, 1)]])
    with pytest.raises(ValueError, match=r"text 0: expected at most 1 tokens, got 2"):
        model.batch_text_features([TEXT], [[(0, 1), (1, 2)]], length=1)


def test_set_lexicon_checks_categories_and_entity_rows():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected a lexicon with categories \['Disease', 'Drug', 'Check'\].*got"):
        model.set_lexicon(TermLexicon([("乳腺癌", "Disease")]))
    with pytest.raises(ValueError, match=r"expected lexicon entity rows < 6 \(config.num_kg_entities\), got row 6"):
        model.set_lexicon(TermLexicon([("乳腺癌", "Disease", 6)], CATEGORIES))
    model.set_lexicon(None)
    assert model.lexicon is None and model.config.lexicon_sha256 is None


def test_return_dict_false_gives_a_tuple_as_transformers_models_do():
    model = tiny_model()
    inputs, labels = batch(model)
    output = model(**inputs, labels=labels)
    as_tuple = model(**inputs, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
    for got, expected in zip(as_tuple, (output.loss, output.logits, output.tag_mask)):
        torch.testing.assert_close(got, expected)
    model.config.return_dict = False
    logits, tag_mask = model(**inputs)
    torch.testing.assert_close(logits, output.logits)
    assert torch.equal(tag_mask, output.tag_mask)
    assert model.decode(**inputs) == model.crf.decode(output.logits, output.tag_mask)


def test_inputs_embeds_keep_special_tokens_outside_the_crf():
    """Without input_ids, [CLS], [SEP] and padding are recognised by their embeddings (they used to be tagged)."""
    model = tiny_model()
    inputs, labels = batch(model)
    embedded = {"inputs_embeds": model.get_input_embeddings()(inputs["input_ids"]), **inputs}
    del embedded["input_ids"]
    by_ids = model(**inputs, labels=labels)
    by_embeddings = model(**embedded, labels=labels)
    assert torch.equal(by_embeddings.tag_mask, by_ids.tag_mask)
    torch.testing.assert_close(by_embeddings.loss, by_ids.loss)
    assert model.decode(**embedded) == model.decode(**inputs)
