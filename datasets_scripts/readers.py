"""The corpus files a command can read by format name (``--format``), for the commands that take any of them
(``python -m clinical_ner_zh.datasets_scripts.report``, ``python -m clinical_ner_zh.datasets_scripts.char_tokenizer``)."""

from __future__ import annotations

from pathlib import Path

from .ccks import ReadResult, read_ccks
from .label_studio import read_label_studio
from .labels import BREAST_CANCER_CODES, CCKS_CODES

FORMATS = ("ccks2019", "ccks2020", "label-studio")


def read_records(file_format: str, path: str | Path, *, strict: bool = False) -> ReadResult:
    """Read a file in one of :data:`FORMATS`."""
    if file_format in ("ccks2019", "ccks2020"):
        return read_ccks(path, strict=strict)
    if file_format == "label-studio":
        return read_label_studio(path, strict=strict)
    raise ValueError(f"unknown format {file_format!r}: expected one of {', '.join(FORMATS)}")


def entity_types_of_format(file_format: str) -> tuple[str, ...]:
    """The type codes of a format's corpus."""
    return BREAST_CANCER_CODES if file_format == "label-studio" else CCKS_CODES
