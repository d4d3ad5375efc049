"""A Label Studio ML backend for a saved clinical-ner model: pre-annotations on demand, from Label Studio itself.

    python -m serve_label_studio MODEL [--port 9090] [--host 127.0.0.1] [--model-version NAME]

Then connect it to a project (Settings > Model, or ``POST /api/ml`` with ``{"project", "url"}``) and ask for
predictions (the Data Manager's "Retrieve Predictions"). Label Studio 1.23 refuses a backend on a local address
unless it runs with ``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false`` (the second for the webhook
it registers beside the backend; this backend answers that webhook 404, it does not train).

The endpoints are those Label Studio 1.23 calls (``label_studio/ml/api_connector.py``):

* ``GET /health``: ``{"status": "UP", "model_class": ...}``;
* ``POST /setup`` with the project's labeling config as ``schema``: ``{"model_version": ...}``;
* ``POST /predict`` with ``{"tasks": [...], "label_config": ...}``: ``{"results": [...]}``, one prediction per task,
  the one ``predict.py --label-studio`` writes (``model_version``, ``score``, ``labels`` regions with their scores);
  a task the tokenizer or model rejects gets an empty prediction (the log names its index and id), the others theirs.

Region names come from the labeling config: the first ``<Labels>`` control, the object it labels, and the task
field that object shows (``<Text value="$text">``). Standard library HTTP server, one request at a time, bound to
127.0.0.1 unless ``--host`` says otherwise. Request logs name the path and status, never the text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import xml.etree.ElementTree as ElementTree
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import torch

from clinical_ner_zh.cli_errors import UserError, add_debug_flag, run_command
from predict import Record, label_studio_task, load_pipeline, tag_chunk

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # a request larger than this is refused unread


class BadRequest(Exception):
    """A request the backend cannot answer; the message names fields, never task text."""


def label_names(label_config: Any) -> tuple[str, str, str]:
    """``(from_name, to_name, text_key)`` of the first ``<Labels>`` control of a labeling config."""
    if not isinstance(label_config, str):
        raise BadRequest("expected the labeling config as a string")
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as error:
        raise BadRequest(f"the labeling config is not XML ({error})") from None
    labels = root.find(".//Labels")
    if labels is None or not labels.get("name") or not labels.get("toName"):
        raise BadRequest("the labeling config has no <Labels> control with name and toName")
    target = next((tag for tag in root.iter() if tag.get("name") == labels.get("toName")), None)
    value = target.get("value", "") if target is not None else ""
    if not value.startswith("$"):
        raise BadRequest(f'the labeling config has no object {labels.get("toName")!r} with value="$field"')
    return labels.get("name"), labels.get("toName"), value[1:]


class Backend:
    """What the endpoints answer, apart from HTTP."""

    def __init__(self, pipe, model_version: str):
        self.pipe = pipe
        self.model_version = model_version

    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": type(self.pipe.model).__name__}

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        label_names(body.get("schema"))  # a config we could not answer for is refused when it is connected
        return {"model_version": self.model_version}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        from_name, to_name, text_key = label_names(body.get("label_config"))
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("expected 'tasks' to be a list")
        records = []
        for index, task in enumerate(tasks):
            data = task.get("data") if isinstance(task, dict) else None
            text = data.get(text_key) if isinstance(data, dict) else None
            if not isinstance(text, str):
                raise BadRequest(f"task {index}: expected a string field 'data.{text_key}'")
            records.append(Record(str(task.get("id", index)), text))
        results = []
        for index, (record, found) in enumerate(zip(records, tag_chunk(self.pipe, records, {}) if records else [])):
            if isinstance(found, str):
                # One task the tokenizer or model rejects (a lone surrogate, say) must not cost the batch its
                # predictions: it gets an empty one, and the log names it (never its text).
                logger.warning("task %d (id %s): the model rejected it (%s); its prediction is empty", index,
                               record.id, found)  # fmt: skip
                found = []
            task = label_studio_task(record, found, self.model_version, from_name, to_name, text_key)
            results.append(task["predictions"][0])
        return {"results": results}


class Handler(BaseHTTPRequestHandler):
    server: BackendServer

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            self._reply(HTTPStatus.OK, self.server.backend.health())
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        backend = self.server.backend
        endpoints = {"/setup": backend.setup, "/predict": backend.predict}
        endpoint = endpoints.get(self.path.rstrip("/"))
        if endpoint is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            self._reply(HTTPStatus.OK, endpoint(self._body()))
        except BadRequest as error:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(error)})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequest(f"the request body is not JSON ({type(error).__name__})") from None
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        return body

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        content = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the path only; bodies (task text) are never logged.
        logger.info("%s %s", self.address_string(), format % args)


class BackendServer(HTTPServer):
    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 9090):
        super().__init__((host, port), Handler)
        self.backend = backend


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve a saved clinical-ner model as a Label Studio ML backend.")
    parser.add_argument("model", help="model folder or Hub repository (loaded with trust_remote_code=True)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=9090, help="port to listen on (default: 9090)")
    parser.add_argument("--model-version", help="model_version of the predictions (default: the model folder's name)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected a port number from 0 to 65535")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pipe = load_pipeline(args.model, torch.device("cuda" if torch.cuda.is_available() else "cpu"), args.batch_size)
    model_version = args.model_version or Path(str(args.model).rstrip("/")).name
    try:
        server = BackendServer(Backend(pipe, model_version), args.host, args.port)
    except OSError as error:  # a port in use, or an address this machine does not have
        raise UserError(f"--host/--port: cannot listen on {args.host}:{args.port} ({error.strerror})") from None
    with server:
        host, port = server.server_address[:2]
        logger.info("Label Studio ML backend for %s on http://%s:%s (Ctrl-C stops it)", model_version, host, port)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
            server.serve_forever()
    return 0


if __name__ == "__main__":
    run_command(main)
