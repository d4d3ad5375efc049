"""Fill a model card template from ``model_cards/`` with a run's configuration and measured scores."""

from __future__ import annotations

from pathlib import Path
from string import Template

from metrics import format_report

TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"
TEMPLATE_OF_FAMILY = {"chcancerbert": "chcancerbert.md", "clinicalbert-kg": "clinicalbert_kg.md"}
DATASET_IDS = {"ccks2019": "ccks2019-yidu-s4k", "ccks2020": "ccks2020", "breast_cancer": "private-breast-cancer-ehr"}


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


def write_model_card(output_dir: Path, config, report, model_args, data_args, train_args, train_records: int) -> Path:
    template = Template((TEMPLATES / TEMPLATE_OF_FAMILY[model_args.family]).read_text(encoding="utf-8"))
    dataset = DATASET_IDS.get(data_args.corpus, data_args.dataset_name or "custom")
    card = template.safe_substitute(
        license="apache-2.0",
        model_name=train_args.hub_model_id or output_dir.name,
        repo_id=train_args.hub_model_id or str(output_dir),
        dataset=dataset,
        dataset_name=data_args.dataset_name or data_args.corpus,
        precision=f"{report.micro.precision:.4f}",
        recall=f"{report.micro.recall:.4f}",
        f1=f"{report.micro.f1:.4f}",
        variant=model_args.variant,
        encoder=model_args.encoder or "trained from scratch (character tokenizer)",
        label_scheme=config.label_scheme,
        num_types=(config.num_labels - 1) // (2 if config.label_scheme == "BIO" else 4),
        label_table=_label_table(config),
        report=format_report(report),
        train_records=train_records,
        validation_records=report.num_records,
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
    path = output_dir / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
