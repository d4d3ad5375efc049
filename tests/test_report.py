"""The corpus report command on the simulated fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clinical_ner_zh.datasets_scripts import report
from clinical_ner_zh.datasets_scripts.char_tokenizer import build_wordpiece_tokenizer

from .helpers import simulated_ccks_records, write_ccks, write_fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("fixtures"))


def test_report_label_studio_counts_overlaps(files, capsys):
    report.main(
        [
            "--format",
            "label-studio",
            str(files["breast_cancer.json"]),
            "--scheme",
            "BIOES",
            "--max-length",
            "64",
            "--stride",
            "8",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    dropped = sum(int(line.split()[3]) for line in lines if line.startswith("  total"))
    assert dropped > 0  # nested times and double-labelled regions
    assert lines[-1] == f"round-trip: recovered {1922 - dropped}/1922 entities ({dropped} not representable)"
    assert any(line.startswith("  overlap: ") and line != "  overlap: 0" for line in lines)
    assert "round-trip lost" not in "\n".join(lines)


def test_report_finds_quality_problems(tmp_path, capsys):
    records = simulated_ccks_records(12, seed=5, prefix="q")
    # a record annotated twice, differently
    records.append({**records[0], "entities": records[0]["entities"][1:]})
    # a record whose entities are all shifted right by one character (misaligned), with the same texts elsewhere
    shifted = simulated_ccks_records(12, seed=5, prefix="q")[3]
    shifted["entities"] = [{**e, "start": e["start"] + 1, "end": e["end"] + 1} for e in shifted["entities"]]
    records.append(shifted)
    path = write_ccks(tmp_path / "q.jsonl", records)
    report.main(["--format", "ccks2019", str(path)])
    out = capsys.readouterr().out
    assert "record q:1: same text as record q:13, annotated differently (1 entities only here, 0 only there)" in out
    assert "record q:14: suspected misaligned" in out and "shifted by -1 character" in out
    assert "record q:2: [" in out and "ends with whitespace" in out
    total = sum(len(r["entities"]) for r in records)
    assert out.splitlines()[-1] == f"round-trip: recovered {total}/{total} entities (0 not representable)"


def test_report_with_wordpiece_tokenizer_counts_unrepresentable(files, tmp_path):
    texts = [
        json.loads(line)["originalText"]
        for line in files["ccks2019_train.jsonl"].read_text("utf-8-sig").splitlines()
        if line
    ]
    build_wordpiece_tokenizer(texts).save_pretrained(tmp_path / "wp")
    command = [
        sys.executable,
        "-m",
        "clinical_ner_zh.datasets_scripts.report",
        "--format",
        "ccks2019",
        str(files["ccks2019_train.jsonl"]),
    ]
    result = subprocess.run([*command, "--tokenizer", str(tmp_path / "wp")], capture_output=True, text=True, check=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    lines = result.stdout.splitlines()
    # the drug mention ending with a space has no token for its last character
    assert "  not encoded: record ccks2019_train:2 [" in result.stdout
    assert "end on whitespace without a token" in result.stdout
    assert "end inside a token" in result.stdout  # "CEA" followed by a number is one word piece
    assert lines[-1] == "round-trip: recovered 69/72 entities (3 not representable)"
