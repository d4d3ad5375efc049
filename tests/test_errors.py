"""One error style for every command: each user mistake below prints exactly one line ``error: ...`` on stderr,
exits with status 2 and shows no traceback (unless ``--debug``). The cases are also the README's table of error
messages: ``python -m tests.test_errors`` rewrites that table, and a test fails when it has drifted.

The cases run in this process through :func:`clinical_ner_zh.cli_errors.run_command`; one slow test per command runs its
``__main__`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from clinical_ner_zh.cli_errors import run_command

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- error table: python -m tests.test_errors -->", "<!-- end of the error table -->"
SECRET = "患者张三身份证"  # patient text that must never reach a message


@dataclass(frozen=True)
class Case:
    command: str  # as a user types it
    mistake: str
    argv: Callable[[Path, Path], list[str]]  # (work folder, tiny model folder) -> arguments; writes the files
    message: str  # the error line, with the work folder written as ``<dir>/``

    def main(self) -> Callable:
        if self.command == "predict.py":
            import predict

            return predict.main
        if self.command.endswith(".py"):
            return __import__(self.command.removesuffix(".py")).main
        module = self.command.removeprefix("python -m ")
        return __import__(
            module if module != "clinical_ner_zh.metrics" else "clinical_ner_zh.metrics.cli", fromlist=["main"]
        ).main


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _records(folder: Path, *lines: str) -> Path:
    return _write(folder / "records.jsonl", "".join(line + "\n" for line in lines))


def _record(record_id: str, text: str = "时间药物") -> str:
    return json.dumps({"id": record_id, "text": text}, ensure_ascii=False)


def _ccks(folder: Path, *lines: str) -> Path:
    return _write(folder / "ccks.jsonl", "".join(line + "\n" for line in lines))


CCKS_LINE = json.dumps(
    {"originalText": SECRET + "，无不适。", "entities": [{"label_type": "疾病和诊断", "start_pos": 0, "end_pos": 2}]},
    ensure_ascii=False,
)


def _predict(folder: Path, model: Path, *args) -> list[str]:
    return [str(model), *map(str, args), "--no-progress"]


def _span(record_id: str, text: str, *spans) -> str:
    entities = [{"start": s, "end": e, "label": label} for s, e, label in spans]
    return json.dumps({"id": record_id, "text": text, "entities": entities}, ensure_ascii=False)


def _metrics_files(folder: Path, gold_lines: list[str], pred_lines: list[str]) -> list[str]:
    gold = _write(folder / "gold.jsonl", "".join(line + "\n" for line in gold_lines))
    pred = _write(folder / "pred.jsonl", "".join(line + "\n" for line in pred_lines))
    return [str(gold), str(pred)]


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _interrupted(folder: Path, model: Path, window: list[int]) -> Path:
    """The output path of a run interrupted before it wrote anything, with the settings it recorded."""
    import predict

    settings = {"model": str(model), "model_digest": predict.model_digest(str(model), None), "window": window}
    _write(folder / "p.jsonl.partial.json", json.dumps({**settings, "quantize": None}))
    return _write(folder / "p.jsonl.partial", "").with_suffix("")


def _non_empty(folder: Path) -> Path:
    (folder / "out").mkdir()
    (folder / "out" / "model.safetensors").write_bytes(b"another model")
    return folder / "out"


def _checkpoint_of_two_processes(folder: Path) -> list[str]:
    """train_ner.py arguments resuming a checkpoint of the same configuration, written by two processes."""
    import train_ner
    from clinical_ner_zh.training.common import parse_arguments, run_arguments

    argv = ["--corpus=ccks2019", f"--train_file={_ccks(folder, CCKS_LINE)}", f"--output_dir={folder / 'out'}"]
    arguments = parse_arguments((train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments), argv)
    train_ner.validate_arguments(*arguments)
    checkpoint = folder / "out" / "checkpoints" / "checkpoint_0"
    checkpoint.mkdir(parents=True)
    _write(checkpoint / "run_arguments.json", json.dumps(run_arguments(*arguments)))
    _write(checkpoint / "training_state.json", json.dumps({"step": 4, "num_processes": 2}))
    return [*argv, "--resume_from_checkpoint=latest"]


def _checkpoint_in(run: Path) -> Path:
    checkpoint = run / "checkpoints" / "checkpoint_3"
    checkpoint.mkdir(parents=True)
    _write(checkpoint / "training_state.json", json.dumps({"step": 4}))
    return checkpoint


def _write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _unknown_labels(folder: Path) -> Path:
    """A Label Studio export of 4 tasks whose one region each has a label the breast-cancer types do not know."""
    region = {"start": 0, "end": 2, "text": SECRET[:2], "labels": ["乳腺结节"]}
    annotation = {"id": 1, "was_cancelled": False, "result": [{"type": "labels", "value": region}]}
    tasks = [{"id": n, "data": {"text": SECRET}, "annotations": [annotation]} for n in range(4)]
    return _write(folder / "export.json", json.dumps(tasks, ensure_ascii=False))


def _pickle_with_global(folder: Path) -> Path:
    path = folder / "evil.pkl"
    path.write_bytes(pickle.dumps(os.system))
    return path


CASES = [
    Case(
        "predict.py",
        "output path equal to the input",
        lambda d, m: _predict(d, m, _records(d, _record("a")), "-o", d / "records.jsonl"),
        "--output <dir>/records.jsonl is the same file as the input: choose another path",
    ),
    Case(
        "predict.py",
        "Label Studio output equal to the predictions",
        lambda d, m: _predict(d, m, _records(d, _record("a")), "-o", d / "p.jsonl", "--label-studio", d / "p.jsonl"),
        "--label-studio <dir>/p.jsonl is the same file as --output: choose another path",
    ),
    Case(
        "predict.py",
        "mistyped model path",
        lambda d, m: _predict(d, d / "modle", _records(d, _record("a")), "-o", d / "p.jsonl"),
        "<dir>/modle: no such model folder",
    ),
    Case(
        "predict.py",
        "a folder whose config.json is not a model's",
        lambda d, m: _predict(
            d, _write(_folder(d / "other") / "config.json", "{}").parent, _records(d, _record("a")), "-o", d / "p.jsonl"
        ),
        "<dir>/other: not a clinical-ner model (a CRF tagger saved by train_ner.py or save_for_hub): Unrecognized "
        "model in <dir>/other. Should have a `model_type` key in its config.json.",
    ),
    Case(
        "predict.py",
        "a line that is not JSON",
        lambda d, m: _predict(d, m, _records(d, _record("a"), '{"id": "b", "text": "' + SECRET), "-o", d / "p.jsonl"),
        "<dir>/records.jsonl:2: invalid JSON (Unterminated string starting at at column 21)",
    ),
    Case(
        "predict.py",
        "a record the tokenizer rejects (lone surrogate)",
        lambda d, m: _predict(d, m, _records(d, '{"id": "b-7", "text": "' + SECRET + '\\ud800"}'), "-o", d / "p.jsonl"),
        "<dir>/records.jsonl:1: record 'b-7': the text holds a lone surrogate at character 7 "
        "(--on-error skip leaves such records out)",
    ),
    Case(
        "predict.py",
        "window longer than the model allows",
        lambda d, m: _predict(d, m, _records(d, _record("a")), "-o", d / "p.jsonl", "--max-length", "999"),
        "--max-length/--stride: max_length (999) exceeds the 512 tokens the encoder takes (its max_position_embeddings)",
    ),
    Case(
        "predict.py",
        "partial results of an interrupted run, no --resume",
        lambda d, m: _predict(
            d, m, _records(d, _record("a")), "-o", _write(d / "p.jsonl.partial", _record("a") + "\n").with_suffix("")
        ),
        "<dir>/p.jsonl.partial holds the results of an interrupted run: --resume continues it, or delete it",
    ),
    Case(
        "predict.py",
        "--resume after the input changed",
        lambda d, m: _predict(
            d,
            m,
            _records(d, _record("a", "药物")),
            "--resume",
            "-o",
            _write(d / "p.jsonl.partial", _span("a", "时间") + "\n").with_suffix(""),
        ),
        "<dir>/p.jsonl.partial:1: record 'a' differs from the input; the input changed since the interrupted run: "
        "delete <dir>/p.jsonl.partial to start afresh",
    ),
    Case(
        "predict.py",
        "--resume with other windows than the interrupted run",
        lambda d, m: _predict(d, m, _records(d, _record("a")), "--resume", "-o", _interrupted(d, m, window=[6, 2])),
        "<dir>/p.jsonl.partial was written by a run with --max-length/--stride windows of 6 tokens with stride 2 "
        "(now 62 with 15): rerun with those, or delete <dir>/p.jsonl.partial to start afresh",
    ),
    Case(
        "predict.py",
        "--gold made from another input (same ids, other texts)",
        lambda d, m: _predict(
            d, m, _records(d, _record("a")), "-o", d / "p.jsonl", "--gold", _write(d / "g.jsonl", _span("a", SECRET))
        ),
        "1 records have one text in <dir>/g.jsonl and another in the input (records are matched by id: were both "
        "made from the same input?): 'a'",
    ),
    Case(
        "train_ner.py",
        "training file not found",
        lambda d, m: ["--corpus=ccks2019", f"--train_file={d / 'train.jsonl'}", f"--output_dir={d / 'out'}"],
        "train_file <dir>/train.jsonl does not exist",
    ),
    Case(
        "train_ner.py",
        "an encoder that is neither a folder nor on the Hub (offline)",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE, CCKS_LINE)}",
            "--dev_fraction=0.5",
            f"--output_dir={d / 'out'}",
            "--encoder=outputs/no-such-encoder",
        ],
        "--encoder outputs/no-such-encoder: not a model folder here, and it could not be loaded from the Hub (We "
        "couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files.)",
    ),
    Case(
        "train_ner.py",
        "attention heads that do not divide the fusion width",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE, CCKS_LINE)}",
            "--dev_fraction=0.5",
            f"--output_dir={d / 'out'}",
            "--lstm_hidden_size=16",
            "--fusion_num_heads=3",
        ],
        "model configuration: fusion_hidden_size (32 = 2 * lstm_hidden_size) must be divisible by fusion_num_heads (3)",
    ),
    Case(
        "train_ner.py",
        "a knowledge-graph option without --family clinicalbert-kg",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE)}",
            f"--output_dir={d / 'out'}",
            f"--kg_embeddings={d / 'kge'}",
        ],
        "--kg_embeddings is an option of --family clinicalbert-kg, and this run trains chcancerbert: give --family "
        "clinicalbert-kg, or drop --kg_embeddings",
    ),
    Case(
        "train_ner.py",
        "a batch size of 0",
        lambda d, m: ["--corpus=ccks2019", f"--train_file={_ccks(d, CCKS_LINE)}", "--per_device_train_batch_size=0"],
        "--per_device_train_batch_size 0: expected a count >= 1",
    ),
    Case(
        "train_ner.py",
        "misspelt key in the --config file",
        lambda d, m: ["--config", str(_write(d / "run.yaml", "varaint: crf\n"))],
        "<dir>/run.yaml: unknown argument(s) varaint",
    ),
    Case(
        "train_ner.py",
        "an output folder that holds another model",
        lambda d, m: ["--corpus=ccks2019", f"--train_file={_ccks(d, CCKS_LINE)}", f"--output_dir={_non_empty(d)}"],
        "output folder <dir>/out is not empty (model.safetensors): --overwrite_output_dir replaces it, "
        "--resume_from_checkpoint continues the run it holds, or choose another folder",
    ),
    Case(
        "train_ner.py",
        "a checkpoint of two processes resumed by one",
        lambda d, m: _checkpoint_of_two_processes(d),
        "<dir>/out/checkpoints/checkpoint_0 was written by 2 process(es), this run has 1: resume with 2 (accelerate "
        "launch --num_processes 2), or train afresh in another folder",
    ),
    Case(
        "train_ner.py",
        "a checkpoint of another run folder",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE)}",
            f"--output_dir={d / 'new'}",
            f"--resume_from_checkpoint={_checkpoint_in(d / 'old')}",
        ],
        "--resume_from_checkpoint <dir>/old/checkpoints/checkpoint_3 is not a checkpoint of the output folder "
        "<dir>/new: a run continues in its own folder, give --output_dir <dir>/old",
    ),
    Case(
        "train_ner.py",
        "more records dropped than --max_bad_fraction",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE, CCKS_LINE[:30])}",
            f"--output_dir={d / 'out'}",
        ],
        "<dir>/ccks.jsonl: 1 of 2 records dropped (bad_json 1), more than --max_bad_fraction 0.05: fix the file "
        "(the log names each record) or raise --max_bad_fraction",
    ),
    Case(
        "train_ner.py",
        "a Label Studio export whose label names are unknown (every entity dropped)",
        lambda d, m: ["--corpus=breast_cancer", f"--train_file={_unknown_labels(d)}", f"--output_dir={d / 'out'}"],
        "<dir>/export.json: 4 of 4 entities dropped (unknown_label 4), more than --max_bad_fraction 0.05: fix the "
        "file (the log names each entity) or raise --max_bad_fraction",
    ),
    Case(
        "train_ner.py",
        "a training file without any entity",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, *[json.dumps({'originalText': SECRET, 'entities': []}, ensure_ascii=False)] * 4)}",
            "--dev_fraction=0.5",
            f"--output_dir={d / 'out'}",
        ],
        "<dir>/ccks.jsonl: no entity in the training split, nothing to learn",
    ),
    Case(
        "train_ner.py",
        "an empty training file",
        lambda d, m: ["--corpus=ccks2019", f"--train_file={_ccks(d)}", f"--output_dir={d / 'out'}"],
        "<dir>/ccks.jsonl: no usable record",
    ),
    Case(
        "train_ner.py",
        "a dev share that leaves the validation split empty",
        lambda d, m: [
            "--corpus=ccks2019",
            f"--train_file={_ccks(d, CCKS_LINE, CCKS_LINE)}",
            f"--output_dir={d / 'out'}",
        ],
        "the validation split is empty: --dev_fraction 0.1 of the 2 records of <dir>/ccks.jsonl leaves none there: "
        "raise --dev_fraction or give --validation_file",
    ),
    Case(
        "train_mlm.py",
        "training file not found",
        lambda d, m: [f"--train_files={d / 'corpus.txt'}", f"--output_dir={d / 'out'}"],
        "training file(s) not found: <dir>/corpus.txt",
    ),
    Case(
        "train_mlm.py",
        "a lexicon with character masking",
        lambda d, m: [
            f"--train_files={_write_bytes(d / 'corpus.txt', b'ok')}",
            "--masking=char",
            f"--lexicon_file={_write_bytes(d / 'terms.txt', '改良根治术'.encode())}",
            f"--output_dir={d / 'out'}",
        ],
        "--lexicon_file keeps terms whole for --masking whole_word; --masking char masks each character on its own "
        "and would ignore it: drop one of the two",
    ),
    Case(
        "train_mlm.py",
        "a lexicon line that is not UTF-8",
        lambda d, m: [
            f"--train_files={_write_bytes(d / 'corpus.txt', b'ok')}",
            f"--lexicon_file={_write_bytes(d / 'terms.txt', '术语'.encode('gbk'))}",
            f"--output_dir={d / 'out'}",
        ],
        "<dir>/terms.txt:1: not UTF-8 text (byte 0 of the line)",
    ),
    Case(
        "train_mlm.py",
        "more documents dropped than --max_bad_fraction (a line that is not UTF-8)",
        lambda d, m: [
            "--train_files=" + str(_write_bytes(d / "corpus.txt", b"ok\n\xd5\xc5\n")),
            f"--output_dir={d}/o",
        ],
        "<dir>/corpus.txt: 1 of 2 records dropped (bad_encoding 1), more than --max_bad_fraction 0.05: fix the file "
        "(the log names each record) or raise --max_bad_fraction",
    ),
    Case(
        "train_kge.py",
        "triples file not found",
        lambda d, m: ["--triples", str(d / "triples.tsv"), "--output-dir", str(d / "kge")],
        "<dir>/triples.tsv: No such file or directory",
    ),
    Case(
        "train_kge.py",
        "an output folder that holds another model",
        lambda d, m: [
            "--triples",
            str(_write(d / "t.tsv", "高血压\t症状\t头晕\n")),
            "--output-dir",
            str(_non_empty(d)),
        ],
        "output folder <dir>/out is not empty (model.safetensors): --overwrite_output_dir replaces it, --resume "
        "continues the run it holds, or choose another folder",
    ),
    Case(
        "train_kge.py",
        "--init-from the folder --overwrite-output-dir replaces",
        lambda d, m: [
            "--triples",
            str(_write(d / "t.tsv", "高血压\t症状\t头晕\n")),
            "--output-dir",
            str(_write(_non_empty(d) / "kge_config.json", "{}").parent),
            "--init-from",
            f"{d}/out",
            "--overwrite-output-dir",
        ],
        "--init-from <dir>/out lies in the output folder <dir>/out, which --overwrite_output_dir would clear: move it "
        "out, or choose another output folder",
    ),
    Case(
        "train_kge.py",
        "an --entities table naming no entity of the triples",
        lambda d, m: [
            "--triples",
            str(_write(d / "t.tsv", "高血压\t症状\t头晕\n")),
            "--entities",
            str(_write(d / "types.tsv", "高血压病\tDisease\n")),
            "--output-dir",
            str(d / "kge"),
        ],
        "--entities <dir>/types.tsv: none of its 1 names is an entity of the triples (2 entities), so every entity "
        "would be typed Other: give the type table of this graph (names as in the triples)",
    ),
    Case(
        "train_kge.py",
        "a triple with two fields",
        lambda d, m: ["--triples", str(_write(d / "t.tsv", "高血压\t症状\n")), "--output-dir", str(d / "kge")],
        "<dir>/t.tsv:1: expected 3 tab-separated fields (head, relation, tail), got 2: '高血压\\t症状'",
    ),
    Case(
        "train_kge.py",
        "a triples file that is not UTF-8",
        lambda d, m: [
            "--triples",
            str(_write_bytes(d / "t.tsv", b"a\tb\tc\n\xd5\xc5\tr\tc\n")),
            "--output-dir",
            f"{d}/o",
        ],
        "<dir>/t.tsv:2: not UTF-8 text (byte 0 of the line)",
    ),
    Case(
        "python -m clinical_ner_zh.datasets_scripts.report",
        "--strict and an entity past the end of its record",
        lambda d, m: [
            "--format",
            "ccks2019",
            "--strict",
            str(_ccks(d, CCKS_LINE.replace('"end_pos": 2', '"end_pos": 99'))),
        ],
        "<dir>/ccks.jsonl:1: record ccks:1: entity 0: offsets out of range (start=0, end=99, text length 12)",
    ),
    Case(
        "python -m clinical_ner_zh.datasets_scripts.report",
        "corpus file not found",
        lambda d, m: ["--format", "ccks2019", str(d / "missing.jsonl")],
        "<dir>/missing.jsonl: No such file or directory",
    ),
    Case(
        "python -m clinical_ner_zh.datasets_scripts.ccks2019",
        "an output folder that holds other files",
        lambda d, m: [str(_ccks(d, CCKS_LINE)), "--output-dir", str(_non_empty(d))],
        "output folder <dir>/out is not empty (model.safetensors): --overwrite-output-dir replaces it, or choose "
        "another folder",
    ),
    Case(
        "python -m clinical_ner_zh.metrics",
        "a gold id missing from the predictions",
        lambda d, m: _metrics_files(d, [_span("r0", SECRET), _span(7, SECRET)], [_span("r0", SECRET)]),
        "1 ids in <dir>/gold.jsonl are missing from <dir>/pred.jsonl: '7'",
    ),
    Case(
        "python -m clinical_ner_zh.metrics",
        "a type in two classes in --classes",
        lambda d, m: [
            *_metrics_files(d, [_span("r0", SECRET)], [_span("r0", SECRET)]),
            "--classes",
            str(_write(d / "classes.json", '{"A": ["TNM"], "B": ["TNM"]}')),
        ],
        "<dir>/classes.json: class mapping: type 'TNM' is in two classes",
    ),
    Case(
        "python -m clinical_ner_zh.metrics",
        "the same ids on different texts",
        lambda d, m: _metrics_files(
            d, [_span("r0", "时间"), _span("r1", SECRET)], [_span("r0", "时间"), _span("r1", "药物")]
        ),
        "1 records have one text in <dir>/gold.jsonl and another in <dir>/pred.jsonl (records are matched by id: "
        "were both made from the same input?): 'r1'",
    ),
    Case(
        "python -m clinical_ner_zh.metrics",
        "an empty gold file",
        lambda d, m: _metrics_files(d, [], [_span("r0", SECRET)]),
        "<dir>/gold.jsonl: the file holds no records",
    ),
    Case(
        "python -m clinical_ner_zh.metrics",
        "--output equal to the gold file",
        lambda d, m: [
            *_metrics_files(d, [_span("r0", SECRET)], [_span("r0", SECRET)]),
            "--output",
            str(d / "gold.jsonl"),
        ],
        "--output <dir>/gold.jsonl is GOLD: choose another path for the report",
    ),
    Case(
        "python -m clinical_ner_zh.kg.cmekg",
        "a pickle that references a global",
        lambda d, m: ["--output-dir", str(d / "kg"), "--pickle", str(_pickle_with_global(d))],
        "<dir>/evil.pkl: refusing to load global posix.system: this file may hold only dicts, lists and strings",
    ),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub

    from .pipeline_helpers import char_tokenizer, hand_set_model

    tokenizer = char_tokenizer(model_max_length=64)
    return save_for_hub(hand_set_model(tokenizer), tokenizer, tmp_path_factory.mktemp("model") / "tiny-ner")


def error_line(case: Case, folder: Path, model: Path, capsys) -> str:
    """Runs the case through the ``__main__`` wrapper and returns its error line, folder written as ``<dir>/``."""
    argv = case.argv(folder, model)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_command(case.main(), argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert SECRET not in err
    return lines[0].removeprefix("error: ").replace(f"{folder}/", "<dir>/")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}: {c.mistake}" for c in CASES])
def test_a_user_mistake_is_one_line_and_status_2(case, model_dir, tmp_path, capsys):
    assert error_line(case, tmp_path, model_dir, capsys) == case.message


def test_debug_shows_the_traceback(tmp_path):
    import predict

    argv = [str(tmp_path / "modle"), str(_records(tmp_path, _record("a"))), "-o", str(tmp_path / "p.jsonl")]
    with pytest.raises(predict.PredictInputError, match="no such model folder"):
        run_command(predict.main, [*argv, "--debug"])


def test_a_main_returning_its_results_exits_with_status_0():
    # train_ner.main returns its scores (for tests and benchmarks); the command still succeeds
    with pytest.raises(SystemExit) as stopped:
        run_command(lambda argv: {"best_dev_f1": 0.5}, [])
    assert stopped.value.code == 0


def readme_table() -> str:
    rows = ["| command | mistake | message (stderr, exit status 2) |", "| --- | --- | --- |"]
    for case in CASES:
        message = case.message.replace("|", "\\|")
        rows.append(f"| `{case.command}` | {case.mistake} | `error: {message}` |")
    return "\n".join([TABLE_START, *rows, TABLE_END])


def test_the_readme_table_is_the_one_the_cases_make():
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    assert text[start:end] == readme_table(), "run `python -m tests.test_errors` to rewrite the README table"


# One case per command through its real `__main__`, in a subprocess.
FIRST_CASES = {case.command: case for case in reversed(CASES)}


@pytest.mark.slow
@pytest.mark.parametrize("case", FIRST_CASES.values(), ids=list(FIRST_CASES))
def test_each_command_main_prints_one_line(case, model_dir, tmp_path):
    argv = case.argv(tmp_path, model_dir)
    if case.command.endswith(".py"):
        command = [sys.executable, str(ROOT / case.command), *argv]
    else:
        command = [sys.executable, "-m", case.command.removeprefix("python -m "), *argv]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: {case.message.replace('<dir>/', f'{tmp_path}/')}"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    README.write_text(text[:start] + readme_table() + text[end:], encoding="utf-8")
    print(f"rewrote the error table in {README}")
