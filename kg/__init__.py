"""Knowledge graphs: triples and entity tables (TSV), the CMeKG import, and TransE/TransH/TransR embeddings.

``kg.io`` and ``kg.cmekg`` are plain Python; the embeddings need torch: ``kg.config`` (hyper-parameters),
``kg.graph`` (ids and the split), ``kg.models`` (TransE/TransH/TransR), ``kg.optimizer`` (sparse Adam/Adagrad),
``kg.training`` (the loop), ``kg.evaluation`` (filtered link prediction) and ``kg.export`` (save and load).
"""

from .io import Entity, KgFormatError, Triple, read_entities, read_triples, write_entities, write_triples

__all__ = ["Entity", "KgFormatError", "Triple", "read_entities", "read_triples", "write_entities", "write_triples"]
