"""Label Studio without a server: the labeling config predict.py writes, the reader's prediction mode, and the ML
backend's endpoints (``serve_label_studio``) answered over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree

import pytest
import torch
from transformers.utils import logging as hf_logging

import predict
from datasets_scripts import read_label_studio
from modeling.pipeline_clinical_ner import save_for_hub
from serve_label_studio import Backend, BackendServer

from .pipeline_helpers import char_tokenizer, hand_set_model
from .test_predict import run

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
