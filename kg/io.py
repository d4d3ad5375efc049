"""Tab-separated files for knowledge graphs: triples (head, relation, tail) and an entity table (name, type).

Both formats are headerless UTF-8 TSV, one record a line, the same layout as PyKEEN's ``TriplesFactory.from_path``
and as ``data/kg/medical_entities.tsv``. A UTF-8 byte-order mark at the start of a file is accepted; blank lines
are skipped. Fields may not contain tabs or line breaks (there is no quoting), so writers refuse such values
instead of producing a file that would read back differently.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from clinical_ner_zh.cli_errors import UserError

__all__ = [
    "Entity",
    "KgFormatError",
    "Triple",
    "read_entities",
    "read_triples",
    "write_entities",
    "write_triples",
]


class Triple(NamedTuple):
    """One edge of a knowledge graph: ``head --relation--> tail``."""

    head: str
    relation: str
    tail: str


class Entity(NamedTuple):
    """One row of an entity table: a node name and its type (e.g. ``Disease``)."""

    name: str
    type: str


class KgFormatError(UserError, ValueError):
    """A malformed row in a triples or entity file; the message names the file and the 1-based line."""


def _rows(path: str | os.PathLike, width: int, columns: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-blank line, checking the field count and empty fields."""
    # Decoded line by line, so that a line that is not UTF-8 is named by its own number; utf-8-sig drops a BOM if
    # present: files saved by Windows tools start with one.
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise KgFormatError(f"{path}:{line_number}: not UTF-8 text (byte {error.start} of the line)") from None
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != width:
                raise KgFormatError(
                    f"{path}:{line_number}: expected {width} tab-separated fields ({columns}), "
                    f"got {len(fields)}: {line[:80]!r}"
                )
            for position, field in enumerate(fields):
                if not field.strip():
                    name = columns.split(", ")[position]
                    raise KgFormatError(f"{path}:{line_number}: empty {name} field: {line[:80]!r}")
            yield line_number, fields


def _check_field(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    if not value.strip() or "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{what} must be non-empty and contain no tab or line break, got {value!r}")
    return value


def read_triples(path: str | os.PathLike) -> list[Triple]:
    """Read a headerless ``head<TAB>relation<TAB>tail`` file.

    Raises:
        KgFormatError: a line with another number of fields, or an empty field (message: ``file:line: ...``).
    """
    return [Triple(*fields) for _, fields in _rows(path, 3, "head, relation, tail")]


def write_triples(path: str | os.PathLike, triples: Iterable[tuple[str, str, str]]) -> int:
    """Write triples as headerless TSV; returns the number of rows written.

    Raises:
        ValueError: a field that is empty or holds a tab or line break (it could not be read back).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for index, triple in enumerate(triples):
            if len(triple) != 3:
                raise ValueError(f"triple {index} must have 3 fields (head, relation, tail), got {triple!r}")
            head, relation, tail = (_check_field(v, f"triple {index} field") for v in triple)
            handle.write(f"{head}\t{relation}\t{tail}\n")
            count += 1
    return count


def read_entities(path: str | os.PathLike, *, allow_duplicates: bool = False) -> list[Entity]:
    """Read a headerless ``name<TAB>type`` entity table, keeping file order (row ``i`` is entity ``i``).

    Args:
        allow_duplicates: accept a name listed more than once (a lexicon where one name has two types). By default
            a repeated name is an error, because an embedding index needs one row per name.

    Raises:
        KgFormatError: wrong field count, empty field, or (unless allowed) a repeated name, naming file and line.
    """
    entities: list[Entity] = []
    first_line: dict[str, int] = {}
    for line_number, (name, entity_type) in _rows(path, 2, "name, type"):
        if not allow_duplicates:
            if name in first_line:
                raise KgFormatError(f"{path}:{line_number}: entity {name!r} already listed on line {first_line[name]}")
            first_line[name] = line_number
        entities.append(Entity(name, entity_type))
    return entities


def write_entities(path: str | os.PathLike, entities: Iterable[tuple[str, str]]) -> int:
    """Write ``name<TAB>type`` rows in the given order; returns the number of rows written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for index, entity in enumerate(entities):
            if len(entity) != 2:
                raise ValueError(f"entity {index} must have 2 fields (name, type), got {entity!r}")
            name, entity_type = (_check_field(v, f"entity {index} field") for v in entity)
            handle.write(f"{name}\t{entity_type}\n")
            count += 1
    return count
