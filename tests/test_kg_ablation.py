"""benchmarks/kg_ablation.py: the grid of variants x seeds keeps finished runs across a kill, refuses results of other
settings, and prints mean ± spread per variant with the difference to the full model paired by seed; (slow) the
same end to end with train_ner.py on simulated CCKS records."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from benchmarks import kg_ablation
from clinical_ner_zh.cli_errors import UserError

from .helpers import simulated_ccks_records, write_ccks

ROOT = Path(__file__).resolve().parent.parent
# F1 of each (variant, seed) the stand-in for train_ner.py reports
SCORES = {("kg", 1): 0.80, ("kg", 2): 0.84, ("no-kg", 1): 0.78, ("no-kg", 2): 0.79}


@pytest.fixture
def inputs(tmp_path):
    records = simulated_ccks_records(20, seed=5)
    corpus = write_ccks(tmp_path / "ccks.jsonl", records)
    names = sorted({r["text"][e["start"] : e["end"]] for r in records for e in r["entities"]})
    kge = tmp_path / "kge"
    kge.mkdir()
    (kge / "entities.tsv").write_text("".join(f"{name}\tDisease\n" for name in names), encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(len(names), 8)}, str(kge / "entity_embeddings.safetensors"))
    return {"corpus": corpus, "kge": kge, "results": tmp_path / "grid" / "results.jsonl"}


@pytest.fixture
def trained(monkeypatch):
    """Replace the training runs with ones that report SCORES; the list records which runs were trained, and a
    run named in ``kill_at`` is interrupted as Ctrl-C would."""
    runs, kill_at = [], set()

    def train_and_score(variant, seed, split, args, extra, folder):
        assert split[1].read_text(encoding="utf-8")  # the held-out eval file exists
        if (variant, seed) in kill_at:
            raise KeyboardInterrupt
        runs.append((variant, seed))
        f1 = SCORES[variant, seed]
        return {"variant": variant, "seed": seed, "precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1,
                "eval_records": 4, "eval_entities": 30, "steps": args.max_steps, "train_seconds": 1.0,
                "best_dev_f1": 0.5}  # fmt: skip

    monkeypatch.setattr(kg_ablation, "train_and_score", train_and_score)
    return runs, kill_at


def grid(inputs, *extra, variants=("kg", "no-kg")):
    return ["--train", str(inputs["corpus"]), "--kg-embeddings", str(inputs["kge"]), "--results",
            str(inputs["results"]), "--max-steps", "5", "--variants", *variants, *extra]  # fmt: skip


def test_a_killed_grid_continues_where_it_stopped_and_prints_mean_spread_and_paired_difference(inputs, trained, capsys):
    runs, kill_at = trained
    kill_at.add(("no-kg", 2))
    with pytest.raises(KeyboardInterrupt):
        kg_ablation.main(grid(inputs, "--seeds", "1", "2"))
    assert runs == [("kg", 1), ("kg", 2), ("no-kg", 1)]  # variant by variant, each over every seed
    assert len(inputs["results"].read_text(encoding="utf-8").splitlines()) == 3
    kill_at.clear()
    capsys.readouterr()
    kg_ablation.main(grid(inputs, "--seeds", "1", "2"))
    assert runs[3:] == [("no-kg", 2)]  # only the run that was missing
    out = capsys.readouterr().out
    assert "kg-seed1: kept from" in out
    rows = {line.split()[0]: line for line in out.splitlines()[-4:-1]}
    # kg: mean of 0.80 and 0.84, sample sd 0.0283; no-kg minus kg, seed by seed: -0.02 and -0.05
    assert re.fullmatch(r"kg\s+2/2\s+0\.8200 ± 0\.0283\s+0\.8000-0\.8400\s+0\.8300\s+0\.8100", rows["kg"])
    assert re.fullmatch(
        r"no-kg\s+2/2\s+0\.7850 ± 0\.0071\s+0\.7800-0\.7900\s+0\.7950\s+0\.7750\s+-0\.0350 ± 0\.0212", rows["no-kg"]
    )
    assert "4 records held out of ccks.jsonl (split seed 7), 30 entities; 5 optimiser steps per run" in out
    assert out.splitlines()[-1] == "command: python benchmarks/kg_ablation.py " + " ".join(
        grid(inputs, "--seeds", "1", "2")
    )
    lines = [json.loads(line) for line in inputs["results"].read_text(encoding="utf-8").splitlines()]
    assert [(line["variant"], line["seed"], line["f1"]) for line in lines] == [
        ("kg", 1, 0.80), ("kg", 2, 0.84), ("no-kg", 1, 0.78), ("no-kg", 2, 0.79)
    ]  # fmt: skip


def test_results_of_other_settings_are_refused_but_no_kg_survives_new_kg_files(inputs, trained):
    runs, _ = trained
    kg_ablation.main(grid(inputs, "--seeds", "1"))
    before = inputs["results"].read_text(encoding="utf-8")
    message = r"results.jsonl: the run kg seed 1 there was made with other settings \(train_ner_flags \[\] there, \['--token_dropout=0.1'\] now\)"
    with pytest.raises(UserError, match=message):
        kg_ablation.main([*grid(inputs, "--seeds", "1"), "--token_dropout=0.1"])
    # New KG files: the full model's run is stale, the run without knowledge features is not.
    (inputs["kge"] / "entities.tsv").write_text("高血压\tDisease\n", encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(1, 8)}, str(inputs["kge"] / "entity_embeddings.safetensors"))
    with pytest.raises(UserError, match="the run kg seed 1 there was made with other settings \\(kg_embeddings '"):
        kg_ablation.main(grid(inputs, "--seeds", "1"))
    kg_ablation.main(grid(inputs, "--seeds", "1", variants=["no-kg"]))
    assert runs == [("kg", 1), ("no-kg", 1)]  # nothing trained again
    assert inputs["results"].read_text(encoding="utf-8") == before


@pytest.mark.slow
def test_kg_ablation_trains_each_run_once_with_train_ner(inputs, tmp_path):
    tiny = ["--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64",
            "--lstm_hidden_size=16", "--max_length=64", "--stride=16"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/kg_ablation.py", *grid(inputs), "--max-steps", "2", *tiny]
    for seeds, trained_now in ((["1"], 2), (["1", "2"], 2)):
        result = subprocess.run([*command, "--seeds", *seeds], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=900)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count(": training (2 steps)") == trained_now
    lines = [json.loads(line) for line in inputs["results"].read_text(encoding="utf-8").splitlines()]
    assert [(line["variant"], line["seed"], line["steps"], line["eval_records"]) for line in lines] == [
        ("kg", 1, 2, 4), ("no-kg", 1, 2, 4), ("kg", 2, 2, 4), ("no-kg", 2, 2, 4)
    ]  # fmt: skip
    assert not (inputs["results"].parent / "runs" / "kg-seed1").exists()  # scored models are not kept
    assert (inputs["results"].parent / "logs" / "kg-seed1.log").is_file()
    assert re.search(r"^no-kg\s+2/2\s+[01]\.\d{4} ± \d\.\d{4}", result.stdout, re.M), result.stdout
