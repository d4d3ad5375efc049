"""Corpus readers (one span schema for every corpus), tokenizers for training from scratch, window encoding.

The public names are imported lazily (PEP 562), so that ``python -m clinical_ner_zh.datasets_scripts.<module>`` does not import
its own module twice and ``from clinical_ner_zh import datasets_scripts`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "load_ccks2019": "ccks2019",
    "load_ccks2020": "ccks2020",
    "load_breast_cancer": "breast_cancer",
    "split_of": "breast_cancer",
    "read_ccks": "ccks",
    "ReadResult": "ccks",
    "read_label_studio": "label_studio",
    "FEATURES": "schema",
    "CorpusError": "schema",
    "Problem": "schema",
    "ReadReport": "schema",
    "EntityType": "labels",
    "CCKS_TYPES": "labels",
    "BREAST_CANCER_TYPES": "labels",
    "class_of": "labels",
    "build_char_tokenizer": "char_tokenizer",
    "build_wordpiece_tokenizer": "char_tokenizer",
    "wordpiece_vocab": "char_tokenizer",
    "write_wordpiece_vocab": "char_tokenizer",
    "WindowEncoder": "encoding",
    "EncodingStats": "encoding",
    "SkippedEntity": "encoding",
    "encode_dataset": "encoding",
    "decode_dataset": "encoding",
}

__all__ = [
    "BREAST_CANCER_TYPES",
    "CCKS_TYPES",
    "FEATURES",
    "CorpusError",
    "EncodingStats",
    "EntityType",
    "Problem",
    "ReadReport",
    "ReadResult",
    "SkippedEntity",
    "WindowEncoder",
    "build_char_tokenizer",
    "build_wordpiece_tokenizer",
    "class_of",
    "decode_dataset",
    "encode_dataset",
    "load_breast_cancer",
    "load_ccks2019",
    "load_ccks2020",
    "read_ccks",
    "read_label_studio",
    "split_of",
    "wordpiece_vocab",
    "write_wordpiece_vocab",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .breast_cancer import load_breast_cancer, split_of
    from .ccks import ReadResult, read_ccks
    from .ccks2019 import load_ccks2019
    from .ccks2020 import load_ccks2020
    from .char_tokenizer import (
        build_char_tokenizer,
        build_wordpiece_tokenizer,
        wordpiece_vocab,
        write_wordpiece_vocab,
    )
    from .encoding import EncodingStats, SkippedEntity, WindowEncoder, decode_dataset, encode_dataset
    from .label_studio import read_label_studio
    from .labels import BREAST_CANCER_TYPES, CCKS_TYPES, EntityType, class_of
    from .schema import FEATURES, CorpusError, Problem, ReadReport
