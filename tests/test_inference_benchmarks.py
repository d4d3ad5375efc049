"""(slow) benchmarks/pipeline_speed.py and benchmarks/quantization.py at toy sizes: their tables, the check that our
entities do not depend on the linear kernel, and the GPU line on a machine without one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clinical_ner_zh.modeling.pipeline_clinical_ner import check_bf16, save_for_hub

from .pipeline_helpers import char_tokenizer, hand_set_model

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


KEPT = "malloc: freed blocks kept for reuse, as predict.py does (keep_freed_memory; --system-malloc: defaults)"


@pytest.mark.slow
def test_pipeline_speed_prints_the_four_pipelines_and_the_gpu_line(tmp_path):
    lines = run("benchmarks/pipeline_speed.py", "--records", "2", "--chars", "300", "--rounds", "1", "--threads", "1",
                "--no-memory", "--folder", str(tmp_path))  # fmt: skip
    assert "windows of 512 tokens overlapping by 128, batch 8, torch threads 1" in lines[0], lines[0]
    assert lines[1].endswith(f"best of 1 interleaved rounds; {KEPT}"), lines[1]
    rows = [line for line in lines if re.fullmatch(r".+\s+\d+\s+\d+\.\d\dx", line)]
    assert [re.split(r"\s{2,}", row.strip())[0] for row in rows] == [
        "token-classification, BertForTokenClassification",
        "clinical-ner, BERT-CRF",
        "clinical-ner, BERT-DGCNN-BiLSTM-MHA-CRF",
        "the same, aten's linear kernel",
    ]
    assert rows[0].endswith("1.00x")
    assert "full head: entities with oneDNN's and aten's linear kernels identical" in lines
    if not torch.cuda.is_available():
        assert lines[-1] == "GPU: no GPU found (torch.cuda.is_available() is False): records/s on a GPU not measured"


@pytest.mark.slow
def test_quantization_benchmark_prints_speed_and_f1_of_each_setting(tmp_path):
    tokenizer = char_tokenizer()
    model_dir = save_for_hub(hand_set_model(tokenizer), tokenizer, tmp_path / "model")
    # The folder's own model code (an earlier version's, say) is not what a benchmark of this checkout measures.
    with (model_dir / "modeling_chcancerbert.py").open("a", encoding="utf-8") as handle:
        handle.write('\nraise RuntimeError("the model code saved in the folder ran")\n')
    text = "患者于时间行药物化疗，" * 20
    gold = [(start, start + 2, "Time") for start in range(3, len(text), 11)]
    gold += [(start, start + 2, "Drug") for start in range(6, len(text), 11)]
    records = [{"id": str(i), "text": text, "entities": [{"start": s, "end": e, "label": t} for s, e, t in gold]}
               for i in range(3)]  # fmt: skip
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    lines = run("benchmarks/quantization.py", "--model", str(model_dir), "--eval", str(eval_file), "--rounds", "1",
                "--threads", "1", "--base-records", "0")  # fmt: skip
    assert lines[0] == "torch threads 1, best of 1 interleaved rounds, batch 8, inference_mode"
    assert lines[1] == KEPT
    number = r"\d+\s+\d+\.\d\dx\s+1\.0000\s+[+-]0\.00"
    try:
        check_bf16()
        kinds = ["float32", "int8", "bf16"]
    except ValueError as error:  # a CPU without native bfloat16
        kinds = ["float32", "int8"]
        assert f"bf16 left out: {error}" in lines
    for line, kind in zip(lines[3:], kinds):
        assert re.fullmatch(rf"trained \(model\), 3 eval records\s+{kind}\s+{number}", line), line
    for line, kind in zip(lines[-len(kinds) + 1 :], kinds[1:]):
        assert re.fullmatch(rf"{kind}: chars/s \d+\.\d\dx \(trained\), 0\.00 F1 points lost on the trained model "
                            r"\(target >= 1\.8x, <= 0\.5 points\): (ok|MISSED)", line), line  # fmt: skip
