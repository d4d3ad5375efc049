"""Filtered link prediction (Bordes et al. 2013).

For a held-out triple every entity is ranked as the replacement of the tail (and, separately, of the head), after
removing the other entities that also form a known triple (train, valid or test). Ties count half ("realistic"
rank, as PyKEEN does), so a collapsed model that gives every entity the same distance scores the MRR of a random
ranking, never a perfect one. Queries are grouped by relation so that the projected entity table is computed once
per relation and the distances to all entities are one ``torch.cdist`` per batch.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .models import TranslationalModel

__all__ = ["evaluate_link_prediction", "known_answers"]


def known_answers(all_triples: torch.Tensor, num_entities: int, num_relations: int) -> tuple[dict, dict]:
    """``(head, relation) -> tails`` and ``(relation, tail) -> heads`` over every known triple, as tensors."""
    tails, heads = defaultdict(list), defaultdict(list)
    for head, relation, tail in all_triples.tolist():
        tails[head * num_relations + relation].append(tail)
        heads[relation * num_entities + tail].append(head)
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
    if triples.numel() == 0:
        raise ValueError("no triples to evaluate")
    was_training = model.training
    model.eval()
    num_entities, num_relations = model.entity.num_embeddings, model.relation.num_embeddings
    tails_of, heads_of = answers or known_answers(known, num_entities, num_relations)
    ranks: list[torch.Tensor] = []
    for relation in torch.unique(triples[:, 1]).tolist():
        rows = triples[triples[:, 1] == relation]
        table = model.entity_table(relation)  # (num_entities, k)
        vector = model.relation.weight[relation]
        for batch in rows.split(batch_size):
            heads, tails = batch[:, 0], batch[:, 2]
            for direction in ("tail", "head"):
                if direction == "tail":
                    query, target = table[heads] + vector, tails
                    filters = [tails_of[h * num_relations + relation] for h in heads.tolist()]
                else:
                    # ||h + r - t|| = ||h - (t - r)||: rank heads by their distance to t - r.
                    query, target = table[tails] - vector, heads
                    filters = [heads_of[relation * num_entities + t] for t in tails.tolist()]
                distances = torch.cdist(query.unsqueeze(0), table.unsqueeze(0), p=model.p_norm).squeeze(0)
                target_distance = distances.gather(1, target.unsqueeze(1))  # (batch, 1)
                # Filter every other known answer, then restore the target itself.
                row_index = torch.repeat_interleave(torch.arange(len(filters)), torch.tensor([len(f) for f in filters]))
                distances[row_index, torch.cat(filters)] = math.inf
                distances.scatter_(1, target.unsqueeze(1), target_distance)
                better = (distances < target_distance).sum(1)
                ties = (distances == target_distance).sum(1) - 1
                ranks.append(1 + better + ties / 2)
    rank = torch.cat(ranks).double()
    if was_training:
        model.train()
    return {
        "mrr": (1 / rank).mean().item(),
        "hits@1": (rank <= 1).double().mean().item(),
        "hits@3": (rank <= 3).double().mean().item(),
        "hits@10": (rank <= 10).double().mean().item(),
        "mean_rank": rank.mean().item(),
        "num_triples": int(triples.shape[0]),
    }
