"""Entity-level evaluation of clinical NER over character spans: strict and partial scores, micro and macro, per
type and per class; the same numbers as an ``evaluate`` module and on the command line (``python -m clinical_ner_zh.metrics``).

>>> import evaluate
>>> from clinical_ner_zh import metrics
>>> metric = evaluate.load(metrics.EVALUATE_MODULE_PATH)  # a local path: loads offline

For transformers' ``Trainer`` on a CRF tagger, :class:`clinical_ner_zh.metrics.trainer.CrfEntityMetrics` gives ``compute_metrics`` and
``preprocess_logits_for_metrics`` (CRF decoding, strict entity scores); it imports torch and transformers, so it is
not imported here.
"""

from pathlib import Path

from .entity_scores import EntityReport, Score, Span, SpanLike, format_report, normalize_span, score_entities

#: Directory of the ``evaluate`` module (``evaluate.load`` takes it as a local path, no network needed).
EVALUATE_MODULE_PATH = str(Path(__file__).resolve().parent / "clinical_ner_f1")

__all__ = [
    "EVALUATE_MODULE_PATH",
    "EntityReport",
    "Score",
    "Span",
    "SpanLike",
    "format_report",
    "normalize_span",
    "score_entities",
]
