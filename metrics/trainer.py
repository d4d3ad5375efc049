"""Strict entity scores in transformers' ``Trainer`` for a CRF tagger: decode with the CRF, score with
:func:`clinical_ner_zh.metrics.score_entities`.

>>> from clinical_ner_zh.metrics.trainer import CrfEntityMetrics
>>> entity_metrics = CrfEntityMetrics(model)
>>> trainer = Trainer(
...     model=model, args=args, train_dataset=train, eval_dataset=dev, data_collator=collator,
...     compute_metrics=entity_metrics.compute_metrics,
...     preprocess_logits_for_metrics=entity_metrics.preprocess_logits_for_metrics,
... )
>>> trainer.evaluate()  # {"eval_loss": ..., "eval_precision": ..., "eval_recall": ..., "eval_f1": ..., ...}

Labels are written as for ``BertForTokenClassification``: one label id per token, ``-100`` on special tokens,
padding and, usually, the word pieces after a word's first. The model leaves the ``-100`` tokens out of the CRF (as
it leaves out special tokens), so the CRF reads the labelled tokens as one sequence, in training and here.

``preprocess_logits_for_metrics`` runs on each evaluation batch, on its device: it Viterbi-decodes the emissions
over the tokens the CRF scored (the model's ``tag_mask``) and hands on label ids, ``-100`` elsewhere, instead of
the emissions (which never gather across batches; argmax over them would be wrong for a CRF). ``compute_metrics``
reads each sequence's labelled tokens as a tag sequence in the model's label scheme, gold and predicted alike,
turns both into spans (positions of labelled tokens: with first-piece labels, words) and returns the strict micro
``precision``, ``recall`` and ``f1`` of :func:`clinical_ner_zh.metrics.score_entities` (the Trainer logs them as ``eval_f1`` etc.).

Kept out of ``metrics/__init__`` so that ``from clinical_ner_zh import metrics`` (and ``python -m clinical_ner_zh.metrics``) needs neither torch nor
transformers.
"""

from __future__ import annotations

from typing import Any

from clinical_ner_zh.modeling.crf_tagger import IGNORE_INDEX
from clinical_ner_zh.modeling.tagging import tags_to_spans

from .entity_scores import score_entities


class CrfEntityMetrics:
    """The ``compute_metrics`` and ``preprocess_logits_for_metrics`` of a ``Trainer`` for ``model``, a CRF tagger of
    this package (``model.crf`` and a ``forward`` returning ``logits`` and ``tag_mask``); see the module docstring."""

    def __init__(self, model):
        self.model = model
        self.id2label = {int(index): label for index, label in model.config.id2label.items()}
        self.label_scheme = getattr(model.config, "label_scheme", None) or "BIO"

    def preprocess_logits_for_metrics(self, logits, labels):
        """``(batch, seq)`` Viterbi label ids where the CRF scored a token, ``-100`` elsewhere.

        ``logits`` is what the Trainer keeps of the model output: ``(emissions, tag_mask)``. Positions padded
        across processes carry label ``-100`` and are left out."""
        emissions, tag_mask = logits[0], logits[1]
        mask = tag_mask.bool() & (labels != IGNORE_INDEX)
        predictions = labels.new_full(labels.shape, IGNORE_INDEX)
        paths = self.model.crf.decode(emissions, mask)
        predictions[mask] = labels.new_tensor([label for path in paths for label in path])
        return predictions

    def compute_metrics(self, eval_prediction) -> dict[str, float]:
        """Strict micro ``precision``, ``recall`` and ``f1`` over entities of the decoded tokens."""
        gold, predicted = [], []
        for row_predictions, row_labels in zip(eval_prediction.predictions, eval_prediction.label_ids):
            decoded = row_predictions != IGNORE_INDEX
            gold.append(self._spans(row_labels[decoded]))
            predicted.append(self._spans(row_predictions[decoded]))
        micro = score_entities(gold, predicted).micro
        return {"precision": micro.precision, "recall": micro.recall, "f1": micro.f1}

    def _spans(self, label_ids: Any) -> list[tuple[int, int, str]]:
        return tags_to_spans([self.id2label[int(i)] for i in label_ids], self.label_scheme)
