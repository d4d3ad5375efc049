"""Hyper-parameters of knowledge-graph embedding training (:class:`KgeConfig`), validated when built."""

from __future__ import annotations

from dataclasses import dataclass

from clinical_ner_zh.cli_errors import UserError

__all__ = ["MODELS", "KgeConfig", "KgeConfigError"]

MODELS = ("transe", "transh", "transr")


class KgeConfigError(UserError, ValueError):
    """Settings that cannot train, or that differ from those of the checkpoint being resumed."""


@dataclass
class KgeConfig:
    """Hyper-parameters of :func:`train`; every field is validated in ``__post_init__``.

    Attributes:
        model: ``"transe"``, ``"transh"`` or ``"transr"``.
        dim: entity embedding size ``d``.
        relation_dim: TransR relation-space size ``k`` (default: ``dim``); ignored by the other models.
        margin: ``γ`` of the margin ranking loss. With L1 distances between unit vectors of 100 dimensions
            (about 10 apart at random), a margin of 1 leaves almost every corruption without a gradient after a
            few epochs; 4 keeps TransE learning on CMeKG (the README's measurements).
        p_norm: 1 (L1) or 2 (L2) distance.
        negative_sampling: ``"uniform"`` or ``"bernoulli"`` choice of the corrupted side.
        num_negatives: negatives per positive triple (4: more gradient per epoch than 1, 16 costs 4x per epoch).
        negative_entities: how the replacing entity is drawn: ``"uniform"`` over all entities, or ``"degree"`` in
            proportion to its number of training triples to the power 0.75 (as word2vec draws negative words), so
            that corruptions also use the popular entities a frequency ranking would put first.
        batch_size: positive triples per step.
        learning_rate: optimiser step size (0.003 was best of 0.01/0.003/0.001 for TransE on CMeKG with Adam).
        optimizer: ``"adam"`` or ``"adagrad"``, both lazy row-wise updates (:class:`SparseRowOptimizer`).
        epochs: passes over the training triples (a resumed run continues up to this number).
        max_minutes: stop after the first epoch that ends past this much training time, counted across resumes
            (None: no limit).
        clock: what training time is: ``"wall"`` (elapsed) or ``"cpu"`` (the process's CPU time: on a machine
            shared with other jobs, the time the run actually computed, so budgets and speeds compare across runs).
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
    margin: float = 4.0
    p_norm: int = 1
    negative_sampling: str = "bernoulli"
    num_negatives: int = 4
    negative_entities: str = "degree"
    batch_size: int = 8192
    learning_rate: float = 0.003
    optimizer: str = "adam"
    epochs: int = 50
    max_minutes: float | None = None
    clock: str = "wall"
    constraint_weight: float = 0.25
    orthogonality_epsilon: float = 1e-3
    valid_fraction: float = 0.01
    test_fraction: float = 0.01
    eval_triples: int | None = 2000
    eval_every: int = 5
    target_mrr: float | None = None
    eval_batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise KgeConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.negative_sampling not in ("uniform", "bernoulli"):
            raise KgeConfigError(f"negative_sampling must be 'uniform' or 'bernoulli', got {self.negative_sampling!r}")
        if self.negative_entities not in ("uniform", "degree"):
            raise KgeConfigError(f"negative_entities must be 'uniform' or 'degree', got {self.negative_entities!r}")
        if self.clock not in ("wall", "cpu"):
            raise KgeConfigError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")
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
