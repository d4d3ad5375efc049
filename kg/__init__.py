"""Knowledge graphs: triples and entity tables (TSV), the CMeKG import, and TransE/TransH/TransR embeddings.

Torch is imported only by :mod:`kg.embedding`; ``kg.io`` and ``kg.cmekg`` are plain Python.
"""

from .io import Entity, KgFormatError, Triple, read_entities, read_triples, write_entities, write_triples

__all__ = ["Entity", "KgFormatError", "Triple", "read_entities", "read_triples", "write_entities", "write_triples"]
