"""What both training scripts share: arguments from flags and a YAML/JSON file, the Accelerator with its trackers,
optimiser parameter groups, learning-rate schedules, and checkpoints that ``--resume_from_checkpoint`` can pick up."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.tracking import GeneralTracker
from accelerate.utils import ProjectConfiguration
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import HfArgumentParser
from transformers.trainer_pt_utils import get_parameter_names

from clinical_ner_zh.cli_errors import UserError, add_debug_flag
from clinical_ner_zh.cli_errors.output_folder import check_writable, folder_entries, listed
from clinical_ner_zh.datasets_scripts.schema import counts_text
from clinical_ner_zh.modeling.crf import ConditionalRandomField

logger = logging.getLogger(__name__)

# Accelerate's automatic checkpoint naming writes <output_dir>/checkpoints/checkpoint_<n>, n counting the saves, and
# deletes the oldest beyond CHECKPOINTS_KEPT; every entry of that folder is taken for a checkpoint.
CHECKPOINTS_DIR, CHECKPOINT_PREFIX, CHECKPOINTS_KEPT = "checkpoints", "checkpoint_", 2
STATE_FILE = "training_state.json"  # in each checkpoint: our counters (step, epoch, batches into the epoch, ...)
PROCESSES_KEY = "num_processes"  # in STATE_FILE: how many processes wrote the checkpoint
# Parameter names never decayed, as transformers' Trainer.get_decay_parameter_names has them.
NO_DECAY_NAME_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
RUN_ARGUMENTS_FILE = "run_arguments.json"  # in each checkpoint: the configuration that wrote it
BASE_KEY = "base"  # in a --config file: the file it extends (see read_config)
# Files only a training run writes (glob patterns in its output folder): --overwrite_output_dir clears only a folder
# holding one of them. Not a bare logs/ or checkpoints/ folder, which many projects have of their own.
TRAINING_OUTPUTS = (
    "training_args.json", f"{CHECKPOINTS_DIR}/{CHECKPOINT_PREFIX}*/{STATE_FILE}", "logs/metrics.jsonl",
    "checkpoint.pt", "kge_config.json",
)  # fmt: skip
# Arguments naming files or folders the run reads (train_ner.py, train_mlm.py; --config kept by parse_arguments):
# none may lie in the output folder that --overwrite_output_dir clears.
INPUT_ARGUMENTS = frozenset(
    {"config", "encoder", "kg_embeddings", "lexicon", "train_file", "validation_file", "test_file", "dataset_name",
     "model_name_or_path", "tokenizer_name_or_path", "train_files", "lexicon_file"}
)  # fmt: skip
# Arguments that steer a run without changing what it trains (simulated_data only words the card): a resumed run
# may change them.
RESUMABLE_CHANGES = frozenset(
    {"output_dir", "overwrite_output_dir", "resume_from_checkpoint", "logging_steps", "sample_text", "push_to_hub",
     "hub_model_id", "per_device_eval_batch_size", "max_bad_fraction", "simulated_data", "config"}
)  # fmt: skip


class ConfigurationError(UserError, ValueError):
    """A training configuration that cannot work; raised before any training starts."""


def parse_arguments(dataclass_types, argv: list[str] | None = None, description: str | None = None) -> tuple:
    """Fill ``dataclass_types`` from ``--config FILE`` (YAML or JSON) and then from flags, which win.

    Unknown keys in the file are an error naming the key and the file, as unknown flags are.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, remaining = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, description=description)
    parser.add_argument(
        "--config", type=Path, help="YAML or JSON file with any of the arguments below ('base: FILE' extends FILE)"
    )
    add_debug_flag(parser)
    if known.config is not None:
        if not known.config.is_file():
            raise ConfigurationError(f"configuration file {known.config} does not exist")
        fields = {field.name for cls in dataclass_types for field in dataclasses.fields(cls)}
        values = read_config(known.config, fields)
        # Relative paths in the file are relative to the directory the command runs in, as flags are.
        parser.set_defaults(**values)
        for action in parser._actions:
            # a value from the file satisfies a required flag
            if action.dest in values:
                action.required = False
    namespace = parser.parse_args(remaining)
    outputs = []
    for cls in dataclass_types:
        names = {field.name for field in dataclasses.fields(cls) if field.init}
        outputs.append(cls(**{k: v for k, v in vars(namespace).items() if k in names}))
        if isinstance(outputs[-1], RunArguments) and known.config is not None:
            outputs[-1].config = str(known.config)
    return tuple(outputs)


def read_config(path: Path, fields: set[str], extended_by: tuple[Path, ...] = ()) -> dict:
    """The arguments in a YAML or JSON file. ``base: FILE`` (relative to the file that names it) extends another
    file: its values first, then this file's, so that a preset states only what differs from the settings it builds
    on (the papers' ablation rows in ``configs/``). Unknown keys are an error naming the key and the file."""
    text = path.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"{path}: not valid YAML/JSON: {error}") from error
    if not isinstance(values, dict):
        raise ConfigurationError(f"{path}: expected a mapping of argument names to values")
    base = values.pop(BASE_KEY, None)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigurationError(f"{path}: unknown argument(s) {', '.join(unknown)}")
    if base is None:
        return values
    base_path = path.parent / str(base)
    chain = (*extended_by, path.resolve())
    if base_path.resolve() in chain:
        loop = " -> ".join(file.name for file in (*chain, base_path))
        raise ConfigurationError(f"{path}: base {base} makes a loop ({loop}): a file cannot extend itself")
    if not base_path.is_file():
        raise ConfigurationError(f"{path}: base {base_path} does not exist")
    return {**read_config(base_path, fields, chain), **values}


class JsonLinesTracker(GeneralTracker):
    """A tracker that needs nothing installed: one JSON object per ``log`` call in ``<logging_dir>/metrics.jsonl``."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        # The folder is made at the first write, not here: a run that stops before training leaves no trace.
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "config.json").write_text(json.dumps(values, indent=2, default=str), encoding="utf-8")

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}, default=float) + "\n")


def has_accelerator_device() -> bool:
    """Whether torch sees a GPU (or another accelerator)."""
    import torch

    api = getattr(torch, "accelerator", None)  # torch >= 2.6
    return api.is_available() if api is not None else torch.cuda.is_available()


def make_accelerator(output_dir: Path, gradient_accumulation_steps: int = 1, mixed_precision: str = "no"):
    """An Accelerator logging to a JSON-lines file, and to TensorBoard when it is installed.

    Without a GPU the Accelerator is told so (``cpu=True``): only then do processes started by ``accelerate launch
    --multi_gpu --num_processes N`` form a gloo group instead of each training alone.
    """
    trackers: list = [JsonLinesTracker("train", output_dir / "logs")]
    try:
        import tensorboard  # noqa: F401

        trackers.append("tensorboard")
    except ImportError:
        pass
    return Accelerator(
        cpu=not has_accelerator_device(),
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=trackers,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir),
            logging_dir=str(output_dir / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=CHECKPOINTS_KEPT,
        ),
        # Shuffling from a seeded sampler makes an interrupted and resumed run see the same batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # The models' buffers are constants, equal on every process (BERT's position ids, the CRF's constraints, a
        # frozen KG table of 44k entities x 100 = 17.6 MB): DDP need not broadcast them before every forward pass.
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )


@contextmanager
def main_process_first(accelerator: Accelerator) -> Iterator[None]:
    """``accelerator.main_process_first()``, except that the other processes are released also when the main one
    fails in the block (a corpus with too many bad records, a model that cannot be loaded): they then meet the same
    error themselves and every process exits with its one-line message, instead of waiting at the barrier until the
    launcher kills them, with a traceback from each."""
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
    try:
        yield
    finally:
        if accelerator.is_main_process:
            accelerator.wait_for_everyone()


def optimizer_groups(
    model: nn.Module,
    weight_decay: float,
    learning_rates: dict[str, float],
    group_of: Callable[[str], str] | None = None,
) -> list[dict]:
    """AdamW parameter groups: per learning rate, one group with ``weight_decay`` and one without.

    Biases and normalisation layers are not decayed (as the Trainer does), nor are the CRF's transition, start and
    end scores: they are log-potentials, and pulling them towards zero flattens the label-to-label preferences learned.
    ``learning_rates`` maps group names to rates; ``group_of`` names the group of a parameter name (default: the only
    one). Each group keeps its name under ``"name"``, which :func:`learning_rates_of` reads back.
    """
    decayed = set(get_parameter_names(model, [nn.LayerNorm, ConditionalRandomField], NO_DECAY_NAME_PATTERNS))
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = group_of(name) if group_of else next(iter(learning_rates))
        decay = name in decayed
        group = groups.setdefault(
            (key, decay),
            {"name": key, "params": [], "lr": learning_rates[key], "weight_decay": weight_decay if decay else 0.0},
        )
        group["params"].append(parameter)
    return list(groups.values())


def learning_rates_of(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The current learning rate of each named group of :func:`optimizer_groups`."""
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


class TrainingBudget:
    """How far training has gone, in [0, 1]: the larger of the share of optimiser steps done and, with a wall-time
    budget, the share of the time spent. A resumed run restarts the clock at the seconds already spent (kept in the
    checkpoint state).

    ``tick`` is called after each optimiser step by every process, with the number of steps done; the clock is then
    the slowest process's, so that all processes see the same learning rate and stop at the same step.
    """

    def __init__(self, total_steps: int, minutes: float = 0.0):
        self.total_steps, self.seconds = total_steps, 60.0 * minutes
        self.step = 0
        self.resume(0.0)

    def resume(self, seconds_spent: float) -> None:
        self.started, self.elapsed = time.monotonic() - seconds_spent, seconds_spent

    def tick(self, accelerator: Accelerator, step: int) -> None:
        self.step = step
        now = torch.tensor([time.monotonic() - self.started], dtype=torch.float64, device=accelerator.device)
        self.elapsed = float(accelerator.gather(now).max()) if accelerator.num_processes > 1 else float(now)

    @property
    def out_of_time(self) -> bool:
        return bool(self.seconds) and self.elapsed >= self.seconds

    @property
    def progress(self) -> float:
        done = self.step / self.total_steps
        if self.seconds:
            done = max(done, self.elapsed / self.seconds)
        return min(done, 1.0)


def warmup_decay_schedule(optimizer: torch.optim.Optimizer, warmup_ratio: float, budget: TrainingBudget) -> LambdaLR:
    """Linear warm-up over the first ``warmup_ratio`` of training, then linear decay to zero at its end, where the
    end is the last step or the end of the time budget, whichever comes first: a run cut by its time budget still
    anneals instead of stopping at its peak learning rate.

    The rate follows ``budget`` (optimiser steps done, time spent), not the number of ``scheduler.step()`` calls:
    under ``accelerator.prepare`` the scheduler is stepped once per process at every optimiser step, and counting
    those calls would end the schedule after 1/N of training on N processes. Tick the budget, then step the scheduler.
    """
    if not 0.0 <= warmup_ratio < 1.0:
        raise ConfigurationError(f"--warmup_ratio {warmup_ratio}: expected a share in [0, 1)")

    def factor(_scheduler_calls: int) -> float:
        done = budget.progress
        if done < warmup_ratio:
            return done / warmup_ratio
        return max(0.0, 1.0 - done) / (1.0 - warmup_ratio)

    return LambdaLR(optimizer, factor)


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: Path) -> Path | None:
    """``None``, a checkpoint folder, or ``"latest"`` (the newest under ``<output_dir>/checkpoints``)."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        candidates = checkpoints_of(output_dir)
        if not candidates:
            logger.warning("no checkpoint under %s: starting from scratch", output_dir / CHECKPOINTS_DIR)
            return None
        return candidates[-1]
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ConfigurationError(f"{path} is not a checkpoint folder written by this script (no {STATE_FILE})")
    # The run's best model and its other files are in the checkpoint's own run folder: continued anywhere else, the
    # run would leave a folder without a model (unless dev F1 rose again) or write into a folder of the user's.
    if path.resolve().parent.parent != output_dir.resolve():
        raise ConfigurationError(
            f"--resume_from_checkpoint {path} is not a checkpoint of the output folder {output_dir}: a run continues "
            f"in its own folder, give --output_dir {path.parent.parent}"
        )
    return path


def checkpoints_of(output_dir: Path) -> list[Path]:
    """The checkpoints under ``<output_dir>/checkpoints``, oldest first."""
    folders = (output_dir / CHECKPOINTS_DIR).glob(f"{CHECKPOINT_PREFIX}*")
    return sorted(folders, key=lambda folder: int(folder.name.removeprefix(CHECKPOINT_PREFIX)))


def check_output_dir(
    output_dir: Path, overwrite: bool, resuming: bool, resume_flag: str, inputs: dict[str, object] | None = None
) -> None:
    """Before anything is read or written: a non-empty output folder is refused unless the run continues it
    (``resuming``) or replaces it (``overwrite``, only a training run's folder, and none of the run's ``inputs``, flag
    -> path or list of paths, in it); see :func:`clear_output_dir`."""
    entries = folder_entries(output_dir)
    check_writable(output_dir, f"output folder {output_dir}")
    if resuming or not entries:
        return
    shown = listed(entries)
    if not overwrite:
        raise ConfigurationError(
            f"output folder {output_dir} is not empty ({shown}): --overwrite_output_dir replaces it, {resume_flag} "
            "continues the run it holds, or choose another folder"
        )
    if not any(any(output_dir.glob(pattern)) for pattern in TRAINING_OUTPUTS):
        raise ConfigurationError(
            f"output folder {output_dir} holds files no training run wrote ({shown}): --overwrite_output_dir replaces "
            "only a training run's output; choose another folder"
        )
    folder = output_dir.resolve()
    for flag, values in (inputs or {}).items():
        for value in values if isinstance(values, list) else [values]:
            if value and Path(value).exists() and folder in (Path(value).resolve(), *Path(value).resolve().parents):
                raise ConfigurationError(
                    f"{flag} {value} lies in the output folder {output_dir}, which --overwrite_output_dir would clear: "
                    "move it out, or choose another output folder"
                )


def clear_output_dir(output_dir: Path) -> None:
    """``--overwrite_output_dir``: the previous run's files go, so that none of them (a test report, checkpoints of
    another configuration) is taken for this run's."""
    if not output_dir.is_dir():
        return
    for entry in output_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_arguments(*argument_objects) -> dict:
    """The arguments of a run as plain JSON values, to compare with those of the run a checkpoint came from."""
    values = {}
    for arguments in argument_objects:
        values.update(dataclasses.asdict(arguments))
    return json.loads(json.dumps(values, default=str))


def argument_defaults(*argument_objects) -> dict:
    """The default of each argument, as JSON values like :func:`run_arguments`."""
    values = {}
    for arguments in argument_objects:
        for field in dataclasses.fields(arguments):
            if field.default is not dataclasses.MISSING:
                values[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[field.name] = field.default_factory()
    return json.loads(json.dumps(values, default=str))


def check_checkpoint_arguments(checkpoint: Path, arguments: dict, defaults: dict) -> None:
    """A checkpoint is resumed only by the configuration that wrote it; otherwise say what differs. An argument
    the checkpoint does not record was added since it was written: that run had its default (``defaults``)."""
    saved_path = checkpoint / RUN_ARGUMENTS_FILE
    if not saved_path.is_file():
        raise ConfigurationError(
            f"{checkpoint}: no {RUN_ARGUMENTS_FILE} in it, so its configuration is unknown: train afresh"
        )
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    then = {**{name: defaults[name] for name in set(defaults) - set(saved)}, **saved}
    differ = [
        f"{name} {then.get(name)!r} {'there' if name in saved else 'there (its default, not recorded)'}, "
        f"{arguments.get(name)!r} now"
        for name in sorted(set(then) | set(arguments))
        if name not in RESUMABLE_CHANGES and then.get(name) != arguments.get(name)
    ]
    if differ:
        raise ConfigurationError(
            f"{checkpoint} was written by another configuration ({'; '.join(differ)}): resume with the same "
            "arguments, or train afresh in another folder"
        )


def check_checkpoint_processes(checkpoint: Path, num_processes: int) -> None:
    """Steps, the schedule and the position in the data are counted per process: another number of processes would
    resume another run (twice or half the data asked for, batches skipped wrongly). A checkpoint written before the
    count was kept is not checked."""
    saved = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8")).get(PROCESSES_KEY)
    if saved is not None and saved != num_processes:
        raise ConfigurationError(
            f"{checkpoint} was written by {saved} process(es), this run has {num_processes}: resume with "
            f"{saved} (accelerate launch --num_processes {saved}), or train afresh in another folder"
        )


def prepare_output_dir(accelerator: Accelerator, output_dir: Path, overwrite: bool) -> None:
    """After :func:`check_output_dir` and before anything else is written: clear the folder for
    ``--overwrite_output_dir`` (main process)."""
    if accelerator.is_main_process and overwrite:
        clear_output_dir(output_dir)
    accelerator.wait_for_everyone()


@dataclasses.dataclass
class RunArguments:
    """The arguments every training script takes in the same words: where the run writes, how it resumes, gradient
    accumulation and precision, the Hub upload. Each script's ``TrainArguments`` extends it and gives
    ``output_dir`` its own default (a field redefined in a subclass keeps its place)."""

    output_dir: str = dataclasses.field(default="outputs", metadata={"help": "output folder"})
    overwrite_output_dir: bool = dataclasses.field(
        default=False, metadata={"help": "replace the contents of a non-empty output folder (a previous run's)"}
    )
    resume_from_checkpoint: str | None = dataclasses.field(
        default=None, metadata={"help": "a checkpoint folder under output_dir/checkpoints, or 'latest' there"}
    )
    gradient_accumulation_steps: int = dataclasses.field(default=1, metadata={"help": "batches per optimiser step"})
    mixed_precision: str = dataclasses.field(default="no", metadata={"help": "'no', 'fp16' or 'bf16'"})
    push_to_hub: bool = dataclasses.field(default=False, metadata={"help": "upload the saved folder to the Hub"})
    hub_model_id: str | None = dataclasses.field(default=None, metadata={"help": "Hub repository for --push_to_hub"})
    # The --config file the arguments came from (set by parse_arguments, not a flag of its own).
    config: str | None = dataclasses.field(default=None, init=False)


def max_bad_fraction_field():
    """``--max_bad_fraction``, the same in every training script that reads a corpus."""
    return dataclasses.field(
        default=0.05,
        metadata={
            "help": "stop before training when the reader drops more than this share of a file's records, or of "
            "the entities of the records it keeps"
        },
    )


def check_max_bad_fraction(max_bad_fraction: float) -> None:
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ConfigurationError(f"--max_bad_fraction {max_bad_fraction}: expected a share in [0, 1]")


def check_dropped_records(report, source: str, max_bad_fraction: float) -> None:
    """Stop before training when a reader dropped more than ``max_bad_fraction`` of the records of ``source``, or of
    the entities of the records it kept (an export whose label names are unknown keeps every record and no entity),
    or kept no record; the message counts what was dropped per reason (the log names each record and entity)."""
    by_reason = {"records": Counter(), "entities": Counter()}
    for problem in report.problems:
        by_reason["records" if problem.entity is None else "entities"][problem.kind] += 1
    why = {what: counts_text(reasons) for what, reasons in by_reason.items()}
    if report.records == 0:
        left_out = [f"{report.records_skipped} dropped: {why['records']}"] if report.records_skipped else []
        left_out += [f"{report.records_unannotated} tasks not annotated"] if report.records_unannotated else []
        raise ConfigurationError(f"{source}: no usable record" + (f" ({'; '.join(left_out)})" if left_out else ""))
    for what, each, kept, dropped in (
        ("records", "record", report.records, report.records_skipped),
        ("entities", "entity", report.entities, report.entities_skipped),
    ):
        total = kept + dropped
        if dropped > max_bad_fraction * total:
            raise ConfigurationError(
                f"{source}: {dropped} of {total} {what} dropped ({why[what]}), more than --max_bad_fraction "
                f"{max_bad_fraction}: fix the file (the log names each {each}) or raise --max_bad_fraction"
            )
        if dropped:
            logger.warning("%s: %d of %d %s dropped (%s)", source, dropped, total, what, why[what])


def save_checkpoint(accelerator: Accelerator, state: dict, arguments: dict) -> Path:
    """``save_state`` into the next numbered checkpoint (Accelerate deletes the oldest beyond ``CHECKPOINTS_KEPT``),
    plus our counters and the run's arguments, which a resumed run must repeat."""
    folder = Path(accelerator.save_state())
    if accelerator.is_main_process:
        state = {**state, PROCESSES_KEY: accelerator.num_processes}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        (folder / RUN_ARGUMENTS_FILE).write_text(json.dumps(arguments, indent=2), encoding="utf-8")
    accelerator.wait_for_everyone()
    return folder


def load_checkpoint(accelerator: Accelerator, folder: Path) -> dict:
    """Load a checkpoint's state into the prepared objects and return its counters. The next save is numbered after
    the newest checkpoint of this run's folder: Accelerate counts saves from 0 in every process and refuses to write
    into an existing folder."""
    accelerator.load_state(str(folder))
    existing = checkpoints_of(Path(accelerator.project_dir))
    if existing:
        accelerator.project_configuration.iteration = int(existing[-1].name.removeprefix(CHECKPOINT_PREFIX)) + 1
    return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))


def write_arguments(output_dir: Path, *argument_objects) -> None:
    """The arguments of a run as JSON, beside the model it produced."""
    values = run_arguments(*argument_objects)
    (output_dir / "training_args.json").write_text(json.dumps(values, indent=2), encoding="utf-8")


def not_loadable(error: OSError) -> str:
    """Why ``from_pretrained`` failed, in one line: not a local folder, and the Hub did not have it (or was not
    reachable); transformers' own message follows."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"not a model folder here, and it could not be loaded from the Hub ({first})"


def check_hub_arguments(push_to_hub: bool, hub_model_id: str | None) -> None:
    if push_to_hub and not hub_model_id:
        raise ConfigurationError("--push_to_hub needs --hub_model_id (the Hub repository to upload to)")


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload a saved model folder to the Hub, without checkpoints and logs. A new repository is created private:
    clinical models deserve a deliberate decision before they are made public."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, private=True, exist_ok=True)
    upload_folder(repo_id=repo_id, folder_path=folder, ignore_patterns=["checkpoints/*", "logs/*"])
    logger.info("uploaded %s to %s", folder, repo_id)
