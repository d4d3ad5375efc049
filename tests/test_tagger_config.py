"""The tagger configs as transformers' own: loading one does none of our torch work, and the keyword arguments
given to from_pretrained go through the same checks and derived fields as the constructor's; one model base."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig
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
