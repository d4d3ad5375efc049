"""train_ner.py and train_mlm.py: configuration errors stop before training, arguments come from files and flags,
an interrupted run resumes to the same weights, and (slow) the scripts run end to end, also on two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_mlm
import train_ner
from datasets_scripts.fixtures import (
    simulated_breast_cancer_records,
    simulated_ccks_records,
    write_ccks,
    write_label_studio_json,
)
from training.common import ConfigurationError, TrainingBudget, parse_arguments, warmup_decay_schedule

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64",
    "--lstm_hidden_size=16", "--fusion_num_heads=2", "--dgcnn_dilations", "1", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpora")
    breast = write_label_studio_json(folder / "breast.json", simulated_breast_cancer_records(30, seed=1))
    ccks = write_ccks(folder / "ccks.jsonl", simulated_ccks_records(30, seed=2))
    return {"breast": breast, "ccks": ccks, "folder": folder}


def ner_args(corpora, output_dir, *extra):
    return [
        "--corpus=breast_cancer", f"--train_file={corpora['breast']}", f"--output_dir={output_dir}",
        "--max_length=64", "--stride=16", "--per_device_train_batch_size=8", "--logging_steps=2",
        "--encoder_learning_rate=1e-3", "--head_learning_rate=1e-3", *TINY, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--family=bert-softmax"], "unknown model family 'bert-softmax'"),
        (["--variant=lstm"], "unknown variant 'lstm'"),
        (["--label_scheme=IOB1"], "unknown label scheme 'IOB1'"),
        (["--train_file=/nonexistent/corpus.json"], "train_file /nonexistent/corpus.json does not exist"),
        (["--corpus=i2b2"], "unknown corpus 'i2b2'"),
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--token_dropout=1.5"], r"--token_dropout 1.5: expected a share in \[0, 1\)"),
        (["--augment_copies=-1"], "--augment_copies -1: expected a count >= 0"),
        (["--augment_share=2"], r"--augment_share 2.0: expected a share in \[0, 1\]"),
        (["--ema_decay=1"], r"--ema_decay 1.0: expected a decay in \[0, 1\)"),
    ],
)
def test_bad_configuration_stops_before_training(corpora, tmp_path, extra, message):
    with pytest.raises(ConfigurationError, match=message):
        train_ner.main(ner_args(corpora, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


def test_encoder_with_other_labels_is_refused(corpora, tmp_path):
    """An encoder saved with a label set that disagrees with the corpus's stops the run before training."""
    trained = tmp_path / "ccks_model"
    train_ner.main([
        "--corpus=ccks2019", f"--train_file={corpora['ccks']}", "--dev_fraction=0.2", f"--output_dir={trained}",
        "--max_length=64", "--stride=16", "--max_steps=1", "--early_stopping_patience=0", *TINY,
    ])  # fmt: skip
    with pytest.raises(ConfigurationError, match="disagree with the corpus's 33 labels"):
        train_ner.main(ner_args(corpora, tmp_path / "out", f"--encoder={trained}", "--max_steps=1"))


def test_arguments_from_a_yaml_file_with_flags_winning(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("variant: bilstm-crf\nmax_length: 64\ndgcnn_dilations: [1, 3]\n", encoding="utf-8")
    model_args, data_args, _ = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments),
        ["--config", str(config), "--max_length", "96"],
    )
    assert model_args.variant == "bilstm-crf" and model_args.dgcnn_dilations == [1, 3]
    assert data_args.max_length == 96
    config.write_text("varaint: bilstm-crf\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"run.yaml: unknown argument\(s\) varaint"):
        parse_arguments((train_ner.ModelArguments,), ["--config", str(config)])


def test_interrupted_run_resumes_to_the_same_weights(corpora, tmp_path):
    """Stopped after 4 steps (only its checkpoint survives) and resumed, a run ends where an uninterrupted one does."""
    common = ["--max_steps=8", "--eval_steps=4", "--checkpointing_steps=4", "--early_stopping_patience=0",
              "--token_dropout=0.1", "--augment_copies=1", "--ema_decay=0.5"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    history = train_ner.main(ner_args(corpora, whole, *common))["history"]
    # What a run killed after step 4 leaves: its folder without anything written later.
    shutil.copytree(whole, resumed, ignore=shutil.ignore_patterns("step_8"))
    results = train_ner.main(ner_args(corpora, resumed, *common, "--resume_from_checkpoint=latest"))
    assert results["steps"] == 8
    expected = load_file(whole / "checkpoints" / "step_8" / "model.safetensors")
    got = load_file(resumed / "checkpoints" / "step_8" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    # The moving average (--ema_decay) resumes too, and it is what the evaluations scored and saved.
    averages = [torch.load(run / "checkpoints" / "step_8" / "custom_checkpoint_0.pkl", weights_only=True)
                for run in (whole, resumed)]  # fmt: skip
    assert int(averages[0]["n_averaged"]) == 8
    for name, value in averages[0].items():
        torch.testing.assert_close(averages[1][name], value, atol=1e-6, rtol=1e-5, msg=name)
    best_step = max(history, key=lambda row: row["f1"])["step"]
    saved = load_file(resumed / "model.safetensors")
    average = torch.load(resumed / "checkpoints" / f"step_{best_step}" / "custom_checkpoint_0.pkl", weights_only=True)
    name = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(saved[name], average[f"module.{name}"])
    assert not torch.allclose(saved[name], expected[name])


def test_schedule_anneals_by_steps_or_by_the_time_budget():
    def learning_rates(budget, clock):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = warmup_decay_schedule(optimizer, 0.1, budget)
        rates = [optimizer.param_groups[0]["lr"]]
        for seconds in clock:
            budget.elapsed = seconds
            optimizer.step()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
        return rates

    # Steps only: linear warm-up over 10 of 100 steps, then linear decay to zero at step 100.
    rates = learning_rates(TrainingBudget(100), [0.0] * 100)
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.5) and rates[10] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5) and rates[100] == 0.0
    # A one-minute budget that ends long before step 10,000: warm-up and decay follow the clock.
    budget = TrainingBudget(10_000, minutes=1.0)
    rates = learning_rates(budget, [3.0, 6.0, 33.0, 60.0])
    assert rates[1:] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert budget.out_of_time
    budget.resume(30.0)
    assert budget.progress(0) == pytest.approx(0.5) and not budget.out_of_time
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigurationError, match=r"--warmup_ratio 1.0: expected a share in \[0, 1\)"):
        warmup_decay_schedule(optimizer, 1.0, TrainingBudget(10))


def test_saved_folder_is_a_complete_model_repository(corpora, tmp_path):
    output = tmp_path / "model"
    results = train_ner.main(ner_args(corpora, output, "--max_steps=4", "--early_stopping_patience=0"))
    files = {p.name for p in output.iterdir()}
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                "training_args.json", "eval_results.json", "modeling_chcancerbert.py", "crf.py", "tagging.py"}  # fmt: skip
    assert expected <= files
    card = (output / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: token-classification" in card and "custom_code" in card and "trust_remote_code=True" in card
    assert f"value: {results['history'][-1]['f1']:.4f}" in card or "model-index" in card
    assert "$" not in card.split("---")[1], "unfilled template field in the card metadata"
    assert json.loads((output / "training_args.json").read_text())["variant"] == "dgcnn-bilstm-mha-crf"
    lines = (output / "logs" / "metrics.jsonl").read_text().splitlines()
    assert any("eval_f1" in json.loads(line) for line in lines)


@pytest.mark.slow
def test_pretraining_then_fine_tuning_end_to_end(corpora, tmp_path, run_isolated):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in simulated_breast_cancer_records(30, seed=3)), encoding="utf-8")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("浸润性导管癌\n改良根治术\n", encoding="utf-8")
    mlm = tmp_path / "mlm"
    train_mlm.main([
        f"--train_files={texts}", f"--output_dir={mlm}", f"--lexicon_file={lexicon}", "--max_steps=6",
        "--per_device_train_batch_size=8", "--max_seq_length=64", "--hidden_size=32", "--num_hidden_layers=1",
        "--num_attention_heads=2", "--intermediate_size=64",
    ])  # fmt: skip
    assert (mlm / "model.safetensors").is_file() and (mlm / "tokenizer.json").is_file()
    ner = tmp_path / "ner"
    train_ner.main(ner_args(corpora, ner, f"--encoder={mlm}", "--max_steps=6", "--early_stopping_patience=0"))
    moved = tmp_path / "moved"
    shutil.copytree(ner, moved, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    output = run_isolated(f"""
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        model = AutoModelForTokenClassification.from_pretrained({str(moved)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(moved)!r}, trust_remote_code=True)
        inputs = tokenizer(["右乳结节，ER(+)"], return_tensors="pt", return_special_tokens_mask=True)
        paths = model.decode(**inputs)
        assert len(paths[0]) == len("右乳结节，ER(+)"), paths
        ner = pipeline("clinical-ner", model={str(moved)!r}, trust_remote_code=True)
        text = "右乳结节，ER(+)，PR(-)。"
        for entity in ner(text):
            assert text[entity["start"]:entity["end"]] == entity["word"]
        print("ok")
    """)
    assert output.strip() == "ok"


@pytest.mark.slow
def test_predict_reproduces_the_test_f1_that_training_recorded(tmp_path):
    """The saved model records its training windows, and predict.py (the clinical-ner pipeline) tags with them by
    default: the same windows and merging as training's evaluation, so the same test-split scores. Records of about
    80 characters in windows of 30 tokens: the windows matter, and positions past 32 never trained."""
    import predict

    train = write_ccks(tmp_path / "train.jsonl", simulated_ccks_records(60, seed=5, prefix="tr"))
    test = write_ccks(tmp_path / "test.jsonl", simulated_ccks_records(20, seed=6, prefix="te"))
    output = tmp_path / "model"
    train_ner.main([
        "--corpus=ccks2019", f"--train_file={train}", f"--test_file={test}", "--dev_fraction=0.2",
        f"--output_dir={output}", "--max_length=32", "--stride=8", *TINY, "--encoder_learning_rate=3e-3",
        "--head_learning_rate=1e-2", "--warmup_ratio=0.05", "--max_steps=250", "--eval_steps=125",
        "--early_stopping_patience=0", "--logging_steps=50",
    ])  # fmt: skip
    recorded = json.loads((output / "test_results.json").read_text())["micro"]
    assert recorded["f1"] > 0.3, recorded  # a model that finds entities, so that the windows make a difference
    predictions = tmp_path / "predictions.jsonl"
    assert predict.main([str(output), str(test), "-o", str(predictions), "--gold", str(test), "--no-progress"]) == 0
    assert json.loads((tmp_path / "predictions.metrics.json").read_text())["micro"] == recorded
    config = json.loads((output / "config.json").read_text())
    assert (config["window_max_length"], config["window_stride"], config["max_position_embeddings"]) == (32, 8, 512)


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(corpora, tmp_path):
    output = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "train_ner.py"), *ner_args(corpora, output, "--max_steps=4", "--early_stopping_patience=0"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dev strict P" in result.stderr + result.stdout
    assert "2 process(es), DistributedType.MULTI_CPU" in result.stderr, "the processes did not form one group"
    results = json.loads((output / "all_results.json").read_text())
    assert results["steps"] == 4 and 0.0 <= results["best_dev_f1"] <= 1.0
    assert (output / "model.safetensors").is_file()


def test_family_b_trains_with_its_lexicon_and_kg_embeddings(corpora, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from modeling import ClinicalBertKgForCrfTagging

    # The knowledge features are computed once per record (all its tokens), never once per window.
    calls = []
    per_record = ClinicalBertKgForCrfTagging.text_features

    def text_features(self, text, offsets):
        calls.append(len(offsets))
        return per_record(self, text, offsets)

    monkeypatch.setattr(ClinicalBertKgForCrfTagging, "text_features", text_features)

    kge = tmp_path / "kge"
    kge.mkdir()
    names = [("结节", "Symptom"), ("改良根治术", "Disease"), ("来曲唑", "Drug"), ("曲妥珠单抗", "Drug")]
    (kge / "entities.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in names), encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(len(names), 12)}, str(kge / "entity_embeddings.safetensors"))
    output = tmp_path / "family_b"
    train_ner.main([
        "--family=clinicalbert-kg", f"--kg_embeddings={kge}", "--corpus=breast_cancer",
        f"--train_file={corpora['breast']}", f"--output_dir={output}", "--max_length=64", "--stride=16",
        "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64",
        "--lstm_hidden_size=16", "--max_steps=2", "--early_stopping_patience=0",
    ])  # fmt: skip
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "clinicalbert-kg-crf" and config["label_scheme"] == "BIOES"
    assert config["num_kg_entities"] == 4 and config["kg_embedding_dim"] == 12
    assert (output / "lexicon.tsv").is_file()
    assert len(calls) == 30  # the records of the three splits
    weights = load_file(output / "model.safetensors")
    table = next(v for k, v in weights.items() if k.endswith("weight") and v.shape == (5, 12))
    assert table[0].abs().sum() == 0  # row 0 is "no entity"


def test_family_b_without_knowledge_inputs_is_refused(corpora, tmp_path):
    with pytest.raises(ConfigurationError, match="give --lexicon and/or --kg_embeddings"):
        train_ner.main(ner_args(corpora, tmp_path / "out", "--family=clinicalbert-kg"))


@pytest.mark.parametrize("variant", ["no-kg", "no-kg-embedding"])
def test_family_b_ablations_ignore_the_knowledge_they_do_not_use(corpora, tmp_path, variant):
    from safetensors.torch import save_file

    kge = tmp_path / "kge"
    kge.mkdir()
    (kge / "entities.tsv").write_text("结节\tSymptom\n来曲唑\tDrug\n", encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(2, 8)}, str(kge / "entity_embeddings.safetensors"))
    output = tmp_path / variant
    train_ner.main(ner_args(corpora, output, "--family=clinicalbert-kg", f"--variant={variant}",
                            f"--kg_embeddings={kge}", "--max_steps=1", "--early_stopping_patience=0"))  # fmt: skip
    config = json.loads((output / "config.json").read_text())
    assert config["use_kg_embedding"] is False and config["num_kg_entities"] == 0
    assert (output / "lexicon.tsv").is_file() == (variant == "no-kg-embedding")
