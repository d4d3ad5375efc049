"""Saving trained embeddings for the CBT-KG tagger (:func:`save_kge`) and reading them back (:func:`load_kge`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .io import Entity, read_entities, write_entities
from .models import TransH, TransR
from .training import KgeResult

__all__ = ["EMBEDDINGS_NAME", "KgeEmbeddings", "load_kge", "save_kge"]

EMBEDDINGS_NAME = "entity_embeddings.safetensors"


@dataclass
class KgeEmbeddings:
    """Saved embeddings as :func:`load_kge` returns them; row ``i`` of ``entity_embeddings`` is ``entities[i]``."""

    entities: list[Entity]
    relation_names: list[str]
    entity_embeddings: torch.Tensor  # shape: (num_entities, dim)
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]


def save_kge(
    result: KgeResult, output_dir: str | os.PathLike, entity_types: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write the embeddings, the name index and ``kge_config.json`` to ``output_dir``.

    Files:
        ``entity_embeddings.safetensors``: ``entity_embeddings`` ``(num_entities, dim)`` float32 and
        ``relation_embeddings`` ``(num_relations, k)``; TransH adds ``relation_normals`` ``(num_relations, dim)``,
        TransR ``relation_matrices`` ``(num_relations, k, dim)``.
        ``entities.tsv``: row ``i`` = ``name<TAB>type`` of embedding row ``i`` (type ``Other`` when unknown).
        ``relations.tsv``: row ``i`` = relation name of ``relation_embeddings`` row ``i``.
        ``kge_config.json``: model, dim, all hyper-parameters, test metrics and those of the relation-popularity
        baseline, training time and throughput.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = result.model
    tensors = {
        "entity_embeddings": model.entity.weight.detach().clone().contiguous(),
        "relation_embeddings": model.relation.weight.detach().clone().contiguous(),
    }
    if isinstance(model, TransH):
        tensors["relation_normals"] = F.normalize(model.normal.weight.detach(), dim=-1).contiguous()
    if isinstance(model, TransR):
        tensors["relation_matrices"] = model.matrix.weight.detach().view(-1, model.space_dim, model.dim).contiguous()
    paths = {
        "embeddings": output_dir / EMBEDDINGS_NAME,
        "entities": output_dir / "entities.tsv",
        "relations": output_dir / "relations.tsv",
        "config": output_dir / "kge_config.json",
    }
    save_file(tensors, paths["embeddings"], metadata={"model": result.config.model, "format": "pt"})
    types = entity_types or {}
    write_entities(paths["entities"], ((name, types.get(name, "Other")) for name in result.entity_names))
    paths["relations"].write_text("".join(f"{name}\n" for name in result.relation_names), encoding="utf-8")
    summary = {
        "model": result.config.model,
        "dim": result.config.dim,
        "relation_dim": result.config.space_dim,
        "num_entities": len(result.entity_names),
        "num_relations": len(result.relation_names),
        "metrics": result.metrics,
        "relation_popularity_baseline": result.baseline,
        "epochs_completed": result.epochs_completed,
        "train_seconds": round(result.train_seconds, 2),
        "triples_per_second": round(result.triples_per_second, 1),
        "split_sizes": result.split_sizes,
        "config": asdict(result.config),
    }
    paths["config"].write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return paths


def load_kge(output_dir: str | os.PathLike) -> KgeEmbeddings:
    """Read what :func:`save_kge` wrote, checking that the name index and the embedding rows agree."""
    output_dir = Path(output_dir)
    tensors = load_file(output_dir / EMBEDDINGS_NAME)
    if "entity_embeddings" not in tensors:
        raise ValueError(f"{output_dir / EMBEDDINGS_NAME}: no 'entity_embeddings' tensor (has {sorted(tensors)})")
    entities = read_entities(output_dir / "entities.tsv")
    embeddings = tensors["entity_embeddings"]
    if len(entities) != embeddings.shape[0]:
        raise ValueError(
            f"{output_dir}: entities.tsv has {len(entities)} rows but entity_embeddings has {embeddings.shape[0]}"
        )
    relations_path = output_dir / "relations.tsv"
    relation_names = relations_path.read_text(encoding="utf-8").splitlines() if relations_path.is_file() else []
    config_path = output_dir / "kge_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return KgeEmbeddings(entities, relation_names, embeddings, tensors, config)
