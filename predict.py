"""Batch inference with a saved clinical-ner model: JSON lines in, JSON lines (and Label Studio tasks) out.

    python predict.py MODEL INPUT --output predictions.jsonl [--label-studio tasks.json] [--gold gold.jsonl]
    accelerate launch --multi_gpu --num_processes 2 predict.py MODEL INPUT --output predictions.jsonl   # 2 CPUs

Input (``--format auto`` picks by content and suffix):

* ``jsonl``: one record per line, the span schema ``{"id", "text", ...}`` or CCKS ``{"originalText", ...}``; a
  record without ``id`` is named ``<file stem>:<line>`` (as the CCKS reader names them).
* ``label-studio``: a Label Studio JSON list of tasks, text in ``data.<--text-key>``; record ids are task ids.
* ``text``: a plain-text file with one record per line (``<stem>:<line>``; blank lines skipped), or with
  ``--per-file`` a folder whose ``.txt`` files are one record each (id: the path inside the folder; CRLF kept).

Output: one JSON line per record, in input order, in the span schema: ``{"id", "text", "entities": [{"start",
"end", "label", "text", "score", "class"?}]}``. ``--label-studio FILE`` also writes a Label Studio tasks file whose
``predictions`` (``model_version``, ``score``, ``labels`` results with per-region scores) import as
pre-annotations; tasks read from a Label Studio file keep their fields. ``--gold FILE`` (span schema, CCKS or a Label
Studio export) prints the entity-level scores of :mod:`metrics` and writes them as JSON.

Under ``accelerate launch`` the records are dealt out to the processes chunk by chunk; the main process gathers
the results and writes them in input order. Messages about bad input name the file and line (or task), never the
text.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("auto", "jsonl", "label-studio", "text")


class PredictInputError(ValueError):
    """Input that cannot be read; the message names the file and line or task, never the text."""


@dataclass
class Record:
    id: str
    text: str
    task: dict[str, Any] | None = field(default=None, repr=False)  # the Label Studio task it came from


# ---------------------------------------------------------------------------------------------- readers


def _json_error(where: str, error: json.JSONDecodeError) -> PredictInputError:
    # error.msg and the column locate the problem without quoting the line, which holds patient text
    return PredictInputError(f"{where}: invalid JSON ({error.msg} at column {error.colno})")


def read_jsonl(path: Path) -> Iterator[Record]:
    """Span-schema or CCKS JSON lines."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="\n")
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        seen: set[str] = set()
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
            if record_id in seen:
                raise PredictInputError(f"{where}: id {record_id!r} appears twice in the file")
            seen.add(record_id)
            yield Record(record_id, text)


def _lines(handle, path: Path) -> Iterator[str]:
    """Lines without their line end (LF or CRLF; a lone CR stays in the text); a decoding error names the line."""
    number = 0
    try:
        for line in handle:
            number += 1
            yield line.removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise PredictInputError(f"{path}: not UTF-8 text near line {number + 1}") from None


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
        yield Record(record_id, text, task)


def read_text_lines(path: Path) -> Iterator[Record]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="\n")
    except OSError as error:
        raise PredictInputError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        for number, line in enumerate(_lines(handle, path), start=1):
            if line.strip():
                yield Record(f"{path.stem}:{number}", line)


def read_text_files(folder: Path) -> Iterator[Record]:
    if not folder.is_dir():
        raise PredictInputError(f"{folder}: --per-file expects a folder of .txt files")
    for path in sorted(folder.rglob("*.txt")):
        try:
            # newline="" keeps CRLF, so offsets point into the file's own characters
            with path.open(encoding="utf-8-sig", newline="") as handle:
                text = handle.read()
        except UnicodeDecodeError as error:
            raise PredictInputError(f"{path}: not UTF-8 text (byte {error.start})") from None
        yield Record(path.relative_to(folder).as_posix(), text)


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
    """The records of ``path`` in file order, lazily."""
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


class LabelStudioWriter:
    """Writes a JSON list of tasks one task at a time, so that no list of all tasks is held in memory."""

    def __init__(self, path: Path):
        self.handle = path.open("w", encoding="utf-8")
        self.handle.write("[")
        self.count = 0

    def write(self, task: dict[str, Any]) -> None:
        self.handle.write(("," if self.count else "") + "\n" + json.dumps(task, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.handle.write("\n]\n")
        self.handle.close()


# ---------------------------------------------------------------------------------------------- gold


def read_gold(path: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Gold spans by record id from a span-schema JSON-lines file, a CCKS file or a Label Studio export."""
    from datasets_scripts import read_ccks, read_label_studio
    from metrics.cli import InputFileError, read_span_records

    def spans(records) -> dict[str, list[tuple[int, int, str]]]:
        return {r["id"]: [(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in records}

    if detect_format(path, per_file=False) == "label-studio":
        return spans(read_label_studio(path, strict=True).records)
    first = next(read_jsonl(path), None)  # validates the first line, names the file and line if it is bad
    if first is not None and _is_ccks(path):
        return spans(read_ccks(path, strict=True).records)
    try:
        return read_span_records(path)
    except InputFileError as error:
        raise PredictInputError(str(error)) from None


def _is_ccks(path: Path) -> bool:
    with path.open(encoding="utf-8-sig") as handle:
        line = next((line for line in handle if line.strip()), "{}")
    return "originalText" in json.loads(line)


def score_against_gold(gold_path: Path, predictions_path: Path, config, metrics_path: Path) -> str:
    """The metrics table of the predictions against gold (records matched by id); writes the JSON report."""
    from metrics import format_report, score_entities
    from metrics.cli import read_span_records

    gold = read_gold(gold_path)
    predicted = read_span_records(predictions_path)
    missing = [record_id for record_id in gold if record_id not in predicted]
    if missing:
        shown = ", ".join(repr(record_id) for record_id in missing[:10])
        raise PredictInputError(f"{len(missing)} ids in {gold_path} were not predicted: {shown}")
    ids = list(gold)
    types = list(dict.fromkeys(label.partition("-")[2] for label in config.id2label.values() if label != "O"))
    report = score_entities(
        [gold[i] for i in ids],
        [predicted[i] for i in ids],
        entity_types=types,
        classes=getattr(config, "label_classes", None) or None,
        record_ids=ids,
    )
    metrics_path.write_text(report.to_json() + "\n", encoding="utf-8")
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
    parser.add_argument("--label-studio", type=Path, help="also write Label Studio tasks with predictions here")
    parser.add_argument("--model-version", help="Label Studio model_version (default: the model folder's name)")
    parser.add_argument("--from-name", default="label", help="Label Studio <Labels> control name")
    parser.add_argument("--to-name", default="text", help="Label Studio <Text> object name")
    parser.add_argument("--gold", type=Path, help="score the predictions against this gold file")
    parser.add_argument("--metrics-output", type=Path, help="JSON metrics (default: OUTPUT with .metrics.json)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def load_pipeline(model: str, device, batch_size: int):
    from transformers import pipeline

    pipe = pipeline("clinical-ner", model=model, trust_remote_code=True, device=device, batch_size=batch_size)
    if pipe.device != device:
        # With torch.distributed initialised (accelerate launch), transformers pins a pipeline to the model's
        # current device (the CPU after loading) whatever `device` says: put it where this process runs.
        pipe.model.to(device)
        pipe.device = device
    return pipe


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from training.common import has_accelerator_device

    # On a machine without GPUs, Accelerate forms a multi-process (gloo) group only when told to use the CPU:
    # `accelerate launch --multi_gpu --num_processes 2 predict.py ...` then runs two cooperating processes.
    accelerator = Accelerator(cpu=args.cpu or not has_accelerator_device())
    main_process = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if args.batch_size < 1 or args.chunk_size < 1:
        print("error: --batch-size and --chunk-size must be at least 1", file=sys.stderr)
        return 2
    pipe = load_pipeline(args.model, accelerator.device, args.batch_size)
    call_kwargs = {k: v for k, v in (("max_length", args.max_length), ("stride", args.stride)) if v is not None}
    model_version = args.model_version or Path(str(args.model).rstrip("/")).name

    output = writer = None
    progress = tqdm(desc="records", unit="record", disable=not main_process or args.no_progress)
    written = 0
    try:
        records = read_records(args.input, args.format, args.per_file, args.text_key)
        if main_process:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            output = args.output.open("w", encoding="utf-8")
            writer = LabelStudioWriter(args.label_studio) if args.label_studio else None
        for chunk in chunked(records, args.chunk_size * world):
            # Dealt out round-robin, so long and short records spread over the processes.
            mine = list(range(rank, len(chunk), world))
            found = pipe([chunk[i].text for i in mine], **call_kwargs) if mine else []
            results = list(zip(mine, (to_span_entities(entities) for entities in found)))
            if world > 1:
                results = gather_object(results)
            if main_process:
                for index, entities in sorted(results, key=lambda item: item[0]):
                    record = chunk[index]
                    line = {"id": record.id, "text": record.text, "entities": entities}
                    output.write(json.dumps(line, ensure_ascii=False) + "\n")
                    if writer is not None:
                        writer.write(
                            label_studio_task(
                                record, entities, model_version, args.from_name, args.to_name, args.text_key
                            )
                        )
                written += len(chunk)
                progress.update(len(chunk))
    except PredictInputError as error:
        if main_process:
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if output is not None:
            output.close()
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    if not main_process:
        return 0
    also = f" and {args.label_studio}" if args.label_studio else ""
    print(f"wrote {written} records to {args.output}{also} ({world} process{'es' if world > 1 else ''})")
    if args.gold is not None:
        metrics_path = args.metrics_output or args.output.with_suffix(".metrics.json")
        try:
            print(score_against_gold(args.gold, args.output, pipe.model.config, metrics_path))
        except (PredictInputError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"metrics written to {metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
