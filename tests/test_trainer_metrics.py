"""transformers' Trainer on a CRF tagger: -100 on word pieces leaves them out of the CRF, and the README example
(first-piece labels on a WordPiece tokenizer) reports strict entity scores decoded with the CRF."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from clinical_ner_zh.datasets_scripts import build_wordpiece_tokenizer
from clinical_ner_zh.metrics import score_entities
from clinical_ner_zh.modeling.tagging import tags_to_spans

from .conftest import TINY_BERT
from .pipeline_helpers import random_model, wordpiece_tokenizer

hf_logging.set_verbosity_error()

README = Path(__file__).resolve().parents[1] / "README.md"


def test_minus_100_on_word_pieces_leaves_them_out_of_the_crf():
    """The loss with -100 on some tokens is the loss with those tokens marked special, and they leave the tag mask."""
    tokenizer = wordpiece_tokenizer()
    model = random_model(tokenizer, seed=2)
    encoded = tokenizer(["HER206 药物时间", "her20 ki67 药"], padding=True, return_tensors="pt")
    holes = torch.zeros_like(encoded["input_ids"], dtype=torch.bool)
    holes[:, 2:4] = True  # "##0", "##6" / "##0", "ki67"
    special = torch.isin(encoded["input_ids"], torch.tensor(model.config.special_token_ids))
    labels = torch.zeros_like(encoded["input_ids"])
    labels[:, 1], labels[:, 4] = 1, 2  # B-Drug, then I-Drug continuing it across the holes
    labels = labels.masked_fill(special, -100)
    with_holes = model(**encoded, labels=labels.masked_fill(holes, -100))
    as_special = model(**encoded, labels=labels.masked_fill(holes, 0), special_tokens_mask=(special | holes).long())
    assert with_holes.loss.item() == pytest.approx(as_special.loss.item(), rel=1e-6)
    assert torch.equal(with_holes.tag_mask, as_special.tag_mask) and not with_holes.tag_mask[holes].any()
    with_holes.loss.backward()


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    return re.search(r"<!-- trainer example[^>]*-->\n```python\n(.*?)```", text, re.S).group(1)


def test_readme_trainer_example_reports_the_crf_entity_scores(tmp_path, monkeypatch):
    """The README example, on a tiny WordPiece BERT whose vocabulary splits the ASCII runs into pieces, reports
    eval_precision/recall/f1 equal to score_entities on the CRF-decoded words."""
    encoder = tmp_path / "encoder"
    chars = "年月口服来曲唑阳性，予妥珠单抗复查" + "0123456789.HERmg"
    tokenizer = build_wordpiece_tokenizer([" ".join(chars)])  # single characters: "HER2" -> h ##e ##r ##2
    tokenizer.save_pretrained(encoder)
    torch.manual_seed(0)
    BertModel(BertConfig(**{**TINY_BERT, "vocab_size": len(tokenizer)})).save_pretrained(encoder)
    code = _readme_example()
    for line in ('encoder = "bert-base-chinese"', 'output_dir = "outputs/trainer"'):
        assert line in code
    code = code.replace('"bert-base-chinese"', repr(str(encoder))).replace(
        '"outputs/trainer"', repr(str(tmp_path / "out"))
    )
    code = code.replace(
        "TrainingArguments(output_dir,", "TrainingArguments(output_dir, use_cpu=True, report_to='none',"
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # the README's own example
    scores, model, dataset, records = (namespace[k] for k in ("scores", "model", "dataset", "records"))

    pieces = [sum(label == -100 for label in row["labels"]) - 2 for row in dataset]  # minus [CLS], [SEP]
    assert all(n > 0 for n in pieces)  # words split into pieces, labelled -100
    collator = namespace["trainer"].data_collator
    model.eval()
    gold, predicted = [], []
    for row, record in zip(dataset, records):
        batch = collator([row])
        with torch.no_grad():
            output = model(**batch)
        (path,) = model.crf.decode(output.logits, output.tag_mask)
        assert len(path) == len(record["tokens"])  # one decoded label per word
        predicted.append(tags_to_spans([model.config.id2label[i] for i in path]))
        gold.append(tags_to_spans(record["ner_tags"]))
    micro = score_entities(gold, predicted).micro
    assert micro.predicted > 0
    assert scores["eval_precision"] == pytest.approx(micro.precision)
    assert scores["eval_recall"] == pytest.approx(micro.recall)
    assert scores["eval_f1"] == pytest.approx(micro.f1)
