"""Knowledge graphs: triples and entity tables (TSV), the CMeKG import, and TransE/TransH/TransR embeddings.

``clinical_ner_zh.kg.io`` and ``clinical_ner_zh.kg.cmekg`` are plain Python; the embeddings need torch: ``clinical_ner_zh.kg.config`` (hyper-parameters),
``clinical_ner_zh.kg.graph`` (ids and the split), ``clinical_ner_zh.kg.models`` (TransE/TransH/TransR), ``clinical_ner_zh.kg.optimizer`` (sparse Adam/Adagrad),
``clinical_ner_zh.kg.training`` (the loop), ``clinical_ner_zh.kg.evaluation`` (filtered link prediction) and ``clinical_ner_zh.kg.export`` (save and load).
"""

from .io import Entity, KgFormatError, Triple, read_entities, read_triples, write_entities, write_triples

__all__ = ["Entity", "KgFormatError", "Triple", "read_entities", "read_triples", "write_entities", "write_triples"]
