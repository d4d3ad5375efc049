"""A term lexicon and its longest-match matcher: the three character features of CBT-KG (Xu et al. 2025).

Per character of a text, :class:`TermLexicon` gives

* a **position** id: the character's place inside the matched term, ``O`` 0 (no term), ``B`` 1, ``I`` 2, ``E`` 3,
  ``S`` 4 (a one-character term), see :data:`POSITION_TAGS`;
* a **category** id: 0 for no term, else ``1 + categories.index(term type)``;
* a **KG entity** id: 0 for no term or a term that is not in the knowledge graph, else ``1 + entity row``, where the
  row indexes the entity-embedding table written by ``train_kge.py`` (row ``i`` of ``entities.tsv``).

Matching rule, stated once: **forward maximum matching** (leftmost-longest, greedy). Scanning left to right, at
each position take the longest term that starts there and continue right after it; when no term starts there,
move on by one character. A term therefore never overlaps a match found further left, even when it is longer.

Normalisation: the matcher compares **folded** characters, one for one, so match offsets are offsets into the
original text. A character is folded to its NFKC form and then lower-cased, each step applied only when it yields
exactly one character (full-width "ＨＥＲ２" matches "her2"; "㎎", whose NFKC form is two characters, is kept as it
is). This is the character tokenizer's NFKC, done per character; names are folded the same way.

Duplicates: when two names fold to the same string (including one name listed with two types), the **first
listed** entry wins. :meth:`TermLexicon.save` writes only the entries kept, so a saved lexicon reloads identically.

Tokens: :meth:`TermLexicon.token_features` gives each token the features of its **first character**
(``text[start]`` for offsets ``(start, end)``), so a word piece such as "HER2" takes those of "H"; tokens with empty
offsets (special tokens) get 0 everywhere.

File format (``lexicon.tsv``, UTF-8): a header line ``#TermLexicon`` TAB JSON ``{"version": 1, "categories":
[...]}``, then one line per term: ``name`` TAB ``type`` TAB ``entity row`` (empty when the term has no KG
entity).

This module is pure Python (standard library only): it runs inside a model repository as remote code.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

POSITION_TAGS = ("O", "B", "I", "E", "S")  # position ids 0..4; 0 means "in no term"
NONE_ID = 0  # category and entity id of a character in no term (or of a term outside the KG)
FILE_HEADER = "#TermLexicon"
FILE_VERSION = 1
FEATURE_NAMES = ("kg_position_ids", "kg_category_ids", "kg_entity_ids")

_B, _I, _E, _S = 1, 2, 3, 4


class Term(NamedTuple):
    name: str
    type: str
    entity_row: int | None  # row of the KG embedding table, None when the term is not a KG entity


class TermMatch(NamedTuple):
    start: int  # offsets into the original text, end exclusive
    end: int
    term: Term


class _CharFolding(dict):
    """``str.translate`` table folding one character to one character (NFKC, then lower case), filled lazily."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = unicodedata.normalize("NFKC", char)
        if len(folded) != 1:
            folded = char  # an expansion ("㎎" -> "mg") would shift every later offset
        lowered = folded.lower()
        folded = lowered if len(lowered) == 1 else folded
        self[code] = folded
        return folded


_FOLDING = _CharFolding()


def fold(text: str) -> str:
    """The matcher's view of ``text``: same length, each character folded (see the module docstring)."""
    return text.translate(_FOLDING)


class TermLexicon:
    """Names with types (and optional KG entity rows), matched by forward maximum matching.

    Args:
        terms: ``(name, type)`` or ``(name, type, entity_row)`` items; ``entity_row`` is ``None`` or an int >= 0.
        categories: the type names in category-id order (id ``i + 1`` for ``categories[i]``); defaults to the types
            of ``terms`` in first-seen order (duplicates dropped by the first-listed rule count too). Every term's
            type must be listed.
    """

    def __init__(self, terms: Iterable[Sequence], categories: Sequence[str] | None = None):
        kept: list[Term] = []
        index: dict[str, int] = {}  # folded name -> position in kept
        types: dict[str, None] = {}  # every type listed, in first-seen order
        for number, item in enumerate(terms):
            term = self._check_term(item, f"term {number}")
            types.setdefault(term.type)
            key = fold(term.name)
            if key not in index:  # first listed wins
                index[key] = len(kept)
                kept.append(term)
        if categories is None:
            categories = list(types)
        self.categories = self._check_categories(categories)
        category_ids = {name: position + 1 for position, name in enumerate(self.categories)}
        unknown = sorted(set(types) - set(category_ids))
        if unknown:
            raise ValueError(f"expected term types among categories {self.categories}, got {unknown}")
        self.terms: tuple[Term, ...] = tuple(kept)
        # Per term, the ids its characters get: (category id, entity id).
        self._ids = [(category_ids[t.type], NONE_ID if t.entity_row is None else t.entity_row + 1) for t in self.terms]
        # The matcher: names of one and two characters in dicts; longer ones looked up by their first three
        # characters, which give the candidate lengths, longest first. Each position costs a few hash lookups.
        self._singles: dict[str, int] = {}
        self._pairs: dict[str, int] = {}
        self._long: dict[str, int] = {}
        lengths: dict[str, set[int]] = {}
        for key, position in index.items():
            if len(key) == 1:
                self._singles[key] = position
            elif len(key) == 2:
                self._pairs[key] = position
            else:
                self._long[key] = position
                lengths.setdefault(key[:3], set()).add(len(key))
        self._long_lengths = {prefix: tuple(sorted(found, reverse=True)) for prefix, found in lengths.items()}

    # ------------------------------------------------------------------ construction and checks

    @staticmethod
    def _check_term(item: Sequence, where: str) -> Term:
        if isinstance(item, str) or len(item) not in (2, 3):
            raise ValueError(f"{where}: expected (name, type) or (name, type, entity_row), got {item!r}")
        name, term_type = item[0], item[1]
        entity_row = item[2] if len(item) == 3 else None
        for field, value in (("name", name), ("type", term_type)):
            if not isinstance(value, str) or not value or any(c in value for c in "\t\n\r"):
                raise ValueError(f"{where}: expected a non-empty {field} without tabs or newlines, got {value!r}")
        if entity_row is not None and (
            isinstance(entity_row, bool) or not isinstance(entity_row, int) or entity_row < 0
        ):
            raise ValueError(f"{where}: expected entity_row None or an int >= 0, got {entity_row!r}")
        return Term(name, term_type, entity_row)

    @staticmethod
    def _check_categories(categories: Sequence[str]) -> list[str]:
        categories = list(categories)
        if any(not isinstance(c, str) or not c or any(x in c for x in "\t\n\r") for c in categories):
            raise ValueError(f"expected categories to be non-empty strings without tabs or newlines, got {categories}")
        if len(set(categories)) != len(categories):
            raise ValueError(f"expected distinct categories, got {categories}")
        return categories

    # ------------------------------------------------------------------ save and load

    def dumps(self) -> str:
        """The file text (see the module docstring); deterministic, so its hash identifies the lexicon."""
        header = json.dumps({"version": FILE_VERSION, "categories": self.categories}, ensure_ascii=False)
        lines = [f"{FILE_HEADER}\t{header}"]
        lines.extend(f"{t.name}\t{t.type}\t{'' if t.entity_row is None else t.entity_row}" for t in self.terms)
        return "\n".join(lines) + "\n"

    def sha256(self) -> str:
        return hashlib.sha256(self.dumps().encode("utf-8")).hexdigest()

    @classmethod
    def loads(cls, text: str, source: str = "<string>") -> TermLexicon:
        """Parse :meth:`dumps` output; ``ValueError`` names ``source`` and the line of any malformed content."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        head, _, meta = (lines[0] if lines else "").partition("\t")
        try:
            meta = json.loads(meta) if head == FILE_HEADER else None
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("version") != FILE_VERSION or "categories" not in meta:
            raise ValueError(
                f"{source}, line 1: expected the header '{FILE_HEADER}<TAB>"
                f'{{"version": {FILE_VERSION}, "categories": [...]}}\', got {(lines[0] if lines else "")[:80]!r}'
            )
        terms = []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.rstrip("\r").split("\t")
            if len(fields) != 3:
                raise ValueError(
                    f"{source}, line {number}: expected 3 tab-separated fields (name, type, entity row), "
                    f"got {len(fields)}: {line[:80]!r}"
                )
            name, term_type, row = fields
            if row and not row.isdigit():
                raise ValueError(f"{source}, line {number}: expected an empty or non-negative entity row, got {row!r}")
            terms.append((name, term_type, int(row) if row else None))
        try:
            lexicon = cls([], meta["categories"])
        except ValueError as error:
            raise ValueError(f"{source}, line 1: {error}") from None
        for number, term in enumerate(terms, start=2):
            try:
                cls._check_term(term, "term")
            except ValueError as error:
                raise ValueError(f"{source}, line {number}: {error}") from None
            if term[1] not in lexicon.categories:
                raise ValueError(
                    f"{source}, line {number}: expected a type among the header's categories "
                    f"{lexicon.categories}, got {term[1]!r}"
                )
        return cls(terms, meta["categories"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TermLexicon:
        return cls.loads(Path(path).read_text(encoding="utf-8"), source=str(path))

    # ------------------------------------------------------------------ matching

    def __len__(self) -> int:
        return len(self.terms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TermLexicon) and (self.terms, self.categories) == (other.terms, other.categories)

    def __repr__(self) -> str:
        return f"TermLexicon({len(self.terms)} terms, categories={self.categories})"

    @property
    def max_entity_row(self) -> int | None:
        rows = [t.entity_row for t in self.terms if t.entity_row is not None]
        return max(rows) if rows else None

    def _scan(self, folded: str) -> list[tuple[int, int, int]]:
        """``(start, end, term index)`` by forward maximum matching over already folded text."""
        found = []
        singles, pairs, long_terms, long_lengths = self._singles, self._pairs, self._long, self._long_lengths
        size = len(folded)
        position = 0
        while position < size:
            term = None
            for length in long_lengths.get(folded[position : position + 3], ()):
                if position + length <= size:
                    term = long_terms.get(folded[position : position + length])
                    if term is not None:
                        break
            if term is None:
                # Near the end the slices come out shorter, but they can never equal a key of the full length.
                length, term = 2, pairs.get(folded[position : position + 2])
                if term is None:
                    length, term = 1, singles.get(folded[position])
            if term is None:
                position += 1
            else:
                found.append((position, position + length, term))
                position += length
        return found

    def matches(self, text: str) -> list[TermMatch]:
        """The terms found in ``text`` (forward maximum matching), left to right, offsets into ``text``."""
        return [TermMatch(start, end, self.terms[term]) for start, end, term in self._scan(fold(text))]

    def char_features(self, text: str) -> dict[str, list[int]]:
        """Per character of ``text``: position, category and KG entity ids (see the module docstring)."""
        size = len(text)
        positions, categories, entities = [0] * size, [0] * size, [0] * size
        for start, end, term in self._scan(fold(text)):
            length = end - start
            positions[start:end] = [_S] if length == 1 else [_B] + [_I] * (length - 2) + [_E]
            category, entity = self._ids[term]
            categories[start:end] = [category] * length
            entities[start:end] = [entity] * length
        return dict(zip(FEATURE_NAMES, (positions, categories, entities)))

    def token_features(self, text: str, offsets: Sequence[Sequence[int]]) -> dict[str, list[int]]:
        """Per token, the features of its first character; 0 for tokens with empty offsets (special tokens).

        ``offsets`` is a tokenizer's ``offset_mapping`` into ``text``.
        """
        chars = self.char_features(text)
        size = len(text)
        firsts = []
        for number, (start, end) in enumerate(offsets):
            if end > start and not 0 <= start < size:
                raise ValueError(
                    f"token {number}: expected offsets inside a text of {size} characters, got {(start, end)}"
                )
            firsts.append(start if end > start else None)
        return {
            name: [NONE_ID if first is None else values[first] for first in firsts] for name, values in chars.items()
        }


__all__ = ["FEATURE_NAMES", "POSITION_TAGS", "Term", "TermLexicon", "TermMatch", "fold"]
