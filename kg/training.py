"""Training of translational embeddings (:func:`train`): margin ranking loss, negatives, checkpoints, time budget.

Training minimises the margin ranking loss ``[γ + d(pos) - d(neg)]_+`` over negatives made by replacing the head
or the tail of each training triple with a uniformly drawn entity; the side is chosen with probability 1/2
("uniform") or, per relation, with probability ``tph / (tph + hpt)`` of replacing the head ("bernoulli", Wang et
al. 2014 §3.3: one-to-many relations corrupt the head more often, which yields fewer false negatives).

With sparse tables and :class:`clinical_ner_zh.kg.optimizer.SparseRowOptimizer` (lazy Adam or Adagrad), batches of thousands of
triples train CMeKG's 800,000 triples in seconds per epoch on two CPU cores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import KgeConfig, KgeConfigError
from .evaluation import evaluate_link_prediction, known_answers, relation_popularity_baseline
from .graph import GraphIndex, index_triples, split_triples
from .models import TranslationalModel, build_model
from .optimizer import SparseRowOptimizer

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_NAME", "KgeResult", "train"]

CHECKPOINT_NAME = "checkpoint.pt"
# Config fields that change the model, the data split or the randomness; a resumed run must agree on all of them.
_STRUCTURAL_FIELDS = (
    "model",
    "dim",
    "relation_dim",
    "p_norm",
    "negative_sampling",
    "num_negatives",
    "negative_entities",
    "batch_size",
    "optimizer",
    "valid_fraction",
    "test_fraction",
    "seed",
)


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


@dataclass
class KgeResult:
    """What :func:`train` returns: the model, its vocabularies, test metrics (and those of the relation-popularity
    baseline on the same test triples) and the per-epoch history."""

    model: TranslationalModel
    config: KgeConfig
    entity_names: list[str]
    relation_names: list[str]
    metrics: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)
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


def _build_optimizer(model: nn.Module, config: KgeConfig) -> torch.optim.Optimizer:
    return SparseRowOptimizer(model.parameters(), lr=config.learning_rate, method=config.optimizer)


def _corrupt(
    batch: torch.Tensor,
    num_negatives: int,
    head_probability: torch.Tensor,
    num_entities: int,
    generator: torch.Generator,
    entity_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heads and tails ``(batch, 1 + num_negatives)``: column 0 the true triple, then its corruptions; the
    replacing entities are drawn in proportion to ``entity_weights`` (None: uniformly)."""
    size = (batch.shape[0], num_negatives)
    heads = batch[:, :1].expand(size).clone()
    tails = batch[:, 2:].expand(size).clone()
    replace_head = torch.rand(size, generator=generator) < head_probability[batch[:, 1]].unsqueeze(1)
    if entity_weights is None:
        random_entities = torch.randint(num_entities, size, generator=generator)
    else:
        random_entities = torch.multinomial(entity_weights, size[0] * size[1], True, generator=generator).view(size)
    heads[replace_head] = random_entities[replace_head]
    tails[~replace_head] = random_entities[~replace_head]
    return torch.cat([batch[:, :1], heads], dim=1), torch.cat([batch[:, 2:], tails], dim=1)


def _start_from(model: TranslationalModel, graph: GraphIndex, folder: str | os.PathLike) -> None:
    """Copy the entity and relation vectors saved in ``folder`` into ``model`` (then its constraints)."""
    from .export import load_kge  # export imports this module for KgeResult

    saved = load_kge(folder)
    if [entity.name for entity in saved.entities] != graph.entity_names or saved.relation_names != graph.relation_names:
        raise KgeConfigError(f"{folder}: embeddings of other entities or relations than these triples'")
    for table, tensor in (
        (model.entity, saved.entity_embeddings),
        (model.relation, saved.tensors["relation_embeddings"]),
    ):
        if tensor.shape != table.weight.shape:
            raise KgeConfigError(
                f"{folder}: vectors of shape {tuple(tensor.shape)} cannot start a table of shape "
                f"{tuple(table.weight.shape)} (same --dim, and --relation-dim equal to it)"
            )
        with torch.no_grad():
            table.weight.copy_(tensor)
    model.constrain_entities(torch.arange(len(graph.entity_names)))
    model.constrain_relations(torch.arange(len(graph.relation_names)))
    logger.info("starting from the vectors in %s", folder)


@dataclass
class _TrainingData:
    """The indexed triples, their split, the evaluation samples and the fixed parts of negative sampling."""

    graph: GraphIndex
    split: dict[str, torch.Tensor]
    answers: tuple[dict, dict]  # known_answers over every triple, for filtered ranking
    valid_sample: torch.Tensor
    test_sample: torch.Tensor
    head_probability: torch.Tensor  # (relations,)
    entity_weights: torch.Tensor | None  # (entities,), None: negatives drawn uniformly

    @property
    def train(self) -> torch.Tensor:
        return self.split["train"]

    @property
    def num_entities(self) -> int:
        return len(self.graph.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.graph.relation_names)


def _prepare_data(triples: Sequence[tuple[str, str, str]], config: KgeConfig) -> _TrainingData:
    """Index and split the triples, draw the seeded evaluation samples, and weigh the sides and entities of
    negative sampling on the training split."""
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
    answers = known_answers(graph.triples)
    valid_sample = _sample(split["valid"], config.eval_triples, config.seed + 1)
    test_sample = _sample(split["test"], config.eval_triples, config.seed + 2)
    head_probability = _head_probability(train_triples, num_relations, config.negative_sampling)
    entity_weights = None
    if config.negative_entities == "degree":
        entity_weights = torch.bincount(train_triples[:, [0, 2]].reshape(-1), minlength=num_entities).double() ** 0.75
    return _TrainingData(graph, split, answers, valid_sample, test_sample, head_probability, entity_weights)


class _TrainingRun:
    """What changes while training (model, optimiser, random stream, history, seconds spent) and the steps that
    change it; :func:`train` calls them in order. Shuffling and negatives draw from ``generator``, which a
    checkpoint saves, so that a resumed run continues the random stream of an uninterrupted one."""

    def __init__(self, config: KgeConfig, data: _TrainingData, init_from: str | os.PathLike | None) -> None:
        self.config, self.data = config, data
        self.model = build_model(config, data.num_entities, data.num_relations)
        if init_from is not None:
            _start_from(self.model, data.graph, init_from)
        self.optimizer = _build_optimizer(self.model, config)
        self.generator = torch.Generator().manual_seed(config.seed + 3)
        self.history: list[dict[str, float]] = []
        self.start_epoch, self.train_seconds = 0, 0.0
        self.clock = time.process_time if config.clock == "cpu" else time.perf_counter

    def resume(self, checkpoint_path: Path | None) -> None:
        """Continue from ``checkpoint_path`` if it exists and was trained with these settings on these triples."""
        if checkpoint_path is None or not checkpoint_path.is_file():
            logger.warning("no checkpoint at %s; starting from scratch", checkpoint_path)
            return
        state = torch.load(checkpoint_path, weights_only=True)
        config = self.config
        mismatched = [name for name in _STRUCTURAL_FIELDS if state["config"][name] != getattr(config, name)]
        if mismatched:
            raise KgeConfigError(
                f"{checkpoint_path}: cannot resume, settings differ: "
                + ", ".join(f"{n}={state['config'][n]!r} in checkpoint, {getattr(config, n)!r} now" for n in mismatched)
            )
        if state["fingerprint"] != self.data.graph.fingerprint:
            raise KgeConfigError(f"{checkpoint_path}: cannot resume, the checkpoint was trained on other triples")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.start_epoch, self.train_seconds, self.history = state["epoch"], state["train_seconds"], state["history"]
        logger.info("resumed from %s at epoch %d", checkpoint_path, self.start_epoch)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled training triples; returns the epoch's history entry. Only these passes count
        towards ``train_seconds`` and the time budget, not validation."""
        self.model.train()
        started = self.clock()
        loss_sum, steps = 0.0, 0
        permutation = torch.randperm(self.data.train.shape[0], generator=self.generator)
        for batch_index in permutation.split(self.config.batch_size):
            loss_sum += self._step(self.data.train[batch_index])
            steps += 1
        self.train_seconds += self.clock() - started
        return {"epoch": epoch + 1, "train_seconds": self.train_seconds, "loss": loss_sum / max(1, steps)}

    def _step(self, batch: torch.Tensor) -> float:
        """One optimiser step on ``batch`` (true triples, ``(batch, 3)``) and its corruptions; returns the loss."""
        config, data = self.config, self.data
        heads, tails = _corrupt(
            batch, config.num_negatives, data.head_probability, data.num_entities, self.generator, data.entity_weights
        )
        relation_ids = batch[:, 1]
        distances, penalty = self.model.distance_and_penalty(heads, relation_ids, tails)  # (batch, 1 + negatives)
        # Margin ranking loss: a true triple must be closer than each of its corruptions by the margin.
        loss = F.relu(config.margin + distances[:, :1] - distances[:, 1:]).mean() + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.constrain_entities(torch.unique(torch.cat([heads.reshape(-1), tails.reshape(-1)])))
        self.model.constrain_relations(torch.unique(relation_ids))
        return loss.item()

    def validate(self, entry: dict[str, float], out_of_time: bool) -> None:
        """Add the validation metrics to ``entry`` every ``eval_every`` epochs, after the last epoch and before
        stopping for time (when there is a validation split)."""
        config, data = self.config, self.data
        evaluation_due = bool(config.eval_every and entry["epoch"] % config.eval_every == 0)
        if not ((evaluation_due or entry["epoch"] == config.epochs or out_of_time) and data.valid_sample.numel()):
            return
        metrics = evaluate_link_prediction(
            self.model, data.valid_sample, data.graph.triples, batch_size=config.eval_batch_size, answers=data.answers
        )
        entry.update({f"valid_{name}": value for name, value in metrics.items() if name != "num_triples"})

    def save_checkpoint(self, checkpoint_path: Path, epoch: int) -> None:
        """Write everything :meth:`resume` needs to continue after ``epoch`` (counted from 1)."""
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": epoch,
            "train_seconds": self.train_seconds,
            "history": self.history,
            "config": asdict(self.config),
            "fingerprint": self.data.graph.fingerprint,
        }
        # Write then rename, so that an interrupted save never leaves a truncated checkpoint behind.
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        os.replace(checkpoint_path.with_suffix(".tmp"), checkpoint_path)

    def result(self) -> KgeResult:
        """Score the model on the test sample, beside the relation-popularity baseline on the same triples."""
        config, data = self.config, self.data
        epochs_completed = self.history[-1]["epoch"] if self.history else self.start_epoch
        metrics, baseline = {}, {}
        if data.test_sample.numel():
            metrics = evaluate_link_prediction(
                self.model,
                data.test_sample,
                data.graph.triples,
                batch_size=config.eval_batch_size,
                answers=data.answers,
            )
            baseline = relation_popularity_baseline(
                data.train,
                data.test_sample,
                data.graph.triples,
                data.num_entities,
                data.num_relations,
                batch_size=config.eval_batch_size,
                answers=data.answers,
            )
        processed = data.train.shape[0] * epochs_completed  # train_seconds also spans the epochs before a resume
        return KgeResult(
            model=self.model,
            config=config,
            entity_names=data.graph.entity_names,
            relation_names=data.graph.relation_names,
            metrics=metrics,
            baseline=baseline,
            history=self.history,
            epochs_completed=int(epochs_completed),
            train_seconds=self.train_seconds,
            triples_per_second=processed / self.train_seconds if self.train_seconds else 0.0,
            split_sizes={name: int(part.shape[0]) for name, part in data.split.items()},
        )


def _show_epoch(bar: tqdm, entry: dict[str, float]) -> None:
    """The loss (and validation MRR) on the progress bar; the validation scores in the log."""
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


def _out_of_time(config: KgeConfig, train_seconds: float) -> bool:
    return config.max_minutes is not None and train_seconds >= 60 * config.max_minutes


def _stop_reason(config: KgeConfig, entry: dict[str, float], out_of_time: bool) -> str | None:
    """Why training ends before ``config.epochs``: the time budget is spent, or validation reached the target."""
    if out_of_time:
        return "time budget"
    if config.target_mrr is not None and entry.get("valid_mrr", -1.0) >= config.target_mrr:
        return "target MRR"
    return None


def train(
    triples: Sequence[tuple[str, str, str]],
    config: KgeConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    init_from: str | os.PathLike | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    **overrides: Any,
) -> KgeResult:
    """Train a translational embedding on ``triples`` and score it on a held-out split.

    Args:
        triples: ``(head, relation, tail)`` strings, e.g. from :func:`clinical_ner_zh.kg.io.read_triples`.
        config: hyper-parameters; keyword ``overrides`` replace its fields (``train(t, model="transh", dim=50)``).
        checkpoint_dir: where ``checkpoint.pt`` (model, optimiser, epoch, random state, history) is written after
            every epoch; None: no checkpoints.
        resume: continue from ``checkpoint_dir/checkpoint.pt`` if it exists. The structural settings (model,
            sizes, split, seed, batch size) and the data must match; ``epochs`` may grow.
        init_from: a folder written by :func:`clinical_ner_zh.kg.export.save_kge` for the same triples (e.g. TransE) whose entity
            and relation vectors this model starts from, as Lin et al. 2015 start TransR from TransE; a resumed
            checkpoint takes precedence.
        progress: show a tqdm bar over epochs.
        on_epoch_end: called with each history entry (epoch, seconds, loss, and validation metrics when run).

    Returns:
        :class:`KgeResult` with test metrics (on a seeded sample of ``config.eval_triples`` test triples).
    """
    config = KgeConfig(**{**(asdict(config) if config else {}), **overrides})
    run = _TrainingRun(config, _prepare_data(triples, config), init_from)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume:
        run.resume(checkpoint_path)
    epochs = range(run.start_epoch, config.epochs)
    if run.history and (reason := _stop_reason(config, run.history[-1], _out_of_time(config, run.train_seconds))):
        # The checkpoint's run had stopped: the same command run again must not train one more epoch each time.
        logger.info("the resumed run had stopped after epoch %d (%s): nothing more to train", run.start_epoch, reason)
        epochs = range(0)
    bar = tqdm(epochs, desc=config.model, unit="epoch", disable=not progress)
    for epoch in bar:
        entry = run.train_epoch(epoch)
        out_of_time = _out_of_time(config, run.train_seconds)
        run.validate(entry, out_of_time)
        run.history.append(entry)
        _show_epoch(bar, entry)
        if on_epoch_end is not None:
            on_epoch_end(entry)
        if checkpoint_path is not None:
            run.save_checkpoint(checkpoint_path, epoch + 1)
        if reason := _stop_reason(config, entry, out_of_time):
            logger.info("stopping after epoch %d (%s)", epoch + 1, reason)
            break
    bar.close()
    return run.result()
