"""Mention replacement keeps every entity, its label and offsets consistent, and the text around mentions."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from clinical_ner_zh.datasets_scripts.augment import augment_records, mention_pool, replace_mentions
from clinical_ner_zh.datasets_scripts.schema import to_dataset
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records

from .helpers import ccks2020_records


def _outside(record):
    """The text between entities, as a list of pieces (meaningful when no entities overlap)."""
    pieces, cursor = [], 0
    for entity in sorted(record["entities"], key=lambda e: e["start"]):
        pieces.append(record["text"][cursor : entity["start"]])
        cursor = entity["end"]
    return [*pieces, record["text"][cursor:]]


@st.composite
def records(draw):
    text = "".join(draw(st.lists(st.sampled_from(list("患者乳腺结节化疗阴性阳，。 ")), max_size=60)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))))
    entities = [
        {"start": a, "end": b, "label": draw(st.sampled_from(["DIS", "ANAT"])), "text": text[a:b]}
        for a, b in zip(cuts[::2], cuts[1::2])
        if a < b
    ]
    return {"id": "r", "text": text, "entities": entities}


POOL = {"DIS": ["胃癌", "慢性阻塞性肺疾病", "痛"], "ANAT": ["双侧乳腺", "肝"]}


@settings(max_examples=100, deadline=None)
@given(record=records(), share=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 100))
def test_replacement_keeps_entities_and_context(record, share, seed):
    new = replace_mentions(record, POOL, share, random.Random(seed))
    assert [e["label"] for e in new["entities"]] == [e["label"] for e in record["entities"]]
    for entity in new["entities"]:
        assert new["text"][entity["start"] : entity["end"]] == entity["text"]
    assert _outside(new) == _outside(record)
    if share == 0.0:
        assert new == record
    if share == 1.0:
        assert all(e["text"] in POOL[e["label"]] for e in new["entities"])


def test_overlapping_entities_are_kept():
    record = {
        "id": "r",
        "text": "左乳癌术后右肺结节",
        "entities": [
            {"start": 0, "end": 3, "label": "DIS", "text": "左乳癌"},
            {"start": 1, "end": 2, "label": "ANAT", "text": "乳"},
            {"start": 5, "end": 9, "label": "DIS", "text": "右肺结节"},
        ],
    }
    new = replace_mentions(record, POOL, 1.0, random.Random(0))
    assert [e["text"] for e in new["entities"]][:2] == ["左乳癌", "乳"]
    assert new["entities"][2]["text"] in POOL["DIS"] and new["text"].startswith("左乳癌术后")
    # Nested in a longer entity that is not adjacent in sorted order: still never replaced.
    record["entities"].insert(1, {"start": 0, "end": 2, "label": "ANAT", "text": "左乳"})
    new = replace_mentions(record, POOL, 1.0, random.Random(0))
    assert [e["text"] for e in new["entities"]][:3] == ["左乳", "左乳癌", "乳"]


def test_augment_records_on_fixtures():
    for records in (simulated_breast_cancer_records(12, seed=3), ccks2020_records()):
        dataset = to_dataset(records)
        augmented = augment_records(dataset, copies=2, share=0.5, seed=0)
        assert len(augmented) == 3 * len(dataset)
        assert augmented["id"][len(dataset)] == f"{dataset['id'][0]}#aug1"
        pool = mention_pool(dataset)
        for record in augmented.select(range(len(dataset), len(augmented))):
            for entity in record["entities"]:
                assert record["text"][entity["start"] : entity["end"]] == entity["text"]
                assert entity["text"] in pool[entity["label"]]
        # Seeded: the same copies every time.
        assert augment_records(dataset, copies=2, share=0.5, seed=0)["text"] == augmented["text"]
