"""Mention replacement for small training sets (Dai and Adel, COLING 2020): extra training records in which some
entity mentions are swapped for other mentions of the same type from the training set, so that the tagger learns
an entity from its context as well as from its characters. The text around the mentions is kept; every entity's
offsets are recomputed. Entities that overlap another entity are never replaced (they keep their text).
"""

from __future__ import annotations

import random
from collections import defaultdict

import datasets

from .schema import FEATURES, Record


def mention_pool(records) -> dict[str, list[str]]:
    """The distinct mention texts of each entity type, sorted (the same pool for the same records)."""
    pool = defaultdict(set)
    for record in records:
        for entity in record["entities"]:
            pool[entity["label"]].add(record["text"][entity["start"] : entity["end"]])
    return {label: sorted(mentions) for label, mentions in pool.items()}


def replace_mentions(record: Record, pool: dict[str, list[str]], share: float, rng: random.Random) -> Record:
    """A copy of ``record`` where each entity that overlaps no other is, with probability ``share``, given another
    mention of its type drawn from ``pool``."""
    entities = sorted(record["entities"], key=lambda e: (e["start"], e["end"]))
    overlapping = set()
    for i, entity in enumerate(entities):
        for j in range(i + 1, len(entities)):
            if entities[j]["start"] >= entity["end"]:
                break
            overlapping.update((i, j))
    text, pieces, cursor, shift, out = record["text"], [], 0, 0, []
    for i, entity in enumerate(entities):
        start, end = entity["start"] + shift, entity["end"] + shift
        if i not in overlapping and pool.get(entity["label"]) and rng.random() < share:
            mention = rng.choice(pool[entity["label"]])
            pieces += [text[cursor : entity["start"]], mention]
            cursor = entity["end"]
            end = start + len(mention)
            shift += len(mention) - (entity["end"] - entity["start"])
        out.append({**entity, "start": start, "end": end})
    pieces.append(text[cursor:])
    new_text = "".join(pieces)
    return {**record, "text": new_text, "entities": [{**e, "text": new_text[e["start"] : e["end"]]} for e in out]}


def augment_records(dataset: datasets.Dataset, copies: int, share: float, seed: int) -> datasets.Dataset:
    """``dataset`` followed by ``copies`` mention-replaced copies of each of its records (ids ``ID#augK``)."""
    pool = mention_pool(dataset)
    rng = random.Random(seed)
    extra = [
        {**replace_mentions(record, pool, share, rng), "id": f"{record['id']}#aug{k}"}
        for k in range(1, copies + 1)
        for record in dataset
    ]
    return datasets.concatenate_datasets([dataset, datasets.Dataset.from_list(extra, features=FEATURES)])
