"""Fine-tune a CRF tagger on a clinical NER corpus: family A (``chcancerbert``, ChCancerBERT-DGCNN-BiLSTM-MHA-CRF)
or family B (``clinicalbert-kg``, CBT-KG: knowledge-graph character features, 2-layer BiLSTM, CRF).

Runs unchanged on one CPU or under ``accelerate launch`` on many GPUs. Evaluation scores strict entity-level
P/R/F1 on character spans of whole records (windows merged), the best model by dev F1 is saved as a complete
model repository (weights, config with ``auto_map``, the ``.py`` files, tokenizer, model card, arguments).

    python train_ner.py --config configs/demo.yaml
    python train_ner.py --corpus ccks2019 --train_file train.jsonl --dev_fraction 0.1 --encoder bert-base-chinese
    python train_ner.py --family clinicalbert-kg --kg_embeddings out/kge --lexicon terms.tsv ...
    accelerate launch train_ner.py --config my.yaml --resume_from_checkpoint latest
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import datasets
import torch
from datasets.exceptions import DatasetGenerationError
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoTokenizer

from clinical_ner_zh.cli_errors import run_command
from clinical_ner_zh.datasets_scripts import (
    BREAST_CANCER_TYPES,
    CCKS_TYPES,
    FEATURES,
    WindowEncoder,
    build_char_tokenizer,
    class_of,
    decode_dataset,
    encode_dataset,
    load_breast_cancer,
    read_ccks,
    read_label_studio,
)
from clinical_ner_zh.datasets_scripts.augment import augment_records
from clinical_ner_zh.datasets_scripts.breast_cancer import SPLITS
from clinical_ner_zh.datasets_scripts.ccks import carve_dev
from clinical_ner_zh.datasets_scripts.schema import Record, to_dataset
from clinical_ner_zh.datasets_scripts.spans import read_span_jsonl, read_span_rows
from clinical_ner_zh.kg import read_entities
from clinical_ner_zh.metrics import format_report, score_entities
from clinical_ner_zh.modeling import (
    ChCancerBertConfig,
    ChCancerBertForCrfTagging,
    ClinicalBertKgConfig,
    ClinicalBertKgForCrfTagging,
    TermLexicon,
)
from clinical_ner_zh.modeling.configuration_clinicalbert_kg import KG_CATEGORIES
from clinical_ner_zh.modeling.configuration_crf_tagger import encoder_fields
from clinical_ner_zh.modeling.tagging import SCHEMES, build_label_list, special_token_layout
from clinical_ner_zh.training.common import (
    ConfigurationError,
    RunArguments,
    TrainingBudget,
    check_dropped_records,
    check_max_bad_fraction,
    main_process_first,
    max_bad_fraction_field,
    not_loadable,
    optimizer_groups,
    parse_arguments,
    push_folder,
    save_checkpoint,
    warmup_decay_schedule,
    write_arguments,
)
from clinical_ner_zh.training.loop import TrainingLoop, begin_training, seeded_dataloader, start_run
from clinical_ner_zh.training.model_card import write_model_card

logger = logging.getLogger("train_ner")

FAMILIES = {
    "chcancerbert": (ChCancerBertConfig, ChCancerBertForCrfTagging),
    "clinicalbert-kg": (ClinicalBertKgConfig, ClinicalBertKgForCrfTagging),
}
# The papers' ablations by name, each with any BERT-family encoder below it; the first is the family's default.
VARIANTS = {
    "chcancerbert": {
        "dgcnn-bilstm-mha-crf": dict(use_bilstm=True, use_dgcnn=True, fusion="attention"),
        "dgcnn-bilstm-crf": dict(use_bilstm=True, use_dgcnn=True, fusion="concat"),
        "bilstm-crf": dict(use_bilstm=True, use_dgcnn=False),
        "dgcnn-crf": dict(use_bilstm=False, use_dgcnn=True),
        "crf": dict(use_bilstm=False, use_dgcnn=False),
    },
    "clinicalbert-kg": {
        "kg": dict(use_kg_embedding=True, use_position_feature=True, use_category_feature=True),
        "no-kg": dict(use_kg_embedding=False, use_position_feature=False, use_category_feature=False),
        "no-kg-embedding": dict(use_kg_embedding=False, use_position_feature=True, use_category_feature=True),
        "no-position": dict(use_kg_embedding=True, use_position_feature=False, use_category_feature=True),
        "no-category": dict(use_kg_embedding=True, use_position_feature=True, use_category_feature=False),
    },
}
DEFAULTS = {
    "chcancerbert": dict(label_scheme="BIO", lstm_num_layers=1),
    "clinicalbert-kg": dict(label_scheme="BIOES", lstm_num_layers=2),
}
# The lowest value of each count, step interval (0 = per epoch, or never, where the help says so) and amount that
# cannot be negative; below it a run fails late (a division by zero after the first step) or means nothing.
AT_LEAST = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 1,
    "logging_steps": 1,
    "max_steps": 0,
    "eval_steps": 0,
    "checkpointing_steps": 0,
    "early_stopping_patience": 0,
    "augment_copies": 0,
    "min_term_length": 1,
    "encoder_learning_rate": 0.0,
    "head_learning_rate": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 0.0,
    "max_train_minutes": 0.0,
}
# Shares, and whether 1 itself is one (a dev split of the whole training file leaves nothing to train on).
SHARES = {"dev_fraction": False, "token_dropout": False, "augment_share": True, "warmup_ratio": False}
# The options of one family's heads (--fusion is checked against the variant, in build_model): set for the other
# family, they would be ignored.
FAMILY_OPTIONS = {
    "chcancerbert": ("dgcnn_dilations", "fusion_num_heads"),
    "clinicalbert-kg": ("kg_embeddings", "lexicon", "min_term_length", "freeze_kg_embeddings"),
}
KG_FEATURES = ("kg_position_ids", "kg_category_ids", "kg_entity_ids")
EMBEDDINGS_FILE, ENTITIES_FILE = "entity_embeddings.safetensors", "entities.tsv"  # written by train_kge.py
CORPORA = ("ccks2019", "ccks2020", "breast_cancer", "spans")
READERS = {"ccks2019": read_ccks, "ccks2020": read_ccks, "breast_cancer": read_label_studio, "spans": read_span_jsonl}
DEV_FRACTION = 0.1
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "labels", *KG_FEATURES)


@dataclass
class ModelArguments:
    family: str = field(default="chcancerbert", metadata={"help": f"model family: {', '.join(FAMILIES)}"})
    variant: str | None = field(
        default=None,
        metadata={
            "help": "ablation; "
            + "; ".join(f"{f}: {', '.join(v)} (default {next(iter(v))})" for f, v in VARIANTS.items())
        },
    )
    encoder: str | None = field(
        default=None,
        metadata={
            "help": "encoder checkpoint (folder or Hub id): BERT, RoBERTa, ALBERT, ERNIE, ... (MacBERT, MC-BERT, the "
            "output of train_mlm.py or of train_ner.py); omit to train a small BERT from scratch with a character "
            "tokenizer built from the training texts"
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the encoder"})
    label_scheme: str | None = field(default=None, metadata={"help": "BIO or BIOES (default: A BIO, B BIOES)"})
    lstm_hidden_size: int = field(default=256, metadata={"help": "hidden size of each LSTM direction"})
    lstm_num_layers: int | None = field(default=None, metadata={"help": "stacked BiLSTM layers (default: A 1, B 2)"})
    dgcnn_dilations: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"help": "DGCNN dilations"})
    fusion: str | None = field(
        default=None,
        metadata={
            "help": "family A, variant dgcnn-bilstm-mha-crf: attention (each stream attends to the other, the "
            "default) or self_attention (each stream attends to itself, the paper's Eq. 7 read literally)"
        },
    )
    fusion_num_heads: int = field(default=8, metadata={"help": "attention heads of the fusion"})
    head_dropout: float = field(default=0.5, metadata={"help": "dropout of the heads (paper: 0.5)"})
    kg_embeddings: str | None = field(
        default=None,
        metadata={"help": "family B: folder written by train_kge.py (entity_embeddings.safetensors, entities.tsv)"},
    )
    lexicon: str | None = field(
        default=None,
        metadata={
            "help": "family B: term list, name<TAB>type per line (default: the KG's entity table); terms are "
            "linked to KG entities by name"
        },
    )
    min_term_length: int = field(
        default=2,
        metadata={
            "help": "family B: lexicon terms shorter than this many characters are left out (CMeKG names such as "
            "上, 大, 心 would tag common characters)"
        },
    )
    freeze_kg_embeddings: bool = field(default=True, metadata={"help": "family B: keep the KG table fixed"})
    hidden_size: int = field(default=256, metadata={"help": "from scratch: encoder hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "from scratch: encoder layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "from scratch: attention heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "from scratch: feed-forward size"})


@dataclass
class DataArguments:
    corpus: str = field(default="breast_cancer", metadata={"help": f"corpus format: {', '.join(CORPORA)}"})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "training file (CCKS JSON lines, Label Studio "
            "export, or span-schema JSON lines/Parquet for corpus=spans)"
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "dev file (same format)"})
    test_file: str | None = field(default=None, metadata={"help": "test file, scored once with the best model"})
    dataset_name: str | None = field(
        default=None, metadata={"help": "corpus=spans: a Hub dataset or a folder of Parquet splits in the span schema"}
    )
    simulated_data: bool = field(
        default=False,
        metadata={"help": "the corpus is simulated (no real patient's records): the model card says so"},
    )
    dev_fraction: float | None = field(
        default=None,
        metadata={
            "help": f"without --validation_file: the seeded share of the training file held out as the dev split "
            f"(default {DEV_FRACTION}; a lone breast_cancer export is split 6:2:2 by task id instead)"
        },
    )
    max_length: int = field(default=128, metadata={"help": "tokens per window, [CLS] and [SEP] included"})
    stride: int = field(default=32, metadata={"help": "tokens shared by consecutive windows of a long record"})
    augment_copies: int = field(
        default=0, metadata={"help": "add N copies of each training record with entity mentions replaced"}
    )
    augment_share: float = field(default=0.3, metadata={"help": "share of the mentions replaced in each copy"})
    max_bad_fraction: float = max_bad_fraction_field()


@dataclass
class TrainArguments(RunArguments):
    output_dir: str = field(default="outputs/ner", metadata={"help": "where the best model is saved"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "windows per device and step"})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "windows per device at evaluation"})
    encoder_learning_rate: float = field(default=3e-5, metadata={"help": "learning rate of the encoder"})
    head_learning_rate: float = field(default=1e-3, metadata={"help": "learning rate of the heads and the CRF"})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on biases, norms and the CRF's transition scores)"}
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with linear warm-up, then decay"})
    num_train_epochs: int = field(default=10, metadata={"help": "passes over the training windows"})
    max_steps: int = field(default=0, metadata={"help": "stop after N optimiser steps (overrides epochs)"})
    max_train_minutes: float = field(default=0.0, metadata={"help": "stop training after this wall time"})
    max_grad_norm: float = field(
        default=5.0, metadata={"help": "clip the gradients' norm to this (0: no clipping, as in transformers' Trainer)"}
    )
    token_dropout: float = field(
        default=0.0, metadata={"help": "training only: share of input tokens replaced by [UNK] (regularisation)"}
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "evaluate and save an exponential moving average of the weights, updated every step with this "
            "decay (e.g. 0.999: about the last 1,000 steps; keeps a second copy of the weights); 0 = the weights as "
            "trained"
        },
    )
    seed: int = field(default=42, metadata={"help": "seed of init, data order and dropout"})
    eval_steps: int = field(default=0, metadata={"help": "evaluate every N steps; 0 = every epoch"})
    early_stopping_patience: int = field(
        default=5, metadata={"help": "evaluations without dev F1 gain before stopping; 0 = never"}
    )
    logging_steps: int = field(default=20, metadata={"help": "log the loss every N steps"})
    checkpointing_steps: int = field(default=0, metadata={"help": "resumable checkpoint every N steps; 0 = per eval"})
    sample_text: str | None = field(default=None, metadata={"help": "after training, tag this text and print it"})


def validate_arguments(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments) -> None:
    """Everything that can be checked before loading anything; fills the family's defaults."""
    if model_args.family not in FAMILIES:
        raise ConfigurationError(f"unknown model family {model_args.family!r}: expected one of {', '.join(FAMILIES)}")
    variants = VARIANTS[model_args.family]
    model_args.variant = model_args.variant or next(iter(variants))
    if model_args.variant not in variants:
        raise ConfigurationError(
            f"unknown variant {model_args.variant!r} of {model_args.family}: expected one of {', '.join(variants)}"
        )
    for name, value in DEFAULTS[model_args.family].items():
        if getattr(model_args, name) is None:
            setattr(model_args, name, value)
    defaults = ModelArguments()
    for family, names in FAMILY_OPTIONS.items():
        for name in names:
            if family != model_args.family and getattr(model_args, name) != getattr(defaults, name):
                raise ConfigurationError(
                    f"--{name} is an option of --family {family}, and this run trains {model_args.family}: give "
                    f"--family {family}, or drop --{name}"
                )
    if model_args.label_scheme not in SCHEMES:
        raise ConfigurationError(f"unknown label scheme {model_args.label_scheme!r}: expected one of {SCHEMES}")
    arguments = (model_args, data_args, train_args)
    for name, lowest in AT_LEAST.items():
        value = next(getattr(group, name) for group in arguments if hasattr(group, name))
        if value < lowest:
            raise ConfigurationError(
                f"--{name} {value}: expected {'a count' if isinstance(value, int) else 'a value'} >= {lowest}"
            )
    for name, one_allowed in SHARES.items():
        value = next(getattr(group, name) for group in arguments if hasattr(group, name))
        if value is not None and not (0.0 <= value < 1.0 or (one_allowed and value == 1.0)):
            raise ConfigurationError(f"--{name} {value}: expected a share in [0, 1{']' if one_allowed else ')'}")
    if not 0.0 <= train_args.ema_decay < 1.0:
        raise ConfigurationError(f"--ema_decay {train_args.ema_decay}: expected a decay in [0, 1)")
    check_max_bad_fraction(data_args.max_bad_fraction)
    if model_args.family == "clinicalbert-kg":
        features = VARIANTS[model_args.family][model_args.variant]
        if any(features.values()) and not (model_args.lexicon or model_args.kg_embeddings):
            raise ConfigurationError(
                f"variant {model_args.variant} of clinicalbert-kg computes knowledge features: give --lexicon "
                f"and/or --kg_embeddings (or use --variant no-kg)"
            )
        if features["use_kg_embedding"] and not model_args.kg_embeddings:
            raise ConfigurationError(f"variant {model_args.variant} uses KG embeddings: give --kg_embeddings")
        for name in ("lexicon", "kg_embeddings"):
            path = getattr(model_args, name)
            if path and not Path(path).exists():
                raise ConfigurationError(f"{name} {path} does not exist")
    if data_args.corpus not in CORPORA:
        raise ConfigurationError(f"unknown corpus {data_args.corpus!r}: expected one of {', '.join(CORPORA)}")
    # The dev split comes from --validation_file, from a lone breast_cancer export's hash split, or is carved from the
    # training file with --dev_fraction: one of the three, never two (the other would be ignored).
    lone_export = data_args.corpus == "breast_cancer" and not (data_args.validation_file or data_args.test_file)
    if data_args.dev_fraction is None:
        data_args.dev_fraction = 0.0 if data_args.validation_file or lone_export else DEV_FRACTION
    elif data_args.dev_fraction and data_args.validation_file:
        raise ConfigurationError(
            f"--dev_fraction {data_args.dev_fraction} and --validation_file both choose the dev split: give one of them"
        )
    elif data_args.dev_fraction and lone_export:
        raise ConfigurationError(
            f"--dev_fraction {data_args.dev_fraction}: --corpus breast_cancer splits a lone export 6:2:2 by a hash of "
            f"each task id; to choose the splits give --validation_file and/or --test_file (then --dev_fraction "
            f"carves the dev split from --train_file when there is no --validation_file)"
        )
    if data_args.dataset_name:
        # A dataset brings its own splits; files beside it, or another corpus format, would be ignored.
        if data_args.corpus != "spans":
            raise ConfigurationError(f"--dataset_name is read as --corpus spans, not {data_args.corpus}")
        given = [name for name in ("train_file", "validation_file", "test_file") if getattr(data_args, name)]
        if given:
            raise ConfigurationError(
                f"--dataset_name {data_args.dataset_name} brings its own splits: drop --{given[0]}, or give the "
                f"files without --dataset_name"
            )
        return
    if not data_args.train_file:
        raise ConfigurationError(f"corpus {data_args.corpus} needs --train_file")
    for name in ("train_file", "validation_file", "test_file"):
        path = getattr(data_args, name)
        if path and not Path(path).is_file():
            raise ConfigurationError(f"{name} {path} does not exist")


def read_split_file(corpus: str, path: str, max_bad_fraction: float) -> list[Record]:
    """One file's records in the span schema. Its format is its own: with ``--corpus spans`` a ``.parquet`` file is
    Parquet, any other JSON lines, whatever the other splits' files are."""
    if corpus == "spans" and path.endswith(".parquet"):
        try:
            rows = datasets.load_dataset("parquet", data_files=path, features=FEATURES, split="train")
        except DatasetGenerationError as error:  # not Parquet, or other columns (the cause says which)
            reason = str(error.__cause__ or error).splitlines()[-1]
            raise ConfigurationError(
                f"{path}: not a Parquet file of span-schema records (id, text, entities): {reason}"
            ) from error
        result = read_span_rows(rows, path)
    else:
        result = READERS[corpus](path)
    check_dropped_records(result.report, path, max_bad_fraction)
    return result.records


def load_corpus(data_args: DataArguments, seed: int) -> tuple[datasets.DatasetDict, list[str], dict[str, str]]:
    """The corpus as train/validation(/test) in the span schema, its entity types and their classes.

    Each file given is read as its split (bad records are dropped, logged and counted per file). Without a
    validation file the dev split is a seeded ``--dev_fraction`` of the training file, except for a lone
    breast_cancer export, which is split 6:2:2 by a hash of each task id (the paper's protocol)."""
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    files = {split: path for split, path in files.items() if path}
    # An empty split stops the run: no training windows, or a dev F1 of 0 at every evaluation (the first model saved).
    empty = f"{data_args.dataset_name or data_args.train_file} holds none"
    if data_args.corpus == "breast_cancer" and set(files) == {"train"}:
        corpus = load_breast_cancer(data_args.train_file)
        check_dropped_records(corpus.read_report, data_args.train_file, data_args.max_bad_fraction)
        empty = (
            f"the 6:2:2 split of the {corpus.read_report.records} tasks of {data_args.train_file} by task id puts "
            f"none there: give --validation_file and/or --test_file to choose the splits"
        )
        if len(corpus["test"]) == 0:  # a small export: it trains and selects all the same, with nothing to test on
            logger.warning("the test split is empty: %s", empty)
            del corpus["test"]
    else:
        if data_args.dataset_name:
            records, source = {}, f"{data_args.dataset_name}'s train split"
            for split, rows in datasets.load_dataset(data_args.dataset_name).items():
                # checked as the records of a file are (offsets, entity text, label, encoding)
                result = read_span_rows(rows, f"{data_args.dataset_name}[{split}]")
                check_dropped_records(result.report, f"{data_args.dataset_name}[{split}]", data_args.max_bad_fraction)
                records[split] = result.records
        else:
            source = data_args.train_file
            records = {split: read_split_file(data_args.corpus, path, data_args.max_bad_fraction)
                       for split, path in files.items()}  # fmt: skip
        if "validation" not in records and "train" in records and data_args.dev_fraction:
            count = len(records["train"])
            records["train"], records["validation"] = carve_dev(records["train"], data_args.dev_fraction, seed)
            empty = (
                f"--dev_fraction {data_args.dev_fraction} of the {count} records of {source} leaves none there: "
                f"{'raise' if records['train'] else 'lower'} --dev_fraction"
                + ("" if data_args.dataset_name else " or give --validation_file")
            )
        order = dict.fromkeys([*SPLITS, *records])  # the known splits first, any other a dataset has after them
        corpus = datasets.DatasetDict({split: to_dataset(records[split]) for split in order if split in records})
    for split in SPLITS:
        if split in corpus and len(corpus[split]) == 0:
            raise ConfigurationError(f"the {split} split is empty: {empty}")
    if data_args.corpus == "breast_cancer":
        types = [t.code for t in BREAST_CANCER_TYPES]
        return corpus, types, {code: class_of(code) for code in types}
    if data_args.corpus in ("ccks2019", "ccks2020"):
        return corpus, [t.code for t in CCKS_TYPES], {}
    # The types of every split: one only in dev or test is a label the model cannot learn, scored as missed, not a
    # label the window encoder does not know.
    types_of = {
        split: {e["label"] for e in corpus[split]["entities"] for e in e} for split in SPLITS if split in corpus
    }
    for split, split_types in types_of.items():
        unseen = sorted(split_types - types_of["train"])
        if unseen:
            logger.warning(
                "%s split: types not in the train split, which the model cannot learn (scored as missed): %s",
                split, ", ".join(unseen),
            )  # fmt: skip
    return corpus, sorted(set().union(*types_of.values())), {}


def build_tokenizer(model_args: ModelArguments, train_texts: list[str]):
    if not model_args.encoder:
        return build_char_tokenizer(train_texts)
    # trust_remote_code: an encoder saved by train_ner.py has custom code, and AutoTokenizer reads its config
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.encoder, revision=model_args.revision, trust_remote_code=True
        )
    except OSError as error:  # transformers' way of saying a folder or Hub id cannot be loaded
        raise ConfigurationError(f"--encoder {model_args.encoder}: {not_loadable(error)}") from error
    # Training windows and the pipeline's carry the special tokens where this tokenizer puts them ([CLS] x [SEP] for
    # BERT, x <sep> <cls> for XLNet); a layout that is not prefix + tokens + suffix cannot be windowed.
    try:
        special_token_layout(tokenizer)
    except ValueError as error:
        raise ConfigurationError(f"--encoder {model_args.encoder}: {error}") from error
    return tokenizer


def load_knowledge(model_args: ModelArguments) -> tuple[TermLexicon | None, torch.Tensor | None]:
    """Family B: the term lexicon (terms linked to KG rows by name) and the KG entity embeddings."""
    if model_args.family != "clinicalbert-kg" or not (model_args.lexicon or model_args.kg_embeddings):
        return None, None
    features = VARIANTS[model_args.family][model_args.variant]
    if not any(features.values()):
        logger.info(
            "variant %s uses no knowledge features: --lexicon and --kg_embeddings are not used", model_args.variant
        )
        return None, None
    embeddings, entities = None, []
    if model_args.kg_embeddings:
        # The KG's entity table is the default lexicon, also for the variants without the embedding (no-kg-embedding
        # keeps the term position and category features the table gives).
        folder = Path(model_args.kg_embeddings)
        needed = (EMBEDDINGS_FILE, ENTITIES_FILE) if features["use_kg_embedding"] else (ENTITIES_FILE,)
        for name in needed:
            if not (folder / name).is_file():
                raise ConfigurationError(f"{folder} has no {name}: expected the output folder of train_kge.py")
        entities = read_entities(folder / ENTITIES_FILE)
        if features["use_kg_embedding"]:
            embeddings = load_file(folder / EMBEDDINGS_FILE)["entity_embeddings"]
            if len(entities) != embeddings.size(0):
                raise ConfigurationError(
                    f"{folder}: {len(entities)} entities in {ENTITIES_FILE} but {embeddings.size(0)} embedding rows"
                )
    # Terms link to KG rows only when the model has the table to look them up in.
    row_of: dict[str, int] = {}
    for row, entity in enumerate(entities if embeddings is not None else []):
        row_of.setdefault(entity.name, row)
    terms = read_entities(model_args.lexicon, allow_duplicates=True) if model_args.lexicon else entities
    short = sum(len(term.name) < model_args.min_term_length for term in terms)
    terms = [term for term in terms if len(term.name) >= model_args.min_term_length]
    types = list(dict.fromkeys(term.type for term in terms))
    categories = list(KG_CATEGORIES) if set(types) <= set(KG_CATEGORIES) else sorted(types)
    lexicon = TermLexicon([(t.name, t.type, row_of.get(t.name)) for t in terms], categories)
    linked = sum(t.name in row_of for t in terms)
    logger.info(
        "lexicon: %d terms in %d categories, %d linked to KG entities; %d shorter than --min_term_length %d left out",
        len(lexicon), len(categories), linked, short, model_args.min_term_length,
    )  # fmt: skip
    return lexicon, embeddings


def build_model(
    model_args: ModelArguments, labels: list[str], tokenizer, classes, lexicon=None, embeddings=None, *, window
):
    """The model to fine-tune; ``window`` is ``(max_length, stride)`` of the training windows, recorded in the
    config so that the pipeline and predict.py tag with the same windows by default."""
    config_class, model_class = FAMILIES[model_args.family]
    head = dict(
        **VARIANTS[model_args.family][model_args.variant],
        label_scheme=model_args.label_scheme,
        lstm_hidden_size=model_args.lstm_hidden_size,
        lstm_num_layers=model_args.lstm_num_layers,
        head_dropout=model_args.head_dropout,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        special_token_ids=sorted(
            {
                tokenizer.pad_token_id,
                tokenizer.cls_token_id,
                tokenizer.sep_token_id,
                *special_token_layout(tokenizer).special_ids,
            }
            - {None}
        ),
        label_classes=classes or None,
        window_max_length=window[0],
        window_stride=window[1],
    )
    if model_args.fusion is not None:
        if head.get("fusion") != "attention":
            raise ConfigurationError(
                f"--fusion {model_args.fusion}: only variant dgcnn-bilstm-mha-crf of chcancerbert has an attention "
                f"fusion, not {model_args.variant} of {model_args.family}"
            )
        head.update(fusion=model_args.fusion)
    if model_args.family == "chcancerbert":
        head.update(dgcnn_dilations=list(model_args.dgcnn_dilations), fusion_num_heads=model_args.fusion_num_heads)
    else:
        head.update(freeze_kg_embeddings=model_args.freeze_kg_embeddings)
        if lexicon is not None:
            head.update(kg_categories=list(lexicon.categories))
        if embeddings is not None:
            head.update(num_kg_entities=embeddings.size(0), kg_embedding_dim=embeddings.size(1))
    if not model_args.encoder:
        try:
            config = config_class(
                vocab_size=len(tokenizer),
                hidden_size=model_args.hidden_size,
                num_hidden_layers=model_args.num_hidden_layers,
                num_attention_heads=model_args.num_attention_heads,
                intermediate_size=model_args.intermediate_size,
                max_position_embeddings=max(
                    512, tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 0
                ),
                pad_token_id=tokenizer.pad_token_id,
                **head,
            )
        except ValueError as error:  # the config names the field and the value that cannot work
            raise ConfigurationError(f"model configuration: {error}") from error
        model = model_class(config)
    else:
        saved = AutoConfig.from_pretrained(model_args.encoder, revision=model_args.revision, trust_remote_code=True)
        saved_labels = [saved.id2label[i] for i in sorted(saved.id2label)]
        placeholder = all(label == f"LABEL_{i}" for i, label in enumerate(saved_labels))
        if not placeholder and saved_labels != labels:
            raise ConfigurationError(
                f"the encoder {model_args.encoder} was saved with {len(saved_labels)} labels {saved_labels[:6]}... "
                f"that disagree with the corpus's {len(labels)} labels {labels[:6]}...: use a plain encoder "
                f"checkpoint, or the same corpus and label scheme"
            )
        # Any encoder: a plain checkpoint (BERT, RoBERTa, ALBERT, ERNIE, XLNet, ...) or the one inside a tagger.
        encoder = AutoConfig.for_model(**encoder_fields(saved.to_dict()))
        if len(tokenizer) > encoder.vocab_size:
            raise ConfigurationError(
                f"the tokenizer has {len(tokenizer)} tokens, the encoder only {encoder.vocab_size}"
            )
        try:
            config = config_class(encoder=encoder, **head)
        except ValueError as error:
            raise ConfigurationError(f"model configuration: {error}") from error
        model = model_class.from_pretrained(model_args.encoder, revision=model_args.revision, config=config)
    if model_args.family == "clinicalbert-kg":
        if embeddings is not None:
            model.load_kg_embeddings(embeddings)
        model.set_lexicon(lexicon)
    return model


def collate(windows: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad windows; padding is a special token for the CRF (label -100)."""
    length = max(len(window["input_ids"]) for window in windows)
    padding = {
        "input_ids": pad_token_id,
        "attention_mask": 0,
        "token_type_ids": 0,
        "special_tokens_mask": 1,
        "labels": -100,
        **dict.fromkeys(KG_FEATURES, 0),
    }
    return {
        name: torch.tensor([list(w[name]) + [value] * (length - len(w[name])) for w in windows])
        for name, value in padding.items()
        if name in windows[0]
    }


def drop_tokens(batch: dict[str, torch.Tensor], share: float, unk_token_id: int) -> dict[str, torch.Tensor]:
    """Replace a random ``share`` of the non-special input tokens by the unknown token: the tagger learns to use the
    context of a character as well as its identity, which helps on characters rare or unseen in training."""
    hit = torch.rand(batch["input_ids"].shape, device=batch["input_ids"].device) < share
    hit &= batch["special_tokens_mask"] == 0
    return {**batch, "input_ids": batch["input_ids"].masked_fill(hit, unk_token_id)}


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the model's floating-point parameters and buffers. Other buffers (BERT's
    int64 ``position_ids``, the CRF's boolean constraints) are copied as they are: averaged, they would be truncated
    (at decay 0.9995 a third of BERT's 512 positions), and the model evaluated would not be the one saved."""
    ema = get_ema_multi_avg_fn(decay)

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # AveragedModel groups the tensors by device and dtype: each call sees one dtype.
        if torch.is_floating_point(averaged[0]):
            ema(averaged, current, n_averaged)
        else:
            for target, source in zip(averaged, current):
                target.copy_(source)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


@dataclass
class Split:
    """A corpus split as evaluation reads it: the records with their gold entities, their windows, and a loader over
    the windows."""

    records: datasets.Dataset
    windows: datasets.Dataset
    loader: DataLoader


def encode_corpus(
    corpus: datasets.DatasetDict, encoder: WindowEncoder
) -> tuple[dict[str, datasets.Dataset], dict[str, dict[str, dict[str, int]]]]:
    """The windows of every split, and per split the gold entities left out of the tags, counted per reason and type.
    Each one is logged with its record id, offsets and type (never its text): a model that never saw them learns
    none of them, and the dev and test scores count them as missed."""
    windows, not_encoded = {}, {}
    for split in corpus:
        windows[split] = encode_dataset(corpus[split], encoder)
        stats = encoder.stats
        logger.info("%s: %s", split, stats.summary())
        for skipped in stats.skipped:
            logger.info("%s: not encoded: %s", split, skipped.message)
        not_encoded[split] = {
            "not_representable": dict(stats.unrepresentable),
            "dropped_as_overlap": dict(stats.overlap_dropped),
        }
        encoder.stats = type(encoder.stats)()
    return windows, not_encoded


def windows_loader(windows: datasets.Dataset, batch_size: int, shuffle: bool, pad_token_id: int, seed: int):
    columns = [c for c in MODEL_INPUTS if c in windows.column_names]
    rows = windows.select_columns(columns).with_format(None)
    return seeded_dataloader(rows, batch_size, shuffle, lambda batch: collate(batch, pad_token_id), seed)


def evaluate(model, split: Split, *, accelerator, encoder: WindowEncoder, types, classes):
    """Decode every window, merge windows per record, and score character spans against gold."""
    model.eval()
    paths = []
    for batch in split.loader:
        with torch.no_grad():
            output = model(**{k: v for k, v in batch.items() if k != "labels"})
            decoded = accelerator.unwrap_model(model).crf.decode(output.logits, output.tag_mask)
        padded = torch.full((len(decoded), batch["input_ids"].size(1)), -1, device=batch["input_ids"].device)
        for row, path in enumerate(decoded):
            padded[row, : len(path)] = torch.tensor(path, device=padded.device)
        padded = accelerator.pad_across_processes(padded, dim=1, pad_index=-1)
        paths.extend(accelerator.gather_for_metrics(padded).tolist())
    model.train()
    paths = [[label for label in path if label >= 0] for path in paths]
    predicted = decode_dataset(split.windows, paths, encoder)
    records = split.records
    gold = [[(e["start"], e["end"], e["label"]) for e in entities] for entities in records["entities"]]
    predictions = [predicted.get(index, []) for index in range(len(gold))]
    return score_entities(gold, predictions, entity_types=types, classes=classes or None, record_ids=records["id"])


def evaluate_and_maybe_save(accelerator, score_dev, save_best, state: dict, history: list, patience: int) -> bool:
    """Score the dev split, log it, save the model when dev F1 is the best so far; whether to stop early."""
    report = score_dev()
    micro = report.micro
    history.append({"step": state["step"], "precision": micro.precision, "recall": micro.recall, "f1": micro.f1})
    accelerator.log(
        {"eval_precision": micro.precision, "eval_recall": micro.recall, "eval_f1": micro.f1}, step=state["step"]
    )
    logger.info("step %d: dev strict P %.4f R %.4f F1 %.4f", state["step"], micro.precision, micro.recall, micro.f1)
    if micro.f1 > state["best_f1"]:
        state["best_f1"], state["evals_without_gain"] = micro.f1, 0
        save_best(report)
        return False
    state["evals_without_gain"] += 1
    if patience and state["evals_without_gain"] >= patience:
        logger.info("early stopping: no dev F1 gain in %d evaluations", patience)
        state["stopped"] = True  # kept in the checkpoint: resuming a finished run does not train on
        return True
    return False


def score_test_split(accelerator, score, model_class, output_dir: Path, test: Split, arguments: tuple, train_records):
    """The test split, scored once with the best model as saved (the same files a user loads); its report is written
    beside the model, and its scores into the model card, which was written before the test split was scored."""
    best = accelerator.prepare(model_class.from_pretrained(output_dir))
    test.loader = accelerator.prepare(test.loader)
    report = score(best, test)
    if accelerator.is_main_process:
        (output_dir / "test_results.json").write_text(report.to_json(), encoding="utf-8")
        logger.info("test split, best model:\n%s", format_report(report))
        write_model_card(output_dir, accelerator.unwrap_model(best).config, *arguments, train_records)
    return report.to_dict()


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, train_args = parse_arguments(
        (ModelArguments, DataArguments, TrainArguments), argv, description=__doc__
    )
    validate_arguments(model_args, data_args, train_args)
    arguments = (model_args, data_args, train_args)
    run = start_run(arguments, train_args)
    accelerator = run.accelerator

    # ---- data
    with main_process_first(accelerator):
        corpus, types, classes = load_corpus(data_args, train_args.seed)
    if "validation" not in corpus:
        raise ConfigurationError("the corpus has no validation split: give --validation_file or --dev_fraction > 0")
    if not any(corpus["train"]["entities"]):
        source = data_args.dataset_name or data_args.train_file
        raise ConfigurationError(f"{source}: no entity in the training split, nothing to learn")
    labels = build_label_list(types, model_args.label_scheme)
    tokenizer = build_tokenizer(model_args, corpus["train"]["text"])
    train_records = len(corpus["train"])
    if data_args.augment_copies:
        corpus["train"] = augment_records(
            corpus["train"], data_args.augment_copies, data_args.augment_share, train_args.seed
        )
        logger.info("train: %d records, %d with replaced mentions", train_records, len(corpus["train"]) - train_records)
    lexicon, embeddings = load_knowledge(model_args)
    model = build_model(
        model_args, labels, tokenizer, classes, lexicon, embeddings, window=(data_args.max_length, data_args.stride)
    )
    # Family B: the knowledge features of each record, by the model's own code (as the pipeline computes them).
    features = dict(text_features=model.text_features, text_feature_names=KG_FEATURES) if lexicon is not None else {}
    encoder = WindowEncoder(
        tokenizer,
        types,
        scheme=model_args.label_scheme,
        max_length=data_args.max_length,
        stride=data_args.stride,
        **features,
    )
    windows, not_encoded = encode_corpus(corpus, encoder)
    loader = partial(windows_loader, pad_token_id=tokenizer.pad_token_id, seed=train_args.seed)
    train_loader = loader(windows["train"], train_args.per_device_train_batch_size, shuffle=True)
    eval_loader = loader(windows["validation"], train_args.per_device_eval_batch_size, shuffle=False)

    # ---- optimiser, schedule
    optimizer = torch.optim.AdamW(
        optimizer_groups(
            model,
            train_args.weight_decay,
            {"encoder": train_args.encoder_learning_rate, "head": train_args.head_learning_rate},
            lambda name: "encoder" if name.startswith(f"{model.base_model_prefix}.") else "head",
        )
    )
    steps_per_epoch = math.ceil(len(train_loader) / accelerator.num_processes / train_args.gradient_accumulation_steps)
    total_steps = train_args.max_steps or train_args.num_train_epochs * steps_per_epoch
    budget = TrainingBudget(total_steps, train_args.max_train_minutes)
    scheduler = warmup_decay_schedule(optimizer, train_args.warmup_ratio, budget)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler
    )
    # With --ema_decay the average is what is evaluated, saved and resumed; the optimiser still trains ``model``.
    averaged = None
    if train_args.ema_decay:
        averaged = weight_average(accelerator.unwrap_model(model), train_args.ema_decay)
        accelerator.register_for_checkpointing(averaged)
    scored = model if averaged is None else averaged.module

    # ---- training
    fresh = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "best_f1": -1.0, "evals_without_gain": 0, "history": []}
    state = begin_training(run, train_args, "train_ner", fresh)
    score = partial(evaluate, accelerator=accelerator, encoder=encoder, types=types, classes=classes)
    dev = Split(corpus["validation"], windows["validation"], eval_loader)
    save_best = partial(
        save_model, accelerator, scored, tokenizer, run.output_dir, arguments=arguments, train_records=train_records
    )
    prepare_batch = None
    if train_args.token_dropout:
        prepare_batch = partial(drop_tokens, share=train_args.token_dropout, unk_token_id=tokenizer.unk_token_id)
    loop = TrainingLoop(
        accelerator, model, optimizer, scheduler, train_loader, budget, state, train_args.max_grad_norm, prepare_batch
    )
    eval_every = train_args.eval_steps or steps_per_epoch
    checkpoint_every = train_args.checkpointing_steps or eval_every
    # The dev scores of every evaluation, those before a resume included (a checkpoint older than this key has none).
    history = state.setdefault("history", [])
    for step in loop:
        if averaged is not None:
            averaged.update_parameters(accelerator.unwrap_model(model))
        if step % train_args.logging_steps == 0:
            loop.log()
        last = step >= total_steps or budget.out_of_time
        stop = False
        if step % eval_every == 0 or last:
            stop = evaluate_and_maybe_save(
                accelerator, lambda: score(scored, dev), save_best, state, history, train_args.early_stopping_patience
            )
        if step % checkpoint_every == 0 or last or stop:
            save_checkpoint(accelerator, state, run.arguments)
        if stop or last:
            break
    loop.close()
    accelerator.wait_for_everyone()

    # ---- results
    results = {
        "best_dev_f1": state["best_f1"],
        "steps": state["step"],
        "history": history,
        "train_seconds": round(budget.elapsed, 1),
        "entities_not_encoded": not_encoded,
    }
    if "test" in corpus:
        test_loader = loader(windows["test"], train_args.per_device_eval_batch_size, shuffle=False)
        test = Split(corpus["test"], windows["test"], test_loader)
        model_class = FAMILIES[model_args.family][1]
        results["test"] = score_test_split(
            accelerator, score, model_class, run.output_dir, test, arguments, train_records
        )
    if accelerator.is_main_process:
        (run.output_dir / "all_results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        logger.info("best dev strict F1 %.4f; model saved to %s", state["best_f1"], run.output_dir)
        if train_args.push_to_hub:
            push_folder(run.output_dir, train_args.hub_model_id)
        if train_args.sample_text:
            print_sample_entities(run.output_dir, train_args.sample_text)
    accelerator.end_training()
    return results


def print_sample_entities(model_dir: Path, text: str) -> None:
    """Tag ``text`` with the saved model through the clinical-ner pipeline, as a user would, and print the result."""
    from transformers import pipeline

    ner = pipeline("clinical-ner", model=str(model_dir), trust_remote_code=True)
    entities = ner(text)
    print(f"\nEntities found by the saved model ({model_dir}) in the sample record:")
    for entity in entities:
        group = entity["entity_group"] + (f" ({entity['class']})" if "class" in entity else "")
        print(f"  {entity['start']:>4}-{entity['end']:<4} {group:<34} {entity['score']:.2f}  {entity['word']}")
    print(f"{len(entities)} entities in {len(text)} characters.")


def save_model(accelerator, model, tokenizer, output_dir: Path, report, arguments: tuple, train_records: int) -> None:
    """The complete model repository: weights, config, code, tokenizer, card, arguments and dev scores."""
    accelerator.wait_for_everyone()
    # Every process calls save_pretrained (only the main one writes): it may synchronise processes itself.
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(output_dir)
        write_arguments(output_dir, *arguments)
        (output_dir / "eval_results.json").write_text(report.to_json(), encoding="utf-8")
        (output_dir / "eval_report.txt").write_text(format_report(report) + "\n", encoding="utf-8")
        write_model_card(output_dir, unwrapped.config, *arguments, train_records)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    run_command(main)
