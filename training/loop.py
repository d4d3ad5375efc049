"""The steps both training scripts take around their own data and model: the run's checks and its Accelerator
(:func:`start_run`), the first write into the output folder and the resumed state (:func:`begin_training`), and the
loop itself (:class:`TrainingLoop`), as Accelerate's examples write it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from clinical_ner_zh.training.common import (
    INPUT_ARGUMENTS,
    RunArguments,
    TrainingBudget,
    argument_defaults,
    check_checkpoint_arguments,
    check_checkpoint_processes,
    check_hub_arguments,
    check_output_dir,
    learning_rates_of,
    load_checkpoint,
    make_accelerator,
    prepare_output_dir,
    resolve_checkpoint,
    run_arguments,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """A run as :func:`start_run` set it up: ``arguments`` are its arguments as JSON values (each checkpoint records
    them), ``resumed`` the checkpoint it continues, if any."""

    accelerator: Accelerator
    output_dir: Path
    arguments: dict
    resumed: Path | None


def seeded_dataloader(dataset, batch_size: int, shuffle: bool, collate_fn, seed: int) -> DataLoader:
    """A DataLoader with a random generator of its own: otherwise every new iterator draws its base seed from the
    global RNG, and a resumed run, which creates one more iterator than an uninterrupted one, would continue with
    other random numbers (dropout masks, masked tokens) than the run it resumes."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_fn, generator=generator)


def start_run(argument_objects: tuple, train_args: RunArguments) -> TrainingRun:
    """Before any data is read: refuse what cannot work (a Hub upload without a repository, a checkpoint of another
    configuration or number of processes, a non-empty output folder), then the Accelerator, logging and the seed."""
    check_hub_arguments(train_args.push_to_hub, train_args.hub_model_id)
    output_dir = Path(train_args.output_dir)
    arguments = run_arguments(*argument_objects)
    resumed = resolve_checkpoint(train_args.resume_from_checkpoint, output_dir)
    if resumed is not None:
        check_checkpoint_arguments(resumed, arguments, argument_defaults(*argument_objects))
    inputs = {f"--{name}": value for name, value in arguments.items() if name in INPUT_ARGUMENTS}
    check_output_dir(
        output_dir, train_args.overwrite_output_dir, resumed is not None, "--resume_from_checkpoint", inputs
    )
    accelerator = make_accelerator(output_dir, train_args.gradient_accumulation_steps, train_args.mixed_precision)
    if resumed is not None:
        check_checkpoint_processes(resumed, accelerator.num_processes)
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("clinical_ner_zh.datasets_scripts.encoding", "accelerate", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.manual_seed(train_args.seed)
    logger.info("%d process(es), %s, device %s", accelerator.num_processes, accelerator.distributed_type,
                accelerator.device)  # fmt: skip
    return TrainingRun(accelerator, output_dir, arguments, resumed)


def begin_training(run: TrainingRun, train_args: RunArguments, project_name: str, fresh_state: dict) -> dict:
    """The first write into the output folder, once data and model are ready (a run that stops at a bad corpus or
    model leaves the folder as it was): clear it for ``--overwrite_output_dir``, start the trackers, and return the
    state of the resumed checkpoint, or ``fresh_state``."""
    overwrite = train_args.overwrite_output_dir and run.resumed is None
    prepare_output_dir(run.accelerator, run.output_dir, overwrite)
    run.accelerator.init_trackers(project_name, {k: str(v) for k, v in vars(train_args).items()})
    if run.resumed is None:
        return fresh_state
    state = load_checkpoint(run.accelerator, run.resumed)
    logger.info("resumed from %s at step %d", run.resumed, state["step"])
    return state


class TrainingLoop:
    """Iterating trains the prepared ``model`` and yields the number of each optimiser step once it is taken (the
    budget ticked, the scheduler stepped): the script evaluates, checkpoints or stops between steps. It ends at the
    budget's last step; breaking out of it stops training earlier.

    ``state`` (``step``, ``epoch``, ``batches_in_epoch``, ``seconds``) is updated in place: it is what a checkpoint
    stores, so that a resumed run starts at the very batch where the interrupted one stopped. A script that ends
    training itself (early stopping) sets ``state["stopped"]``: the checkpoint keeps it, and a run resumed from a
    finished one (stopped, out of steps or out of time) takes no step. ``prepare_batch`` changes a training batch
    before the forward pass (train_ner.py's ``--token_dropout``).
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        dataloader,
        budget: TrainingBudget,
        state: dict,
        max_grad_norm: float | None = None,
        prepare_batch: Callable[[dict], dict] | None = None,
    ):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.dataloader, self.budget, self.state = dataloader, budget, state
        self.max_grad_norm, self.prepare_batch = max_grad_norm, prepare_batch
        self.budget.resume(state.get("seconds", 0.0))
        self.progress = tqdm(
            total=budget.total_steps, initial=state["step"], disable=not accelerator.is_local_main_process
        )
        self._losses: list[torch.Tensor] = []  # this process's, of the batches since the last log
        if self.finished and state["step"]:
            logger.info("the resumed run had ended at step %d: nothing more to train", state["step"])

    @property
    def finished(self) -> bool:
        state = self.state
        return state["step"] >= self.budget.total_steps or self.budget.out_of_time or state.get("stopped", False)

    def __iter__(self) -> Iterator[int]:
        accelerator, state = self.accelerator, self.state
        self.model.train()
        while not self.finished:
            if hasattr(self.dataloader, "set_epoch"):  # a streamed corpus's loader has no epochs to seed
                self.dataloader.set_epoch(state["epoch"])
            batches = self.dataloader
            if state["batches_in_epoch"]:
                batches = accelerator.skip_first_batches(self.dataloader, state["batches_in_epoch"])
            for batch in batches:
                if self.prepare_batch is not None:
                    batch = self.prepare_batch(batch)
                with accelerator.accumulate(self.model):
                    loss = self.model(**batch).loss
                    accelerator.backward(loss)
                    # 0 or None: no clipping (clip_grad_norm_ with 0 would zero every gradient), as in Trainer
                    if self.max_grad_norm and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                state["batches_in_epoch"] += 1
                self._losses.append(loss.detach().float())
                if not accelerator.sync_gradients:
                    continue
                state["step"] += 1
                # The schedule follows the budget (steps done, time spent): tick it first.
                self.budget.tick(accelerator, state["step"])
                self.scheduler.step()
                state["seconds"] = self.budget.elapsed
                self.progress.update(1)
                yield state["step"]
                if state["step"] >= self.budget.total_steps:
                    return
            state["epoch"] += 1
            state["batches_in_epoch"] = 0

    def log(self) -> None:
        """Log the mean training loss since the last log, over the batches of every process (each process takes
        its share of the global batch: rank 0's losses alone would be half the data on two), and the learning rates:
        ``learning_rate`` of the first parameter group, ``<name>_learning_rate`` of the others. Every process calls
        it: the losses are gathered; only the main process writes them."""
        mean_loss = self.accelerator.gather(torch.stack(self._losses)).mean().item()
        rates = learning_rates_of(self.optimizer)
        first, *others = rates
        values = {"train_loss": mean_loss, "learning_rate": rates[first]}
        values.update({f"{name}_learning_rate": rates[name] for name in others})
        self.accelerator.log(values, step=self.state["step"])
        self.progress.set_postfix(loss=f"{mean_loss:.4f}")
        self._losses = []

    def close(self) -> None:
        self.progress.close()
