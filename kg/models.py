"""TransE, TransH and TransR: each scores a triple by a distance (lower = more plausible) between a translated
head and a tail.

* TransE (Bordes et al., NeurIPS 2013): ``d = ||h + r - t||_p``; entity vectors are renormalised to unit L2
  norm after every step (Bordes et al., Algorithm 1);
* TransH (Wang et al., AAAI 2014): entities are projected onto a relation-specific hyperplane with unit normal
  ``w_r``: ``e⊥ = e - (w_r·e) w_r``, ``d = ||h⊥ + d_r - t⊥||_p``; constraints ``||e|| <= 1`` (enforced by
  projection after each step), ``||w_r|| = 1`` (by normalising in the forward pass) and the soft orthogonality
  penalty ``[(w_r·d_r)² / ||d_r||² - ε²]_+`` weighted by ``C``;
* TransR (Lin et al., AAAI 2015): entities are mapped into a relation space of size ``k`` by ``M_r`` (``k x d``,
  initialised to the identity as the paper does after TransE): ``d = ||M_r h + r - M_r t||_p``; constraints
  ``||e|| <= 1`` and ``||r|| <= 1`` (projection) and ``||M_r e|| <= 1`` (soft penalty ``[||M_r e||² - 1]_+``).

All parameters are ``nn.Embedding(sparse=True)`` tables, so one step touches only the rows in the batch (and
:class:`clinical_ner_zh.kg.optimizer.SparseRowOptimizer` updates only those).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import KgeConfig

__all__ = ["TransE", "TransH", "TransR", "TranslationalModel", "build_model"]


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
