"""Model cards of the saved models (taggers of ``train_ner.py``, encoders of ``train_mlm.py``): ``huggingface_hub``'s
``ModelCard`` from a ``model_cards/`` template, with the metadata (``datasets``, ``model-index``) and the description
of the data taken from what the run used, and a tagger's scores from the reports saved in the same folder, so that
the card always agrees with them."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from clinical_ner_zh.metrics import EntityReport, format_report

TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"
TEMPLATE_OF_FAMILY = {"chcancerbert": "chcancerbert.md", "clinicalbert-kg": "clinicalbert_kg.md"}
#: The reports a run saves beside its model, by split: dev when the best model is saved, test once at the end.
REPORT_FILES = {"validation": "eval_results.json", "test": "test_results.json"}
CORPUS_FORMATS = {
    "breast_cancer": "Label Studio JSON export",
    "ccks2019": "CCKS2019 (Yidu-S4K) JSON lines",
    "ccks2020": "CCKS2020 JSON lines",
    "spans": "span-schema records (JSON lines or Parquet)",
}
SIMULATED = "**Simulated records** (`--simulated_data`): made up, not taken from any patient."
METRICS = {"precision": "precision", "recall": "recall", "f1": "F1"}


def _label_table(config) -> str:
    rows = ["| id | label |", "|---|---|"]
    rows += [f"| {index} | {label} |" for index, label in sorted(config.id2label.items())]
    return "\n".join(rows)


def _head_summary(config) -> str:
    parts = []
    if getattr(config, "use_bilstm", False):
        parts.append(f"BiLSTM {config.lstm_num_layers}x{config.lstm_hidden_size}")
    if getattr(config, "use_dgcnn", False):
        parts.append(f"DGCNN dilations {config.dgcnn_dilations}")
    if getattr(config, "use_bilstm", False) and getattr(config, "use_dgcnn", False):
        parts.append(f"fusion {config.fusion}")
    if hasattr(config, "use_kg_embedding"):
        features = [
            name for name in ("kg_embedding", "position_feature", "category_feature") if getattr(config, f"use_{name}")
        ]
        parts.append(f"knowledge features: {', '.join(features) or 'none'}")
        parts.append(f"BiLSTM {config.lstm_num_layers}x{config.lstm_hidden_size}")
    return ", ".join([*parts, "CRF"])


def on_hub(name: str | None) -> bool:
    """Whether ``name`` (a model or dataset argument) is a Hub id rather than a folder here."""
    return bool(name) and not Path(name).exists()


def hub_dataset(data_args) -> str | None:
    """The Hub dataset the run loaded, if any (``--dataset_name`` that is not a folder here)."""
    return data_args.dataset_name if on_hub(data_args.dataset_name) else None


def describe_data(
    data_args, train_records: int, reports: dict[str, EntityReport]
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Per split scored, the ``model-index`` dataset type (Hub id, or the file or folder name) and name of the data
    its scores were computed on (a split file of its own, or the source it was carved from), and the lines that
    describe the data in the card: format, source by name (never a path or a record's text), how the splits were
    made, record counts, whether simulated."""
    if hub_dataset(data_args):
        source = hub_dataset(data_args)
        where = f"the Hub dataset `{source}`"
    elif data_args.dataset_name:
        source = Path(data_args.dataset_name).name
        where = f"the dataset folder `{source}`"
    else:
        source = Path(data_args.train_file).name
        where = f"the file `{source}`"
    lines = [f"Corpus: {CORPUS_FORMATS[data_args.corpus]} (`--corpus {data_args.corpus}`), from {where}."]
    if data_args.corpus == "breast_cancer" and not (data_args.validation_file or data_args.test_file):
        splits = "train, validation and test 6:2:2 by a hash of each task id"
    elif data_args.dataset_name:
        splits = f"the dataset's own ({', '.join(['train', *reports])})"
    else:
        validation = (
            f"`{Path(data_args.validation_file).name}`"
            if data_args.validation_file
            else f"a seeded {data_args.dev_fraction:.0%} of the training records"
        )
        test = f"`{Path(data_args.test_file).name}`" if data_args.test_file else "none"
        splits = f"validation {validation}; test {test}"
    lines.append(f"Splits: {splits}.")
    counts = [f"{train_records} train"] + [f"{report.num_records} {split}" for split, report in reports.items()]
    lines.append(f"Records: {', '.join(counts)}.")
    if data_args.simulated_data:
        lines.append(SIMULATED)
    split_files = {"validation": data_args.validation_file, "test": data_args.test_file}
    evaluated_on = {}
    for split in reports:
        own = split_files[split] and not data_args.dataset_name
        dataset_type = Path(split_files[split]).name if own else source
        evaluated_on[split] = (
            dataset_type,
            dataset_type + (" (simulated records)" if data_args.simulated_data else ""),
        )
    return evaluated_on, lines


def saved_reports(output_dir: Path) -> dict[str, EntityReport]:
    """The entity reports saved in ``output_dir``, by split, in the order validation, test."""
    return {
        split: EntityReport.from_dict(json.loads((output_dir / file).read_text(encoding="utf-8")))
        for split, file in REPORT_FILES.items()
        if (output_dir / file).is_file()
    }


def build_model_card(output_dir: Path, config, model_args, data_args, train_args, train_records: int) -> ModelCard:
    """The card of the model saved in ``output_dir``, its scores read from the reports saved there."""
    reports = saved_reports(output_dir)
    model_name = train_args.hub_model_id or output_dir.name
    evaluated_on, data_lines = describe_data(data_args, train_records, reports)
    card_data = ModelCardData(
        language="zh",
        license="apache-2.0",
        library_name="transformers",
        # The standard task, as the Hub lists NER models; the card says how to call it (the config maps the task to
        # the CRF-decoding pipeline, never argmax over the emissions).
        pipeline_tag="token-classification",
        tags=["custom_code", "token-classification", "named-entity-recognition", "medical", "clinical", "crf"],
        base_model=model_args.encoder if on_hub(model_args.encoder) else None,
        # Hub dataset ids only: a local corpus has none, and a made-up id would point at someone else's dataset.
        datasets=[hub_dataset(data_args)] if hub_dataset(data_args) else None,
        metrics=list(METRICS),
        model_name=model_name,
        eval_results=[
            EvalResult(
                task_type="token-classification",
                task_name="Named entity recognition",
                dataset_type=evaluated_on[split][0],
                dataset_name=evaluated_on[split][1],
                dataset_split=split,
                metric_type=metric,
                metric_value=round(getattr(report.micro, metric), 4),
                metric_name=f"Strict entity {METRICS[metric]} (micro, {split})",
            )
            for split, report in reports.items()
            for metric in METRICS
        ],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / TEMPLATE_OF_FAMILY[model_args.family]),
        model_name=model_name,
        repo_id=train_args.hub_model_id or str(output_dir),
        variant=model_args.variant,
        encoder=model_args.encoder or "trained from scratch (character tokenizer)",
        label_scheme=config.label_scheme,
        num_types=(config.num_labels - 1) // (2 if config.label_scheme == "BIO" else 4),
        label_table=_label_table(config),
        simulated=data_args.simulated_data,
        data_lines=data_lines,
        score_rows=[
            f"| {split} | {report.num_records} | "
            + " | ".join(f"{getattr(report.micro, metric):.4f}" for metric in METRICS)
            + " |"
            for split, report in reports.items()
        ],
        reports={split: format_report(report) for split, report in reports.items()},
        head_summary=_head_summary(config),
        encoder_lr=train_args.encoder_learning_rate,
        head_lr=train_args.head_learning_rate,
        batch_size=train_args.per_device_train_batch_size,
        accumulation=train_args.gradient_accumulation_steps,
        warmup=train_args.warmup_ratio,
        steps=train_args.max_steps or f"{train_args.num_train_epochs} epochs of",
        seed=train_args.seed,
        max_length=data_args.max_length,
        stride=data_args.stride,
    )


def write_model_card(output_dir: Path, config, model_args, data_args, train_args, train_records: int) -> Path:
    """Write (or rewrite, once the test split is scored) ``README.md`` in ``output_dir``."""
    path = output_dir / "README.md"
    build_model_card(output_dir, config, model_args, data_args, train_args, train_records).save(path)
    return path


def write_pretraining_card(
    output_dir: Path, model_args, data_args, train_args, steps: int, examples: int | None
) -> Path:
    """Write ``README.md`` for a ``train_mlm.py`` encoder: what it was trained from and on (files by name), how; no
    scores (there is no held-out split)."""
    base = model_args.model_name_or_path
    files = ", ".join(f"`{Path(path).name}`" for path in data_args.train_files)
    data_lines = [f"Corpus: plain text, one document per {data_args.sample_by}, from {files}."]
    if examples is not None:
        data_lines.append(f"Examples: {examples} sequences.")
    if data_args.lexicon_file and data_args.masking == "whole_word":
        data_lines.append(f"Whole-word masking keeps the terms of `{Path(data_args.lexicon_file).name}` whole.")
    if data_args.simulated_data:
        data_lines.append(SIMULATED)
    card_data = ModelCardData(
        language="zh",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=["bert", "fill-mask", "medical", "clinical"],
        base_model=base if on_hub(base) else None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "pretraining.md"),
        model_name=train_args.hub_model_id or output_dir.name,
        repo_id=train_args.hub_model_id or str(output_dir),
        origin=f"further from `{base if on_hub(base) else Path(base).name}`" if base else "from scratch",
        masking={"whole_word": "Chinese whole-word masking", "char": "random character masking"}[data_args.masking],
        nsp=not data_args.mlm_only,
        simulated=data_args.simulated_data,
        data_lines=data_lines,
        objective="masked LM" if data_args.mlm_only else "masked LM and next-sentence prediction",
        mlm_probability=data_args.mlm_probability,
        max_seq_length=data_args.max_seq_length,
        learning_rate=train_args.learning_rate,
        batch_size=train_args.per_device_train_batch_size,
        accumulation=train_args.gradient_accumulation_steps,
        warmup=train_args.warmup_ratio,
        steps=steps,
        seed=train_args.seed,
    )
    path = output_dir / "README.md"
    card.save(path)
    return path
