"""Continued pretraining of a BERT (or pretraining from a config) on plain medical text: masked LM plus
next-sentence prediction (``BertForPreTraining``), as ChCancerBERT was made; ``--mlm_only`` trains
``BertForMaskedLM``. Masking: Chinese whole words from jieba (``--masking whole_word``, the default) or each
character on its own (``--masking char``, the random masking the ChCancerBERT paper used). The output folder is a checkpoint that ``train_ner.py`` takes as its encoder.

    python train_mlm.py --train_files corpus.txt --model_name_or_path bert-base-chinese --output_dir out/mlm
    accelerate launch train_mlm.py --config configs/mlm.yaml
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForPreTraining

from clinical_ner_zh.cli_errors import run_command
from clinical_ner_zh.datasets_scripts.char_tokenizer import build_char_tokenizer
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
from clinical_ner_zh.training.model_card import write_pretraining_card
from clinical_ner_zh.training.pretraining_data import (
    MASKINGS,
    MaskingCollator,
    TextCorpus,
    pretraining_examples,
    segmenter_for,
)

logger = logging.getLogger("train_mlm")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "BERT checkpoint (folder or Hub id) to continue; omit to train from a config"}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "tokenizer folder or Hub id; default: the model's, or a character tokenizer built from "
            "the training texts when training from scratch"
        },
    )
    hidden_size: int = field(default=256, metadata={"help": "from scratch: hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "from scratch: encoder layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "from scratch: attention heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "from scratch: feed-forward size"})
    max_position_embeddings: int = field(default=512, metadata={"help": "from scratch: longest input"})
    min_char_frequency: int = field(default=1, metadata={"help": "from scratch: rarer characters become [UNK]"})


@dataclass
class DataArguments:
    train_files: list[str] = field(default_factory=list, metadata={"help": "plain-text files of the corpus"})
    sample_by: str = field(
        default="line",
        metadata={"help": "'line': one document per line; 'paragraph': documents separated by blank lines"},
    )
    streaming: bool = field(default=False, metadata={"help": "stream the corpus (larger than memory); set max_steps"})
    max_seq_length: int = field(default=128, metadata={"help": "tokens per example, special tokens included"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of tokens to predict"})
    masking: str = field(
        default="whole_word",
        metadata={
            "help": "how the tokens to predict are chosen: 'whole_word': whole words from jieba, the lexicon's "
            "terms kept whole; 'char': each character on its own, the random masking the ChCancerBERT paper used"
        },
    )
    mlm_only: bool = field(default=False, metadata={"help": "masked LM without next-sentence prediction"})
    lexicon_file: str | None = field(
        default=None,
        metadata={"help": "domain terms (one per line) that whole-word masking keeps whole (not with --masking char)"},
    )
    simulated_data: bool = field(
        default=False,
        metadata={"help": "the corpus is simulated (no real patient's records): the model card says so"},
    )
    max_bad_fraction: float = max_bad_fraction_field()


@dataclass
class TrainArguments(RunArguments):
    output_dir: str = field(default="outputs/mlm", metadata={"help": "where the checkpoint is written"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "examples per device and step"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    num_train_epochs: int = field(default=1, metadata={"help": "passes over the corpus (ignored with max_steps)"})
    max_steps: int = field(default=0, metadata={"help": "optimiser steps; required when streaming"})
    max_train_minutes: float = field(default=0.0, metadata={"help": "stop (and save) after this wall time"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps with linear warm-up"})
    seed: int = field(default=42, metadata={"help": "seed of model init, data order and masking"})
    logging_steps: int = field(default=50, metadata={"help": "log the loss every N optimiser steps"})
    checkpointing_steps: int = field(default=500, metadata={"help": "save a resumable checkpoint every N steps"})


def load_documents(data: DataArguments):
    if not data.train_files:
        raise ConfigurationError("no --train_files given")
    missing = [path for path in data.train_files if not Path(path).is_file()]
    if missing:
        raise ConfigurationError(f"training file(s) not found: {', '.join(missing)}")
    if data.sample_by not in ("line", "paragraph"):
        raise ConfigurationError(f"sample_by must be 'line' or 'paragraph', got {data.sample_by!r}")
    corpus = TextCorpus(data.train_files, data.sample_by)
    # A pass over the files before training, also when streaming: documents that are not UTF-8 are left out.
    check_dropped_records(corpus.read_report(), ", ".join(data.train_files), data.max_bad_fraction)
    return corpus if data.streaming else list(corpus)


def build_model_and_tokenizer(model_args: ModelArguments, documents, mlm_only: bool):
    model_class = BertForMaskedLM if mlm_only else BertForPreTraining
    if model_args.model_name_or_path:
        name = model_args.tokenizer_name_or_path or model_args.model_name_or_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as error:  # transformers' way of saying a folder or Hub id cannot be loaded
            raise ConfigurationError(f"{name}: {not_loadable(error)}") from error
        model = model_class.from_pretrained(model_args.model_name_or_path)
        if len(tokenizer) > model.config.vocab_size:
            raise ConfigurationError(
                f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {model.config.vocab_size}"
            )
        return model, tokenizer
    if model_args.tokenizer_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
    else:
        tokenizer = build_char_tokenizer(
            documents,
            min_frequency=model_args.min_char_frequency,
            model_max_length=model_args.max_position_embeddings,
        )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        max_position_embeddings=model_args.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model_class(config), tokenizer


class PretrainingExamples(torch.utils.data.IterableDataset):
    """Examples made on the fly from documents (a list, or a :class:`TextCorpus` streamed from disk)."""

    def __init__(self, documents, tokenizer, segmenter, max_length, next_sentence_prediction, seed):
        super().__init__()
        self.documents = documents
        self.options = dict(
            tokenizer=tokenizer,
            segmenter=segmenter,
            max_length=max_length,
            next_sentence_prediction=next_sentence_prediction,
            seed=seed,
        )

    def __iter__(self):
        yield from pretraining_examples(self.documents, **self.options)


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, train_args = parse_arguments(
        (ModelArguments, DataArguments, TrainArguments), argv, description=__doc__
    )
    check_max_bad_fraction(data_args.max_bad_fraction)
    if data_args.streaming and train_args.max_steps <= 0:
        raise ConfigurationError("a streamed corpus has no known length: set --max_steps")
    if data_args.masking not in MASKINGS:
        raise ConfigurationError(f"--masking {data_args.masking!r}: expected one of {', '.join(MASKINGS)}")
    if data_args.lexicon_file and data_args.masking == "char":
        raise ConfigurationError(
            "--lexicon_file keeps terms whole for --masking whole_word; --masking char masks each character on its "
            "own and would ignore it: drop one of the two"
        )
    run = start_run((model_args, data_args, train_args), train_args)
    accelerator = run.accelerator

    # ---- data, model
    with main_process_first(accelerator):
        documents = load_documents(data_args)
        model, tokenizer = build_model_and_tokenizer(model_args, documents, data_args.mlm_only)
    segmenter = segmenter_for(data_args.masking, data_args.lexicon_file)
    examples = PretrainingExamples(
        documents, tokenizer, segmenter, data_args.max_seq_length, not data_args.mlm_only, train_args.seed
    )
    if not data_args.streaming:
        examples = list(examples)
        if not examples:
            raise ConfigurationError(f"{', '.join(data_args.train_files)}: no usable record (no text)")
        logger.info("%d pretraining examples", len(examples))
    collator = MaskingCollator(tokenizer, data_args.mlm_probability, data_args.masking)
    dataloader = seeded_dataloader(
        examples, train_args.per_device_train_batch_size, not data_args.streaming, collator.pad, train_args.seed
    )

    # ---- optimiser, schedule
    optimizer = torch.optim.AdamW(optimizer_groups(model, train_args.weight_decay, {"model": train_args.learning_rate}))
    if train_args.max_steps > 0:
        total_steps = train_args.max_steps
    else:
        batches = math.ceil(len(examples) / train_args.per_device_train_batch_size / accelerator.num_processes)
        total_steps = train_args.num_train_epochs * math.ceil(batches / train_args.gradient_accumulation_steps)
    budget = TrainingBudget(total_steps, train_args.max_train_minutes)
    scheduler = warmup_decay_schedule(optimizer, train_args.warmup_ratio, budget)
    model, optimizer, dataloader, scheduler = accelerator.prepare(model, optimizer, dataloader, scheduler)

    # ---- training
    state = begin_training(run, train_args, "train_mlm", {"step": 0, "epoch": 0, "batches_in_epoch": 0})
    loop = TrainingLoop(
        accelerator, model, optimizer, scheduler, dataloader, budget, state, prepare_batch=collator.mask
    )
    for step in loop:
        if step % train_args.logging_steps == 0 or step == total_steps:
            loop.log()
        if step % train_args.checkpointing_steps == 0:
            save_checkpoint(accelerator, state, run.arguments)
        if budget.out_of_time:
            logger.info("time budget of %.1f minutes spent at step %d", train_args.max_train_minutes, step)
            break
    loop.close()
    accelerator.wait_for_everyone()

    # ---- the encoder
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(run.output_dir, save_function=accelerator.save)
        tokenizer.save_pretrained(run.output_dir)
        write_arguments(run.output_dir, model_args, data_args, train_args)
        count = None if data_args.streaming else len(examples)
        write_pretraining_card(run.output_dir, model_args, data_args, train_args, state["step"], count)
        if train_args.push_to_hub:
            push_folder(run.output_dir, train_args.hub_model_id)
        logger.info("saved the pretrained encoder to %s", run.output_dir)
    accelerator.end_training()


if __name__ == "__main__":
    run_command(main)
