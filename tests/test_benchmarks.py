"""(slow) benchmarks/accuracy.py end to end on simulated CCKS records: MLM stage, fine-tuning within the budget, the
report with the papers' numbers, and the last line that scripts read; benchmarks/kg_pipeline_length.py prints its
per-character ratio; benchmarks/crf_speed.py and benchmarks/lexicon_speed.py print their settings and tables at toy
sizes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import simulated_ccks_records, write_ccks

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


@pytest.mark.slow
def test_crf_speed_benchmark_prints_settings_and_both_rows():
    command = [sys.executable, "benchmarks/crf_speed.py", "--batch", "3", "--length", "16", "--tags", "5",
               "--repeats", "1", "--rounds", "2", "--threads", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert "torch.set_num_threads(1); batch 3 x length 16" in lines[0], lines[0]
    assert "decode under torch.inference_mode() on both sides; nll with autograd on both sides" in lines[1], lines[1]
    number, ratio = r"\d+\.\d{4}", r"\d+\.\d\dx"
    for line, name, target in ((lines[3], "viterbi decode", "2.5"), (lines[4], "nll forward\\+backward", "1.5")):
        assert re.fullmatch(rf"{name}\s+{number}\s+{number}\s+{ratio}\s+{ratio[:-1]}-{ratio}\s+>={target}x (ok|MISSED)",
                            line), line  # fmt: skip


@pytest.mark.slow
def test_lexicon_speed_benchmark_checks_matches_and_prints_the_ratio(tmp_path):
    pytest.importorskip("ahocorasick", reason="benchmark-only: pip install pyahocorasick")
    # "国家知识产权" at a text's end, with "国家知识产权局" listed, is where iter_long drops "知识产权".
    names = ["知识产权", "国家知识产权局", "高血压", "高血压病", "糖尿病", "乳腺癌", "HER2", "Ki67", "右乳"]
    table = tmp_path / "names.tsv"
    table.write_text("".join(f"{name}\tTerm\n" for name in names), encoding="utf-8")
    command = [sys.executable, "benchmarks/lexicon_speed.py", "--names", str(table), "--records", "20",
               "--length", "200", "--repeats", "1", "--rounds", "2", "--ccks", str(tmp_path / "absent.jsonl")]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{len(names)} names from {table}; pyahocorasick "), lines[0]
    assert "list(automaton.iter_long(fold(text)))" in lines[1], lines[1]
    row = r"simulated 200-char\s+\d+/20\s+\d+\s+\d+\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+\d+\.\d\dx\s+[\d.]+-[\d.]+x\s+[\d.]+x\s+<=2x (ok|MISSED)"
    assert re.fullmatch(row, lines[3]), lines[3]
    assert len(lines) == 6, lines  # no CCKS row when the file is absent


def test_lexicon_coverage_compares_lexicons_against_gold(tmp_path):
    corpus = tmp_path / "ccks.jsonl"
    record = {"originalText": "心跳伴胸痛", "entities": [{"label_type": "疾病和诊断", "start_pos": 3, "end_pos": 5}]}
    corpus.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    lexicon = tmp_path / "terms.tsv"
    lexicon.write_text("心\tOther\n胸痛\tSymptom\n伴随\tOther\n", encoding="utf-8")
    command = [sys.executable, "benchmarks/lexicon_coverage.py", "--corpus", str(corpus), "--lexicon",
               f"kg={lexicon}", "--min-term-length", "1", "2"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "1 records from ccks.jsonl, 1 entities"
    # min 1: 心 and 胸痛 tag 3 of 5 characters, 2 of them gold; min 2: only 胸痛.
    assert lines[2].split() == ["kg", "1", "3", "60.0%", "66.7%", "100.0%", "100.0%"]
    assert lines[3].split() == ["kg", "2", "2", "40.0%", "100.0%", "100.0%", "100.0%"]
