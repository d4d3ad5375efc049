"""predict.py: every input format, JSON-lines and Label Studio output, the round trip through the breast-cancer reader,
scores against gold, errors that name the place but never the text, and two processes under accelerate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import predict
from clinical_ner_zh.datasets_scripts import load_breast_cancer
from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub

from .helpers import run_predict as run
from .pipeline_helpers import char_tokenizer, hand_set_model

hf_logging.set_verbosity_error()

TYPES = ["Chemotherapy", "Time"]
CLASSES = {"Chemotherapy": "Treatments", "Time": "Time"}
TAGGED = {"药": "B-Chemotherapy", "物": "I-Chemotherapy", "时": "B-Time", "间": "I-Time"}
TEXTS = [
    "患者于时间行药物物化疗，\r\n结节😀 药物。",
    "",
    "ＡＢ１２３时间间 HER2（＋）",
    "左乳腺癌改良根治术" * 40 + "药物物物物物物" + "结节" * 30,  # several windows
]
EXPECTED = [
    [(3, 5, "Time"), (6, 9, "Chemotherapy"), (18, 20, "Chemotherapy")],
    [],
    [(5, 8, "Time")],
    [(360, 367, "Chemotherapy")],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = char_tokenizer(model_max_length=64)
    model = hand_set_model(tokenizer, TAGGED, types=TYPES, classes=CLASSES)
    return save_for_hub(model, tokenizer, tmp_path_factory.mktemp("model") / "tiny-ner")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def spans_of(record) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["label"]) for e in record["entities"]]


def write_jsonl(path: Path, rows, bom: bool = False, newline: str = "\n") -> Path:
    text = newline.join(json.dumps(row, ensure_ascii=False) for row in rows) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_span_schema_and_ccks_json_lines(model_dir, tmp_path):
    span_file = write_jsonl(
        tmp_path / "records.jsonl", [{"id": f"r{i}", "text": t, "entities": []} for i, t in enumerate(TEXTS)]
    )
    assert run(model_dir, span_file, "-o", tmp_path / "out.jsonl", "--batch-size", 3) == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == ["r0", "r1", "r2", "r3"] and [r["text"] for r in out] == TEXTS
    assert [spans_of(r) for r in out] == EXPECTED
    for record in out:
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["class"] == CLASSES[entity["label"]] and 0 < entity["score"] <= 1

    ccks = write_jsonl(
        tmp_path / "ccks.txt", [{"originalText": t, "entities": []} for t in TEXTS], bom=True, newline="\r\n"
    )
    assert run(model_dir, ccks, "--format", "jsonl", "-o", tmp_path / "ccks_out.jsonl", "--chunk-size", 1) == 0
    out = read_jsonl(tmp_path / "ccks_out.jsonl")
    assert [r["id"] for r in out] == ["ccks:1", "ccks:2", "ccks:3", "ccks:4"]  # as the CCKS reader names them
    assert [spans_of(r) for r in out] == EXPECTED


def test_plain_text_per_line_and_per_file(model_dir, tmp_path):
    lines = tmp_path / "notes.txt"
    lines.write_bytes("时间药物\r\n\r\n结节药物物\r\n".encode())
    assert run(model_dir, lines, "-o", tmp_path / "lines.jsonl") == 0
    out = read_jsonl(tmp_path / "lines.jsonl")
    assert [(r["id"], r["text"], spans_of(r)) for r in out] == [
        ("notes:1", "时间药物", [(0, 2, "Time"), (2, 4, "Chemotherapy")]),
        ("notes:3", "结节药物物", [(2, 5, "Chemotherapy")]),
    ]

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes("患者\r\n药物\r\n".encode())
    (folder / "sub" / "b.txt").write_bytes(TEXTS[3].encode())
    (folder / "ignored.md").write_text("时间")
    assert run(model_dir, folder, "--per-file", "-o", tmp_path / "files.jsonl") == 0
    out = read_jsonl(tmp_path / "files.jsonl")
    assert [(r["id"], spans_of(r)) for r in out] == [("a.txt", [(4, 6, "Chemotherapy")]), ("sub/b.txt", EXPECTED[3])]
    assert out[0]["text"] == "患者\r\n药物\r\n"  # CRLF kept: offsets point into the file's characters


def simulate_label_studio(tasks: list[dict]) -> list[dict]:
    """What Label Studio exports after importing the tasks and an annotator submitting each pre-annotation as is."""
    exported = []
    for number, task in enumerate(tasks, start=1):
        prediction = task["predictions"][-1]
        annotation = {"id": 1000 + number, "result": prediction["result"], "was_cancelled": False,
                      "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}  # fmt: skip
        exported.append({"id": task.get("id", number), "data": task["data"], "annotations": [annotation]})
    return exported


def test_label_studio_predictions_round_trip_through_the_breast_cancer_reader(model_dir, tmp_path):
    tasks = [{"id": 10 + i, "data": {"text": t}, "annotations": []} for i, t in enumerate(TEXTS)]
    source = tmp_path / "tasks.json"
    source.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--label-studio", tmp_path / "ls.json",
               "--model-version", "tiny-v1") == 0  # fmt: skip
    written = json.loads((tmp_path / "ls.json").read_text(encoding="utf-8"))
    assert [task["id"] for task in written] == [10, 11, 12, 13] and written[0]["annotations"] == []
    prediction = written[0]["predictions"][0]
    assert prediction["model_version"] == "tiny-v1" and 0 < prediction["score"] <= 1
    region = prediction["result"][0]
    assert {k: region[k] for k in ("from_name", "to_name", "type")} == {"from_name": "label", "to_name": "text",
                                                                        "type": "labels"}  # fmt: skip
    assert region["value"] == {"start": 3, "end": 5, "text": "时间", "labels": ["Time"]} and 0 < region["score"] <= 1
    assert "score" not in written[1]["predictions"][0]  # no entity, no confidence to sort by

    export = tmp_path / "export.json"
    export.write_text(json.dumps(simulate_label_studio(written), ensure_ascii=False), encoding="utf-8")
    splits = load_breast_cancer(export, strict=True)
    read_back = {r["id"]: [(e["start"], e["end"], e["label"]) for e in r["entities"]]
                 for split in splits.values() for r in split}  # fmt: skip
    predicted = {r["id"]: spans_of(r) for r in read_jsonl(tmp_path / "out.jsonl")}
    assert set(read_back) == set(predicted) == {"10", "11", "12", "13"}
    assert read_back == {k: sorted(v) for k, v in predicted.items()}


def test_label_studio_tasks_from_plain_records_import_with_their_text(model_dir, tmp_path):
    source = write_jsonl(tmp_path / "records.jsonl", [{"id": "a", "text": TEXTS[0]}])
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--label-studio", tmp_path / "ls.json") == 0
    (task,) = json.loads((tmp_path / "ls.json").read_text(encoding="utf-8"))
    assert task["data"] == {"text": TEXTS[0], "record_id": "a"}
    assert task["predictions"][0]["model_version"] == "tiny-ner"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(simulate_label_studio([task]), ensure_ascii=False), encoding="utf-8")
    (record,) = [r for split in load_breast_cancer(export, strict=True).values() for r in split]
    assert [(e["start"], e["end"], e["label"]) for e in record["entities"]] == EXPECTED[0]


def test_gold_prints_the_metrics_table_and_writes_json(model_dir, tmp_path, capsys):
    source = write_jsonl(tmp_path / "records.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)])
    gold_rows = [{"id": f"r{i}", "text": t, "entities": [{"start": s, "end": e, "label": label} for s, e, label in spans]}
                 for i, (t, spans) in enumerate(zip(TEXTS, EXPECTED))]  # fmt: skip
    gold_rows[0]["entities"] = gold_rows[0]["entities"][:2]  # one false positive
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_rows)
    capsys.readouterr()
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--gold", gold) == 0
    table = capsys.readouterr().out
    assert "micro avg" in table and "class Treatments" in table and "Chemotherapy" in table
    report = json.loads((tmp_path / "out.metrics.json").read_text(encoding="utf-8"))
    assert report["micro"]["true_positives"] == 4 and report["micro"]["predicted"] == 5
    assert report["per_class"]["Time"]["f1"] == 1.0

    gold_rows.append({"id": "unseen", "text": "x", "entities": []})
    write_jsonl(gold, gold_rows)
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--gold", gold) == 2
    assert "1 ids in" in capsys.readouterr().err


def test_gold_scores_are_those_of_the_metrics_command_for_the_same_files(model_dir, tmp_path, capsys):
    from clinical_ner_zh.metrics.cli import main as metrics_main

    rows = [{"id": "r0", "text": "患者药物", "entities": [{"start": 2, "end": 4, "label": "Chemotherapy"}]}]
    source = write_jsonl(tmp_path / "records.jsonl", rows)  # no Time in gold or predictions, a type of the model
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--gold", source) == 0
    from_predict = json.loads((tmp_path / "out.metrics.json").read_text(encoding="utf-8"))
    metrics_main([str(source), str(tmp_path / "out.jsonl"), "--output", str(tmp_path / "cli.json")])
    from_cli = json.loads((tmp_path / "cli.json").read_text(encoding="utf-8"))
    assert from_predict["macro"] == from_cli["macro"] and from_predict["macro"]["f1"] == 1.0
    assert from_predict["per_type"]["Time"]["support"] == 0  # listed, out of the mean


SECRET = "患者张三身份证"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            '{"id": "1", "text": "药物"}\n\n{"id": "2", "text": "' + SECRET + '"\n',
            r"bad.jsonl:3: invalid JSON",
        ),
        ("bad.jsonl", '{"id": "1", "body": "' + SECRET + '"}\n', r"bad.jsonl:1: expected a string field 'text'"),
        (
            "bad.jsonl",
            '{"id": 1, "text": "a"}\n{"id": "1", "text": "' + SECRET + '"}\n',
            r"bad.jsonl:2: id '1' appears twice",
        ),
        ("bad.jsonl", '["' + SECRET + '"]\n', r"bad.json"),  # a list: read as Label Studio tasks
        ("bad.json", '[{"data": {"txt": "' + SECRET + '"}}]', r"bad.json: task 0: expected a string field 'data.text'"),
        ("bad.json", '{"data": "' + SECRET + '"}', r"bad.json:1: expected a string field 'text'"),  # JSON lines
        (
            "bad.json",
            '[{"data": {"text": "a"}}, 7, "' + SECRET + '"]',
            r"bad.json: task 1: expected a JSON object, got int",
        ),
    ],
)
def test_bad_input_names_file_and_line_never_the_text(model_dir, tmp_path, capsys, name, content, message):
    import re

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert run(model_dir, path, "-o", tmp_path / "out.jsonl") == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err), captured.err
    assert SECRET not in captured.err + captured.out


def test_not_utf8_text_names_the_file(model_dir, tmp_path, capsys):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"ok\n" + "caf\u00e9".encode("latin-1") + b"\n")
    assert run(model_dir, path, "-o", tmp_path / "out.jsonl") == 2
    assert "latin.txt:2: not UTF-8 text (byte 3 of the line)" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_under_accelerate_write_the_single_process_output(model_dir, tmp_path):
    records = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] * (1 + i % 3)} for i in range(11)]
    source = write_jsonl(tmp_path / "records.jsonl", records)
    assert run(model_dir, source, "-o", tmp_path / "single.jsonl", "--label-studio", tmp_path / "single.json") == 0
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(Path(predict.__file__)), str(model_dir),
               str(source), "-o", str(tmp_path / "multi.jsonl"), "--label-studio", str(tmp_path / "multi.json"),
               "--chunk-size", "2", "--no-progress"]  # fmt: skip
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, cwd=Path(predict.__file__).parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 11 records" in result.stdout and "(2 processes)" in result.stdout, result.stdout
    assert (tmp_path / "multi.jsonl").read_text() == (tmp_path / "single.jsonl").read_text()
    assert (tmp_path / "multi.json").read_text() == (tmp_path / "single.json").read_text()

    # --resume under two processes: what a run killed after 4 records and in the middle of the 5th left behind
    lines = (tmp_path / "single.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "resumed.jsonl.partial").write_bytes(b"".join(lines[:4]) + lines[4][:10])
    pipe = predict.load_pipeline(str(model_dir), torch.device("cpu"), 8)  # and the record of what wrote it
    settings = {"model": str(model_dir), "model_digest": predict.model_digest(str(model_dir), pipe),
                "window": list(pipe._window_plan(None, None)), "quantize": None}  # fmt: skip
    (tmp_path / "resumed.jsonl.partial.json").write_text(json.dumps(settings))
    resume = [*command, "--resume"]
    resume[resume.index(str(tmp_path / "multi.jsonl"))] = str(tmp_path / "resumed.jsonl")
    resume[resume.index(str(tmp_path / "multi.json"))] = str(tmp_path / "resumed.json")
    result = subprocess.run(
        resume, env=env, capture_output=True, text=True, timeout=600, cwd=Path(predict.__file__).parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "single.jsonl").read_text()
    assert (tmp_path / "resumed.json").read_text() == (tmp_path / "single.json").read_text()


# ---------------------------------------------------------------------------------------------- nothing lost


def records_file(tmp_path, count: int = 4, name: str = "records.jsonl") -> Path:
    return write_jsonl(tmp_path / name, [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(count)])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-o", "{input}"], "--output {input} is the same file as the input"),
        (["-o", "{out}", "--label-studio", "{input}"], "--label-studio {input} is the same file as the input"),
        (["-o", "{out}", "--label-studio", "{out}"], "--label-studio {out} is the same file as --output"),
        (["-o", "{out}", "--gold", "{gold}", "--metrics-output", "{gold}"], "is the same file as --gold"),
        (["-o", "{gold}", "--gold", "{gold}"], "--output {gold} is the same file as --gold"),
    ],
)
def test_an_output_equal_to_an_input_is_refused_and_the_input_kept(model_dir, tmp_path, capsys, flags, message):
    source = records_file(tmp_path)
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": f"r{i}", "text": TEXTS[i], "entities": []} for i in range(4)])
    before = {path: path.read_bytes() for path in (source, gold)}
    names = {"input": source, "out": tmp_path / "out.jsonl", "gold": gold}
    assert run(model_dir, source, *(flag.format(**names) for flag in flags)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(**names) in err, err
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.jsonl", "records.jsonl"]


def test_every_output_folder_is_created_as_that_of_the_output(model_dir, tmp_path):
    source = records_file(tmp_path)
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": f"r{i}", "text": TEXTS[i], "entities": []} for i in range(4)])
    output, tasks, config, metrics = (tmp_path / folder / name for folder, name in
                                      (("out", "p.jsonl"), ("ls", "tasks.json"), ("cfg", "config.xml"), ("m", "x.json")))  # fmt: skip
    flags = ["--label-studio", tasks, "--label-studio-config", config, "--gold", gold, "--metrics-output", metrics]
    assert run(model_dir, source, "-o", output, *flags) == 0
    assert [r["id"] for r in read_jsonl(output)] == ["r0", "r1", "r2", "r3"]
    assert len(json.loads(tasks.read_text())) == 4 and "<Labels" in config.read_text()
    assert json.loads(metrics.read_text())["micro"]["support"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "gold.jsonl", "ls", "m", "out", "records.jsonl"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--output", "{model}/config.json"],
        ["-o", "{out}", "--label-studio", "{model}/tasks.json"],
        ["-o", "{out}", "--gold", "{input}", "--metrics-output", "{model}/eval_results.json"],
    ],
)
def test_an_output_inside_the_model_folder_is_refused(model_dir, tmp_path, capsys, flags):
    source = records_file(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    before = {path: path.read_bytes() for path in model.iterdir()}
    names = {"input": source, "out": tmp_path / "out.jsonl", "model": model}
    assert run(model, source, *(flag.format(**names) for flag in flags)) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {flags[-2]} {flags[-1].format(**names)} is inside the model folder {model}: choose a path "
        "outside it\n"
    ), err
    assert {path: path.read_bytes() for path in model.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "records.jsonl"]


@pytest.mark.parametrize(
    ("content", "flags", "message"),
    [
        (
            b'{"id": "a", "text": "x"}\n' + "caf\u00e9".encode("latin-1") + b"\n",
            [],
            "records.jsonl:2: not UTF-8 text (byte 3 of the line)",
        ),
        (b'{"id": "a", "text": "x"}\n{"id": "b", "text": \n', [], "records.jsonl:2: invalid JSON"),
        (b'{"id": "a", "text": "x"}\n', ["--max-length", "2"], "--max-length/--stride: max_length must leave room"),
        (b'{"id": "a", "text": "x"}\n', ["--stride", "99"], "--max-length/--stride: stride must be in"),
        (b"\n\n", [], "the input holds no records"),
    ],
)
def test_a_failed_run_keeps_an_existing_output_byte_for_byte(model_dir, tmp_path, capsys, content, flags, message):
    source = tmp_path / "records.jsonl"
    source.write_bytes(content)
    output, tasks = tmp_path / "out.jsonl", tmp_path / "tasks.json"
    output.write_bytes(b"previous predictions\n")
    tasks.write_bytes(b"[previous tasks]")
    assert run(model_dir, source, "-o", output, "--label-studio", tasks, *flags) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar of the model's loading
    assert err.startswith("error: ") and message in err, err
    assert output.read_bytes() == b"previous predictions\n" and tasks.read_bytes() == b"[previous tasks]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "records.jsonl", "tasks.json"]


def test_a_mistyped_model_path_is_one_line(tmp_path, capsys):
    source = records_file(tmp_path)
    assert run(tmp_path / "no-such-model", source, "-o", tmp_path / "out.jsonl") == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'no-such-model'}: no such model folder\n"
    (tmp_path / "empty").mkdir()
    assert run(tmp_path / "empty", source, "-o", tmp_path / "out.jsonl") == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: not a model folder (no config.json)\n"


def test_a_folder_that_holds_no_crf_tagger_is_one_line(tmp_path, capsys):
    from transformers import BertConfig, BertForMaskedLM

    source = records_file(tmp_path)
    tokenizer = char_tokenizer()
    encoder = tmp_path / "mlm"  # what train_mlm.py writes
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=37)).save_pretrained(encoder)  # fmt: skip
    tokenizer.save_pretrained(encoder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"lr": 0.1}')
    for folder, reason in [(encoder, "the clinical-ner pipeline needs a CRF tagger"), (other, "Unrecognized model")]:
        assert run(folder, source, "-o", tmp_path / "out.jsonl") == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and not (tmp_path / "out.jsonl.partial").exists()
        last = err.splitlines()[-1]
        assert last.startswith(f"error: {folder}: not a clinical-ner model (a CRF tagger saved by train_ner.py or "
                               f"save_for_hub): {reason}"), last  # fmt: skip


def test_a_lone_surrogate_is_named_by_id_and_can_be_skipped(model_dir, tmp_path, capsys):
    source = tmp_path / "records.jsonl"
    source.write_text(
        '{"id": "a", "text": "药物"}\n{"id": "bad-7", "text": "' + SECRET + '\\ud800"}\n{"id": "c", "text": "时间"}\n',
        encoding="utf-8",
    )
    output = tmp_path / "out.jsonl"
    assert run(model_dir, source, "-o", output) == 2
    err = capsys.readouterr().err
    assert f"error: {source}:2: record 'bad-7': the text holds a lone surrogate at character 7" in err
    assert SECRET not in err and not output.exists()

    assert run(model_dir, source, "-o", output, "--on-error", "skip", "--label-studio", tmp_path / "ls.json") == 0
    captured = capsys.readouterr()
    assert [r["id"] for r in read_jsonl(output)] == ["a", "c"]
    assert [t["data"]["record_id"] for t in json.loads((tmp_path / "ls.json").read_text())] == ["a", "c"]
    assert "left out 1 records the model rejected: 'bad-7'" in captured.err
    assert SECRET not in captured.err + captured.out


class RejectingPipeline:
    """The real pipeline, except that it raises on one text (as a tokenizer or model might)."""

    def __init__(self, pipe, rejected: str):
        self.pipe, self.rejected = pipe, rejected

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, texts, **kwargs):
        if self.rejected in ([texts] if isinstance(texts, str) else texts):
            raise RuntimeError(f"cannot tag {self.rejected}")  # the text in the message must not reach the user
        return self.pipe(texts, **kwargs)


def test_a_record_the_model_rejects_stops_then_resume_can_skip_it(model_dir, tmp_path, capsys, monkeypatch):
    rejected = "物" * 5
    real_load = predict.load_pipeline
    monkeypatch.setattr(predict, "load_pipeline", lambda *args: RejectingPipeline(real_load(*args), rejected))
    rows = [{"id": f"r{i}", "text": rejected if i == 3 else TEXTS[i % 4]} for i in range(6)]
    source = write_jsonl(tmp_path / "records.jsonl", rows)
    output = tmp_path / "out.jsonl"
    assert run(model_dir, source, "-o", output, "--chunk-size", "2") == 2
    err = capsys.readouterr().err
    assert f"error: {source}:4: record 'r3': the model rejected it (RuntimeError)" in err and rejected not in err
    assert not output.exists() and [r["id"] for r in read_jsonl(tmp_path / "out.jsonl.partial")] == ["r0", "r1", "r2"]

    assert run(model_dir, source, "-o", output, "--chunk-size", "2", "--resume", "--on-error", "skip") == 0
    assert [r["id"] for r in read_jsonl(output)] == ["r0", "r1", "r2", "r4", "r5"]
    assert "left out 1 records the model rejected: 'r3'" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_run_whose_every_record_is_rejected_keeps_the_previous_output(model_dir, tmp_path, capsys, monkeypatch):
    real_load = predict.load_pipeline
    monkeypatch.setattr(predict, "load_pipeline", lambda *args: RejectingPipeline(real_load(*args), "物" * 5))
    source = write_jsonl(tmp_path / "records.jsonl", [{"id": f"r{i}", "text": "物" * 5} for i in range(3)])
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"previous predictions\n")
    assert run(model_dir, source, "-o", output, "--on-error", "skip", "--label-studio", tmp_path / "ls.json") == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"error: the model rejected every record (3; the log names each): {output} left as it was", err
    assert output.read_bytes() == b"previous predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "records.jsonl"]


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_family_b_folder_without_its_lexicon_is_a_model_error_before_any_record(tmp_path, capsys, on_error):
    from transformers import BertTokenizerFast

    from .helpers import VOCAB, tiny_model

    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(VOCAB)})
    model_folder = save_for_hub(tiny_model(max_position_embeddings=64), tokenizer, tmp_path / "famb")
    (model_folder / "lexicon.tsv").unlink()  # a copy or download of the folder without it
    source = write_jsonl(tmp_path / "records.jsonl", [{"id": "r1", "text": "乳腺癌术后"}])
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"previous predictions\n")
    assert run(model_folder, source, "-o", output, "--on-error", on_error) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"error: {model_folder}: the model cannot tag text: expected a model with a lexicon"), err
    assert f"({model_folder}: the config expects the lexicon 'lexicon.tsv' (no such file))" in err, err
    assert output.read_bytes() == b"previous predictions\n" and not (tmp_path / "out.jsonl.partial").exists()


def test_a_folder_of_json_lines_and_label_studio_files_is_read_as_such(model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"id": "a1", "text": TEXTS[0]}, {"text": TEXTS[2]}])
    (folder / "b.json").write_text(json.dumps([{"id": 5, "data": {"text": TEXTS[3]}}]), encoding="utf-8")
    (folder / "notes.md").write_text("时间", encoding="utf-8")
    (folder / ".ipynb_checkpoints").mkdir()  # Jupyter's copies of the records, and a hidden file: left out
    write_jsonl(folder / ".ipynb_checkpoints" / "a-checkpoint.jsonl", [{"text": TEXTS[0]}])
    write_jsonl(folder / ".hidden.jsonl", [{"text": TEXTS[0]}])
    assert run(model_dir, folder, "-o", tmp_path / "out.jsonl") == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [(r["id"], spans_of(r)) for r in out] == [("a1", EXPECTED[0]), ("a:2", EXPECTED[2]), ("5", EXPECTED[3])]


def test_partial_results_are_never_silently_reused(model_dir, tmp_path, capsys):
    source = records_file(tmp_path)
    output = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text(json.dumps({"id": "r0", "text": TEXTS[0], "entities": []}, ensure_ascii=False) + "\n")
    assert run(model_dir, source, "-o", output) == 2
    assert "out.jsonl.partial holds the results of an interrupted run: --resume continues it" in capsys.readouterr().err
    partial.write_text(json.dumps({"id": "r0", "text": "changed", "entities": []}) + "\n")
    assert run(model_dir, source, "-o", output, "--resume") == 2
    err = capsys.readouterr().err
    assert "out.jsonl.partial:1: record 'r0' differs from the input; the input changed" in err, err
    assert not output.exists()
    # the input's own records, but no record of what wrote them (a partial file made by hand or by an older version)
    partial.write_text(json.dumps({"id": "r0", "text": TEXTS[0], "entities": []}, ensure_ascii=False) + "\n")
    assert run(model_dir, source, "-o", output, "--resume") == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert (
        err == f"error: {partial}: {partial}.json, the record of the model and options that wrote it, is missing or "
        f"unreadable: delete {partial} to start afresh"
    ), err
    assert not output.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "other"], "was written by a run with the model {model} (its files have changed since"),
        (["--max-length", "16"], "with --max-length/--stride windows of 62 tokens with stride 15 (now 14 with 3)"),
        (["--quantize", "int8"], "with --quantize none (now int8)"),
    ],
)
def test_resume_refuses_another_model_window_or_quantization(model_dir, tmp_path, capsys, monkeypatch, flags, message):
    rows = [{"id": f"r{i}", "text": "物" * 5 if i == 2 else TEXTS[0]} for i in range(4)]
    source, output = write_jsonl(tmp_path / "records.jsonl", rows), tmp_path / "out.jsonl"
    real_load = predict.load_pipeline
    with monkeypatch.context() as patched:  # the run is interrupted at r2, as by a crash
        patched.setattr(predict, "load_pipeline", lambda *args: RejectingPipeline(real_load(*args), "物" * 5))
        assert run(model_dir, source, "-o", output, "--chunk-size", "1") == 2
    capsys.readouterr()
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    with (other / "config.json").open("a") as handle:
        handle.write("\n")  # the same model retrained would change its weights; any change to a file counts
    model = other if flags[0] == "--model" else model_dir
    assert run(model, source, "-o", output, "--resume", *flags[2 if flags[0] == "--model" else 0 :]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar of the model's loading
    assert err.startswith("error: ") and message.format(model=model_dir) in err, err
    assert not output.exists() and [r["id"] for r in read_jsonl(tmp_path / "out.jsonl.partial")] == ["r0", "r1"]

    assert run(model_dir, source, "-o", output, "--resume") == 0
    assert [spans_of(r) for r in read_jsonl(output)] == [EXPECTED[0]] * 2 + [[(0, 5, "Chemotherapy")], EXPECTED[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out.jsonl", "records.jsonl"]


def test_sigkill_leaves_no_output_and_resume_finishes_it_identically(model_dir, tmp_path):
    rows = [{"id": f"r{i}", "text": TEXTS[i % 3] * (1 + i % 3)} for i in range(200)]
    source = write_jsonl(tmp_path / "records.jsonl", rows)
    assert run(model_dir, source, "-o", tmp_path / "whole.jsonl", "--label-studio", tmp_path / "whole.json") == 0

    output, tasks, partial = tmp_path / "out.jsonl", tmp_path / "out.json", tmp_path / "out.jsonl.partial"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(Path(predict.__file__)), str(model_dir), str(source), "-o", str(output),
               "--label-studio", str(tasks), "--chunk-size", "1", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and (not partial.exists() or partial.read_bytes().count(b"\n") < 10):
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not output.exists() and not tasks.exists()
    assert 10 <= partial.read_bytes().count(b"\n") < len(rows)

    assert run(model_dir, source, "-o", output, "--label-studio", tasks, "--resume") == 0
    assert output.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert tasks.read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert not partial.exists()


def test_gold_with_other_texts_for_the_same_ids_is_refused_before_predicting(model_dir, tmp_path, capsys):
    source = records_file(tmp_path)
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": f"r{i}", "text": SECRET, "entities": []} for i in range(4)])
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--gold", gold) == 2
    err = capsys.readouterr().err
    assert f"error: 4 records have one text in {gold} and another in the input" in err and SECRET not in err
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.partial").exists()
    gold.write_text("", encoding="utf-8")
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--gold", gold) == 2
    assert f"error: {gold}: the file holds no records" in capsys.readouterr().err


QUANTIZE_TEXTS = ["结节" * 3, "患者于年月日行左乳腺癌改良根治术" * 5, "药物", "化疗周期阳性" * 9, "时间", "左乳" * 30]


@pytest.mark.parametrize("scheme", ["int8", "bf16"])
def test_predict_quantize_end_to_end(scheme, model_dir, tmp_path, monkeypatch):
    # A CPU that reports native bfloat16 (autocast runs on any CPU; only the speed differs).
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True}, raising=False)
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(QUANTIZE_TEXTS)])
    assert run(model_dir, records, "-o", tmp_path / "fp32.jsonl") == 0
    assert run(model_dir, records, "-o", tmp_path / f"{scheme}.jsonl", "--quantize", scheme) == 0
    fp32, quantized = read_jsonl(tmp_path / "fp32.jsonl"), read_jsonl(tmp_path / f"{scheme}.jsonl")
    assert [spans_of(r) for r in quantized] == [spans_of(r) for r in fp32]
    assert sum(len(r["entities"]) for r in fp32) > 0
    assert [r["id"] for r in quantized] == [str(i) for i in range(len(QUANTIZE_TEXTS))]


def test_predict_refuses_bf16_on_a_cpu_without_it_before_loading(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "Old Xeon"}, raising=False)
    monkeypatch.setattr(predict, "load_pipeline", lambda *args: pytest.fail("the model was loaded"))
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": QUANTIZE_TEXTS[0]}])
    assert run(model_dir, records, "-o", tmp_path / "out.jsonl", "--quantize", "bf16") == 2
    err = capsys.readouterr().err
    assert "error: --quantize bf16: quantize='bf16' needs a CPU with native bfloat16 arithmetic" in err
    assert "Old Xeon has none" in err and "Traceback" not in err and not (tmp_path / "out.jsonl").exists()


def test_predict_refuses_a_bad_quantize_value_as_argparse_does(model_dir, tmp_path, capsys):
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": QUANTIZE_TEXTS[0]}])
    assert run(model_dir, records, "-o", tmp_path / "out.jsonl", "--quantize", "int4") == 2
    err = capsys.readouterr().err
    assert "argument --quantize: invalid choice: 'int4' (choose from 'int8', 'bf16')" in err
    assert "Traceback" not in err and not (tmp_path / "out.jsonl").exists()


def pipeline_before_quantize(model_dir: Path, folder: Path) -> Path:
    """A copy of ``model_dir`` whose pipeline code takes no ``quantize`` (as folders saved before the option)."""
    shutil.copytree(model_dir, folder)
    code = folder / "pipeline_clinical_ner.py"
    signature = "def __init__(self, *args, quantize: str | None = None, **kwargs):"
    text = code.read_text(encoding="utf-8")
    assert signature in text
    code.write_text(text.replace(signature, "def __init__(self, *args, **kwargs):\n        quantize = None"), "utf-8")
    return folder


def test_a_model_folder_saved_before_the_quantize_option_still_predicts(model_dir, tmp_path, capsys):
    """predict.py passed quantize=None to every pipeline, and an older folder's pipeline refused the keyword
    (TypeError): such a folder predicts as before, and --quantize with it is one line saying why not."""
    older = pipeline_before_quantize(model_dir, tmp_path / "older")
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    assert run(older, records, "-o", tmp_path / "out.jsonl") == 0
    assert [spans_of(r) for r in read_jsonl(tmp_path / "out.jsonl")] == EXPECTED
    capsys.readouterr()
    assert run(older, records, "-o", tmp_path / "int8.jsonl", "--quantize", "int8") == 2
    err = capsys.readouterr().err
    assert f"error: --quantize int8: {older}: the model folder's pipeline code predates --quantize" in err
    assert "Traceback" not in err and not (tmp_path / "int8.jsonl").exists()


def test_predict_keeps_freed_memory_on_the_cpu(model_dir, tmp_path, monkeypatch):
    """Tagging batch after batch, predict.py has glibc keep freed blocks (keep_freed_memory): activations of one
    batch reuse the pages of the last instead of faulting fresh ones in."""
    from clinical_ner_zh.modeling import pipeline_clinical_ner

    calls = []
    monkeypatch.setattr(pipeline_clinical_ner, "keep_freed_memory", lambda: calls.append("kept") or True)
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": TEXTS[0]}])
    assert run(model_dir, records, "-o", tmp_path / "out.jsonl") == 0
    assert calls == ["kept"]


def test_a_failure_that_is_no_fault_of_the_model_is_not_called_one(model_dir, monkeypatch):
    """The sample text tagged at load finds a model that cannot tag (a ValueError of its own); running out of memory
    there is not that, and keeps its own type and traceback instead of reading as a user's mistake."""
    from transformers import Pipeline

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Pipeline, "__call__", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        predict.load_pipeline(str(model_dir), torch.device("cpu"), 8)
