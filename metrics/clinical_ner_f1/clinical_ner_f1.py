"""Entity-level F1 for Chinese clinical NER over character spans, as an ``evaluate`` module.

Load it from its directory, which works offline (``evaluate.load("seqeval")`` needs the network)::

    import evaluate
    from clinical_ner_zh import metrics
    metric = evaluate.load(metrics.EVALUATE_MODULE_PATH)  # or the path of this folder

The scoring itself lives in the ``clinical-ner-zh`` package (``clinical_ner_zh.metrics.entity_scores``): ``evaluate.load`` copies
this file alone into its module cache, so the file imports the installed package rather than its neighbours.
"""

from collections.abc import Iterable

import datasets
import evaluate

try:
    # Indented on purpose: evaluate scans top-level imports and would ask users to `pip install metrics`, a
    # different package; this way the message below names the right one.
    from clinical_ner_zh.metrics.entity_scores import normalize_span, score_entities
except ImportError as error:
    raise ImportError(
        "the clinical_ner_f1 metric needs the clinical-ner-zh package (its `clinical_ner_zh.metrics` module): install it with "
        "`pip install -e <path to the clinical-ner-zh repository>` in this environment"
    ) from error

_CITATION = """\
@article{chen2025chinese,
  title   = {Named Entity Recognition for Chinese Cancer Electronic Health Records},
  author  = {Chen and others},
  journal = {JMIR Medical Informatics},
  volume  = {13},
  pages   = {e76912},
  year    = {2025}
}
"""

_DESCRIPTION = """\
Entity-level precision, recall and F1 over character spans of whole records. Strict scores count a predicted span
as correct when start, end and type equal a gold span's; they equal seqeval's strict IOB2 scores where both apply.
Also reported: micro and macro averages, per-type scores with support, per-class scores when a type -> class
mapping is given, and two partial scores (boundary overlap with the right type; exact boundary with any type),
each a one-to-one maximum matching. Nested and overlapping entities are scored as they are.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: for each record, a list of predicted entities, dicts with `start`, `end` (character offsets, end
        exclusive) and `label` or `entity_group` (pipeline output can be passed as it is; other keys are ignored).
    references: for each record, in the same order, a list of gold entities in the same form.
    entity_types: optional list of types to report first and in this order, even without support.
    classes: optional mapping type -> class or class -> list of types, for per-class scores.
Returns:
    A dict: `micro`, `macro`, `type_overlap`, `exact_boundary` (each with precision, recall, f1, true_positives,
    predicted, support), `per_type`, `type_overlap_per_type`, `per_class` (name -> the same), `num_records`,
    `unclassified_types`. Ratios with a zero denominator are 0.0.
Examples:
    >>> metric = evaluate.load("path/to/metrics/clinical_ner_f1")
    >>> gold = [[{"start": 0, "end": 2, "label": "药物"}]]
    >>> pred = [[{"start": 0, "end": 2, "entity_group": "药物", "score": 0.9}]]
    >>> metric.compute(predictions=pred, references=gold)["micro"]["f1"]
    1.0
"""

# evaluate checks every span dict against the features key by key and rejects a missing or an extra key, so
# spans are normalised to exactly these keys before they reach it (add and add_batch below): gold spans
# ({label}) and pipeline output ({entity_group, score, word, ...}) are then both accepted as they are.
_SPAN_KEYS = ("start", "end", "label")
_SPAN = {"start": datasets.Value("int64"), "end": datasets.Value("int64"), "label": datasets.Value("string")}


def _to_schema(spans: Iterable, where: str) -> list[dict]:
    """One record's spans as dicts with exactly the keys of ``_SPAN``; errors name offsets, never text."""
    return [
        dict(zip(_SPAN_KEYS, normalize_span(span, f"{where}, span {index}"), strict=True))
        for index, span in enumerate(spans)
    ]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClinicalNerF1(evaluate.Metric):
    """Strict and partial entity-level scores; see ``clinical_ner_zh.metrics.entity_scores`` for the exact counting."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.List(_SPAN), "references": datasets.List(_SPAN)}),
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """As :meth:`evaluate.Metric.add_batch`, after normalising every span (``compute`` goes through here)."""
        if predictions is not None:
            predictions = [_to_schema(spans, f"predictions[{i}]") for i, spans in enumerate(predictions)]
        if references is not None:
            references = [_to_schema(spans, f"references[{i}]") for i, spans in enumerate(references)]
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """As :meth:`evaluate.Metric.add`, after normalising every span."""
        prediction = None if prediction is None else _to_schema(prediction, "prediction")
        reference = None if reference is None else _to_schema(reference, "reference")
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(
        self,
        predictions: list[list[dict]],
        references: list[list[dict]],
        entity_types: list[str] | None = None,
        classes: dict | None = None,
    ) -> dict:
        report = score_entities(references, predictions, entity_types=entity_types, classes=classes)
        return report.to_dict()
