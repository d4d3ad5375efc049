"""The tagger configs as transformers' own: loading one does none of our torch work, and the keyword arguments
given to from_pretrained go through the same checks and derived fields as the constructor's; one model base."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, BertConfig, BertForTokenClassification, BertModel
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling import (
    ChCancerBertConfig,
    ChCancerBertForCrfTagging,
    ClinicalBertKgConfig,
    ClinicalBertKgForCrfTagging,
)
from clinical_ner_zh.modeling.tagging import build_label_list

from .conftest import TINY_BERT

hf_logging.set_verbosity_error()

CONFIGS = {"chcancerbert": ChCancerBertConfig, "clinicalbert-kg": ClinicalBertKgConfig}
MODELS = {"chcancerbert": ChCancerBertForCrfTagging, "clinicalbert-kg": ClinicalBertKgForCrfTagging}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_saved_config_loads_without_our_torch_modules_or_the_pipelines(tmp_path, run_isolated, family):
    """transformers' own config classes import torch; ours add nothing from the model side: not the CRF, the
    layers, the model files, nor the pipeline module and transformers.pipelines."""
    config_class = CONFIGS[family]
    labels = build_label_list(["Drug"], config_class().label_scheme)
    config_class(**TINY_BERT, id2label=dict(enumerate(labels))).save_pretrained(tmp_path / "saved")
    output = run_isolated(
        f"""
        import json, sys
        from transformers import AutoConfig
        before = set(sys.modules)
        config = AutoConfig.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
        added = sorted(set(sys.modules) - before)
        print(json.dumps([type(config).__name__, config.hidden_size, added]))
        """
    )
    name, hidden_size, added = json.loads(output.strip().splitlines()[-1])
    assert (name, hidden_size) == (config_class.__name__, TINY_BERT["hidden_size"])
    ours = [module.rsplit(".", 1)[-1] for module in added if module.startswith("transformers_modules.")]
    assert not [m for m in ours if m in ("crf", "crf_tagger", "layers", "pipeline_clinical_ner") or "modeling" in m]
    assert not [m for m in added if m.startswith(("transformers.pipelines", "torch"))]
    assert "configuration_crf_tagger" in ours


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_from_pretrained_keywords_pass_through_the_config_checks_without_a_model(tmp_path, family):
    config_class = CONFIGS[family]
    scheme = config_class().label_scheme
    config_class(**TINY_BERT, id2label=dict(enumerate(build_label_list(["Drug"], scheme)))).save_pretrained(tmp_path)
    labels = dict(enumerate(build_label_list(["Disease", "Drug"], scheme)))
    config = AutoConfig.from_pretrained(tmp_path, trust_remote_code=True, id2label=labels, lstm_hidden_size=16)
    assert config.label2id == {label: index for index, label in labels.items()}
    assert config.lstm_hidden_size == 16
    with pytest.raises(ValueError, match="head_dropout must be in"):
        AutoConfig.from_pretrained(tmp_path, trust_remote_code=True, head_dropout=1.0)


def test_both_taggers_share_one_pretrained_model_base():
    from clinical_ner_zh.modeling.crf_tagger import CrfTaggerPreTrainedModel

    for model_class in (ChCancerBertForCrfTagging, ClinicalBertKgForCrfTagging):
        assert model_class.__bases__ == (CrfTaggerPreTrainedModel,)


def dropouts(module: torch.nn.Module) -> dict[str, float]:
    return {name: layer.p for name, layer in module.named_modules() if isinstance(layer, torch.nn.Dropout)}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_encoder_keywords_to_from_pretrained_reach_the_encoder(tmp_path, family):
    """transformers sets from_pretrained(folder, hidden_dropout_prob=0.3) on a flat BertConfig; on a tagger the
    encoder's fields go to its encoder sub-config (and so to its dropout layers), for a folder saved with the
    sub-config and one saved with flat encoder fields (a plain BERT checkpoint's config.json)."""
    config_class, model_class = CONFIGS[family], MODELS[family]
    labels = dict(enumerate(build_label_list(["Drug"], config_class().label_scheme)))
    model_class(config_class(**TINY_BERT, id2label=labels)).save_pretrained(tmp_path / "tagger")
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(tmp_path / "bert")
    for folder in ("tagger", "bert"):
        model = model_class.from_pretrained(
            tmp_path / folder, id2label=labels, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2
        )
        encoder = model.config.encoder
        assert (encoder.hidden_dropout_prob, encoder.attention_probs_dropout_prob) == (0.3, 0.2), folder
        assert "hidden_dropout_prob" not in model.config.to_diff_dict(), folder
        expected = {name: 0.2 if ".attention.self." in name else 0.3 for name in dropouts(model.base_model)}
        assert dropouts(model.base_model) == expected and len(expected) == 7, folder
    config = AutoConfig.from_pretrained(tmp_path / "tagger", trust_remote_code=True, hidden_dropout_prob=0.3)
    assert config.encoder.hidden_dropout_prob == 0.3


def test_encoder_keywords_are_the_fields_of_the_encoders_own_type(tmp_path):
    """An XLNet encoder's dropout is `dropout`, a field BERT does not have: it reaches the encoder too."""
    from transformers import XLNetConfig

    xlnet = XLNetConfig(vocab_size=30, d_model=32, n_layer=1, n_head=2, d_inner=64).to_dict()
    labels = dict(enumerate(build_label_list(["Drug"], "BIO")))
    ChCancerBertConfig(encoder=xlnet, id2label=labels).save_pretrained(tmp_path)
    config, unused = AutoConfig.from_pretrained(
        tmp_path, trust_remote_code=True, dropout=0.3, return_unused_kwargs=True
    )
    assert (config.encoder.model_type, config.encoder.dropout, unused) == ("xlnet", 0.3, {})


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_an_unknown_keyword_to_from_pretrained_fares_as_with_a_transformers_model(tmp_path, family):
    """Refused by the model's __init__, left unused by a config alone: what BertForTokenClassification does."""
    config_class, model_class = CONFIGS[family], MODELS[family]
    labels = dict(enumerate(build_label_list(["Drug"], config_class().label_scheme)))
    model_class(config_class(**TINY_BERT, id2label=labels)).save_pretrained(tmp_path / "tagger")
    BertForTokenClassification(BertConfig(**TINY_BERT)).save_pretrained(tmp_path / "bert")
    for folder, loader in (("tagger", model_class), ("bert", BertForTokenClassification)):
        with pytest.raises(TypeError, match=r"__init__\(\) got an unexpected keyword argument 'hidden_dropout'"):
            loader.from_pretrained(tmp_path / folder, hidden_dropout=0.3)
        config, unused = AutoConfig.from_pretrained(
            tmp_path / folder, trust_remote_code=True, hidden_dropout=0.3, return_unused_kwargs=True
        )
        assert unused == {"hidden_dropout": 0.3} and not hasattr(config, "hidden_dropout"), folder
