"""Training and the pipeline cut a text into the same windows: both use modeling.tagging.WindowPlanner."""

from __future__ import annotations

from clinical_ner_zh.datasets_scripts.encoding import WindowEncoder
from clinical_ner_zh.modeling.pipeline_clinical_ner import ClinicalNerPipeline
from clinical_ner_zh.modeling.tagging import TokenLayout, WindowPlanner

from .pipeline_helpers import char_tokenizer, hand_set_model


def test_planner_wraps_each_window_and_slices_features():
    planner = WindowPlanner(window=4, stride=1, layout=TokenLayout(prefix=(101,), suffix=(102,), suffix_type_ids=(2,)))
    ids, feature = list(range(10, 20)), list(range(20, 30))
    assert planner.plan(10) == [(0, 4), (3, 7), (6, 10)]
    assert planner.inputs(ids, 3, 7, {"position": feature}) == {
        "input_ids": [101, 13, 14, 15, 16, 102],
        "attention_mask": [1] * 6,
        "token_type_ids": [0, 0, 0, 0, 0, 2],
        "special_tokens_mask": [1, 0, 0, 0, 0, 1],
        "position": [0, 23, 24, 25, 26, 0],
    }
    assert WindowPlanner(window=3, stride=0).inputs(ids, 0, 2) == {
        "input_ids": [10, 11],
        "attention_mask": [1, 1],
        "token_type_ids": [0, 0],
        "special_tokens_mask": [0, 0],
    }


def test_training_windows_are_the_pipeline_windows():
    tokenizer = char_tokenizer()
    text = "患者于时间行药物化疗，结节阳性。" * 5
    encoder = WindowEncoder(tokenizer, ["Drug", "Time"], max_length=12, stride=3)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    training = encoder.encode_record(text, [], encoded["input_ids"], encoded["offset_mapping"], "r")
    pipe = ClinicalNerPipeline(model=hand_set_model(tokenizer), tokenizer=tokenizer, device=-1)
    windows = list(pipe.preprocess(text, max_length=12, stride=3))
    assert len(windows) == len(training) > 3
    for ours, theirs in zip(windows, training):
        assert ours["input_ids"][0].tolist() == theirs["input_ids"]
        assert ours["attention_mask"][0].tolist() == theirs["attention_mask"]
        assert ours["token_type_ids"][0].tolist() == theirs["token_type_ids"] == [0] * len(theirs["input_ids"])
        assert (ours["window"].start, ours["window"].end - ours["window"].start) == (
            theirs["window_start"],
            len(theirs["input_ids"]) - 2,
        )
