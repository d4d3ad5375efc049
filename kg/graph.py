"""Triples as integer ids (:class:`GraphIndex`) and the seeded train/valid/test split."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

__all__ = ["GraphIndex", "index_triples", "split_triples"]


@dataclass
class GraphIndex:
    """Triples as ids: ``triples[i] = (head_id, relation_id, tail_id)``; names sorted, row ``i`` = id ``i``."""

    entity_names: list[str]
    relation_names: list[str]
    triples: torch.Tensor  # shape: (num_triples, 3), int64

    @property
    def fingerprint(self) -> str:
        """A hash of the vocabularies and triples, to refuse resuming a checkpoint on other data."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.entity_names).encode())
        digest.update(b"\0")
        digest.update("\n".join(self.relation_names).encode())
        digest.update(self.triples.numpy().tobytes())
        return digest.hexdigest()


def index_triples(triples: Sequence[tuple[str, str, str]]) -> GraphIndex:
    """Map names to ids (sorted, so the index does not depend on the order of the input), deduplicating triples."""
    if not triples:
        raise ValueError("no triples to index")
    entity_names = sorted({name for h, _, t in triples for name in (h, t)})
    relation_names = sorted({r for _, r, _ in triples})
    entity_id = {name: i for i, name in enumerate(entity_names)}
    relation_id = {name: i for i, name in enumerate(relation_names)}
    rows = sorted({(entity_id[h], relation_id[r], entity_id[t]) for h, r, t in triples})
    return GraphIndex(entity_names, relation_names, torch.tensor(rows, dtype=torch.long))


def split_triples(
    triples: torch.Tensor, valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, torch.Tensor]:
    """Seeded split into train/valid/test such that every held-out entity and relation also occurs in train.

    Triples are visited in a seeded random order and held out only while both of their entities and their relation
    keep at least one other triple in train; the held-out sets may therefore come out slightly smaller than asked
    for on very sparse graphs (a warning says so).
    """
    num_triples = triples.shape[0]
    wanted_valid = round(num_triples * valid_fraction)
    wanted_test = round(num_triples * test_fraction)
    order = torch.randperm(num_triples, generator=torch.Generator().manual_seed(seed)).tolist()
    entity_degree = torch.bincount(triples[:, [0, 2]].reshape(-1)).tolist()
    relation_count = torch.bincount(triples[:, 1]).tolist()
    held_out: list[int] = []
    for index in order:
        if len(held_out) >= wanted_valid + wanted_test:
            break
        head, relation, tail = triples[index].tolist()
        # A self-loop counts twice in the degree, so it needs two spare occurrences.
        spare = 2 if head == tail else 1
        if entity_degree[head] > spare and entity_degree[tail] > spare and relation_count[relation] > 1:
            entity_degree[head] -= 1
            entity_degree[tail] -= 1
            relation_count[relation] -= 1
            held_out.append(index)
    if len(held_out) < wanted_valid + wanted_test:
        logger.warning(
            "only %d of %d requested held-out triples keep their entities in train",
            len(held_out),
            wanted_valid + wanted_test,
        )
    wanted_valid = min(wanted_valid, len(held_out) * wanted_valid // max(1, wanted_valid + wanted_test))
    valid = torch.tensor(sorted(held_out[:wanted_valid]), dtype=torch.long)
    test = torch.tensor(sorted(held_out[wanted_valid:]), dtype=torch.long)
    train_mask = torch.ones(num_triples, dtype=torch.bool)
    train_mask[valid] = False
    train_mask[test] = False
    return {"train": triples[train_mask], "valid": triples[valid], "test": triples[test]}
