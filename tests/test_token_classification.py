"""transformers' token-classification task on a CRF tagger: the clinical-ner entities in the standard output format,
never the argmax of the emissions, from a saved folder (a fresh process, trust_remote_code) or a model object."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification, TokenClassificationPipeline, pipeline
from transformers.pipelines.token_classification import AggregationStrategy
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling.pipeline_clinical_ner import (
    ClinicalNerPipeline,
    CrfTokenClassificationPipeline,
    save_for_hub,
)
from clinical_ner_zh.modeling.tagging import tags_to_spans

from .pipeline_helpers import TYPES, char_tokenizer, random_model, spans, wordpiece_tokenizer

hf_logging.set_verbosity_error()

# ASCII runs (WordPiece keeps them whole or splits them into pieces), spaces WordPiece drops, CRLF, emoji.
TEXTS = [
    "患者HER2阳性 ki67 20mg药物\r\n时间 2019年3月行左乳腺癌改良根治术结节\r\n\r\n  HER206化疗周期😀" * 3,
    "药物 时间\r\n",
    "",
]
STRATEGIES = ["simple", "first", "average", "max"]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return random_model(tokenizer, seed=5)


def test_model_object_gives_the_clinical_ner_entities(model, tokenizer):
    """pipeline(task, model=<model object>) needs no registration; "simple" gives the clinical-ner entities, and
    the word strategies never cut an ASCII run (one WordPiece word) between groups."""
    clinical = pipeline("clinical-ner", model=model, tokenizer=tokenizer, device=-1)
    assert type(clinical) is ClinicalNerPipeline
    expected = clinical(TEXTS, max_length=12, stride=3, batch_size=4)
    assert sum(map(len, expected)) > 10
    for task in ("token-classification", "ner"):
        for strategy in STRATEGIES:
            pipe = pipeline(task, model=model, tokenizer=tokenizer, device=-1, aggregation_strategy=strategy)
            assert type(pipe) is CrfTokenClassificationPipeline
            got = pipe(TEXTS, max_length=12, stride=3, batch_size=4)
            if strategy == "simple":
                assert [spans(r) for r in got] == [spans(r) for r in expected]
            for text, entities in zip(TEXTS, got):
                assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)
                if strategy != "simple":
                    assert not any(_inside_ascii_run(text, e["start"]) or _inside_ascii_run(text, e["end"])
                                   for e in entities)  # fmt: skip
                assert all(0 < e["score"] <= 1 and e["entity_group"] in TYPES for e in entities)
    simple = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="SIMPLE")
    got = simple(TEXTS, max_length=12, stride=3, batch_size=1)
    assert [e["score"] for r in got for e in r] == pytest.approx([e["score"] for r in expected for e in r])


def test_character_tokenizer_every_strategy_gives_the_clinical_ner_entities():
    """With the character tokenizer each token is a word: every strategy is "simple", in BIOES as in BIO."""
    tokenizer = char_tokenizer()
    model = random_model(tokenizer, seed=1, scheme="BIOES")
    expected = ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1)(TEXTS, max_length=10, stride=2)
    assert sum(map(len, expected)) > 10
    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, device=-1)
    for strategy in STRATEGIES:
        got = pipe(TEXTS, max_length=10, stride=2, batch_size=3, aggregation_strategy=strategy)
        assert [spans(r) for r in got] == [spans(r) for r in expected], strategy
    tokens = pipe(TEXTS[1], max_length=10, stride=2, ignore_labels=[])  # one token per character, CRLF too
    assert [e["start"] for e in tokens] == list(range(len(TEXTS[1])))
    assert tags_to_spans([e["entity"] for e in tokens], "BIOES") == spans(expected[1])


def _inside_ascii_run(text: str, position: int) -> bool:
    pair = text[position - 1 : position + 1] if position > 0 else ""
    return len(pair) == 2 and pair.isascii() and pair.isalnum()


def test_other_models_keep_the_standard_pipeline(tokenizer):
    bert = BertForTokenClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=37))  # fmt: skip
    assert type(pipeline("token-classification", model=bert, tokenizer=tokenizer)) is TokenClassificationPipeline
    with pytest.raises(ValueError, match="needs a CRF tagger"):
        pipeline("clinical-ner", model=bert, tokenizer=tokenizer)


def test_none_gives_each_token_its_viterbi_label_and_marginal(model, tokenizer):
    """One window: each token's entity is the CRF's Viterbi label, its score that label's marginal probability,
    index its position in the tokenized text; "O" tokens are left out unless ignore_labels says otherwise."""
    text = TEXTS[0][:60]
    inputs = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")[0].tolist()
    (path,) = model.decode(**inputs)
    marginals = model.marginals(**inputs)[0]
    labels = [model.config.id2label[i] for i in path]
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer)
    every = pipe(text, ignore_labels=[])
    assert [e["entity"] for e in every] == labels
    assert [e["index"] for e in every] == list(range(1, len(labels) + 1))
    assert [e["word"] for e in every] == tokens[1:-1]
    assert [(e["start"], e["end"]) for e in every] == [tuple(o) for o in offsets[1:-1]]
    expected = [float(marginals[i + 1, label]) for i, label in enumerate(path)]
    assert [e["score"] for e in every] == pytest.approx(expected, abs=1e-6)
    assert pipe(text) == [e for e in every if e["entity"] != "O"]
    assert tags_to_spans(labels) and spans(pipe(text, aggregation_strategy="simple")) == [
        (offsets[s + 1][0], offsets[e][1], label) for s, e, label in tags_to_spans(labels)
    ]


def _outputs(pipe, text, path, marginals):
    """What _forward returns for one window of ``text``, with a decoded path and marginals chosen by hand."""
    (inputs,) = pipe.preprocess(text, max_length=512)
    label_ids = {label: index for index, label in pipe.id2label.items()}
    labels = torch.tensor([[-1, *(label_ids[label] for label in path), -1]])
    table = torch.zeros(1, len(path) + 2, len(label_ids))
    for position, row in enumerate(marginals, start=1):
        for label, value in row.items():
            table[0, position, label_ids[label]] = value
    probabilities = table.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return [{"labels": labels, "probabilities": probabilities, "marginals": table, "window": inputs["window"]}]


def test_word_strategies_choose_one_label_per_word(model, tokenizer):
    """Words whose pieces the CRF labelled differently: "first" takes the first piece's label, "max" the most
    probable piece's, "average" the label with the highest mean marginal; "simple" groups the pieces as labelled."""
    pipe = CrfTokenClassificationPipeline(model=model, tokenizer=tokenizer, device=-1)
    text = "HER206 药物\r\nHER20"
    assert tokenizer.tokenize(text) == ["her2", "##0", "##6", "药", "物", "her2", "##0"]
    path = ["B-Time", "O", "B-Time", "B-Drug", "I-Drug", "O", "B-Drug"]
    marginals = [
        {"B-Time": 0.6, "O": 0.4},
        {"O": 0.95, "B-Time": 0.05},
        {"B-Time": 0.9, "O": 0.1},
        {"B-Drug": 0.8, "O": 0.2},
        {"I-Drug": 0.7, "O": 0.3},
        {"O": 0.55, "B-Drug": 0.45},
        {"B-Drug": 0.9, "O": 0.1},
    ]
    outputs = _outputs(pipe, text, path, marginals)

    def run(strategy, **kwargs):
        return [
            (e["word"], e["entity_group"], pytest.approx(e["score"]))
            for e in pipe.postprocess(outputs, AggregationStrategy(strategy), **kwargs)
        ]

    drug = ("药物", "Drug", 0.75)
    assert run("simple") == [("HER2", "Time", 0.6), ("6", "Time", 0.9), drug, ("0", "Drug", 0.9)]
    assert run("first") == [("HER206", "Time", 0.6), drug]
    assert run("max") == [drug, ("HER20", "Drug", 0.9)]
    assert run("average") == [("HER206", "Time", (0.6 + 0.05 + 0.9) / 3), drug, ("HER20", "Drug", 0.675)]
    assert run("first", ignore_labels=["Time", "O"]) == [drug]
    assert [w for w, label, _ in run("first", ignore_labels=[])] == ["HER206", "药物", "HER20"]
    assert [label for w, label, _ in run("first", ignore_labels=[])] == ["Time", "Drug", "O"]
    none = pipe.postprocess(outputs, AggregationStrategy.NONE)
    assert [(e["word"], e["entity"], e["index"]) for e in none] == [
        ("her2", "B-Time", 1),
        ("##6", "B-Time", 3),
        ("药", "B-Drug", 4),
        ("物", "I-Drug", 5),
        ("##0", "B-Drug", 7),
    ]


def test_saved_folder_serves_token_classification_in_a_fresh_process(model, tokenizer, tmp_path, run_isolated):
    """The folder's config.json maps token-classification and ner to the CRF pipeline: nothing to import or register,
    and a model object loaded from the folder works with either task too."""
    save_for_hub(model, tokenizer, tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["custom_pipelines"]["token-classification"]["impl"] == (
        "pipeline_clinical_ner.CrfTokenClassificationPipeline"
    )
    moved = tmp_path / "moved" / "model"
    moved.parent.mkdir()
    shutil.move(tmp_path / "saved", moved)
    call = dict(max_length=12, stride=3, batch_size=4)
    expected = ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1)(TEXTS, **call)
    output = run_isolated(f"""
        import json
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        folder, texts, call = {str(moved)!r}, {TEXTS!r}, {call!r}
        results = {{}}
        for task in ("token-classification", "ner"):
            pipe = pipeline(task, model=folder, trust_remote_code=True, device=-1, aggregation_strategy="simple")
            assert type(pipe).__name__ == "CrfTokenClassificationPipeline", type(pipe)
            results[task] = pipe(texts, **call)
        model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        results["object"] = pipeline("token-classification", model=model, tokenizer=tokenizer,
                                     aggregation_strategy="simple")(texts, **call)
        results["clinical-ner object"] = pipeline("clinical-ner", model=model, tokenizer=tokenizer)(texts, **call)
        print(json.dumps(results))
    """)
    results = json.loads(output.strip().splitlines()[-1])
    for name, got in results.items():
        assert [spans(r) for r in got] == [spans(r) for r in expected], name
        assert [e["score"] for r in got for e in r] == pytest.approx([e["score"] for r in expected for e in r])
