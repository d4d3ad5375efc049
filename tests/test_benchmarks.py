"""(slow) benchmarks/accuracy.py end to end on simulated CCKS records: MLM stage, fine-tuning within the budget, the
report with the papers' numbers, and the last line that scripts read; benchmarks/kg_pipeline_length.py prints its
per-character ratio."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datasets_scripts.fixtures import simulated_ccks_records, write_ccks

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_accuracy_benchmark_with_pretraining_reports_strict_f1(tmp_path):
    corpus = write_ccks(tmp_path / "ccks.jsonl", simulated_ccks_records(40, seed=5))
    command = [
        sys.executable, "benchmarks/accuracy.py", "--train", str(corpus), "--eval-fraction", "0.25",
        "--minutes", "1.5", "--pretrain-mlm", "--output-dir", str(tmp_path / "out"), "--seed", "3", "--split-seed", "5",
        "--max_length=64", "--stride=16", "--logging_steps=5",  # passed through to train_ner.py
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"strict F1 = [01]\.\d{4}", lines[-1]), lines[-1]
    assert "eval file eval.jsonl (10 records)" in result.stdout
    assert any(line.startswith("  ours, chcancerbert dgcnn-bilstm-mha-crf + MLM") for line in lines)
    assert any(line.startswith("  Chen et al. 2025") for line in lines)
    assert (tmp_path / "out" / "mlm-dgcnn-bilstm-mha-crf" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "ner-dgcnn-bilstm-mha-crf" / "test_results.json").is_file()
    # --split-seed fixes the eval file, --seed the training run
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "benchmarks" / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    (tmp_path / "split").mkdir()
    _, expected = accuracy.hold_out(corpus, 0.25, 5, tmp_path / "split")
    assert (tmp_path / "out" / "eval.jsonl").read_text(encoding="utf-8") == expected.read_text(encoding="utf-8")
    arguments = json.loads((tmp_path / "out" / "ner-dgcnn-bilstm-mha-crf" / "training_args.json").read_text())
    assert arguments["seed"] == 3


@pytest.mark.slow
def test_family_b_length_benchmark_prints_the_per_character_ratio():
    command = [sys.executable, "benchmarks/kg_pipeline_length.py", "--long", "3000", "--short", "1000", "--rounds", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"long\s+3,000\s+\d+[\d,]*(\s+\d+\.\d+){4}", lines[-3]), lines[-3]
    assert re.fullmatch(r"time per character, long / short: wall \d+\.\d\dx, CPU \d+\.\d\dx \(target <= 1\.2x\)",
                        lines[-1]), lines[-1]  # fmt: skip
