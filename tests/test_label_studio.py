"""Label Studio: the labeling config predict.py writes, the reader's prediction mode, the ML backend's endpoints
(``serve_label_studio``) over HTTP on 127.0.0.1; then (slow) a real Label Studio server: predict.py's tasks imported,
exported as JSON and JSON-MIN and read back, an annotator's edit through the API, and the ML backend connected."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import predict
import serve_label_studio
from clinical_ner_zh.cli_errors import run_command
from clinical_ner_zh.datasets_scripts import read_label_studio
from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub
from serve_label_studio import Backend, BackendServer
from train_ner import DataArguments, load_corpus

from .helpers import run_predict as run
from .pipeline_helpers import char_tokenizer, hand_set_model

hf_logging.set_verbosity_error()

TYPES = ["Chemotherapy", "Time"]
CLASSES = {"Chemotherapy": "Treatments", "Time": "Time"}
TAGGED = {"药": "B-Chemotherapy", "物": "I-Chemotherapy", "时": "B-Time", "间": "I-Time"}
TEXTS = ["患者于时间行药物物化疗，\r\n结节😀 药物。", "", "左乳腺癌改良根治术"]
CONFIG = """<View>
  <Labels name="ner" toName="note">
    <Label value="Chemotherapy"/>
    <Label value="Time"/>
  </Labels>
  <Text name="note" value="$record"/>
</View>
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = char_tokenizer(model_max_length=64)
    model = hand_set_model(tokenizer, TAGGED, types=TYPES, classes=CLASSES)
    return save_for_hub(model, tokenizer, tmp_path_factory.mktemp("model") / "tiny-ner")


def test_predict_writes_the_labeling_config_of_the_model_labels(model_dir, tmp_path):
    source = tmp_path / "records.jsonl"
    source.write_text(json.dumps({"id": "a", "text": TEXTS[0]}, ensure_ascii=False) + "\n", encoding="utf-8")
    config = tmp_path / "config.xml"
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--label-studio-config", config,
               "--from-name", "ner", "--to-name", "note", "--text-key", "record") == 0  # fmt: skip
    assert config.read_text(encoding="utf-8") == CONFIG
    root = ElementTree.fromstring(config.read_text(encoding="utf-8"))
    assert [label.get("value") for label in root.iter("Label")] == TYPES


def test_a_label_studio_config_path_equal_to_the_input_is_refused(model_dir, tmp_path, capsys):
    source = tmp_path / "records.jsonl"
    source.write_text('{"id": "a", "text": "药物"}\n', encoding="utf-8")
    assert run(model_dir, source, "-o", tmp_path / "out.jsonl", "--label-studio-config", source) == 2
    assert capsys.readouterr().err.startswith("error: --label-studio-config")
    assert source.read_text(encoding="utf-8") == '{"id": "a", "text": "药物"}\n'


def test_the_reader_reads_predictions_with_scores_and_model_version(tmp_path):
    def region(start, end, label, score):
        return {"from_name": "label", "to_name": "text", "type": "labels", "score": score,
                "value": {"start": start, "end": end, "text": "时间药物"[start:end], "labels": [label]}}  # fmt: skip

    older = {"id": 1, "model_version": "v1", "created_at": "2025-01-01T00:00:00Z", "result": []}
    newer = {"id": 2, "model_version": "v2", "created_at": "2025-01-02T00:00:00Z",
             "result": [region(0, 2, "Time", 0.9), region(2, 4, "Chemotherapy", 0.75)]}  # fmt: skip
    annotation = {"id": 5, "result": [region(0, 2, "Time", None)], "was_cancelled": False}
    export = tmp_path / "export.json"
    tasks = [{"id": 7, "data": {"text": "时间药物"}, "annotations": [annotation], "predictions": [newer, older]}]
    export.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")

    (record,) = read_label_studio(export, predictions=True, strict=True).records
    assert record["model_version"] == "v2"
    assert record["entities"] == [
        {"start": 0, "end": 2, "label": "Time", "text": "时间", "score": 0.9},
        {"start": 2, "end": 4, "label": "Chemotherapy", "text": "药物", "score": 0.75},
    ]
    (record,) = read_label_studio(export, strict=True).records  # annotations, as before: no score, no version
    assert record == {
        "id": "7",
        "text": "时间药物",
        "entities": [{"start": 0, "end": 2, "label": "Time", "text": "时间"}],
    }


@pytest.fixture
def backend_url(model_dir):
    pipe = predict.load_pipeline(str(model_dir), torch.device("cpu"), 4)
    server = BackendServer(Backend(pipe, "tiny-v1"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "http://{}:{}".format(*server.server_address[:2]), pipe
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, payload) -> tuple[int, dict]:
    return call(url, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def test_ml_backend_endpoints_answer_as_label_studio_expects(backend_url):
    url, pipe = backend_url
    assert call(url + "/health") == (200, {"status": "UP", "model_class": "ChCancerBertForCrfTagging"})
    assert post(url + "/setup", {"project": "1.1700000000", "schema": CONFIG}) == (200, {"model_version": "tiny-v1"})

    tasks = [{"id": 10 + i, "data": {"record": text}} for i, text in enumerate(TEXTS)]
    status, answer = post(url + "/predict", {"tasks": tasks, "label_config": CONFIG, "project": "1.1700000000"})
    assert status == 200
    # The very predictions predict.py --label-studio writes for these records, with the project's names.
    expected = [
        predict.label_studio_task(
            predict.Record(str(task["id"]), task["data"]["record"]),
            predict.to_span_entities(pipe(task["data"]["record"])),
            "tiny-v1",
            "ner",
            "note",
            "record",
        )["predictions"][0]
        for task in tasks
    ]
    assert answer == {"results": expected}
    first = answer["results"][0]
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in first["result"]] == [
        (3, 5, ["Time"]), (6, 9, ["Chemotherapy"]), (18, 20, ["Chemotherapy"])]  # fmt: skip
    assert {(r["from_name"], r["to_name"]) for r in first["result"]} == {("ner", "note")}
    assert answer["results"][1] == {"model_version": "tiny-v1", "result": []}


def test_ml_backend_answers_a_batch_with_a_task_the_model_rejects(backend_url, caplog):
    url, _ = backend_url
    tasks = [{"id": 1, "data": {"record": TEXTS[0]}}, {"id": 2, "data": {"record": "时间\ud800"}}]  # valid JSON
    with caplog.at_level("WARNING", logger="serve_label_studio"):
        status, answer = call(url + "/predict", json.dumps({"tasks": tasks, "label_config": CONFIG}).encode())
    assert status == 200 and len(answer["results"]) == 2
    assert [r["value"]["labels"] for r in answer["results"][0]["result"]] == [
        ["Time"],
        ["Chemotherapy"],
        ["Chemotherapy"],
    ]
    assert answer["results"][1] == {"model_version": "tiny-v1", "result": []}
    assert "task 1 (id 2): the model rejected it (TypeError); its prediction is empty" in caplog.text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/predict", b"not json", 400, "the request body is not JSON"),
        (
            "/predict",
            json.dumps({"tasks": [{"data": {}}], "label_config": CONFIG}).encode(),
            400,
            "task 0: expected a string field 'data.record'",
        ),
        (
            "/setup",
            json.dumps({"schema": "<View><Text name='t' value='$text'/></View>"}).encode(),
            400,
            "the labeling config has no <Labels> control",
        ),
        ("/train", b"{}", 404, "no such endpoint: POST /train"),
    ],
)
def test_ml_backend_refuses_what_it_cannot_answer(backend_url, path, body, status, message):
    url, _ = backend_url
    answer_status, answer = call(url + path, body)
    assert answer_status == status and answer["error"].startswith(message)


def test_ml_backend_command_mistakes_are_one_line(model_dir, tmp_path, capsys):
    def status(*args) -> int:
        with pytest.raises(SystemExit) as stopped:
            run_command(serve_label_studio.main, [*map(str, args)])
        return stopped.value.code

    assert status(tmp_path / "modle") == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'modle'}: no such model folder\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert status(model_dir, "--port", port) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]  # after the progress bar of loading the model
    assert last_line == f"error: --host/--port: cannot listen on 127.0.0.1:{port} (Address already in use)"
    assert status(model_dir, "--batch-size", 0) == 2
    assert capsys.readouterr().err == "error: --batch-size 0: expected at least 1\n"


# ---------------------------------------------------------------------------------------------- a real server
# Label Studio lives in its own virtual environment, so that its pins never touch the project's; `.ci/run` makes
# it: python3 -m venv .venv-label-studio && .venv-label-studio/bin/pip install label-studio==1.23.2

LABEL_STUDIO_VENV = Path(os.environ.get("LABEL_STUDIO_VENV", Path(__file__).parents[1] / ".venv-label-studio"))
STARTUP_SECONDS = 240  # about 30 s on 2 CPU cores, more while other jobs run
EXPORT_SECONDS = 60
RECORDS = {
    "r1": "患者于时间行药物物化疗，\r\n结节 药物。",
    "r2": "时间间 HER2（＋）",
    "r3": "左乳腺癌改良根治术",
    "r4": "药物物 时间 药物",
}


class LabelStudio:
    """The REST API of a running Label Studio, with the legacy token of the user created at start."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def __call__(self, method: str, path: str, body=None, raw: bool = False):
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, headers=self.headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                content = response.read()
        except urllib.error.HTTPError as error:  # the reason Label Studio gives is in the body
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:2000]!r}") from None
        return content if raw else json.loads(content or b"null")

    def project(self, title: str, label_config: str) -> int:
        return self("POST", "/api/projects/", {"title": title, "label_config": label_config})["id"]

    def export(self, project: int, folder: Path) -> tuple[Path, Path]:
        """A JSON export with predictions serialised (not just their ids) and its JSON-MIN conversion."""
        snapshot = self("POST", f"/api/projects/{project}/exports/",
                        {"serialization_options": {"predictions": {"only_id": False}}})["id"]  # fmt: skip
        detail = f"/api/projects/{project}/exports/{snapshot}"
        wait_for(lambda: self("GET", detail)["status"] == "completed", EXPORT_SECONDS, "the JSON export")
        self("POST", f"{detail}/convert", {"export_type": "JSON_MIN"})

        def converted() -> bool:
            return [f["status"] for f in self("GET", detail)["converted_formats"]] == ["completed"]

        wait_for(converted, EXPORT_SECONDS, "the JSON-MIN conversion")
        paths = folder / f"export-{project}.json", folder / f"export-{project}-min.json"
        for path, kind in zip(paths, ("JSON", "JSON_MIN")):
            path.write_bytes(self("GET", f"{detail}/download?exportType={kind}", raw=True))
        return paths


def wait_for(condition, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"Label Studio exited with status {process.returncode} before {what}")
        with contextlib.suppress(OSError):  # refused connections while it starts
            if condition():
                return
        time.sleep(1)
    raise AssertionError(f"no {what} within {seconds} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    program = LABEL_STUDIO_VENV / "bin" / "label-studio"
    if not program.is_file():
        missing = f"label-studio is not installed in {LABEL_STUDIO_VENV} (set LABEL_STUDIO_VENV, or see .ci/run)"
        if os.environ.get("CI"):  # .ci/run installs it: a skip there would hide a broken round trip
            pytest.fail(missing)
        pytest.skip(missing)
    data = tmp_path_factory.mktemp("label-studio")
    port, token = free_port(), secrets.token_hex(20)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # `Authorization: Token` for the user made at start
        # The ML backend under test listens on 127.0.0.1: Label Studio refuses local addresses for the backend
        # (ML_BLOCK_LOCAL_IP) and for the webhook it adds with it (SSRF_PROTECTION_ENABLED).
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    command = [program, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
               "--data-dir", data, "--username", "annotator@example.com", "--password", secrets.token_hex(12),
               "--user-token", token]  # fmt: skip
    with (data / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = LabelStudio(f"http://127.0.0.1:{port}", token)
    try:
        wait_for(lambda: client("GET", "/health") is not None, STARTUP_SECONDS, "answer on /health", process)
        yield client
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and whatever it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def predicted_records(model_dir, tmp_path) -> tuple[dict[str, dict], Path, str]:
    """predict.py's output by record id, its Label Studio tasks file and its labeling config."""
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in RECORDS.items()),
                      encoding="utf-8")  # fmt: skip
    out, tasks, config = tmp_path / "out.jsonl", tmp_path / "tasks.json", tmp_path / "config.xml"
    assert run(model_dir, source, "-o", out, "--label-studio", tasks, "--label-studio-config", config,
               "--model-version", "tiny-v1") == 0  # fmt: skip
    by_id = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    return by_id, tasks, config.read_text(encoding="utf-8")


def spans(entities) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["label"]) for e in entities]


@pytest.mark.slow
def test_label_studio_round_trip_with_an_annotator_edit(label_studio, model_dir, tmp_path):
    predicted, tasks_file, config = predicted_records(model_dir, tmp_path)
    project = label_studio.project("clinical-ner round trip", config)
    imported = label_studio("POST", f"/api/projects/{project}/import", json.loads(tasks_file.read_bytes()))
    assert (imported["task_count"], imported["prediction_count"]) == (len(RECORDS), len(RECORDS))

    # The annotator accepts each pre-annotation as it is, then edits one task: one span moved, one deleted.
    tasks = label_studio("GET", f"/api/tasks/?project={project}&page_size=100")["tasks"]
    record_of = {str(task["id"]): task["data"]["record_id"] for task in tasks}
    annotations = {}
    for task in tasks:
        (prediction,) = label_studio("GET", f"/api/tasks/{task['id']}/")["predictions"]
        body = {"result": prediction["result"], "parent_prediction": prediction["id"], "lead_time": 1.0}
        annotations[task["data"]["record_id"]] = label_studio("POST", f"/api/tasks/{task['id']}/annotations/", body)
    edited = annotations["r1"]
    time_span, chemotherapy, _ = edited["result"]
    assert (time_span["value"]["start"], time_span["value"]["end"]) == (3, 5)
    text = RECORDS["r1"]
    moved = {**time_span, "value": {**time_span["value"], "start": 2, "end": 4, "text": text[2:4]}}
    label_studio("PATCH", f"/api/annotations/{edited['id']}/", {"result": [moved, chemotherapy]})
    expected = {task_id: spans(predicted[record_id]["entities"]) for task_id, record_id in record_of.items()}
    r1 = next(task_id for task_id, record_id in record_of.items() if record_id == "r1")
    expected[r1] = [(2, 4, "Time"), (6, 9, "Chemotherapy")]

    export, export_min = label_studio.export(project, tmp_path)
    # The model's predictions come back as predict.py wrote them: spans, labels, scores and model_version.
    result = read_label_studio(export, predictions=True, strict=True)
    assert {r["id"]: record_of[r["id"]] for r in result.records} == record_of
    for record in result.records:
        assert record["model_version"] == "tiny-v1"
        assert record["text"] == RECORDS[record_of[record["id"]]]
        assert record["entities"] == [
            {k: e[k] for k in ("start", "end", "label", "text", "score")}
            for e in predicted[record_of[record["id"]]]["entities"]
        ]
    # The annotations, in both export formats: the pre-annotations as accepted, and the edit.
    for path in (export, export_min):
        result = read_label_studio(path, strict=True)
        assert {r["id"]: spans(r["entities"]) for r in result.records} == expected
    # What train_ner.py --corpus breast_cancer trains and evaluates on.
    corpus, _, _ = load_corpus(DataArguments(corpus="breast_cancer", train_file=str(export)), seed=0)
    assert corpus.read_report.records_skipped == 0
    assert {r["id"]: spans(r["entities"]) for split in corpus.values() for r in split} == expected


@pytest.mark.slow
def test_the_ml_backend_pre_annotates_tasks_in_label_studio(label_studio, model_dir, tmp_path):
    predicted, _, config = predicted_records(model_dir, tmp_path)
    pipe = predict.load_pipeline(str(model_dir), torch.device("cpu"), 4)
    server = BackendServer(Backend(pipe, "tiny-backend"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        project = label_studio.project("clinical-ner backend", config)
        tasks = [{"data": {"text": text, "record_id": record_id}} for record_id, text in RECORDS.items()]
        assert label_studio("POST", f"/api/projects/{project}/import", tasks)["prediction_count"] == 0
        backend_url = "http://{}:{}".format(*server.server_address[:2])
        backend = label_studio("POST", "/api/ml/", {"project": project, "url": backend_url, "title": "clinical-ner"})
        assert backend["url"] == backend_url
        label_studio("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                     {"project": project, "selectedItems": {"all": True, "excluded": []}})  # fmt: skip
        export, _ = label_studio.export(project, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    record_of = {str(task["id"]): task["data"]["record_id"] for task in json.loads(export.read_bytes())}
    result = read_label_studio(export, predictions=True, strict=True)
    assert len(result.records) == len(RECORDS)
    for record in result.records:
        assert record["model_version"] == "tiny-backend"
        assert record["entities"] == [
            {k: e[k] for k in ("start", "end", "label", "text", "score")}
            for e in predicted[record_of[record["id"]]]["entities"]
        ]
