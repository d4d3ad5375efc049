"""Batch inference with a saved clinical-ner model: JSON lines in, JSON lines (and Label Studio tasks) out.

    python predict.py MODEL INPUT --output predictions.jsonl [--label-studio tasks.json] [--gold gold.jsonl]
    accelerate launch --multi_gpu --num_processes 2 predict.py MODEL INPUT --output predictions.jsonl   # 2 CPUs

Input (``--format auto`` picks by content and suffix):

* ``jsonl``: one record per line, the span schema ``{"id", "text", ...}`` or CCKS ``{"originalText", ...}``; a
  record without ``id`` is named ``<file stem>:<line>`` (as the CCKS reader names them).
* ``label-studio``: a Label Studio JSON list of tasks, text in ``data.<--text-key>``; record ids are task ids.
* ``text``: a plain-text file with one record per line (``<stem>:<line>``; blank lines skipped), or with
  ``--per-file`` a folder whose ``.txt`` files are one record each (id: the path inside the folder; CRLF kept).

A folder (without ``--per-file``) is read file by file: its ``.jsonl`` and ``.json`` files, or, when it holds none,
its ``.txt`` files one record each; hidden files and folders (``.ipynb_checkpoints``) are left out. Record ids must be unique across the whole input.

Output: one JSON line per record, in input order, in the span schema: ``{"id", "text", "entities": [{"start",
"end", "label", "text", "score", "class"?}]}``. ``--label-studio FILE`` also writes a Label Studio tasks file whose
``predictions`` (``model_version``, ``score``, ``labels`` results with per-region scores) import as
pre-annotations; tasks read from a Label Studio file keep their fields. ``--label-studio-config FILE`` writes the
labeling configuration (XML) of a project those tasks import into: a ``<Labels>`` control with the model's entity
types and the ``<Text>`` it annotates, named as the predictions name them. ``--gold FILE`` (span schema, CCKS or a
Label Studio export) prints the entity-level scores of :mod:`clinical_ner_zh.metrics` and writes them as JSON.

Nothing is written before the model, every record of the input and every output path have been checked; an output
path equal to an input (or to another output) is refused. Results go to ``OUTPUT.partial`` beside the output, which
is renamed into place only when complete, so the output path holds the previous file or a complete new one. After
a crash or Ctrl-C, ``--resume`` continues from the partial file: records already there are skipped by id (the
input must still hold them with the same text), the rest are appended in input order. ``OUTPUT.partial.json``
records what wrote it (a digest of the model folder's files, the windows, ``--quantize``): a resume with another
model or other options is refused, so that one output never mixes two models. The Label Studio file is built
from the complete results at the end. A record the tokenizer or model rejects stops the run (``--on-error stop``)
or is left out (``--on-error skip``); either way it is named by file, line and id. A run in which every record
was rejected leaves the output as it was; a model that cannot tag a sample text (a family-B folder without its
lexicon) is refused when it is loaded, before any record is tagged.

Under ``accelerate launch`` the records are dealt out to the processes chunk by chunk; the main process gathers
the results and writes them in input order. Messages about bad input name the file and line (or task), never the
text.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from clinical_ner_zh.cli_errors import UserError, add_debug_flag, describe, run_command
from clinical_ner_zh.cli_errors.output_folder import check_writable

logger = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "label-studio", "text")
JSON_SUFFIXES = (".jsonl", ".json")
PARTIAL_SUFFIX = ".partial"
PROBE_TEXT = "患者左乳腺癌术后，行紫杉醇化疗。"  # tagged once when the model is loaded; no patient's text


class PredictInputError(UserError, ValueError):
    """Input, model or output path that cannot be used; the message names the file and line or task, never the
    text."""


@dataclass
class Record:
    id: str
    text: str
    task: dict[str, Any] | None = field(default=None, repr=False)  # the Label Studio task it came from
    where: str = ""  # file and line (or task) for messages


# ---------------------------------------------------------------------------------------------- readers


def _json_error(where: str, error: json.JSONDecodeError) -> PredictInputError:
    # error.msg and the column locate the problem without quoting the line, which holds patient text
    return PredictInputError(f"{where}: invalid JSON ({error.msg} at column {error.colno})")


def read_jsonl(path: Path) -> Iterator[Record]:
    """Span-schema or CCKS JSON lines."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        for number, line in enumerate(_lines(handle, path), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise _json_error(where, error) from None
            if not isinstance(obj, dict):
                raise PredictInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            text = obj.get("text", obj.get("originalText"))
            if not isinstance(text, str):
                raise PredictInputError(
                    f"{where}: expected a string field 'text' (span schema) or 'originalText' (CCKS)"
                )
            record_id = str(obj["id"]) if obj.get("id") is not None else f"{path.stem}:{number}"
            yield Record(record_id, text, where=where)


def _lines(handle, path: Path) -> Iterator[str]:
    """Lines without their line end (LF or CRLF; a lone CR stays in the text), decoded one at a time from a binary
    handle so that a decoding error names its line (a text handle decodes ahead, by blocks)."""
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise PredictInputError(f"{path}:{number}: not UTF-8 text (byte {error.start} of the line)") from None
        yield line.removesuffix("\n").removesuffix("\r")


def read_label_studio_tasks(path: Path, text_key: str = "text") -> Iterator[Record]:
    """A Label Studio JSON list of tasks (an export, or tasks prepared for import)."""
    try:
        tasks = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise PredictInputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise _json_error(f"{path}:{error.lineno}", error) from None
    if not isinstance(tasks, list):
        raise PredictInputError(f"{path}: expected a JSON list of Label Studio tasks, got {type(tasks).__name__}")
    for index, task in enumerate(tasks):
        where = f"{path}: task {index}"
        if not isinstance(task, dict):
            raise PredictInputError(f"{where}: expected a JSON object, got {type(task).__name__}")
        data = task.get("data")
        text = data.get(text_key) if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise PredictInputError(f"{where}: expected a string field 'data.{text_key}'")
        record_id = str(task["id"]) if task.get("id") is not None else str(index)
        yield Record(record_id, text, task, where)


def read_text_lines(path: Path) -> Iterator[Record]:
    try:
        handle = path.open("rb")
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        for number, line in enumerate(_lines(handle, path), start=1):
            if line.strip():
                yield Record(f"{path.stem}:{number}", line, where=f"{path}:{number}")


def read_text_files(folder: Path) -> Iterator[Record]:
    if not folder.is_dir():
        raise PredictInputError(f"{folder}: --per-file expects a folder of .txt files")
    for path in _files(folder, (".txt",)):
        try:
            # newline="" keeps CRLF, so offsets point into the file's own characters
            with path.open(encoding="utf-8-sig", newline="") as handle:
                text = handle.read()
        except UnicodeDecodeError as error:
            raise PredictInputError(f"{path}: not UTF-8 text (byte {error.start})") from None
        yield Record(path.relative_to(folder).as_posix(), text, where=str(path))


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files of ``folder`` and its subfolders with one of ``suffixes``, hidden ones and those in hidden folders
    left out (Jupyter's ``.ipynb_checkpoints`` holds copies of the records)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix in suffixes
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def detect_format(path: Path, per_file: bool) -> str:
    if per_file or path.is_dir():
        return "text"
    if path.suffix == ".txt":
        return "text"
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    return "label-studio" if head.startswith(b"[") else "jsonl"


def read_records(path: Path, input_format: str = "auto", per_file: bool = False, text_key: str = "text"):
    """The records of ``path`` (a file or a folder) in file order, lazily."""
    if path.is_dir() and not per_file:
        files = _files(path, JSON_SUFFIXES)
        if files:
            return itertools.chain.from_iterable(read_records(file, input_format, False, text_key) for file in files)
        if not _files(path, (".txt",)):
            raise PredictInputError(f"{path}: the folder holds no .jsonl, .json or .txt files")
    if input_format == "auto":
        input_format = detect_format(path, per_file)
    if input_format == "jsonl":
        return read_jsonl(path)
    if input_format == "label-studio":
        return read_label_studio_tasks(path, text_key)
    return read_text_files(path) if per_file or path.is_dir() else read_text_lines(path)


# ---------------------------------------------------------------------------------------------- outputs


def to_span_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pipeline entities in the project's span schema (``label``/``text`` instead of ``entity_group``/``word``)."""
    converted = []
    for entity in entities:
        item = {
            "start": entity["start"],
            "end": entity["end"],
            "label": entity["entity_group"],
            "text": entity["word"],
            "score": round(float(entity["score"]), 6),
        }
        if "class" in entity:
            item["class"] = entity["class"]
        converted.append(item)
    return converted


def label_studio_task(
    record: Record, entities: list[dict[str, Any]], model_version: str, from_name: str, to_name: str, text_key: str
) -> dict[str, Any]:
    """A task with one prediction; Label Studio shows its regions as pre-annotations."""
    result = [
        {
            "id": f"p{index}",
            "from_name": from_name,
            "to_name": to_name,
            "type": "labels",
            "value": {"start": e["start"], "end": e["end"], "text": e["text"], "labels": [e["label"]]},
            "score": e["score"],
        }
        for index, e in enumerate(entities)
    ]
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    if entities:
        # Task-level confidence, which Label Studio sorts by: the mean of the entity scores
        prediction["score"] = round(sum(e["score"] for e in entities) / len(entities), 6)
    if record.task is not None:
        task = dict(record.task)
        task["predictions"] = [*(task.get("predictions") or []), prediction]
        return task
    return {"data": {text_key: record.text, "record_id": record.id}, "predictions": [prediction]}


def label_studio_config(entity_types: Iterable[str], from_name: str, to_name: str, text_key: str) -> str:
    """The labeling configuration of a Label Studio project for tasks written by :func:`label_studio_task`."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in entity_types)
    return (
        f"<View>\n  <Labels name={quoteattr(from_name)} toName={quoteattr(to_name)}>{labels}\n  </Labels>\n"
        f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + text_key)}/>\n</View>\n"
    )


def entity_types(config) -> list[str]:
    """The model's entity types in label order, from ``id2label`` (``B-Drug``, ``I-Drug`` -> ``Drug``)."""
    return list(dict.fromkeys(label.partition("-")[2] for label in config.id2label.values() if label != "O"))


class LabelStudioWriter:
    """Writes a JSON list of tasks one task at a time, so that no list of all tasks is held in memory."""

    def __init__(self, handle):
        self.handle = handle
        self.handle.write("[")
        self.count = 0

    def write(self, task: dict[str, Any]) -> None:
        self.handle.write(("," if self.count else "") + "\n" + json.dumps(task, ensure_ascii=False))
        self.count += 1

    def finish(self) -> None:
        self.handle.write("\n]\n")


def partial_path(path: Path) -> Path:
    """Where the results for ``path`` are written until they are complete."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def settings_path(partial: Path) -> Path:
    """Where the model and options that write ``partial`` are recorded, for ``--resume`` to compare."""
    return partial.with_name(partial.name + ".json")


@contextlib.contextmanager
def replace_when_done(path: Path) -> Iterator[Any]:
    """A text file that takes the place of ``path`` only when the block completes; on an error ``path`` keeps
    its previous content and the temporary file is removed. The folder is created as that of ``--output`` is (the
    paths were checked before any work)."""
    temporary = partial_path(path)
    temporary.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- gold


def check_gold(gold_path: Path, index: InputIndex) -> None:
    """Before predicting: every gold record is in the input, with the same text (compared by digest)."""
    from clinical_ner_zh.metrics.cli import ScoredRecord, pair_records, read_scored_records

    gold = {
        record_id: ScoredRecord(None if record.text is None else _digest(record.text).hex(), [])
        for record_id, record in read_scored_records(gold_path).items()
    }
    inputs = {record_id: ScoredRecord(digest.hex(), []) for record_id, digest in index.digests.items()}
    pair_records(gold, inputs, gold_path, "the input", every_prediction_in_gold=False)


def score_against_gold(gold_path: Path, predictions_path: Path, config, metrics_path: Path) -> str:
    """The metrics table of the predictions against gold (records matched by id); writes the JSON report."""
    from clinical_ner_zh.metrics import format_report, score_entities
    from clinical_ner_zh.metrics.cli import canonical_label, pair_records, read_scored_records

    gold = read_scored_records(gold_path)
    predicted = read_scored_records(predictions_path)
    ids = pair_records(gold, predicted, gold_path, predictions_path, every_prediction_in_gold=False)
    types = [canonical_label(name) for name in entity_types(config)]  # as the labels of both files are
    report = score_entities(
        [gold[i].spans for i in ids],
        [predicted[i].spans for i in ids],
        entity_types=types,
        classes=getattr(config, "label_classes", None) or None,
        record_ids=ids,
    )
    with replace_when_done(metrics_path) as handle:
        handle.write(report.to_json() + "\n")
    return format_report(report)


# ---------------------------------------------------------------------------------------------- main


def chunked(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Tag records with a saved clinical-ner model.")
    parser.add_argument("model", help="model folder or Hub repository (loaded with trust_remote_code=True)")
    parser.add_argument("input", type=Path, help="JSON lines, Label Studio tasks JSON, a .txt file or a folder")
    parser.add_argument("--output", "-o", type=Path, required=True, help="JSON-lines predictions")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: from the file)")
    parser.add_argument("--per-file", action="store_true", help="INPUT is a folder: each .txt file is one record")
    parser.add_argument("--text-key", default="text", help="Label Studio data field holding the text")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument(
        "--max-length",
        type=int,
        help="tokens per window, [CLS] and [SEP] included (default: the window the model was trained with)",
    )
    parser.add_argument(
        "--stride", type=int, help="tokens shared by consecutive windows (default: the stride of training)"
    )
    parser.add_argument("--chunk-size", type=int, default=32, help="records per process between two writes")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.partial")
    parser.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="a record the tokenizer or model rejects stops the run (default) or is left out of the output",
    )
    parser.add_argument("--label-studio", type=Path, help="also write Label Studio tasks with predictions here")
    parser.add_argument(
        "--label-studio-config", type=Path, help="also write the Label Studio labeling config for the model's labels"
    )
    parser.add_argument("--model-version", help="Label Studio model_version (default: the model folder's name)")
    parser.add_argument("--from-name", default="label", help="Label Studio <Labels> control name")
    parser.add_argument("--to-name", default="text", help="Label Studio <Text> object name")
    parser.add_argument("--gold", type=Path, help="score the predictions against this gold file")
    parser.add_argument("--metrics-output", type=Path, help="JSON metrics (default: OUTPUT with .metrics.json)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    parser.add_argument(
        "--quantize",
        choices=("int8", "bf16"),
        help="CPU only, faster, scores differ a little (see benchmarks/quantization.py). int8: int8 weights (dynamic "
        "quantization of the linear layers and convolutions). bf16: the encoder and heads in bfloat16 (autocast), "
        "the CRF in float32; needs a CPU with native bfloat16 (AVX-512 BF16, AMX or Arm BF16)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_debug_flag(parser)
    return parser


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links


def check_paths(args: argparse.Namespace, metrics_path: Path | None) -> None:
    """Every output path can be written and is none of the inputs nor another output, nor inside the input or model
    folder; nothing is written yet."""
    model = Path(args.model)
    inputs = {"the input": args.input, "--gold": args.gold}
    outputs = {
        "--output": args.output,
        "--label-studio": args.label_studio,
        "--label-studio-config": args.label_studio_config,
        "--metrics-output": metrics_path,
    }
    seen = {name: path for name, path in inputs.items() if path is not None}
    for name, path in outputs.items():
        if path is None:
            continue
        if path.is_dir():
            raise PredictInputError(f"{name} {path} is a folder: give a file path")
        for other_name, other in seen.items():
            if _same_file(path, other):
                raise PredictInputError(f"{name} {path} is the same file as {other_name}: choose another path")
        if args.input.is_dir() and args.input.resolve() in path.resolve().parents:
            raise PredictInputError(f"{name} {path} is inside the input folder: choose a path outside it")
        if model.is_dir() and model.resolve() in path.resolve().parents:
            raise PredictInputError(f"{name} {path} is inside the model folder {model}: choose a path outside it")
        check_writable(path.parent, f"{name} {path}")
        seen[name] = path


@dataclass
class InputIndex:
    """What the first pass over the input learns: each record's position and a digest of its text."""

    positions: dict[str, int]
    digests: dict[str, bytes]
    rejected: set[str]  # ids of records the tokenizer would reject, left out under --on-error skip


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def check_records(records: Iterable[Record], on_error: str) -> InputIndex:
    """Read the whole input once before anything is written. Ids must be unique; a record the tokenizer would
    reject stops the run or is left out (``--on-error``)."""
    index = InputIndex({}, {}, set())
    for record in records:
        if record.id in index.positions:
            raise PredictInputError(f"{record.where}: id {record.id!r} appears twice in the input")
        index.positions[record.id] = len(index.positions)
        index.digests[record.id] = _digest(record.text)
        try:
            record.text.encode("utf-8")
        except UnicodeEncodeError as error:
            # A lone surrogate ("\ud800" in JSON) makes the tokenizers library raise a TypeError in the pipeline.
            problem = (
                f"{record.where}: record {record.id!r}: the text holds a lone surrogate at character {error.start}"
            )
            if on_error == "stop":
                raise PredictInputError(f"{problem} (--on-error skip leaves such records out)") from None
            logger.warning("%s: left out", problem)
            index.rejected.add(record.id)
    if not index.positions:
        raise PredictInputError("the input holds no records")
    return index


def read_partial(partial: Path, index: InputIndex) -> tuple[set[str], int, int]:
    """The ids already in the partial file of an interrupted run, the input position of the last one, and the byte
    length of its complete lines (a line cut by the interruption is dropped). Refuses a partial file whose records
    are not those of the input, in input order."""
    done: set[str] = set()
    last, complete = -1, 0
    restart = f"the input changed since the interrupted run: delete {partial} to start afresh"
    with partial.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                break  # the line being written when the run was stopped
            try:
                obj = json.loads(line)
                record_id, text = obj["id"], obj["text"]
            except (ValueError, TypeError, KeyError):
                raise PredictInputError(f"{partial}:{number}: not a line written by predict.py ({restart})") from None
            position = index.positions.get(record_id)
            if position is None:
                raise PredictInputError(f"{partial}:{number}: record {record_id!r} is not in the input; {restart}")
            if index.digests[record_id] != _digest(text) or position <= last:
                raise PredictInputError(f"{partial}:{number}: record {record_id!r} differs from the input; {restart}")
            done.add(record_id)
            last, complete = position, complete + len(line)
    return done, last, complete


def model_digest(model: str, pipe) -> str:
    """What identifies the model's weights and settings: a digest of the files of a model folder (its README and
    hidden files aside), or the commit of a Hub repository."""
    folder = Path(model)
    if not folder.is_dir():
        return getattr(pipe.model.config, "_commit_hash", None) or model
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != "README.md" and not path.name.startswith("."):
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def check_settings(partial: Path, settings: dict[str, Any]) -> None:
    """``--resume`` continues only a partial file written with the same model, windows and quantization: the
    records already there would otherwise come from one model and the rest from another."""
    recorded_path = settings_path(partial)
    restart = f"rerun with those, or delete {partial} to start afresh"
    try:
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PredictInputError(
            f"{partial}: {recorded_path}, the record of the model and options that wrote it, is missing or unreadable: "
            f"delete {partial} to start afresh"
        ) from None
    differences = []
    if recorded.get("model_digest") != settings["model_digest"]:
        differences.append(f"the model {recorded.get('model')} (its files have changed since, or this is another)")
    if recorded.get("window") != settings["window"]:
        (window, stride), (now_window, now_stride) = recorded.get("window") or (None, None), settings["window"]
        differences.append(
            f"--max-length/--stride windows of {window} tokens with stride {stride} (now {now_window} with "
            f"{now_stride})"
        )
    if recorded.get("quantize") != settings["quantize"]:
        differences.append(f"--quantize {recorded.get('quantize') or 'none'} (now {settings['quantize'] or 'none'})")
    if differences:
        raise PredictInputError(f"{partial} was written by a run with {'; '.join(differences)}: {restart}")


def load_pipeline(model: str, device, batch_size: int, quantize: str | None = None):
    from transformers import pipeline

    from clinical_ner_zh.training.common import not_loadable

    folder = Path(model)
    if folder.exists() and not (folder / "config.json").is_file():
        raise PredictInputError(f"{model}: not a model folder (no config.json)")
    if not folder.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise PredictInputError(f"{model}: no such model folder")
    # A folder saved before the quantize option has pipeline code that refuses the keyword: pass it only when asked.
    options = {"quantize": quantize} if quantize else {}
    try:
        pipe = pipeline(
            "clinical-ner", model=model, trust_remote_code=True, device=device, batch_size=batch_size, **options
        )
    except OSError as error:  # transformers' way of saying a Hub id or a folder cannot be loaded
        raise PredictInputError(f"{model}: {not_loadable(error)}") from error
    except ValueError as error:  # a config that is not a model's, or a model that is not a CRF tagger
        raise PredictInputError(
            f"{model}: not a clinical-ner model (a CRF tagger saved by train_ner.py or save_for_hub): {describe(error)}"
        ) from None
    except TypeError as error:
        if not quantize or "quantize" not in str(error):
            raise
        raise PredictInputError(
            f"--quantize {quantize}: {model}: the model folder's pipeline code predates --quantize; save the model "
            "again with this version (save_for_hub) or leave out --quantize"
        ) from None
    if pipe.device != device:
        # With torch.distributed initialised (accelerate launch), transformers pins a pipeline to the model's
        # current device (the CPU after loading) whatever `device` says: put it where this process runs.
        pipe.model.to(device)
        pipe.device = device
    try:
        # A model that cannot tag at all (a family-B folder without its lexicon) is the model's fault, not each
        # record's: found here, before any record is tagged or anything written.
        pipe(PROBE_TEXT)
    except (ValueError, TypeError, KeyError, IndexError) as error:  # not an out-of-memory error or the like
        raise PredictInputError(f"{model}: the model cannot tag text: {describe(error)}") from None
    return pipe


def tag_chunk(pipe, records: list[Record], call_kwargs: dict) -> list[list[dict[str, Any]] | str]:
    """Each record's entities, or the name of the error the tokenizer or model raised on it."""
    try:
        return [to_span_entities(entities) for entities in pipe([r.text for r in records], **call_kwargs)]
    except Exception:
        # Some record of the batch is rejected: tag them one at a time to know which. Only the error's name is
        # kept, since its message may quote the text.
        results: list[list[dict[str, Any]] | str] = []
        for record in records:
            try:
                results.append(to_span_entities(pipe(record.text, **call_kwargs)))
            except Exception as error:
                results.append(type(error).__name__)
        return results


def write_label_studio(path: Path, records: Iterable[Record], results_path: Path, args, model_version: str) -> None:
    """Label Studio tasks from the complete JSON-lines results, in their order."""
    with results_path.open(encoding="utf-8") as results, replace_when_done(path) as handle:
        writer = LabelStudioWriter(handle)
        lines = (json.loads(line) for line in results)
        current = next(lines, None)
        for record in records:
            if current is not None and current["id"] == record.id:
                entities = current["entities"]
                writer.write(
                    label_studio_task(record, entities, model_version, args.from_name, args.to_name, args.text_key)
                )
                current = next(lines, None)
        writer.finish()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.chunk_size < 1:
        raise PredictInputError("--batch-size and --chunk-size must be at least 1")
    metrics_path = (args.metrics_output or args.output.with_suffix(".metrics.json")) if args.gold else None
    check_paths(args, metrics_path)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from clinical_ner_zh.training.common import has_accelerator_device

    # On a machine without GPUs, Accelerate forms a multi-process (gloo) group only when told to use the CPU:
    # `accelerate launch --multi_gpu --num_processes 2 predict.py ...` then runs two cooperating processes.
    accelerator = Accelerator(cpu=args.cpu or not has_accelerator_device())
    if accelerator.device.type == "cpu":
        from clinical_ner_zh.modeling.pipeline_clinical_ner import keep_freed_memory

        keep_freed_memory()
    main_process = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes

    def records() -> Iterator[Record]:
        return read_records(args.input, args.format, args.per_file, args.text_key)

    index = check_records(records(), args.on_error)
    if args.gold is not None:
        check_gold(args.gold, index)  # a gold file that cannot be scored stops the run before it starts
    if args.quantize and accelerator.device.type != "cpu":
        raise PredictInputError(f"--quantize {args.quantize} runs on the CPU only: add --cpu")
    if args.quantize == "bf16":
        from clinical_ner_zh.modeling.pipeline_clinical_ner import check_bf16

        try:
            check_bf16()  # before loading the model: the pipeline would refuse it too, with a traceback
        except ValueError as error:
            raise PredictInputError(f"--quantize bf16: {error}") from None
    pipe = load_pipeline(args.model, accelerator.device, args.batch_size, args.quantize)
    try:
        window = pipe._window_plan(args.max_length, args.stride)
    except ValueError as error:
        raise PredictInputError(f"--max-length/--stride: {error}") from None
    call_kwargs = {k: v for k, v in (("max_length", args.max_length), ("stride", args.stride)) if v is not None}
    model_version = args.model_version or Path(str(args.model).rstrip("/")).name

    partial = partial_path(args.output)
    settings = {
        "model": args.model,
        "model_digest": model_digest(args.model, pipe),
        "window": list(window),
        "quantize": args.quantize,
    }
    done: set[str] = set()
    last_done, complete = -1, 0
    if partial.exists():
        if not args.resume:
            raise PredictInputError(
                f"{partial} holds the results of an interrupted run: --resume continues it, or delete it"
            )
        done, last_done, complete = read_partial(partial, index)
        check_settings(partial, settings)
    accelerator.wait_for_everyone()  # every process has read the partial file before it is touched

    def pending(record_id: str) -> bool:
        # Records before the last one written and missing from the partial file were left out by --on-error skip.
        return record_id not in done and index.positions[record_id] > last_done and record_id not in index.rejected

    left_out = [i for i in index.positions if not pending(i) and i not in done]
    total = sum(map(pending, index.positions))
    progress = tqdm(total=total, desc="records", unit="record", disable=not main_process or args.no_progress)
    output = None
    if main_process:
        partial.parent.mkdir(parents=True, exist_ok=True)
        if not partial.exists():
            settings_path(partial).write_text(json.dumps(settings) + "\n", encoding="utf-8")
        output = partial.open("r+b" if partial.exists() else "wb")
        output.truncate(complete)  # drops a line cut by the interruption
        output.seek(complete)
    try:
        for chunk in chunked((r for r in records() if pending(r.id)), args.chunk_size * world):
            # Dealt out round-robin, so long and short records spread over the processes.
            mine = list(range(rank, len(chunk), world))
            results = list(zip(mine, tag_chunk(pipe, [chunk[i] for i in mine], call_kwargs)))
            if world > 1:
                results = gather_object(results)
            for position, entities in sorted(results, key=lambda item: item[0]):
                record = chunk[position]
                if isinstance(entities, str):
                    problem = f"{record.where}: record {record.id!r}: the model rejected it ({entities})"
                    if args.on_error == "stop":
                        raise PredictInputError(
                            f"{problem}; the results so far are in {partial}: --resume continues"
                            " (with --on-error skip to leave such records out)"
                        )
                    if main_process:
                        logger.warning("%s: left out", problem)
                    left_out.append(record.id)
                elif output is not None:
                    line = {"id": record.id, "text": record.text, "entities": entities}
                    output.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
            if output is not None:
                output.flush()  # a killed run keeps every complete chunk for --resume
            progress.update(len(chunk))
    finally:
        progress.close()
        if output is not None:
            output.close()
    accelerator.wait_for_everyone()
    if not main_process:
        return 0
    written = len(index.positions) - len(left_out)
    if not written:
        # Nothing tagged is no result: the output keeps what it held
        partial.unlink()
        settings_path(partial).unlink(missing_ok=True)
        raise PredictInputError(
            f"the model rejected every record ({len(left_out)}; the log names each): {args.output} left as it was"
        )
    if args.label_studio is not None:
        write_label_studio(args.label_studio, records(), partial, args, model_version)
    if args.label_studio_config is not None:
        config = label_studio_config(entity_types(pipe.model.config), args.from_name, args.to_name, args.text_key)
        with replace_when_done(args.label_studio_config) as handle:
            handle.write(config)
    os.replace(partial, args.output)
    settings_path(partial).unlink(missing_ok=True)
    also = "".join(f" and {path}" for path in (args.label_studio, args.label_studio_config) if path)
    print(f"wrote {written} records to {args.output}{also} ({world} process{'es' if world > 1 else ''})")
    if left_out:
        shown = ", ".join(repr(record_id) for record_id in left_out[:10])
        print(f"left out {len(left_out)} records the model rejected: {shown}", file=sys.stderr)
    if args.gold is not None:
        print(score_against_gold(args.gold, args.output, pipe.model.config, metrics_path))
        print(f"metrics written to {metrics_path}")
    return 0


if __name__ == "__main__":
    run_command(main)
