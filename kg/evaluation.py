"""Filtered link prediction (Bordes et al. 2013).

For a held-out triple every entity is ranked as the replacement of the tail (and, separately, of the head), after
removing the other entities that also form a known triple (train, valid or test). Ties count half ("realistic"
rank, as PyKEEN does), so a collapsed model that gives every entity the same distance scores the MRR of a random
ranking, never a perfect one. Queries are grouped by relation so that the projected entity table is computed once
per relation and the distances to all entities are one ``torch.cdist`` per batch.

:func:`relation_popularity_baseline` ranks the same candidates by how often each entity fills the slot of the
relation in the training triples, filtered and with ties counted the same way: the score an embedding must beat.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch

from .models import TranslationalModel

__all__ = ["evaluate_link_prediction", "known_answers", "relation_popularity_baseline"]


def known_answers(all_triples: torch.Tensor) -> tuple[dict, dict]:
    """``(head, relation) -> tails`` and ``(relation, tail) -> heads`` over every known triple, as tensors."""
    tails, heads = defaultdict(list), defaultdict(list)
    for head, relation, tail in all_triples.tolist():
        tails[head, relation].append(tail)
        heads[relation, tail].append(head)
    return (
        {key: torch.tensor(value) for key, value in tails.items()},
        {key: torch.tensor(value) for key, value in heads.items()},
    )


@torch.no_grad()
def evaluate_link_prediction(
    model: TranslationalModel,
    triples: torch.Tensor,
    known: torch.Tensor,
    *,
    batch_size: int = 256,
    answers: tuple[dict, dict] | None = None,
) -> dict[str, float]:
    """Filtered MRR, Hits@1/3/10 and mean rank of ``triples``, head and tail prediction pooled.

    Args:
        model: a trained model.
        triples: ``(n, 3)`` id triples to score.
        known: every true triple (train + valid + test), removed from the candidates ("filtered" setting).
        answers: precomputed :func:`known_answers` of ``known`` (saves rebuilding it at every evaluation).

    Returns:
        ``{"mrr", "hits@1", "hits@3", "hits@10", "mean_rank", "num_triples"}``.
    """
    was_training = model.training
    model.eval()

    def distances_for(relation: int) -> Callable[[str, torch.Tensor], torch.Tensor]:
        table = model.entity_table(relation)  # (num_entities, k)
        vector = model.relation.weight[relation]

        def distances(direction: str, given: torch.Tensor) -> torch.Tensor:
            # ||h + r - t|| = ||h - (t - r)||: heads are ranked by their distance to t - r.
            query = table[given] + vector if direction == "tail" else table[given] - vector
            return torch.cdist(query.unsqueeze(0), table.unsqueeze(0), p=model.p_norm).squeeze(0)

        return distances

    metrics = _filtered_metrics(triples, distances_for, answers or known_answers(known), batch_size)
    if was_training:
        model.train()
    return metrics


def relation_popularity_baseline(
    train: torch.Tensor,
    triples: torch.Tensor,
    known: torch.Tensor,
    num_entities: int,
    num_relations: int,
    *,
    batch_size: int = 256,
    answers: tuple[dict, dict] | None = None,
) -> dict[str, float]:
    """The metrics of :func:`evaluate_link_prediction` for a ranking that ignores the given entity: the tails of
    ``(h, r, ?)`` ranked by how many ``train`` triples of ``r`` end in them, the heads of ``(?, r, t)`` by how many
    start from them. An embedding that does not beat it has learnt nothing beyond which entities each relation
    favours (on CMeKG, a few symptoms and drug classes take a large share of every relation)."""
    tail_counts = torch.zeros(num_relations, num_entities)
    head_counts = torch.zeros(num_relations, num_entities)
    ones = torch.ones(train.shape[0])
    tail_counts.index_put_((train[:, 1], train[:, 2]), ones, accumulate=True)
    head_counts.index_put_((train[:, 1], train[:, 0]), ones, accumulate=True)

    def distances_for(relation: int) -> Callable[[str, torch.Tensor], torch.Tensor]:
        def distances(direction: str, given: torch.Tensor) -> torch.Tensor:
            counts = tail_counts[relation] if direction == "tail" else head_counts[relation]
            return (-counts).repeat(given.shape[0], 1)  # more triples = closer

        return distances

    return _filtered_metrics(triples, distances_for, answers or known_answers(known), batch_size)


def _filtered_metrics(
    triples: torch.Tensor,
    distances_for: Callable[[int], Callable[[str, torch.Tensor], torch.Tensor]],
    answers: tuple[dict, dict],
    batch_size: int,
) -> dict[str, float]:
    """Filtered ranks of the tail and the head of every triple, pooled into MRR, Hits@k and mean rank.

    ``distances_for(relation)`` gives ``distances(direction, given)``: for ``direction`` "tail", the distance of
    every entity as the tail of ``(given[i], relation, ?)``, shape ``(len(given), num_entities)``, a fresh tensor
    (it is modified in place); for "head", as the head of ``(?, relation, given[i])``.
    """
    if triples.numel() == 0:
        raise ValueError("no triples to evaluate")
    tails_of, heads_of = answers
    ranks: list[torch.Tensor] = []
    for relation in torch.unique(triples[:, 1]).tolist():
        distances_of = distances_for(relation)
        for batch in triples[triples[:, 1] == relation].split(batch_size):
            heads, tails = batch[:, 0], batch[:, 2]
            for direction, given, target in (("tail", heads, tails), ("head", tails, heads)):
                if direction == "tail":
                    filters = [tails_of[(h, relation)] for h in heads.tolist()]
                else:
                    filters = [heads_of[(relation, t)] for t in tails.tolist()]
                distances = distances_of(direction, given)  # (batch, num_entities)
                target_distance = distances.gather(1, target.unsqueeze(1))  # (batch, 1)
                # Filter every other known answer, then restore the target itself.
                row_index = torch.repeat_interleave(torch.arange(len(filters)), torch.tensor([len(f) for f in filters]))
                distances[row_index, torch.cat(filters)] = math.inf
                distances.scatter_(1, target.unsqueeze(1), target_distance)
                better = (distances < target_distance).sum(1)
                ties = (distances == target_distance).sum(1) - 1
                ranks.append(1 + better + ties / 2)
    rank = torch.cat(ranks).double()
    return {
        "mrr": (1 / rank).mean().item(),
        "hits@1": (rank <= 1).double().mean().item(),
        "hits@3": (rank <= 3).double().mean().item(),
        "hits@10": (rank <= 10).double().mean().item(),
        "mean_rank": rank.mean().item(),
        "num_triples": int(triples.shape[0]),
    }
