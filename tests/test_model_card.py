"""Model cards tell the truth: built with ``huggingface_hub``'s ``ModelCard``, parsed back by ``ModelCard.load``,
their ``datasets``, ``model-index`` (validation and test) and data description are what the run used, simulated
data is said to be simulated, no path or record text of the corpus leaks in, and the usage snippets run."""

from __future__ import annotations

import ast
import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors.torch import save_file
from transformers.pipelines import SUPPORTED_TASKS

import train_mlm
import train_ner
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.metrics import EntityReport, score_entities
from clinical_ner_zh.modeling import ChCancerBertConfig
from clinical_ner_zh.modeling.tagging import build_label_list
from clinical_ner_zh.training.common import parse_arguments
from clinical_ner_zh.training.model_card import write_model_card

from .helpers import simulated_ccks_records, write_ccks, write_label_studio_json

TINY = [
    "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64",
    "--lstm_hidden_size=16", "--max_length=64", "--stride=16", "--max_steps=2", "--early_stopping_patience=0",
]  # fmt: skip
FAMILY_A = ["--fusion_num_heads=2", "--dgcnn_dilations", "1", "2"]
ARGUMENT_TYPES = (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments)


def check_hub_metadata(card: ModelCard) -> None:
    """What ``ModelCard.validate`` (a request to the Hub) checks that can be checked here: the metadata parses,
    known fields have the Hub's types, the pipeline tag is a task, ``model-index`` round-trips with numeric scores.
    The Hub's licence list and whether dataset and model ids exist need the network."""
    metadata = card.data.to_dict()
    languages = metadata["language"] if isinstance(metadata["language"], list) else [metadata["language"]]
    assert all(re.fullmatch(r"[a-z]{2,3}", code) for code in languages)
    assert metadata["pipeline_tag"] in SUPPORTED_TASKS and metadata["library_name"] == "transformers"
    assert re.fullmatch(r"[a-z0-9.-]+", metadata["license"])
    for key in ("tags", "metrics", "datasets"):
        assert key not in metadata or all(isinstance(value, str) for value in metadata[key]), key
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == card.data.model_name and results == card.data.eval_results
    for result in results:
        assert result.task_type in SUPPORTED_TASKS and isinstance(result.metric_value, float)
        assert 0.0 <= result.metric_value <= 1.0 and result.dataset_split in ("validation", "test")


def scores_of(card: ModelCard) -> dict[tuple[str, str], float]:
    return {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}


def saved_scores(folder) -> dict[tuple[str, str], float]:
    scores = {}
    for split, file in (("validation", "eval_results.json"), ("test", "test_results.json")):
        micro = json.loads((folder / file).read_text(encoding="utf-8"))["micro"]
        scores |= {(split, metric): round(micro[metric], 4) for metric in ("precision", "recall", "f1")}
    return scores


def run_snippets(card: ModelCard, run_isolated) -> list:
    """Each ``python`` block of the card, run as it stands in a fresh process; what each printed, parsed."""
    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert len(snippets) == 2
    return [ast.literal_eval(run_isolated(snippet).strip().splitlines()[-1]) for snippet in snippets]


def test_card_of_a_run_on_simulated_records(tmp_path, run_isolated):
    records = simulated_breast_cancer_records(30, seed=1)
    (tmp_path / "data").mkdir()
    corpus = write_label_studio_json(tmp_path / "data" / "breast.json", records)
    output = tmp_path / "model"
    train_ner.main([
        "--corpus=breast_cancer", f"--train_file={corpus}", f"--output_dir={output}", "--simulated_data", *TINY,
        *FAMILY_A,
    ])  # fmt: skip
    card = ModelCard.load(output / "README.md")
    check_hub_metadata(card)
    # No Hub dataset was used: no made-up id (it named "private-breast-cancer-ehr" before), no base model.
    assert card.data.datasets is None and card.data.base_model is None
    assert card.data.pipeline_tag == "token-classification"
    assert scores_of(card) == saved_scores(output)  # the test scores beside the validation ones
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {
        ("breast.json", "breast.json (simulated records)")
    }
    sizes = {split: len(rows) for split, rows in train_ner.load_corpus(
        parse_arguments(ARGUMENT_TYPES, ["--corpus=breast_cancer", f"--train_file={corpus}"])[1], 42)[0].items()
    }  # fmt: skip
    assert (
        "- Corpus: Label Studio JSON export (`--corpus breast_cancer`), from the file `breast.json`.\n"
        "- Splits: train, validation and test 6:2:2 by a hash of each task id.\n"
        f"- Records: {sizes['train']} train, {sizes['validation']} validation, {sizes['test']} test.\n"
        "- **Simulated records** (`--simulated_data`)"
    ) in card.text
    assert "**Trained on simulated records only**" in card.text and "de-identified" not in card.text
    assert 'pipeline("token-classification", model=..., trust_remote_code=True, aggregation_strategy="simple")' in (
        card.text
    )
    assert str(corpus.parent) not in card.content
    assert not any(record["text"][:12] in card.content for record in records)

    entities, labels = run_snippets(card, run_isolated)
    assert all({"entity_group", "start", "end", "score", "word"} <= set(entity) for entity in entities)
    assert set(labels) <= set(json.loads((output / "config.json").read_text())["label2id"])


def test_card_of_a_family_b_run_on_a_users_corpus(tmp_path, run_isolated):
    (tmp_path / "data").mkdir()
    train = write_ccks(tmp_path / "data" / "train.jsonl", simulated_ccks_records(30, seed=2, prefix="tr"))
    test = write_ccks(tmp_path / "data" / "held_out.jsonl", simulated_ccks_records(8, seed=3, prefix="te"))
    kge = tmp_path / "kge"
    kge.mkdir()
    (kge / "entities.tsv").write_text("头孢\tDrug\n胃\tAnatomy\n", encoding="utf-8")
    save_file({"entity_embeddings": torch.randn(2, 8)}, str(kge / "entity_embeddings.safetensors"))
    output = tmp_path / "model"
    train_ner.main([
        "--family=clinicalbert-kg", f"--kg_embeddings={kge}", "--corpus=ccks2019", f"--train_file={train}",
        f"--test_file={test}", "--dev_fraction=0.2", f"--output_dir={output}", *TINY,
    ])  # fmt: skip
    card = ModelCard.load(output / "README.md")
    check_hub_metadata(card)
    assert card.data.datasets is None and scores_of(card) == saved_scores(output)
    # The test scores are the held-out file's; the validation split was carved from the training file.
    datasets = {(r.dataset_split, r.dataset_type, r.dataset_name) for r in card.data.eval_results}
    assert datasets == {("validation", "train.jsonl", "train.jsonl"), ("test", "held_out.jsonl", "held_out.jsonl")}
    validation = json.loads((output / "eval_results.json").read_text())["num_records"]
    assert (
        "- Corpus: CCKS2019 (Yidu-S4K) JSON lines (`--corpus ccks2019`), from the file `train.jsonl`.\n"
        "- Splits: validation a seeded 20% of the training records; test `held_out.jsonl`.\n"
        f"- Records: {30 - validation} train, {validation} validation, 8 test.\n"
    ) in card.text
    assert "imulated" not in card.text and str(train.parent) not in card.content

    entities, labels = run_snippets(card, run_isolated)
    assert all({"entity_group", "start", "end", "score", "word"} <= set(entity) for entity in entities)
    assert set(labels) <= set(json.loads((output / "config.json").read_text())["label2id"])


def write_reports(folder) -> dict[str, EntityReport]:
    """Different stand-in reports for the validation and the test split, saved as a run saves them."""
    gold = [[(0, 2, "Nodule"), (3, 5, "ER")], [(1, 4, "Time")]]
    reports = {
        "validation": score_entities(gold, [[(0, 2, "Nodule")], [(1, 4, "Time"), (5, 6, "ER")]]),
        "test": score_entities(gold, [[(0, 2, "Nodule"), (3, 5, "ER")], []]),
    }
    folder.mkdir()
    for split, file in (("validation", "eval_results.json"), ("test", "test_results.json")):
        assert EntityReport.from_dict(reports[split].to_dict()) == reports[split]
        (folder / file).write_text(reports[split].to_json(), encoding="utf-8")
    return reports


def tiny_config(types: list[str]) -> ChCancerBertConfig:
    labels = build_label_list(types, "BIO")
    return ChCancerBertConfig(id2label=dict(enumerate(labels)), label_scheme="BIO", hidden_size=32)


@pytest.mark.parametrize("hub_dataset", ["hospital/ner-spans", None])
def test_hub_dataset_and_encoder_are_named_by_their_ids(tmp_path, hub_dataset):
    """A Hub dataset goes into ``datasets`` and names the ``model-index`` dataset; a local folder of the same name
    is not a Hub dataset."""
    reports = write_reports(tmp_path / "model")
    name = hub_dataset or str(tmp_path / "local" / "spans")
    if hub_dataset is None:
        (tmp_path / "local" / "spans").mkdir(parents=True)
    model_args, data_args, train_args = parse_arguments(
        ARGUMENT_TYPES, ["--corpus=spans", f"--dataset_name={name}", "--encoder=bert-base-chinese"]
    )
    write_model_card(tmp_path / "model", tiny_config(["ER", "Nodule", "Time"]), model_args, data_args, train_args, 5)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    check_hub_metadata(card)
    assert scores_of(card) == {
        (split, metric): round(getattr(report.micro, metric), 4)
        for split, report in reports.items()
        for metric in ("precision", "recall", "f1")
    }
    assert "| validation | 2 | 0.6667 | 0.6667 | 0.6667 |\n| test | 2 | 1.0000 | 0.6667 | 0.8000 |" in card.text
    assert card.data.base_model == "bert-base-chinese"
    assert card.data.datasets == ([hub_dataset] if hub_dataset else None)
    assert {r.dataset_type for r in card.data.eval_results} == {hub_dataset or "spans"}
    where = f"the Hub dataset `{hub_dataset}`" if hub_dataset else "the dataset folder `spans`"
    assert f"- Corpus: span-schema records (JSON lines or Parquet) (`--corpus spans`), from {where}." in card.text
    assert "- Splits: the dataset's own (train, validation, test).\n- Records: 5 train, 2 validation, 2 test." in (
        card.text
    )


def test_the_demo_configuration_says_its_records_are_simulated(tmp_path):
    """The demo's card, from its configuration file (scores from a stand-in report: no training here)."""
    write_reports(tmp_path / "model")
    model_args, data_args, train_args = parse_arguments(ARGUMENT_TYPES, ["--config", "configs/demo.yaml"])
    assert data_args.simulated_data
    write_model_card(tmp_path / "model", tiny_config(["ER", "Nodule", "Time"]), model_args, data_args, train_args, 72)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert {r.dataset_name for r in card.data.eval_results} == {"breast_cancer_simulated.json (simulated records)"}
    assert card.data.datasets is None
    assert "**Trained on simulated records only**" in card.text and "- **Simulated records**" in card.text


def test_card_of_a_pretrained_encoder(tmp_path, run_isolated):
    """train_mlm.py wrote no card at all: now a fill-mask card that names its files and runs."""
    (tmp_path / "data").mkdir()
    texts = tmp_path / "data" / "notes.txt"
    records = simulated_breast_cancer_records(12, seed=3, long_records=0)
    texts.write_text("\n".join(record["text"] for record in records), encoding="utf-8")
    output = tmp_path / "mlm"
    train_mlm.main([
        f"--train_files={texts}", f"--output_dir={output}", "--max_steps=2", "--per_device_train_batch_size=8",
        "--max_seq_length=64", "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2",
        "--intermediate_size=64", "--simulated_data",
    ])  # fmt: skip
    card = ModelCard.load(output / "README.md")
    metadata = card.data.to_dict()
    assert metadata["pipeline_tag"] == "fill-mask" in SUPPORTED_TASKS and "base_model" not in metadata
    assert "- Corpus: plain text, one document per line, from `notes.txt`.\n- Examples: " in card.text
    assert "**Trained on simulated text only**" in card.text and "- **Simulated records**" in card.text
    assert "trained from scratch" in card.text and str(texts.parent) not in card.content
    assert "masked-language modelling with\nChinese whole-word masking and next-sentence prediction" in card.text
    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert len(snippets) == 1
    filled = ast.literal_eval(run_isolated(snippets[0]).strip().splitlines()[-1])
    assert len(filled) == 5 and all({"score", "token_str", "sequence"} <= set(fill) for fill in filled)
