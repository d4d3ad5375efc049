"""train_ner.py and train_mlm.py: configuration errors stop before training, arguments come from files and flags,
an interrupted run resumes to the same weights, the weight average and weight decay touch only what they should,
and (slow) the scripts run end to end, also on two processes like on one."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

import train_mlm
import train_ner
from clinical_ner_zh.datasets_scripts import WindowEncoder, build_char_tokenizer, encode_dataset
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging, TermLexicon
from clinical_ner_zh.modeling.tagging import build_label_list
from clinical_ner_zh.training.common import (
    ConfigurationError,
    TrainingBudget,
    make_accelerator,
    optimizer_groups,
    parse_arguments,
    warmup_decay_schedule,
)

from .conftest import TINY_BERT
from .helpers import TINY, ccks2020_records, ner_args, simulated_ccks_records, write_ccks, write_label_studio_json

ROOT = Path(__file__).resolve().parent.parent


def saved_model_dev_report(model_dir: Path, argv: list[str]) -> dict:
    """The dev report of the model saved in ``model_dir``, recomputed in this one process from the saved files
    alone (model, tokenizer, lexicon) with the script's own window encoding, collation and evaluation."""
    model_args, data_args, train_args = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments), argv
    )
    train_ner.validate_arguments(model_args, data_args, train_args)
    corpus, types, classes = train_ner.load_corpus(data_args, train_args.seed)
    model = train_ner.FAMILIES[model_args.family][1].from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    features = {}
    if model_args.family == "clinicalbert-kg":
        features = dict(text_features=model.text_features, text_feature_names=train_ner.KG_FEATURES)
    encoder = WindowEncoder(
        tokenizer,
        types,
        scheme=model.config.label_scheme,
        max_length=data_args.max_length,
        stride=data_args.stride,
        **features,
    )
    windows = encode_dataset(corpus["validation"], encoder)
    columns = [c for c in train_ner.MODEL_INPUTS if c in windows.column_names and c != "labels"]
    loader = DataLoader(
        windows.select_columns(columns).with_format(None),
        batch_size=5,
        collate_fn=lambda rows: train_ner.collate(rows, tokenizer.pad_token_id),
    )
    dev = train_ner.Split(corpus["validation"], windows, loader)
    report = train_ner.evaluate(
        model, dev, accelerator=Accelerator(cpu=True), encoder=encoder, types=types, classes=classes
    )
    return report.to_dict()


def checkpoints(output_dir: Path) -> dict[int, Path]:
    """The checkpoints a run left, by the optimiser step each was saved at."""
    folders = (output_dir / "checkpoints").iterdir()
    return {json.loads((folder / "training_state.json").read_text())["step"]: folder for folder in folders}


def logged(output_dir: Path, key: str) -> list[dict]:
    lines = (output_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [row for row in map(json.loads, lines) if key in row]


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


def test_max_grad_norm_zero_means_no_clipping(corpora, tmp_path):
    """As in transformers' Trainer, --max_grad_norm 0 turns clipping off. It used to clip every gradient to zero:
    the run ended with its initial weights (weight decay aside) and said nothing."""
    weights = {}
    for norm in ("0", "1e9"):
        train_ner.main(ner_args(corpora, tmp_path / norm, f"--max_grad_norm={norm}", "--max_steps=3",
                                "--weight_decay=0"))  # fmt: skip
        weights[norm] = load_file(tmp_path / norm / "model.safetensors")
    for name, value in weights["1e9"].items():
        torch.testing.assert_close(weights["0"][name], value, msg=name)


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
    """Stopped after 4 steps (only its checkpoint survives) and resumed, a run ends where an uninterrupted one does,
    weight average included, and the average that was evaluated is the model that was saved. The resumed run numbers
    its checkpoints on from the one it resumed."""
    common = ["--max_steps=8", "--eval_steps=4", "--checkpointing_steps=4", "--early_stopping_patience=0",
              "--token_dropout=0.1", "--augment_copies=1", "--ema_decay=0.9995"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    history = train_ner.main(ner_args(corpora, whole, *common))["history"]
    kept = checkpoints(whole)
    # What a run killed after step 4 leaves: its folder without anything written later.
    shutil.copytree(whole, resumed, ignore=shutil.ignore_patterns(kept[8].name))
    results = train_ner.main(ner_args(corpora, resumed, *common, "--resume_from_checkpoint=latest"))
    assert results["steps"] == 8 and results["history"][-1] == history[-1]
    assert {step: folder.name for step, folder in checkpoints(resumed).items()} == {
        step: folder.name for step, folder in kept.items()
    }
    for checkpoint in ("model.safetensors", f"checkpoints/{kept[8].name}/model.safetensors"):
        expected = load_file(whole / checkpoint)
        got = load_file(resumed / checkpoint)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    # The moving average (--ema_decay) resumes too, buffers included, and it is what the evaluations scored and saved.
    averages = [torch.load(checkpoints(run)[8] / "custom_checkpoint_0.pkl", weights_only=True)
                for run in (whole, resumed)]  # fmt: skip
    assert int(averages[0]["n_averaged"]) == 8
    for name, value in averages[0].items():
        torch.testing.assert_close(averages[1][name], value, atol=1e-6, rtol=1e-5, msg=name)
    best_step = max(history, key=lambda row: row["f1"])["step"]
    saved = load_file(resumed / "model.safetensors")
    average = torch.load(checkpoints(resumed)[best_step] / "custom_checkpoint_0.pkl", weights_only=True)
    name = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(saved[name], average[f"module.{name}"])
    assert not torch.allclose(saved[name], expected[name])
    for run in (whole, resumed):
        evaluated = json.loads((run / "eval_results.json").read_text(encoding="utf-8"))
        assert evaluated["micro"]["predicted"] > 0
        assert saved_model_dev_report(run, ner_args(corpora, run, *common)) == evaluated, run.name


@pytest.mark.parametrize(
    "stop",
    [["--eval_steps=2", "--early_stopping_patience=1", "--encoder_learning_rate=1e-9", "--head_learning_rate=1e-9"],
     ["--eval_steps=2", "--max_train_minutes=1e-9"]],
    ids=["early-stopping", "time-budget"],
)  # fmt: skip
def test_a_finished_run_stays_finished_on_resume_with_its_history(corpora, tmp_path, stop):
    """The same command run again with --resume_from_checkpoint latest (a job script that always passes it) after
    the run stopped early or ran out of time: no step is taken, the saved model stays, and all_results.json still
    lists the evaluations made before the resume."""
    argv = ner_args(corpora, tmp_path / "out", "--max_steps=20", *stop)
    first = train_ner.main(argv)
    assert first["steps"] < 20, "the run must end before its last step"
    model = (tmp_path / "out" / "model.safetensors").read_bytes()
    again = train_ner.main([*argv, "--resume_from_checkpoint=latest"])
    assert again["steps"] == first["steps"]
    assert [row["step"] for row in again["history"]] == [row["step"] for row in first["history"]]
    saved = json.loads((tmp_path / "out" / "all_results.json").read_text(encoding="utf-8"))
    assert saved["history"] == first["history"]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == model


def test_a_checkpoint_is_resumed_only_by_as_many_processes_as_wrote_it(corpora, tmp_path):
    """Steps and the position in the data are counted per process: resumed by another number of processes, a run
    trained twice (or half) the data asked for, with its schedule jumping back."""
    output = tmp_path / "out"
    argv = ner_args(corpora, output, "--max_steps=2", "--early_stopping_patience=0")
    train_ner.main(argv)
    state_file = checkpoints(output)[2] / "training_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["num_processes"] == 1
    state_file.write_text(json.dumps({**state, "num_processes": 2}), encoding="utf-8")  # as two processes write it
    before = {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}
    with pytest.raises(ConfigurationError) as caught:
        train_ner.main([*argv, "--resume_from_checkpoint=latest"])
    assert str(caught.value) == (
        f"{state_file.parent} was written by 2 process(es), this run has 1: resume with 2 (accelerate launch "
        "--num_processes 2), or train afresh in another folder"
    )
    assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before


def test_weight_average_averages_floating_point_tensors_only():
    """BERT's int64 position_ids (and the CRF's boolean constraints) are copied, not averaged and truncated."""
    labels = build_label_list(["Drug"], "BIO")
    config = ChCancerBertConfig(**{**TINY_BERT, "max_position_embeddings": 512}, id2label=dict(enumerate(labels)))
    torch.manual_seed(0)
    model = ChCancerBertForCrfTagging(config)
    decay = 0.9995
    averaged = train_ner.weight_average(model, decay)
    averaged.update_parameters(model)  # the first update copies
    expected = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    for _ in range(3):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        averaged.update_parameters(model)
        for name, parameter in model.named_parameters():
            expected[name].lerp_(parameter.detach(), 1 - decay)
    for name, parameter in averaged.module.named_parameters():
        torch.testing.assert_close(parameter, expected[name], msg=name)
    buffers = dict(averaged.module.named_buffers())
    assert torch.equal(buffers["bert.embeddings.position_ids"], torch.arange(512).unsqueeze(0))
    for name, buffer in model.named_buffers():
        assert torch.equal(buffers[name], buffer), name


def test_weight_decay_skips_biases_norms_and_crf_scores():
    labels = build_label_list(["Drug"], "BIO")
    model = ChCancerBertForCrfTagging(ChCancerBertConfig(**TINY_BERT, id2label=dict(enumerate(labels))))
    groups = optimizer_groups(
        model, 0.01, {"encoder": 1e-4, "head": 1e-3}, lambda name: "encoder" if name.startswith("bert.") else "head"
    )
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    decayed = {names[id(p)] for group in groups if group["weight_decay"] for p in group["params"]}
    not_decayed = {names[id(p)] for group in groups if not group["weight_decay"] for p in group["params"]}
    assert decayed | not_decayed == set(names.values()) and not decayed & not_decayed
    assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= not_decayed
    assert "bert.embeddings.LayerNorm.weight" in not_decayed and "fusion.norm_a.weight" in not_decayed
    assert all(name in not_decayed for name in names.values() if "bias" in name)
    assert {
        "classifier.weight",
        "bert.embeddings.word_embeddings.weight",
        "bilstm.forward_layers.0.weight_ih_l0",
    } <= decayed
    for group in groups:
        names_in_group = {names[id(p)] for p in group["params"]}
        prefix = {name.startswith("bert.") for name in names_in_group}
        assert prefix == {group["name"] == "encoder"} and group["lr"] == {"encoder": 1e-4, "head": 1e-3}[group["name"]]


def test_ddp_does_not_broadcast_the_constant_buffers(tmp_path):
    """A frozen KG table is a buffer: broadcasting buffers before every forward pass would send all of it each step."""
    assert make_accelerator(tmp_path).ddp_handler.to_kwargs() == {"broadcast_buffers": False}


def test_schedule_anneals_by_steps_or_by_the_time_budget():
    def learning_rates(budget, clock, scheduler_calls=1):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = warmup_decay_schedule(optimizer, 0.1, budget)
        rates = [optimizer.param_groups[0]["lr"]]
        for step, seconds in enumerate(clock, start=1):
            budget.step, budget.elapsed = step, seconds
            optimizer.step()
            # Under accelerator.prepare on N processes the scheduler is stepped N times per optimiser step.
            for _ in range(scheduler_calls):
                scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
        return rates

    # Steps only: linear warm-up over 10 of 100 steps, then linear decay to zero at step 100, however many times
    # the scheduler is stepped per optimiser step.
    rates = learning_rates(TrainingBudget(100), [0.0] * 100)
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.5) and rates[10] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5) and rates[100] == 0.0
    assert learning_rates(TrainingBudget(100), [0.0] * 100, scheduler_calls=2) == pytest.approx(rates)
    # A one-minute budget that ends long before step 10,000: warm-up and decay follow the clock.
    budget = TrainingBudget(10_000, minutes=1.0)
    rates = learning_rates(budget, [3.0, 6.0, 33.0, 60.0])
    assert rates[1:] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert budget.out_of_time
    budget.step = 0
    budget.resume(30.0)
    assert budget.progress == pytest.approx(0.5) and not budget.out_of_time
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigurationError, match=r"--warmup_ratio 1.0: expected a share in \[0, 1\)"):
        warmup_decay_schedule(optimizer, 1.0, TrainingBudget(10))


def test_saved_folder_is_a_complete_model_repository(corpora, tmp_path):
    output = tmp_path / "model"
    results = train_ner.main(
        ner_args(corpora, output, "--max_steps=4", "--checkpointing_steps=1", "--early_stopping_patience=0")
    )
    files = {p.name for p in output.iterdir()}
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                "training_args.json", "eval_results.json", "modeling_chcancerbert.py", "crf.py", "tagging.py"}  # fmt: skip
    assert expected <= files
    card = (output / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: token-classification" in card and "custom_code" in card and "trust_remote_code=True" in card
    assert f"value: {results['history'][-1]['f1']:.4f}" in card or "model-index" in card
    assert "$" not in card.split("---")[1], "unfilled template field in the card metadata"
    assert json.loads((output / "training_args.json").read_text())["variant"] == "dgcnn-bilstm-mha-crf"
    assert logged(output, "eval_f1")
    # Every training log line carries both learning rates, as the Trainer logs them; at the last step both are 0.
    training = logged(output, "train_loss")
    assert [row["step"] for row in training] == [2, 4]
    assert all(row["learning_rate"] == row["head_learning_rate"] for row in training)
    assert training[0]["learning_rate"] == pytest.approx(1e-3 * (1 - 2 / 4) / 0.9) and training[1]["learning_rate"] == 0
    # The two newest checkpoints are kept.
    assert {step: folder.name for step, folder in checkpoints(output).items()} == {
        3: "checkpoint_2",
        4: "checkpoint_3",
    }
    # AdamW groups: encoder and heads, each with and without weight decay (biases, norms, CRF scores).
    groups = torch.load(checkpoints(output)[4] / "optimizer.bin", weights_only=True)["param_groups"]
    assert sorted((group["name"], group["weight_decay"]) for group in groups) == [
        ("encoder", 0.0), ("encoder", 0.01), ("head", 0.0), ("head", 0.01)
    ]  # fmt: skip


def test_entities_left_out_of_the_tags_are_logged_and_counted_per_type(tmp_path, caplog):
    corpus = write_ccks(tmp_path / "c2020.jsonl", ccks2020_records(), overlap_key=False)
    argv = ["--corpus=ccks2020", f"--train_file={corpus}", f"--validation_file={corpus}", *TINY,
            f"--output_dir={tmp_path / 'out'}", "--max_length=32", "--stride=8", "--max_steps=1"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="train_ner"):
        results = train_ner.main(argv)
    # Record 1 nests 胆囊 (Anatomy) in 胆囊切除术 (Operation) and labels 左眼白内障 Disease and Operation: one tag each.
    expected = {"not_representable": {}, "dropped_as_overlap": {"Anatomy": 1, "Operation": 1}}
    assert results["entities_not_encoded"] == {"train": expected, "validation": expected}
    saved = json.loads((tmp_path / "out" / "all_results.json").read_text(encoding="utf-8"))
    assert saved["entities_not_encoded"] == results["entities_not_encoded"]
    lines = [r.getMessage() for r in caplog.records if r.name == "train_ner"]
    assert "train: not encoded: record c2020:1 [3, 5) Anatomy: overlaps a longer entity that is kept" in lines
    assert "validation: not encoded: record c2020:1 [11, 16) Operation: overlaps a longer entity that is kept" in lines
    assert any(line.endswith("2 dropped as overlaps (Anatomy 1, Operation 1)") for line in lines)


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


@pytest.fixture(scope="module")
def ddp_inputs(corpora):
    """A small corpus, a tiny BERT with a character vocabulary saved to a folder as a Hub checkpoint would be, and a
    KG table. The BERT has no dropout, so that a run draws no dropout mask that depends on how batches are split
    between processes."""
    from safetensors.torch import save_file

    records = simulated_breast_cancer_records(12, seed=4)
    corpus = write_label_studio_json(corpora["folder"] / "small.json", records)
    folder = corpora["folder"] / "encoder"
    tokenizer = build_char_tokenizer([record["text"] for record in records])
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    kge = corpora["folder"] / "kge"
    kge.mkdir()
    names = [("结节", "Symptom"), ("改良根治术", "Disease"), ("来曲唑", "Drug"), ("曲妥珠单抗", "Drug")]
    (kge / "entities.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in names), encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(len(names), 8)}, str(kge / "entity_embeddings.safetensors"))
    return corpus, folder, kge


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
    assert (config["window_max_length"], config["window_stride"]) == (32, 8)
    assert AutoConfig.from_pretrained(output, trust_remote_code=True).max_position_embeddings == 512


def launch_two_processes(script: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """``accelerate launch`` of a script on two CPU processes (gloo)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / script), *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("train_ner.py", lambda corpus, out: ["--corpus=ccks2019", f"--train_file={corpus}", f"--output_dir={out}"]),
        ("train_mlm.py", lambda corpus, out: [f"--train_files={corpus}", f"--output_dir={out}", "--max_steps=1"]),
    ],
    ids=["ner", "mlm"],
)
def test_a_user_error_under_two_processes_ends_both_with_one_line(tmp_path, script, argv):
    """The main process reads the corpus first while the other waits (main_process_first): its error used to leave
    the other at the barrier until the launcher stopped it, with a traceback of its own. Now every process meets the
    error and exits with status 2, within the timeout, and the user reads one line."""
    if script == "train_ner.py":
        corpus = write_ccks(tmp_path / "ccks.jsonl", simulated_ccks_records(1, seed=2))
        with corpus.open("a", encoding="utf-8") as handle:
            handle.write('{"originalText": "患者张三\n')
        expected = f"error: {corpus}: 1 of 2 records dropped (bad_json 1), more than --max_bad_fraction 0.05"
    else:
        corpus = tmp_path / "corpus.txt"
        corpus.write_bytes("患者左肺结节。\n".encode() * 2 + b"\xff\xfe\n")
        expected = f"error: {corpus}: 1 of 3 records dropped (bad_encoding 1), more than --max_bad_fraction 0.05"
    output = tmp_path / "out"
    result = launch_two_processes(script, *argv(corpus, output), timeout=180)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr[-3000:]
    assert "[rank1]" not in result.stderr and "[rank0]" not in result.stderr, result.stderr[-3000:]
    # The launcher reports its workers in a summary of its own: the first to end exited with our status 2.
    assert re.search(r"Root Cause.*?exitcode\s*: 2 ", result.stderr, re.DOTALL), result.stderr[-3000:]
    assert not output.exists()


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["chcancerbert", "kg-frozen", "kg-fine-tuned"])
def test_two_processes_train_like_one(corpora, ddp_inputs, tmp_path, setting):
    """Same data and seed on one process and on two (gloo): the learning rate follows the same curve over the
    share of training done (it reached zero half-way on two before), family B trains with a frozen or a fine-tuned
    KG table on a pretrained encoder (DDP failed on the frozen one), and the saved model scores on dev, in one
    process, exactly what the two processes logged for it. Family A without dropout: the logged training loss is the
    mean over both processes' batches, that of one process taking the same global batches (it was rank 0's alone)."""
    corpus, encoder, kge = ddp_inputs
    setting_args = ["--gradient_accumulation_steps=2", "--head_dropout=0"] if setting == "chcancerbert" else [
        "--family=clinicalbert-kg", f"--kg_embeddings={kge}", f"--freeze_kg_embeddings={setting == 'kg-frozen'}",
    ]  # fmt: skip
    # One epoch of 11 batches of 16 windows, without warm-up (the curve is then a straight line), logged and
    # evaluated at every step: family A takes 6 optimiser steps on one process and 3 on two, family B 11 and 6. The
    # best model is then an early one that still predicts entities, so its dev report is worth recomputing.
    extra = [f"--train_file={corpus}", f"--encoder={encoder}", *setting_args, "--num_train_epochs=1",
             "--per_device_train_batch_size=16",
             "--logging_steps=1", "--warmup_ratio=0", "--eval_steps=1", "--checkpointing_steps=100",
             "--early_stopping_patience=0"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    train_ner.main(ner_args(corpora, one, *extra))
    result = launch_two_processes("train_ner.py", *ner_args(corpora, two, *extra), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es), DistributedType.MULTI_CPU" in result.stderr, "the processes did not form one group"

    curves = {}
    for run in (one, two):
        steps = json.loads((run / "all_results.json").read_text())["steps"]
        rows = logged(run, "train_loss")
        assert [row["step"] for row in rows] == list(range(1, steps + 1))
        curves[run.name] = [(row["step"] / steps, row["learning_rate"]) for row in rows]
    assert len(curves["two"]) < len(curves["one"])  # two processes share the epoch
    fractions, rates = zip(*curves["one"])
    for fraction, rate in curves["two"]:
        expected = float(numpy.interp(fraction, fractions, rates))
        assert rate == pytest.approx(expected, abs=0.05 * 1e-3), (fraction, curves)
    assert curves["two"][-1][1] == 0.0 and curves["two"][0][1] > 0.5e-3  # not at zero half-way
    if setting == "chcancerbert":
        # One process with batches of 32 takes the same 64 windows per optimiser step as two with 16 each, in the
        # same order (one seeded sampler), and from the same weights (no dropout: nothing drawn at random). The last
        # step differs: its windows do not fill the batches of two processes, the second one repeats first windows.
        same_batches = tmp_path / "same-batches"
        train_ner.main(ner_args(corpora, same_batches, *extra, "--per_device_train_batch_size=32", "--eval_steps=100"))
        expected = [row["train_loss"] for row in logged(same_batches, "train_loss")][:-1]
        got = [row["train_loss"] for row in logged(two, "train_loss")][:-1]
        # Equal to 1e-7 here; rank 0's mean alone was 2e-3 off at step 1, 2e-5 at step 2.
        assert len(got) == 2 and got == pytest.approx(expected, rel=1e-5)

    results = json.loads((two / "all_results.json").read_text())
    evaluated = json.loads((two / "eval_results.json").read_text(encoding="utf-8"))
    assert evaluated["micro"]["f1"] == results["best_dev_f1"] == max(row["f1"] for row in results["history"])
    assert evaluated["micro"]["predicted"] > 0
    assert saved_model_dev_report(two, ner_args(corpora, two, *extra)) == evaluated
    if setting != "chcancerbert":
        weights = load_file(two / "model.safetensors")
        table = weights["kg_embeddings.table.weight"][1:]
        trained = not torch.equal(table, load_file(kge / "entity_embeddings.safetensors")["entity_embeddings"])
        assert trained == (setting == "kg-fine-tuned")


@pytest.mark.slow
def test_a_two_process_checkpoint_is_not_resumed_by_one(corpora, tmp_path):
    """The real thing: a run under accelerate launch --num_processes 2, resumed by one process, is refused."""
    output = tmp_path / "out"
    argv = ner_args(corpora, output, "--max_steps=2", "--early_stopping_patience=0")
    result = launch_two_processes("train_ner.py", *argv, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = checkpoints(output)[2]
    with pytest.raises(
        ConfigurationError, match=rf"^{re.escape(str(checkpoint))} was written by 2 process\(es\), this run has 1: "
    ):
        train_ner.main([*argv, "--resume_from_checkpoint=latest"])


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streamed"])
def test_train_mlm_on_two_processes_logs_each_step_once(tmp_path, streaming):
    """train_mlm.py on two processes (gloo), its corpus in memory or streamed (batches then dispatched from the main
    process): the loss is gathered from both at every logging step, and metrics.jsonl has one row per step, written
    by the main process, not one per process."""
    corpus = tmp_path / "corpus.txt"
    texts = [record["text"] for record in simulated_breast_cancer_records(12, seed=5, long_records=0)]
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    output = tmp_path / "mlm"
    result = launch_two_processes(
        "train_mlm.py", f"--train_files={corpus}", f"--output_dir={output}", "--max_steps=3", "--logging_steps=1",
        "--per_device_train_batch_size=4", "--max_seq_length=48", "--hidden_size=32", "--num_hidden_layers=1",
        "--num_attention_heads=2", "--intermediate_size=64", *(["--streaming"] if streaming else []), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es), DistributedType.MULTI_CPU" in result.stderr, "the processes did not form one group"
    rows = logged(output, "train_loss")
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert rows[-1]["learning_rate"] == 0.0
    # Barely trained: masked LM over the vocabulary plus next-sentence prediction, both near chance.
    chance = math.log(len(AutoTokenizer.from_pretrained(output))) + math.log(2)
    assert [row["train_loss"] for row in rows] == pytest.approx([chance] * 3, rel=0.05)


def test_family_b_trains_with_its_lexicon_and_kg_embeddings(corpora, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from clinical_ner_zh.modeling import ClinicalBertKgForCrfTagging

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
    if variant == "no-kg-embedding":  # the KG's names are the lexicon, unlinked: the model has no table
        lexicon = TermLexicon.load(output / "lexicon.tsv")
        assert [(t.name, t.type, t.entity_row) for t in lexicon.terms] == [
            ("结节", "Symptom", None), ("来曲唑", "Drug", None)
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "terms", "rows"),
    [("kg", 3, [0, 1, 2]), ("no-kg-embedding", 3, [None] * 3), ("no-position", 3, [0, 1, 2]), ("no-kg", None, None)],
)
def test_family_b_default_lexicon_is_the_kg_entity_table_for_every_variant(tmp_path, variant, terms, rows):
    """--kg_embeddings without --lexicon: every variant with term features gets the KG's names as its lexicon (linked
    to the KG rows only where the model has the table); no-kg-embedding once got an empty lexicon."""
    from safetensors.torch import save_file

    kge = tmp_path / "kge"
    kge.mkdir()
    (kge / "entities.tsv").write_text("高血压\tDisease\n来曲唑\tDrug\n血常规\tCheck\n头\tOther\n", encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(4, 8)}, str(kge / "entity_embeddings.safetensors"))
    args = train_ner.ModelArguments(family="clinicalbert-kg", variant=variant, kg_embeddings=str(kge))
    lexicon, embeddings = train_ner.load_knowledge(args)
    if terms is None:
        assert lexicon is None and embeddings is None
        return
    assert len(lexicon) == terms  # the one-character name is left out (--min_term_length 2)
    assert [t.entity_row for t in lexicon.terms] == rows
    assert (embeddings is None) == (variant == "no-kg-embedding")
