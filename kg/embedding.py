"""TransE, TransH and TransR knowledge-graph embeddings: training, filtered link prediction, saving.

The three models score a triple by a distance (lower = more plausible) between a translated head and a tail:

* TransE (Bordes et al., NeurIPS 2013): ``d = ||h + r - t||_p``; entity vectors are renormalised to unit L2
  norm after every step (Bordes et al., Algorithm 1);
* TransH (Wang et al., AAAI 2014): entities are projected onto a relation-specific hyperplane with unit normal
  ``w_r``: ``e⊥ = e - (w_r·e) w_r``, ``d = ||h⊥ + d_r - t⊥||_p``; constraints ``||e|| <= 1`` (enforced by
  projection after each step), ``||w_r|| = 1`` (by normalising in the forward pass) and the soft orthogonality
  penalty ``[(w_r·d_r)² / ||d_r||² - ε²]_+`` weighted by ``C``;
* TransR (Lin et al., AAAI 2015): entities are mapped into a relation space of size ``k`` by ``M_r`` (``k x d``,
  initialised to the identity as the paper does after TransE): ``d = ||M_r h + r - M_r t||_p``; constraints
  ``||e|| <= 1`` and ``||r|| <= 1`` (projection) and ``||M_r e|| <= 1`` (soft penalty ``[||M_r e||² - 1]_+``).

Training minimises the margin ranking loss ``[γ + d(pos) - d(neg)]_+`` over negatives made by replacing the head
or the tail of each training triple with a uniformly drawn entity; the side is chosen with probability 1/2
("uniform") or, per relation, with probability ``tph / (tph + hpt)`` of replacing the head ("bernoulli", Wang et
al. 2014 §3.3: one-to-many relations corrupt the head more often, which yields fewer false negatives).

All parameters are ``nn.Embedding(sparse=True)`` tables, so one step touches only the rows in the batch and the
optimiser (lazy Adam or Adagrad, :class:`SparseRowOptimizer`) updates only those; with batches of thousands of triples this trains CMeKG's 800,000
triples in seconds per epoch on two CPU cores.

Evaluation is filtered link prediction (Bordes et al. 2013): for a held-out triple every entity is ranked as the
replacement of the tail (and, separately, of the head), after removing the other entities that also form a known
triple (train, valid or test). Ties count half ("realistic" rank, as PyKEEN does), so a collapsed model that gives
every entity the same distance scores the MRR of a random ranking, never a perfect one. Queries are grouped by
relation so that the projected entity table is computed once per relation and the distances to all entities are one
``torch.cdist`` per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from cli_errors import UserError

from .io import Entity, read_entities, write_entities

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "GraphIndex",
    "KgeConfig",
    "KgeEmbeddings",
    "KgeResult",
    "SparseRowOptimizer",
    "TransE",
    "TransH",
    "TransR",
    "build_model",
    "evaluate_link_prediction",
    "index_triples",
    "load_kge",
    "save_kge",
    "split_triples",
    "train",
]

MODELS = ("transe", "transh", "transr")
CHECKPOINT_NAME = "checkpoint.pt"
EMBEDDINGS_NAME = "entity_embeddings.safetensors"
# Config fields that change the model, the data split or the randomness; a resumed run must agree on all of them.
_STRUCTURAL_FIELDS = (
    "model",
    "dim",
    "relation_dim",
    "p_norm",
    "negative_sampling",
    "num_negatives",
    "batch_size",
    "optimizer",
    "valid_fraction",
    "test_fraction",
    "seed",
)


class KgeConfigError(UserError, ValueError):
    """Settings that cannot train, or that differ from those of the checkpoint being resumed."""


@dataclass
class KgeConfig:
    """Hyper-parameters of :func:`train`; every field is validated in ``__post_init__``.

    Attributes:
        model: ``"transe"``, ``"transh"`` or ``"transr"``.
        dim: entity embedding size ``d``.
        relation_dim: TransR relation-space size ``k`` (default: ``dim``); ignored by the other models.
        margin: ``γ`` of the margin ranking loss.
        p_norm: 1 (L1) or 2 (L2) distance.
        negative_sampling: ``"uniform"`` or ``"bernoulli"`` choice of the corrupted side.
        num_negatives: negatives per positive triple.
        batch_size: positive triples per step.
        learning_rate: optimiser step size (0.003 was best of 0.01/0.003/0.001 for TransE on CMeKG with Adam).
        optimizer: ``"adam"`` or ``"adagrad"``, both lazy row-wise updates (:class:`SparseRowOptimizer`).
        epochs: passes over the training triples (a resumed run continues up to this number).
        max_minutes: stop after the first epoch that ends past this much training time, counted across resumes
            (None: no limit).
        constraint_weight: ``C``, weight of the soft constraints of TransH and TransR.
        orthogonality_epsilon: ``ε`` of TransH's orthogonality constraint.
        valid_fraction, test_fraction: held-out shares of the triples (every held-out entity and relation keeps
            at least one training triple).
        eval_triples: held-out triples scored per evaluation (a seeded sample; 0 or None: all of them).
        eval_every: validate every this many epochs (0: only at the end).
        target_mrr: stop as soon as the validation MRR reaches this value (None: never).
        eval_batch_size: queries ranked against all entities at once.
        seed: seeds the split, the initialisation, the batch order and the negatives.
    """

    model: str = "transe"
    dim: int = 100
    relation_dim: int | None = None
    margin: float = 1.0
    p_norm: int = 1
    negative_sampling: str = "bernoulli"
    num_negatives: int = 1
    batch_size: int = 8192
    learning_rate: float = 0.003
    optimizer: str = "adam"
    epochs: int = 50
    max_minutes: float | None = None
    constraint_weight: float = 0.25
    orthogonality_epsilon: float = 1e-3
    valid_fraction: float = 0.01
    test_fraction: float = 0.01
    eval_triples: int | None = 1000
    eval_every: int = 5
    target_mrr: float | None = None
    eval_batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise KgeConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.negative_sampling not in ("uniform", "bernoulli"):
            raise KgeConfigError(f"negative_sampling must be 'uniform' or 'bernoulli', got {self.negative_sampling!r}")
        if self.optimizer not in ("adam", "adagrad"):
            raise KgeConfigError(f"optimizer must be 'adam' or 'adagrad', got {self.optimizer!r}")
        if self.p_norm not in (1, 2):
            raise KgeConfigError(f"p_norm must be 1 or 2, got {self.p_norm!r}")
        for name in ("dim", "num_negatives", "batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise KgeConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.relation_dim is not None and self.relation_dim < 1:
            raise KgeConfigError(f"relation_dim must be a positive integer or None, got {self.relation_dim!r}")
        if self.epochs < 0 or self.eval_every < 0:
            raise KgeConfigError(f"epochs and eval_every must be >= 0, got {self.epochs!r} and {self.eval_every!r}")
        if self.margin <= 0 or self.learning_rate <= 0:
            raise KgeConfigError(
                f"margin and learning_rate must be > 0, got {self.margin!r} and {self.learning_rate!r}"
            )
        if self.constraint_weight < 0:
            raise KgeConfigError(f"constraint_weight must be >= 0, got {self.constraint_weight!r}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise KgeConfigError(f"{name} must be in [0, 0.5), got {getattr(self, name)!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise KgeConfigError(f"max_minutes must be > 0 or None, got {self.max_minutes!r}")

    @property
    def space_dim(self) -> int:
        """Size of the space where distances are measured (``k`` for TransR, ``d`` otherwise)."""
        return (self.relation_dim or self.dim) if self.model == "transr" else self.dim


# --------------------------------------------------------------------------------------------------------- data


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


def _head_probability(train: torch.Tensor, num_relations: int, strategy: str) -> torch.Tensor:
    """Per relation, the probability of corrupting the head (Wang et al. 2014 §3.3 for "bernoulli")."""
    if strategy == "uniform":
        return torch.full((num_relations,), 0.5)
    probability = torch.full((num_relations,), 0.5)
    for relation in range(num_relations):
        rows = train[train[:, 1] == relation]
        if rows.numel() == 0:
            continue
        # tph: average number of tails per distinct head; hpt: heads per distinct tail.
        tails_per_head = rows.shape[0] / torch.unique(rows[:, 0]).numel()
        heads_per_tail = rows.shape[0] / torch.unique(rows[:, 2]).numel()
        probability[relation] = tails_per_head / (tails_per_head + heads_per_tail)
    return probability


# ------------------------------------------------------------------------------------------------------- models


class TranslationalModel(nn.Module):
    """Shared parts: sparse entity and relation tables, distances, constraints.

    Subclasses define ``project(vectors, relation_ids)`` (entity vectors into the relation's space) and
    ``entity_table(relation_id)`` (all entities projected for one relation, for ranking).
    """

    def __init__(self, num_entities: int, num_relations: int, config: KgeConfig, generator: torch.Generator):
        super().__init__()
        self.p_norm = config.p_norm
        self.constraint_weight = config.constraint_weight
        self.entity = nn.Embedding(num_entities, config.dim, sparse=True)
        self.relation = nn.Embedding(num_relations, config.space_dim, sparse=True)
        # Bordes et al. 2013: uniform in ±6/sqrt(k), relations normalised once at initialisation.
        for table in (self.entity, self.relation):
            bound = 6 / math.sqrt(table.embedding_dim)
            nn.init.uniform_(table.weight, -bound, bound, generator=generator)
        with torch.no_grad():
            self.relation.weight.copy_(F.normalize(self.relation.weight, dim=-1))
        self.constrain_entities(torch.arange(num_entities))

    def project(self, vectors: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        """Entity vectors ``(batch, m, d)`` into the space of each row's relation: ``(batch, m, k)``."""
        return vectors

    def relation_vectors(self, relation_ids: torch.Tensor) -> torch.Tensor:
        return self.relation(relation_ids)

    def distance_and_penalty(
        self, heads: torch.Tensor, relation_ids: torch.Tensor, tails: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances of ``(heads[i, j], relation_ids[i], tails[i, j])`` (heads, tails: ``(batch, m)``) and the
        soft-constraint term for the loss, sharing one projection of the batch's entities."""
        count = heads.shape[1]
        # One projection call for heads and tails together: TransR groups rows by relation once per batch.
        projected = self.project(self.entity(torch.cat([heads, tails], dim=1)), relation_ids)  # (batch, 2m, k)
        translated = projected[:, :count] + self.relation_vectors(relation_ids).unsqueeze(1)
        distances = torch.linalg.vector_norm(translated - projected[:, count:], ord=self.p_norm, dim=-1)  # (batch, m)
        return distances, self.penalty(projected, relation_ids)

    def distance(self, heads: torch.Tensor, relation_ids: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """Distances of ``(heads[i, j], relation_ids[i], tails[i, j])``; heads, tails: ``(batch, m)``."""
        return self.distance_and_penalty(heads, relation_ids, tails)[0]

    def penalty(self, projected: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        """Soft-constraint term added to the loss (0 for TransE); ``projected``: the batch's projected entities."""
        return projected.new_zeros(())

    @torch.no_grad()
    def constrain_entities(self, entity_ids: torch.Tensor) -> None:
        """Project the given entity rows back onto the feasible set (``||e|| <= 1``) after an optimiser step."""
        rows = self.entity.weight.index_select(0, entity_ids)
        self.entity.weight.index_copy_(0, entity_ids, rows / rows.norm(dim=-1, keepdim=True).clamp_min(1.0))

    @torch.no_grad()
    def constrain_relations(self, relation_ids: torch.Tensor) -> None:
        """Project relation parameters back onto their feasible set (nothing for TransE)."""

    @torch.no_grad()
    def entity_table(self, relation_id: int) -> torch.Tensor:
        """All entities in the space of relation ``relation_id``: ``(num_entities, k)``."""
        return self.entity.weight


class TransE(TranslationalModel):
    """``||h + r - t||_p`` with unit-norm entities (Bordes et al. 2013)."""

    @torch.no_grad()
    def constrain_entities(self, entity_ids: torch.Tensor) -> None:
        # Bordes et al. 2013, Algorithm 1: e <- e / ||e|| (exactly unit norm, not merely bounded).
        self.entity.weight.index_copy_(
            0, entity_ids, F.normalize(self.entity.weight.index_select(0, entity_ids), dim=-1)
        )


class TransH(TranslationalModel):
    """Translation on relation-specific hyperplanes (Wang et al. 2014)."""

    def __init__(self, num_entities: int, num_relations: int, config: KgeConfig, generator: torch.Generator):
        super().__init__(num_entities, num_relations, config, generator)
        self.epsilon = config.orthogonality_epsilon
        self.normal = nn.Embedding(num_relations, config.dim, sparse=True)
        bound = 6 / math.sqrt(config.dim)
        nn.init.uniform_(self.normal.weight, -bound, bound, generator=generator)
        self.constrain_relations(torch.arange(num_relations))

    def project(self, vectors: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        # Normalising in the forward pass keeps ||w_r|| = 1 exactly, as the paper requires.
        normal = F.normalize(self.normal(relation_ids), dim=-1).unsqueeze(1)  # (batch, 1, d)
        return vectors - (vectors * normal).sum(-1, keepdim=True) * normal

    def penalty(self, projected: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        # Wang et al. 2014, eq. 4: sum over relations of [(w_r . d_r)^2 / ||d_r||^2 - eps^2]_+ (||e|| <= 1 is
        # enforced by projection in constrain_entities instead of the paper's soft term).
        relation_ids = torch.unique(relation_ids)
        normal = F.normalize(self.normal(relation_ids), dim=-1)
        translation = self.relation(relation_ids)
        cosine_sq = (normal * translation).sum(-1) ** 2 / (translation * translation).sum(-1).clamp_min(1e-12)
        return self.constraint_weight * F.relu(cosine_sq - self.epsilon**2).sum()

    @torch.no_grad()
    def constrain_relations(self, relation_ids: torch.Tensor) -> None:
        self.normal.weight[relation_ids] = F.normalize(self.normal.weight[relation_ids], dim=-1)

    @torch.no_grad()
    def entity_table(self, relation_id: int) -> torch.Tensor:
        normal = F.normalize(self.normal.weight[relation_id], dim=-1)
        entities = self.entity.weight
        return entities - (entities @ normal).unsqueeze(-1) * normal


class TransR(TranslationalModel):
    """Entities mapped into a relation space by ``M_r`` (Lin et al. 2015)."""

    def __init__(self, num_entities: int, num_relations: int, config: KgeConfig, generator: torch.Generator):
        super().__init__(num_entities, num_relations, config, generator)
        self.dim = config.dim
        self.space_dim = config.space_dim
        self.matrix = nn.Embedding(num_relations, self.space_dim * self.dim, sparse=True)
        with torch.no_grad():
            # Identity start, as Lin et al. 2015 do ("initialize ... M_r as identity matrices").
            self.matrix.weight.copy_(torch.eye(self.space_dim, self.dim).reshape(1, -1).expand(num_relations, -1))

    def project(self, vectors: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        # Group rows by relation: gathering one k x d matrix per row would move batch * k * d floats (hundreds of
        # MB for CMeKG batches); a batch holds only a few dozen distinct relations.
        unique, inverse = torch.unique(relation_ids, return_inverse=True)
        matrices = self.matrix(unique).view(-1, self.space_dim, self.dim)  # (unique, k, d)
        order = torch.argsort(inverse)
        counts = torch.bincount(inverse, minlength=unique.numel()).tolist()
        pieces = torch.split(vectors[order], counts)
        projected = torch.cat([piece @ matrices[i].T for i, piece in enumerate(pieces)])  # (batch, m, k)
        return projected[torch.argsort(order)]

    def penalty(self, projected: torch.Tensor, relation_ids: torch.Tensor) -> torch.Tensor:
        # Lin et al. 2015: ||M_r h|| <= 1 and ||M_r t|| <= 1, as a soft hinge on the squared norms in the batch.
        return self.constraint_weight * F.relu((projected * projected).sum(-1) - 1).mean()

    @torch.no_grad()
    def constrain_relations(self, relation_ids: torch.Tensor) -> None:
        rows = self.relation.weight[relation_ids]
        self.relation.weight[relation_ids] = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1.0)

    @torch.no_grad()
    def entity_table(self, relation_id: int) -> torch.Tensor:
        matrix = self.matrix.weight[relation_id].view(self.space_dim, self.dim)
        return self.entity.weight @ matrix.T


def build_model(config: KgeConfig, num_entities: int, num_relations: int) -> TranslationalModel:
    """The model named by ``config.model``, initialised from ``config.seed``."""
    generator = torch.Generator().manual_seed(config.seed)
    model_class = {"transe": TransE, "transh": TransH, "transr": TransR}[config.model]
    return model_class(num_entities, num_relations, config, generator)


# --------------------------------------------------------------------------------------------------- evaluation


def _known_answers(all_triples: torch.Tensor, num_entities: int, num_relations: int) -> tuple[dict, dict]:
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
        answers: precomputed :func:`_known_answers` of ``known`` (saves rebuilding it at every evaluation).

    Returns:
        ``{"mrr", "hits@1", "hits@3", "hits@10", "mean_rank", "num_triples"}``.
    """
    if triples.numel() == 0:
        raise ValueError("no triples to evaluate")
    was_training = model.training
    model.eval()
    num_entities, num_relations = model.entity.num_embeddings, model.relation.num_embeddings
    tails_of, heads_of = answers or _known_answers(known, num_entities, num_relations)
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


# ----------------------------------------------------------------------------------------------------- training


@dataclass
class KgeResult:
    """What :func:`train` returns: the model, its vocabularies, test metrics and the per-epoch history."""

    model: TranslationalModel
    config: KgeConfig
    entity_names: list[str]
    relation_names: list[str]
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    train_seconds: float = 0.0
    triples_per_second: float = 0.0
    split_sizes: dict[str, int] = field(default_factory=dict)


def _sample(triples: torch.Tensor, count: int | None, seed: int) -> torch.Tensor:
    if not count or count >= triples.shape[0]:
        return triples
    keep = torch.randperm(triples.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    return triples[torch.sort(keep).values]


class SparseRowOptimizer(torch.optim.Optimizer):
    """Adam or Adagrad for ``nn.Embedding(sparse=True)`` tables that updates only the rows a step touched.

    ``torch.optim.SparseAdam`` spends most of a CMeKG step in generic sparse-tensor indexing (``sparse_mask``);
    this does the same "lazy" update with one coalesce, ``index_select`` and ``index_add_`` per table, about 4x
    faster at batch 8192. Adam's bias correction uses the global step count, as ``SparseAdam`` does.
    """

    def __init__(
        self,
        params,
        lr: float,
        method: str = "adam",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if method not in ("adam", "adagrad"):
            raise ValueError(f"method must be 'adam' or 'adagrad', got {method!r}")
        super().__init__(params, {"lr": lr, "method": method, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise ValueError("SparseRowOptimizer expects sparse gradients (nn.Embedding(sparse=True))")
                grad = param.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["second"] = torch.zeros_like(param)
                    if group["method"] == "adam":
                        state["first"] = torch.zeros_like(param)
                state["step"] += 1
                if group["method"] == "adagrad":
                    second = state["second"].index_select(0, rows).addcmul_(values, values)
                    state["second"].index_copy_(0, rows, second)
                    update = values / second.sqrt_().add_(group["eps"])
                    param.index_add_(0, rows, update, alpha=-group["lr"])
                    continue
                step = state["step"].item()
                first = state["first"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                second = state["second"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["first"].index_copy_(0, rows, first)
                state["second"].index_copy_(0, rows, second)
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                update = first / second.sqrt_().add_(group["eps"])
                param.index_add_(0, rows, update, alpha=-step_size)


def _build_optimizer(model: nn.Module, config: KgeConfig) -> torch.optim.Optimizer:
    return SparseRowOptimizer(model.parameters(), lr=config.learning_rate, method=config.optimizer)


def _corrupt(
    batch: torch.Tensor,
    num_negatives: int,
    head_probability: torch.Tensor,
    num_entities: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heads and tails ``(batch, 1 + num_negatives)``: column 0 the true triple, then its corruptions."""
    size = (batch.shape[0], num_negatives)
    heads = batch[:, :1].expand(size).clone()
    tails = batch[:, 2:].expand(size).clone()
    replace_head = torch.rand(size, generator=generator) < head_probability[batch[:, 1]].unsqueeze(1)
    random_entities = torch.randint(num_entities, size, generator=generator)
    heads[replace_head] = random_entities[replace_head]
    tails[~replace_head] = random_entities[~replace_head]
    return torch.cat([batch[:, :1], heads], dim=1), torch.cat([batch[:, 2:], tails], dim=1)


def train(
    triples: Sequence[tuple[str, str, str]],
    config: KgeConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    **overrides: Any,
) -> KgeResult:
    """Train a translational embedding on ``triples`` and score it on a held-out split.

    Args:
        triples: ``(head, relation, tail)`` strings, e.g. from :func:`kg.io.read_triples`.
        config: hyper-parameters; keyword ``overrides`` replace its fields (``train(t, model="transh", dim=50)``).
        checkpoint_dir: where ``checkpoint.pt`` (model, optimiser, epoch, random state, history) is written after
            every epoch; None: no checkpoints.
        resume: continue from ``checkpoint_dir/checkpoint.pt`` if it exists. The structural settings (model,
            sizes, split, seed, batch size) and the data must match; ``epochs`` may grow.
        progress: show a tqdm bar over epochs.
        on_epoch_end: called with each history entry (epoch, seconds, loss, and validation metrics when run).

    Returns:
        :class:`KgeResult` with test metrics (on a seeded sample of ``config.eval_triples`` test triples).
    """
    config = KgeConfig(**{**(asdict(config) if config else {}), **overrides})
    graph = index_triples(triples)
    split = split_triples(graph.triples, config.valid_fraction, config.test_fraction, config.seed)
    train_triples = split["train"]
    num_entities, num_relations = len(graph.entity_names), len(graph.relation_names)
    logger.info(
        "%s: %d entities, %d relations, %d train / %d valid / %d test triples",
        config.model,
        num_entities,
        num_relations,
        *(split[name].shape[0] for name in ("train", "valid", "test")),
    )
    answers = _known_answers(graph.triples, num_entities, num_relations)
    valid_sample = _sample(split["valid"], config.eval_triples, config.seed + 1)
    test_sample = _sample(split["test"], config.eval_triples, config.seed + 2)
    head_probability = _head_probability(train_triples, num_relations, config.negative_sampling)

    model = build_model(config, num_entities, num_relations)
    optimizer = _build_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed + 3)
    history: list[dict[str, float]] = []
    start_epoch, train_seconds = 0, 0.0

    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=True)
        mismatched = [name for name in _STRUCTURAL_FIELDS if state["config"][name] != getattr(config, name)]
        if mismatched:
            raise KgeConfigError(
                f"{checkpoint_path}: cannot resume, settings differ: "
                + ", ".join(f"{n}={state['config'][n]!r} in checkpoint, {getattr(config, n)!r} now" for n in mismatched)
            )
        if state["fingerprint"] != graph.fingerprint:
            raise KgeConfigError(f"{checkpoint_path}: cannot resume, the checkpoint was trained on other triples")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_epoch, train_seconds, history = state["epoch"], state["train_seconds"], state["history"]
        logger.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)
    elif resume:
        logger.warning("no checkpoint at %s; starting from scratch", checkpoint_path)

    bar = tqdm(range(start_epoch, config.epochs), desc=config.model, unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        started = time.perf_counter()
        loss_sum, steps = 0.0, 0
        permutation = torch.randperm(train_triples.shape[0], generator=generator)
        for batch_index in permutation.split(config.batch_size):
            batch = train_triples[batch_index]
            heads, tails = _corrupt(batch, config.num_negatives, head_probability, num_entities, generator)
            relation_ids = batch[:, 1]
            distances, penalty = model.distance_and_penalty(heads, relation_ids, tails)  # (batch, 1 + negatives)
            # Margin ranking loss: a true triple must be closer than each of its corruptions by the margin.
            loss = F.relu(config.margin + distances[:, :1] - distances[:, 1:]).mean() + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.constrain_entities(torch.unique(torch.cat([heads.reshape(-1), tails.reshape(-1)])))
            model.constrain_relations(torch.unique(relation_ids))
            loss_sum += loss.item()
            steps += 1
        train_seconds += time.perf_counter() - started
        entry: dict[str, float] = {"epoch": epoch + 1, "train_seconds": train_seconds, "loss": loss_sum / max(1, steps)}
        is_last = epoch + 1 == config.epochs
        out_of_time = config.max_minutes is not None and train_seconds >= 60 * config.max_minutes
        evaluation_due = bool(config.eval_every and (epoch + 1) % config.eval_every == 0)
        if (evaluation_due or is_last or out_of_time) and valid_sample.numel():
            metrics = evaluate_link_prediction(
                model, valid_sample, graph.triples, batch_size=config.eval_batch_size, answers=answers
            )
            entry.update({f"valid_{name}": value for name, value in metrics.items() if name != "num_triples"})
        history.append(entry)
        bar.set_postfix(
            loss=f"{entry['loss']:.4f}", **({"mrr": f"{entry['valid_mrr']:.3f}"} if "valid_mrr" in entry else {})
        )
        if "valid_mrr" in entry:
            logger.info(
                "epoch %d: %.0f s, loss %.4f, valid MRR %.4f, Hits@10 %.4f",
                entry["epoch"],
                entry["train_seconds"],
                entry["loss"],
                entry["valid_mrr"],
                entry["valid_hits@10"],
            )
        if on_epoch_end is not None:
            on_epoch_end(entry)
        if checkpoint_path is not None:
            checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "train_seconds": train_seconds,
                "history": history,
                "config": asdict(config),
                "fingerprint": graph.fingerprint,
            }
            # Write then rename, so that an interrupted save never leaves a truncated checkpoint behind.
            torch.save(state, checkpoint_path.with_suffix(".tmp"))
            os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)
        reached = config.target_mrr is not None and entry.get("valid_mrr", -1.0) >= config.target_mrr
        if out_of_time or reached:
            logger.info("stopping after epoch %d (%s)", epoch + 1, "time budget" if out_of_time else "target MRR")
            break
    bar.close()

    epochs_completed = history[-1]["epoch"] if history else start_epoch
    metrics = (
        evaluate_link_prediction(model, test_sample, graph.triples, batch_size=config.eval_batch_size, answers=answers)
        if test_sample.numel()
        else {}
    )
    processed = train_triples.shape[0] * epochs_completed  # train_seconds also spans the epochs before a resume
    return KgeResult(
        model=model,
        config=config,
        entity_names=graph.entity_names,
        relation_names=graph.relation_names,
        metrics=metrics,
        history=history,
        epochs_completed=int(epochs_completed),
        train_seconds=train_seconds,
        triples_per_second=processed / train_seconds if train_seconds else 0.0,
        split_sizes={name: int(part.shape[0]) for name, part in split.items()},
    )


# ------------------------------------------------------------------------------------------------------- saving


@dataclass
class KgeEmbeddings:
    """Saved embeddings as :func:`load_kge` returns them; row ``i`` of ``entity_embeddings`` is ``entities[i]``."""

    entities: list[Entity]
    relation_names: list[str]
    entity_embeddings: torch.Tensor  # shape: (num_entities, dim)
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]


def save_kge(
    result: KgeResult, output_dir: str | os.PathLike, entity_types: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write the embeddings, the name index and ``kge_config.json`` to ``output_dir``.

    Files:
        ``entity_embeddings.safetensors``: ``entity_embeddings`` ``(num_entities, dim)`` float32 and
        ``relation_embeddings`` ``(num_relations, k)``; TransH adds ``relation_normals`` ``(num_relations, dim)``,
        TransR ``relation_matrices`` ``(num_relations, k, dim)``.
        ``entities.tsv``: row ``i`` = ``name<TAB>type`` of embedding row ``i`` (type ``Other`` when unknown).
        ``relations.tsv``: row ``i`` = relation name of ``relation_embeddings`` row ``i``.
        ``kge_config.json``: model, dim, all hyper-parameters, test metrics, training time and throughput.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = result.model
    tensors = {
        "entity_embeddings": model.entity.weight.detach().clone().contiguous(),
        "relation_embeddings": model.relation.weight.detach().clone().contiguous(),
    }
    if isinstance(model, TransH):
        tensors["relation_normals"] = F.normalize(model.normal.weight.detach(), dim=-1).contiguous()
    if isinstance(model, TransR):
        tensors["relation_matrices"] = model.matrix.weight.detach().view(-1, model.space_dim, model.dim).contiguous()
    paths = {
        "embeddings": output_dir / EMBEDDINGS_NAME,
        "entities": output_dir / "entities.tsv",
        "relations": output_dir / "relations.tsv",
        "config": output_dir / "kge_config.json",
    }
    save_file(tensors, paths["embeddings"], metadata={"model": result.config.model, "format": "pt"})
    types = entity_types or {}
    write_entities(paths["entities"], ((name, types.get(name, "Other")) for name in result.entity_names))
    paths["relations"].write_text("".join(f"{name}\n" for name in result.relation_names), encoding="utf-8")
    summary = {
        "model": result.config.model,
        "dim": result.config.dim,
        "relation_dim": result.config.space_dim,
        "num_entities": len(result.entity_names),
        "num_relations": len(result.relation_names),
        "metrics": result.metrics,
        "epochs_completed": result.epochs_completed,
        "train_seconds": round(result.train_seconds, 2),
        "triples_per_second": round(result.triples_per_second, 1),
        "split_sizes": result.split_sizes,
        "config": asdict(result.config),
    }
    paths["config"].write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return paths


def load_kge(output_dir: str | os.PathLike) -> KgeEmbeddings:
    """Read what :func:`save_kge` wrote, checking that the name index and the embedding rows agree."""
    output_dir = Path(output_dir)
    tensors = load_file(output_dir / EMBEDDINGS_NAME)
    if "entity_embeddings" not in tensors:
        raise ValueError(f"{output_dir / EMBEDDINGS_NAME}: no 'entity_embeddings' tensor (has {sorted(tensors)})")
    entities = read_entities(output_dir / "entities.tsv")
    embeddings = tensors["entity_embeddings"]
    if len(entities) != embeddings.shape[0]:
        raise ValueError(
            f"{output_dir}: entities.tsv has {len(entities)} rows but entity_embeddings has {embeddings.shape[0]}"
        )
    relations_path = output_dir / "relations.tsv"
    relation_names = relations_path.read_text(encoding="utf-8").splitlines() if relations_path.is_file() else []
    config_path = output_dir / "kge_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return KgeEmbeddings(entities, relation_names, embeddings, tensors, config)
