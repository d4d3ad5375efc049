"""The papers' presets in configs/: every file parses and validates into its script's arguments (nothing loaded),
carries the paper's numbers, and a row states only what it changes (``base:``, read by training.common.read_config).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

import train_mlm
import train_ner
from clinical_ner_zh.training.common import ConfigurationError, parse_arguments, read_config

ROOT = Path(__file__).resolve().parent.parent
NER_ARGUMENTS = (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments)
MLM_ARGUMENTS = (train_mlm.ModelArguments, train_mlm.DataArguments, train_mlm.TrainArguments)

# The papers' settings, typed in from their tables: a typo in a preset fails here.
CHEN_TABLE_5 = dict(
    family="chcancerbert", corpus="ccks2019", label_scheme="BIO", per_device_train_batch_size=8, head_dropout=0.5,
    encoder_learning_rate=3e-5, head_learning_rate=3e-5, num_train_epochs=64, max_length=128,
    early_stopping_patience=0, variant="dgcnn-bilstm-mha-crf", encoder="outputs/chcancerbert-mlm",
)  # fmt: skip
XU_TABLE_4 = dict(
    family="clinicalbert-kg", corpus="ccks2019", label_scheme="BIOES", per_device_train_batch_size=16,
    encoder_learning_rate=1e-4, head_learning_rate=1e-4, weight_decay=0.0, head_dropout=0.5, num_train_epochs=100,
    early_stopping_patience=0, lstm_hidden_size=256, lstm_num_layers=2, max_length=512, variant="kg",
    kg_embeddings="outputs/kge", encoder=None,
)  # fmt: skip
# Every preset: its paper's settings, and what its row changes (output_dir is always its own).
NER_PRESETS = {
    "chcancerbert/paper.yaml": (CHEN_TABLE_5, {}),
    "chcancerbert/bilstm-crf.yaml": (CHEN_TABLE_5, dict(variant="bilstm-crf")),
    "chcancerbert/dgcnn-crf.yaml": (CHEN_TABLE_5, dict(variant="dgcnn-crf")),
    "chcancerbert/dgcnn-bilstm-crf.yaml": (CHEN_TABLE_5, dict(variant="dgcnn-bilstm-crf")),
    "chcancerbert/dgcnn-bilstm-self-attention-crf.yaml": (CHEN_TABLE_5, dict(fusion="self_attention")),
    "chcancerbert/encoder-bert.yaml": (CHEN_TABLE_5, dict(encoder="bert-base-chinese")),
    "chcancerbert/encoder-roberta.yaml": (CHEN_TABLE_5, dict(encoder="hfl/chinese-roberta-wwm-ext")),
    "chcancerbert/encoder-albert.yaml": (CHEN_TABLE_5, dict(encoder="voidful/albert_chinese_base")),
    "chcancerbert/encoder-xlnet.yaml": (CHEN_TABLE_5, dict(encoder="hfl/chinese-xlnet-base")),
    "chcancerbert/encoder-mc-bert.yaml": (CHEN_TABLE_5, dict(encoder="freedomking/mc-bert")),
    "cbt-kg/paper.yaml": (XU_TABLE_4, {}),
    "cbt-kg/no-kg.yaml": (XU_TABLE_4, dict(variant="no-kg", kg_embeddings=None)),
    "cbt-kg/no-kg-embedding.yaml": (XU_TABLE_4, dict(variant="no-kg-embedding")),
    "cbt-kg/no-position.yaml": (XU_TABLE_4, dict(variant="no-position")),
    "cbt-kg/no-category.yaml": (XU_TABLE_4, dict(variant="no-category")),
    "cbt-kg/transh.yaml": (XU_TABLE_4, dict(kg_embeddings="outputs/kge-transh")),
    "cbt-kg/transr.yaml": (XU_TABLE_4, dict(kg_embeddings="outputs/kge-transr")),
}
MLM_PRESETS = {
    "chcancerbert/pretrain.yaml": dict(
        model_name_or_path="freedomking/mc-bert", masking="char", mlm_only=False, max_seq_length=128,
        output_dir="outputs/chcancerbert-mlm",
    ),
}  # fmt: skip


def preset_keys(path: Path) -> set[str]:
    """The argument names a preset and the files it extends set."""
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = values.pop("base", None)
    return set(values) | (preset_keys(path.parent / base) if base else set())


def test_every_preset_is_checked_here():
    presets = {str(path.relative_to(ROOT / "configs")) for path in (ROOT / "configs").rglob("*.yaml")}
    assert presets - {"demo.yaml"} == set(NER_PRESETS) | set(MLM_PRESETS)


@pytest.mark.parametrize("name", sorted(NER_PRESETS))
def test_ner_preset_validates_and_carries_the_papers_numbers(name, tmp_path, monkeypatch):
    path = ROOT / "configs" / name
    # Paths in a preset are relative to where the command runs: give them something to point at.
    monkeypatch.chdir(tmp_path)
    for folder in ("outputs/kge", "outputs/kge-transh", "outputs/kge-transr"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    arguments = parse_arguments(NER_ARGUMENTS, ["--config", str(path), "--train_file", "train.jsonl"])
    train_ner.validate_arguments(*arguments)
    values = {name: value for group in arguments for name, value in dataclasses.asdict(group).items()}
    paper, row = NER_PRESETS[name]
    expected = {**paper, **row}
    assert {key: values[key] for key in expected} == expected
    assert values["output_dir"].startswith(f"outputs/{Path(name).parent}/")


def test_every_row_writes_into_a_folder_of_its_own():
    folders = [read_config(ROOT / "configs" / name, {"output_dir"} | preset_keys(ROOT / "configs" / name))["output_dir"]
               for name in NER_PRESETS]  # fmt: skip
    assert len(set(folders)) == len(folders)


@pytest.mark.parametrize("name", sorted(MLM_PRESETS))
def test_pretraining_preset_parses(name):
    path = ROOT / "configs" / name
    arguments = parse_arguments(MLM_ARGUMENTS, ["--config", str(path), "--train_files", "corpus.txt"])
    values = {name: value for group in arguments for name, value in dataclasses.asdict(group).items()}
    assert {key: values[key] for key in MLM_PRESETS[name]} == MLM_PRESETS[name]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_extends_its_base_and_flags_win(tmp_path):
    # base: is relative to the file that names it; a chain of two; the nearer file wins, flags win over both
    write(tmp_path / "papers" / "paper.yaml", "variant: bilstm-crf\nmax_length: 128\nhead_dropout: 0.5\n")
    write(tmp_path / "papers" / "rows" / "row.yaml", "base: ../paper.yaml\nvariant: dgcnn-crf\nmax_length: 64\n")
    leaf = write(tmp_path / "mine.json", '{"base": "papers/rows/row.yaml", "max_length": 96, "stride": 8}')
    model_args, data_args, _ = parse_arguments(NER_ARGUMENTS, ["--config", str(leaf), "--stride", "16"])
    assert (model_args.variant, model_args.head_dropout) == ("dgcnn-crf", 0.5)
    assert (data_args.max_length, data_args.stride) == (96, 16)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"row.yaml": "base: paper.yaml\n", "paper.yaml": "varaint: crf\n"}, r"paper.yaml: unknown argument\(s\) varaint"),
        ({"row.yaml": "base: paper.yaml\n"}, r"row.yaml: base .*paper.yaml does not exist"),
        ({"row.yaml": "base: paper.yaml\n", "paper.yaml": "base: row.yaml\n"}, r"paper.yaml: base row.yaml makes a loop \(row.yaml -> paper.yaml -> row.yaml\)"),
        ({"row.yaml": "base: row.yaml\n"}, r"row.yaml: base row.yaml makes a loop \(row.yaml -> row.yaml\)"),
    ],
)  # fmt: skip
def test_a_bad_base_is_named(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigurationError, match=message):
        parse_arguments(NER_ARGUMENTS, ["--config", str(tmp_path / "row.yaml")])
