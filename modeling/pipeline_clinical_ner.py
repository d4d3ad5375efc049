"""The ``clinical-ner`` pipeline: CRF decoding over overlapping windows, entities with character offsets.

>>> from transformers import pipeline
>>> ner = pipeline("clinical-ner", model="path/or/repo", trust_remote_code=True)
>>> ner("患者2019年3月行左乳腺癌改良根治术。")
[{'entity_group': 'Time', 'score': 0.98, 'word': '2019年3月', 'start': 2, 'end': 9}, ...]

How a text is tagged:

1. It is tokenized once without special tokens, with ``offset_mapping`` (any fast tokenizer: the project's character
   tokenizer, or a WordPiece one whose ASCII runs are single tokens and whose whitespace gives no token).
2. :class:`tagging.WindowPlanner` (the planner training uses too) covers the tokens with windows of
   ``max_length`` tokens less the special ones that overlap by ``stride`` tokens; each window gets the special tokens
   where the tokenizer puts them (``[CLS] x [SEP]`` for BERT, ``x <sep> <cls>`` for XLNet) and the token type ids
   it gives them (XLNet's ``<cls>``: segment 2). Windows of all the texts of a call are batched together,
   ``batch_size`` windows at a time, the texts longest first.
3. Each window is Viterbi-decoded by the model's CRF (``model.crf.decode(logits, tag_mask)``, never argmax) and the
   CRF marginals (``model.crf.marginals``) give each token the probability of its decoded label. Only the decoded
   labels and those probabilities are kept, never the logits, so memory stays flat on long records.
4. :func:`tagging.merge_windows` joins consecutive windows at a cut in their overlap where they agree (no entity
   crosses it, or both continue the same entity across it), near the tokens' most context
   (:func:`tagging.window_owners`). Every entity is therefore one that a window decoded, or one stitched where the
   windows on both sides continue it: an entity crossing a window edge comes out whole when a window sees it whole
   or the windows agree across the overlap, and windows that disagree never invent an entity neither decoded.
   :func:`tagging.token_to_char_spans` turns the entities into character spans.

Each entity is ``{"entity_group", "score", "word", "start", "end"}`` plus ``"class"`` when the config maps entity
types to classes. ``start``/``end`` are character offsets into the input string (end exclusive) and
``word == text[start:end]``. **Score**: the mean, over the entity's tokens, of the CRF marginal probability of the
label the Viterbi path gave that token (each token's marginal from the window it was read from). It is in ``(0, 1]``;
1 means the model puts all probability mass on those labels.

Config attributes read: ``id2label``, ``label_scheme`` (``"BIO"`` by default, or ``"BIOES"``), ``label_classes``
(optional ``{entity type: class}``, e.g. ``{"Nodule": "Symptoms"}``), the encoder's ``max_position_embeddings``
(and ``pad_token_id`` for RoBERTa-like encoders: ``max_input_length``) and the window the model was trained with,
``window_max_length`` and ``window_stride`` (optional): by default the pipeline tags with the training windows,
so that it runs on the positions training used and reproduces the scores training recorded.

**Hook for models that need extra per-token inputs** (family B's lexicon features): if the model has a method
``text_features(text: str, offsets: list[tuple[int, int]]) -> dict[str, list[int]]``, the pipeline calls it once
per input text, with the text and the character offsets of all its tokens (step 1), and expects one integer per
token under each key. Each window takes its tokens' slice of those values, ``0`` at ``[CLS]``, ``[SEP]`` and
padding, passed to the model as ``long`` tensors ``(batch, seq)`` under those keys. Computing them once per text
keeps the cost per character flat on long records (per window, a whole-text lexicon scan made it grow with the
number of windows); training computes them the same way (``clinical_ner_zh.datasets_scripts.encoding.WindowEncoder``).

The model must be a CRF tagger: ``model.crf`` and a ``forward`` returning ``logits`` (CRF emissions) and
``tag_mask``; ``special_tokens_mask`` is passed when ``forward`` takes it.

The standard task works too, with transformers' output format and arguments (:class:`CrfTokenClassificationPipeline`:
``aggregation_strategy``, ``ignore_labels``), decoded the same way:

>>> tagger = pipeline("token-classification", model="path/or/repo", trust_remote_code=True, aggregation_strategy="simple")

This file ships inside every model repository (``config.json`` names it in ``custom_pipelines`` for
``clinical-ner``, ``token-classification`` and ``ner``): it imports the standard library, torch, transformers and
sibling files only. :func:`save_for_hub` writes a complete repository. Importing it (which importing a model class
does) lets ``pipeline(task, model=<model object>, tokenizer=...)`` choose these classes too (:func:`register_pipeline`).
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.pt_utils import PipelineChunkIterator, PipelineIterator, PipelinePackIterator
from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

from .configuration_crf_tagger import (
    PIPELINE_CLASS_NAMES,
    check_input_length,
    clinical_ner_custom_pipelines,
    max_input_length,
)
from .display import EntityView, render_entities
from .tagging import (
    OUTSIDE,
    Span,
    WindowPlanner,
    merge_windows,
    spans_to_tags,
    special_token_layout,
    tags_to_spans,
    token_to_char_spans,
)

logger = logging.getLogger(__name__)

TASK = "clinical-ner"
#: Fallback when neither the tokenizer nor the config gives a usable maximum length.
DEFAULT_MAX_LENGTH = 512
#: Tokenizers without a real limit report a huge ``model_max_length`` (``int(1e30)``): ignore such values.
_NO_LIMIT = 1_000_000


#: Values of the ``quantize`` argument: ``"int8"`` (:func:`quantize_model`) and ``"bf16"`` (:func:`check_bf16`).
QUANTIZE_CHOICES = ("int8", "bf16")
#: CPU features with native bfloat16 arithmetic, as ``torch.cpu.get_capabilities()`` names them (x86: AVX-512 BF16,
#: AMX; Arm: FEAT_BF16, SVE BF16). Without them oneDNN emulates bfloat16, slower than float32.
_BF16_CAPABILITIES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


@dataclass
class _Document:
    """One input text, tokenized once and shared by all its windows (never copied into batches)."""

    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]  # the tokenizer's word of each token (its pre-tokenizer's split)
    features: dict[str, list[int]]  # model.text_features of the whole text, one value per token

    @property
    def num_tokens(self) -> int:
        return len(self.offsets)


@dataclass
class _Window:
    """Tokens ``[start, end)`` of a document; not a list or dict, so the pipeline passes it through untouched."""

    document: _Document
    start: int
    end: int


class ClinicalNerPipeline(ChunkPipeline):
    """Named-entity recognition with a CRF tagger over texts of any length (see the module docstring).

    Call parameters (also accepted by ``pipeline(...)``):
        max_length: tokens per window including ``[CLS]`` and ``[SEP]``; defaults to the config's
            ``window_max_length`` (the training windows), else to the smaller of the tokenizer's ``model_max_length``
            and the config's ``max_input_length`` (the tokens the encoder takes).
        stride: tokens shared by consecutive windows; defaults to the config's ``window_stride`` when ``max_length``
            is the training one, else to a quarter of the window, at least 2.
    ``batch_size`` counts windows (of one or several texts); ``device`` works as in every transformers pipeline.
    A list of texts is tagged in order of length, so that a batch holds windows of similar lengths and little padding;
    the results come back in input order.

    Construction parameter (``pipeline("clinical-ner", model=..., quantize="int8")``), CPU only:
        quantize: ``"int8"`` tags with a dynamically quantized copy of the model (:func:`quantize_model`; the model
            passed in is left as it is). ``"bf16"`` runs the model's forward (encoder and heads) under
            ``torch.autocast("cpu", dtype=torch.bfloat16)`` and casts the emissions back to float32, so that the
            CRF decodes and computes marginals in float32; weights stay float32. It is refused where the CPU has no
            native bfloat16 arithmetic (:func:`check_bf16`). ``None`` (the default) tags in float32.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, quantize: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(getattr(self.model, "crf", None), torch.nn.Module):
            raise ValueError(
                f"the clinical-ner pipeline needs a CRF tagger (a model with a `crf` module), got "
                f"{type(self.model).__name__}"
            )
        if self.tokenizer is None or not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("the clinical-ner pipeline needs a fast tokenizer (it aligns entities through offsets)")
        # Window inputs the model's forward does not take are left out. Those it takes include the tokenizer's
        # segment ids, as in the training windows: BERT reads None as zeros, but XLNet would skip its segment term,
        # and its <cls> is in a segment of its own.
        parameters = inspect.signature(self.model.forward).parameters
        self._unused_inputs = {"special_tokens_mask", "token_type_ids"} - set(parameters)
        self._text_features = getattr(self.model, "text_features", None)
        config = self.model.config
        self.id2label = {int(index): label for index, label in config.id2label.items()}
        self.label_scheme = getattr(config, "label_scheme", None) or "BIO"
        self.label_classes = dict(getattr(config, "label_classes", None) or {})
        # Each window's special tokens where the tokenizer puts them: [CLS] x [SEP] (BERT), x <sep> <cls> (XLNet).
        self._layout = special_token_layout(self.tokenizer)
        self._bf16 = quantize == "bf16"
        if quantize is not None:
            if quantize not in QUANTIZE_CHOICES:
                raise ValueError(f"quantize must be one of {list(QUANTIZE_CHOICES)} or None, got {quantize!r}")
            if self.device.type != "cpu":
                raise ValueError(f"quantize={quantize!r} runs on the CPU only, got device {self.device}")
            if self._bf16:
                check_bf16()
            else:
                self.model = quantize_model(self.model, quantize)

    def __call__(self, inputs, **kwargs):
        """Entities of one text (a list of entity dicts) or of each text of a list (a list of such lists)."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []  # the base class looks at inputs[0] to detect chat messages
        if isinstance(inputs, list) and all(isinstance(text, str) for text in inputs):
            # Longest first: windows of consecutive texts share batches, so similar lengths mean little padding.
            order = sorted(range(len(inputs)), key=lambda index: -len(inputs[index]))
            results = super().__call__([inputs[index] for index in order], **kwargs)
            in_order = [None] * len(inputs)
            for index, result in zip(order, results):
                in_order[index] = result
            return in_order
        return super().__call__(inputs, **kwargs)

    # ------------------------------------------------------------------ parameters

    def _default_max_length(self) -> int:
        limits = [
            value
            for value in (
                getattr(self.tokenizer, "model_max_length", None),
                max_input_length(self.model.config),
            )
            if isinstance(value, int) and 0 < value < _NO_LIMIT
        ]
        return min(limits) if limits else DEFAULT_MAX_LENGTH

    def _sanitize_parameters(self, max_length: int | None = None, stride: int | None = None):
        preprocess = {}
        if max_length is not None:
            preprocess["max_length"] = max_length
        if stride is not None:
            preprocess["stride"] = stride
        return preprocess, {}, {}

    def _window_plan(self, max_length: int | None, stride: int | None) -> tuple[int, int]:
        config = self.model.config
        trained = getattr(config, "window_max_length", None)
        if max_length is None:
            max_length = trained or self._default_max_length()
        if stride is None and max_length == trained:
            stride = getattr(config, "window_stride", None)
        check_input_length(config, "max_length", max_length)
        window = max_length - len(self._layout.special_ids)
        if window < 1:
            raise ValueError(f"max_length must leave room for at least one token, got {max_length}")
        if stride is None:
            stride = min(window - 1, max(2, window // 4))
        if not 0 <= stride < window:
            raise ValueError(f"stride must be in [0, {window}) for windows of {window} tokens, got {stride}")
        if stride < 2 and window > 2:
            logger.warning("stride %d < 2: an entity crossing a window edge may be split", stride)
        return window, stride

    # ------------------------------------------------------------------ the three steps

    def preprocess(self, text: str, max_length: int | None = None, stride: int | None = None):
        if not isinstance(text, str):
            raise TypeError(f"the clinical-ner pipeline takes a string or a list of strings, got {type(text).__name__}")
        planner = WindowPlanner(*self._window_plan(max_length, stride), self._layout)
        encoding = self.tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
            verbose=False,  # a long record exceeds model_max_length on purpose: it is cut into windows below
        )
        offsets = [tuple(pair) for pair in encoding["offset_mapping"]]
        document = _Document(
            text,
            encoding["input_ids"],
            offsets,
            encoding.word_ids(),
            self._features(text, offsets),
        )
        del encoding
        plan = planner.plan(document.num_tokens)
        for index, (start, end) in enumerate(plan):
            yield {**self._window_inputs(planner, document, start, end), "is_last": index == len(plan) - 1}

    def _features(self, text: str, offsets: list[tuple[int, int]]) -> dict[str, list[int]]:
        """The model's extra per-token inputs for the whole text (see the hook in the module docstring)."""
        if self._text_features is None:
            return {}
        features = {}
        for key, values in self._text_features(text, offsets).items():
            if len(values) != len(offsets):
                raise ValueError(
                    f"model.text_features returned {len(values)} values for {key!r}, expected one per token "
                    f"({len(offsets)})"
                )
            features[key] = list(values)
        return features

    def _window_inputs(self, planner: WindowPlanner, document: _Document, start: int, end: int) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            key: torch.tensor([values], dtype=torch.long)
            for key, values in planner.inputs(document.input_ids, start, end, document.features).items()
            if key not in self._unused_inputs
        }
        inputs["window"] = _Window(document, start, end)
        return inputs

    def get_inference_context(self):
        # No autograd bookkeeping at all (transformers' pipelines use no_grad): nothing here is ever trained.
        return torch.inference_mode

    def _forward(self, model_inputs: dict[str, Any], keep_marginals: bool = False) -> dict[str, Any]:
        window, is_last = model_inputs.pop("window"), model_inputs.pop("is_last")
        if self._bf16:
            # Not with _OneDnnLinear: it would catch F.linear before autocast does and keep it in float32.
            context = torch.autocast("cpu", dtype=torch.bfloat16)
        elif _OneDnnLinear.applies(self.device):
            context = _OneDnnLinear()
        else:
            context = contextlib.nullcontext()
        with context:
            output = self.model(**model_inputs, return_dict=True)  # whatever the config's return_dict says
        # shape: (batch, seq, num_labels), CRF emissions; float32 (bfloat16 under autocast: the CRF's sums of
        # exponentials over a whole window need float32's mantissa)
        emissions = output.logits.float()
        tag_mask = getattr(output, "tag_mask", None)
        if tag_mask is None:
            tag_mask = model_inputs["attention_mask"].bool()
            if "special_tokens_mask" in model_inputs:
                tag_mask = tag_mask & ~model_inputs["special_tokens_mask"].bool()
        paths = self.model.crf.decode(emissions, tag_mask)
        # shape: (batch, seq); the decoded label id of each tagged position, -1 elsewhere
        labels = torch.full(tag_mask.shape, -1, dtype=torch.long, device=emissions.device)
        flat = [label for path in paths for label in path]
        labels[tag_mask] = torch.tensor(flat, dtype=torch.long, device=emissions.device)
        marginals = self.model.crf.marginals(emissions, tag_mask)  # shape: (batch, seq, num_labels)
        # shape: (batch, seq); marginal probability of the decoded label, 0 off the tag mask
        probabilities = marginals.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2) * (labels >= 0)
        output = {"labels": labels, "probabilities": probabilities.float(), "window": window, "is_last": is_last}
        if keep_marginals:
            output["marginals"] = marginals.float()
        return output

    @property
    def _prefix(self) -> int:
        """Position of a window's first text token: the number of special tokens before it (1 after BERT's
        ``[CLS]``, 0 for XLNet whose ``<sep> <cls>`` come after the text)."""
        return len(self._layout.prefix)

    def _merge(self, window_outputs: list[dict[str, Any]]) -> tuple[_Document, list[Span], list[tuple[int, int]]]:
        """The document, its entities as token spans (:func:`tagging.merge_windows`), and for each token the window
        it is read from and its position there."""
        document = window_outputs[0]["window"].document
        windows = [(item["window"].start, item["window"].end) for item in window_outputs]
        window_tags = []
        for item, (start, end) in zip(window_outputs, windows):
            ids = item["labels"][0, self._prefix : self._prefix + end - start].tolist()
            window_tags.append([self.id2label[i] if i >= 0 else OUTSIDE for i in ids])
        token_spans, sources = merge_windows(windows, window_tags, document.num_tokens, self.label_scheme)
        read_from = [(w, self._prefix + t - windows[w][0]) for t, w in enumerate(sources)]
        return document, token_spans, read_from

    def _entity(self, document: _Document, token_span: Span, scores: list[float]) -> dict[str, Any]:
        """An entity dict for tokens ``[start, end)``, its score the mean of ``scores``."""
        ((start, end, label),) = token_to_char_spans([token_span], document.offsets)
        entity = {
            "entity_group": label,
            "score": sum(scores) / len(scores),
            "word": document.text[start:end],
            "start": start,
            "end": end,
        }
        if label in self.label_classes:
            entity["class"] = self.label_classes[label]
        return entity

    def postprocess(self, window_outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        document, token_spans, read_from = self._merge(window_outputs)
        return [
            # Each token's probability from the window it was read from.
            self._entity(
                document,
                (start, end, label),
                [float(window_outputs[w]["probabilities"][0, p]) for w, p in read_from[start:end]],
            )
            for start, end, label in token_spans
        ]

    # ------------------------------------------------------------------ batching

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As ``ChunkPipeline``: windows of consecutive texts are batched together and regrouped per text.

        Batches are always right-padded (the tokenizer's ``padding_side`` is ignored: BERT's absolute positions
        must not move), so that a window gives the same result in any batch.
        """
        if "TOKENIZERS_PARALLELISM" not in os.environ:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        if num_workers > 1:
            logger.warning(
                "the clinical-ner pipeline reads its windows in one worker; num_workers=%d ignored", num_workers
            )
            num_workers = 1
        dataset = PipelineChunkIterator(inputs, self.preprocess, preprocess_params)
        collate = _single if batch_size == 1 else self._collate
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        model_iterator = PipelinePackIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        pad_values = {"input_ids": self.tokenizer.pad_token_id or 0, "special_tokens_mask": 1}
        length = max(item["input_ids"].shape[1] for item in items)
        batch: dict[str, Any] = {}
        for key, value in items[0].items():
            if isinstance(value, torch.Tensor):
                padded = torch.full((len(items), length), pad_values.get(key, 0), dtype=value.dtype)
                for row, item in enumerate(items):
                    padded[row, : item[key].shape[1]] = item[key][0]
                batch[key] = padded
            else:
                batch[key] = [item[key] for item in items]
        return batch

    # ------------------------------------------------------------------ conveniences

    def render(self, text: str, **kwargs) -> EntityView:
        """Tag ``text`` and return its notebook view (see :mod:`display`), colours in the config's label order."""
        types = [label.partition("-")[2] for label in self.id2label.values() if label != OUTSIDE]
        return render_entities(text, self(text, **kwargs), labels=list(dict.fromkeys(types)))


class CrfTokenClassificationPipeline(ClinicalNerPipeline):
    """transformers' ``token-classification`` task (alias ``ner``) for a CRF tagger: the output format of
    :class:`transformers.TokenClassificationPipeline`, read from the path ``clinical-ner`` decodes (same windows,
    Viterbi decoding and merge), never from the argmax of the emissions.

    Each token takes its label on the merged CRF path (the ``clinical-ner`` entities written in the label scheme)
    and, as score, the CRF marginal probability of that label in the window it was read from.

    Call parameters, besides those of ``clinical-ner`` (``max_length``, ``stride``; ``batch_size``, ``device``):
        aggregation_strategy: ``"none"`` (the default, as in transformers): one dict per token,
            ``{"entity", "score", "index", "word", "start", "end"}``, ``index`` its position in
            ``tokenizer(text)["input_ids"]`` and ``word`` the token. ``"simple"``: entity groups
            ``{"entity_group", "score", "word", "start", "end"}`` (plus ``"class"``, as ``clinical-ner``): the
            ``clinical-ner`` entities, each scored by the mean of its tokens' scores. ``"first"``, ``"average"``,
            ``"max"``: groups as ``"simple"``, except that a word (a word of the tokenizer's pre-tokenizer: with
            WordPiece a run of ASCII letters and digits, each CJK character alone) is never split between groups.
            Its tokens take one label, chosen among the labels the CRF gave them: the first token's, the one with
            the highest marginal probability averaged over the word's tokens, or the label of its most probable
            token; the word's score is that probability. Groups are read from the labels leniently, as
            :func:`tagging.tags_to_spans` reads them.
        ignore_labels: labels left out, ``["O"]`` by default (compared with ``entity`` per token, ``entity_group``
            per group; without ``"O"``, the runs outside entities come out as ``"O"`` groups).

    It keeps each window's marginal probabilities (``(seq, num_labels)``, as the standard pipeline keeps logits),
    which ``clinical-ner`` does not need.
    """

    def _sanitize_parameters(
        self,
        max_length: int | None = None,
        stride: int | None = None,
        aggregation_strategy: str | AggregationStrategy | None = None,
        ignore_labels: list[str] | None = None,
    ):
        preprocess, _, _ = super()._sanitize_parameters(max_length=max_length, stride=stride)
        postprocess = {}
        if aggregation_strategy is not None:
            if isinstance(aggregation_strategy, str):
                aggregation_strategy = aggregation_strategy.lower()
            postprocess["aggregation_strategy"] = AggregationStrategy(aggregation_strategy)
        if ignore_labels is not None:
            postprocess["ignore_labels"] = list(ignore_labels)
        return preprocess, {"keep_marginals": True}, postprocess

    def postprocess(
        self,
        window_outputs: list[dict[str, Any]],
        aggregation_strategy: AggregationStrategy = AggregationStrategy.NONE,
        ignore_labels: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        ignore_labels = [OUTSIDE] if ignore_labels is None else ignore_labels
        document, token_spans, read_from = self._merge(window_outputs)
        label2id = {label: index for index, label in self.id2label.items()}

        def probability(token: int, label: str) -> float:
            window, position = read_from[token]
            return float(window_outputs[window]["marginals"][0, position, label2id[label]])

        tags = spans_to_tags(token_spans, document.num_tokens, self.label_scheme)
        scores = [probability(token, tag) for token, tag in enumerate(tags)]
        if aggregation_strategy == AggregationStrategy.NONE:
            tokens = self.tokenizer.convert_ids_to_tokens(document.input_ids)
            entities = [
                {
                    "entity": tag,
                    "score": score,
                    "index": self._prefix + token,
                    "word": tokens[token],
                    "start": document.offsets[token][0],
                    "end": document.offsets[token][1],
                }
                for token, (tag, score) in enumerate(zip(tags, scores))
            ]
            return [entity for entity in entities if entity["entity"] not in ignore_labels]
        # Units to group: tokens ("simple") or words, each (first token, end token, label, score).
        if aggregation_strategy == AggregationStrategy.SIMPLE:
            units = [(token, token + 1, tag, score) for token, (tag, score) in enumerate(zip(tags, scores))]
        else:
            units = []
            for start, end in _word_ranges(document.word_ids):
                if aggregation_strategy == AggregationStrategy.FIRST:
                    tag, score = tags[start], scores[start]
                elif aggregation_strategy == AggregationStrategy.MAX:
                    best = max(range(start, end), key=scores.__getitem__)
                    tag, score = tags[best], scores[best]
                else:  # AVERAGE
                    averages = {
                        tag: sum(probability(t, tag) for t in range(start, end)) / (end - start)
                        for tag in dict.fromkeys(tags[start:end])
                    }
                    tag = max(averages, key=averages.__getitem__)
                    score = averages[tag]
                units.append((start, end, tag, score))
        unit_tags = [tag for _, _, tag, _ in units]
        groups = tags_to_spans(unit_tags, self.label_scheme)
        groups += [(start, end, OUTSIDE) for start, end in _runs(unit_tags, OUTSIDE)]
        return [
            self._entity(document, (units[start][0], units[end - 1][1], label), [u[3] for u in units[start:end]])
            for start, end, label in sorted(groups)
            if label not in ignore_labels
        ]


class _OneDnnLinear(TorchFunctionMode):
    """Runs ``F.linear`` on float32 CPU tensors with oneDNN's kernel instead of aten's, which calls MKL's sgemm.

    On the AMD EPYC CPUs this was measured on, MKL's sgemm ran at about half the speed of oneDNN's (one thread, a
    BERT-base feed-forward product of 4,096 tokens: 0.54 s against 0.27 s), and linear layers are most of an
    encoder's time (``benchmarks/pipeline_speed.py`` shows both kernels).
    Same arithmetic in another order: scores move in the 7th decimal, never the entities on the benchmark's
    records. Anything else (another dtype or device, autograd) goes to aten unchanged.
    """

    @staticmethod
    def applies(device: torch.device) -> bool:
        return (
            device.type == "cpu"
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            inputs, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if (
                inputs.device.type == "cpu"
                and inputs.dtype == weight.dtype == torch.float32
                and inputs.dim() >= 2
                and not torch.is_grad_enabled()
            ):
                return torch.ops.mkldnn._linear_pointwise(inputs, weight, bias, "none", [], "")
        return func(*args, **kwargs)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse, in a process that tags batch after batch on the CPU.

    By default glibc hands a block of more than 32 MiB to the program as a fresh mapping and gives it back to the
    operating system when it is freed, so every batch faults its activations' pages in again, zero-filled: on a
    base-size model at batch 8 (feed-forward activations of 50 MB) an int8 feed-forward layer took 76 ms instead
    of 31 ms. Raising malloc's mmap and trim thresholds to 1 GiB serves such blocks from the heap and keeps them
    there when freed; the process's resident memory then stays near its peak instead of shrinking between batches.
    Process-wide, so the pipeline never calls it: ``predict.py`` does. In a notebook call it once, or set
    ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824`` before Python starts. Returns False,
    changing nothing, where the C library is not glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
    if not hasattr(libc, "gnu_get_libc_version"):  # musl, for one
        return False
    threshold = 1 << 30
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(libc.mallopt(m_trim_threshold, threshold))


def check_bf16() -> None:
    """Raise ``ValueError`` unless this CPU has native bfloat16 arithmetic (``quantize="bf16"``).

    torch would run bfloat16 anyway, through oneDNN's emulation on AVX-512 CPUs without BF16 instructions or aten's
    reference kernels elsewhere, slower than float32: so the option is refused there rather than quietly slow. The
    check reads ``torch.cpu.get_capabilities()``; a torch without it (older releases) falls back to oneDNN's own check,
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, which also accepts emulation.
    """
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        supported = any(capabilities.get(name, False) for name in _BF16_CAPABILITIES)
        cpu = capabilities.get("cpu_name") or capabilities.get("architecture", "this CPU")
    else:
        supported = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        cpu = "this CPU"
    if not supported:
        raise ValueError(
            f"quantize='bf16' needs a CPU with native bfloat16 arithmetic (one of {', '.join(_BF16_CAPABILITIES)}); "
            f"{cpu} has none, so bfloat16 would be emulated and slower than float32: use quantize='int8' or None"
        )


def quantize_model(model: torch.nn.Module, scheme: str) -> torch.nn.Module:
    """A copy of ``model`` for CPU inference with int8 weights (``scheme="int8"``): torch's dynamic quantization of
    every ``nn.Linear`` (weights int8 per tensor, activations quantized on the fly per batch), and every plain 1-D
    convolution (the DGCNN's) as the linear layer it is over each position's receptive field
    (:class:`_QuantizedConv1d`), since dynamic quantization has no convolution. The CRF stays in float32, and so
    do the LSTMs: torch's quantized LSTM steps through time op by op, and on the small trained family-A model of
    ``benchmarks/quantization.py`` (hidden 128) it took 3.3 times as long as oneDNN's float32 LSTM (379 ms against
    115 ms over 200 records, one thread). ``model`` itself is not changed.

    ``torch.ao.quantization.quantize_dynamic`` still works in torch 2.13 but warns that it is deprecated in favour
    of torchao, which a model repository cannot import (remote code imports torch and transformers only); its
    warnings are silenced, since they say nothing about the user's code.
    """
    if scheme == "bf16":
        raise ValueError(
            "quantize_model takes 'int8' only: bf16 needs no copy (the pipeline runs the model under autocast)"
        )
    if scheme != "int8":
        raise ValueError(f"quantize must be one of ['int8'] or None, got {scheme!r}")
    quantized = _quantize_dynamic(model, {torch.nn.Linear})
    for name, module in list(quantized.named_modules()):
        if _QuantizedConv1d.takes(module):
            parent, _, child = name.rpartition(".")
            setattr(quantized.get_submodule(parent), child, _QuantizedConv1d(module))
    return quantized


def _quantize_dynamic(model: torch.nn.Module, types: set[type]) -> torch.nn.Module:
    """torch's dynamic int8 quantization of ``types`` in a copy of ``model``, its deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, types, dtype=torch.qint8)


class _QuantizedConv1d(torch.nn.Module):
    """A ``Conv1d`` (stride 1, zero padding, one group) run as a dynamically quantized int8 linear layer.

    Output position ``t`` is ``weight`` (``out x in x kernel``) applied to the ``kernel`` input positions
    ``t - padding + j * dilation``, flattened: the layer stacks those shifted copies of the input (``in * kernel``
    features per position) and multiplies them by the flattened weight. Measured with one thread on the DGCNN of a
    base-size model (768 channels, batch 4 x 512): 60 ms a layer for oneDNN's float32 convolution, 24 ms for this.
    """

    def __init__(self, conv: torch.nn.Conv1d):
        super().__init__()
        out_channels, in_channels, self.kernel_size = conv.weight.shape
        self.dilation, self.padding = conv.dilation[0], conv.padding[0]
        linear = torch.nn.Linear(in_channels * self.kernel_size, out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.reshape(out_channels, -1))
            if conv.bias is not None:
                linear.bias.copy_(conv.bias)
        self.linear = _quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear})[0]

    @staticmethod
    def takes(module: torch.nn.Module) -> bool:
        return (
            type(module) is torch.nn.Conv1d
            and module.stride == (1,)
            and module.groups == 1
            and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # shape: (batch, in_channels, seq) in and (batch, out_channels, seq) out, as Conv1d
        batch = inputs.size(0)
        padded = torch.nn.functional.pad(inputs, (self.padding, self.padding))
        seq_out = padded.size(2) - self.dilation * (self.kernel_size - 1)
        # shape: (batch, in_channels, seq_out, kernel), the receptive field of each output position
        fields = torch.stack(
            [padded[:, :, j * self.dilation : j * self.dilation + seq_out] for j in range(self.kernel_size)], dim=3
        )
        return self.linear(fields.transpose(1, 2).reshape(batch, seq_out, -1)).transpose(1, 2)


def _word_ranges(word_ids: list[int | None]) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of consecutive tokens of the same word (a token of no word is one alone)."""
    ranges: list[tuple[int, int]] = []
    for token, word in enumerate(word_ids):
        if ranges and word is not None and word == word_ids[token - 1]:
            ranges[-1] = (ranges[-1][0], token + 1)
        else:
            ranges.append((token, token + 1))
    return ranges


def _runs(tags: list[str], tag: str) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of ``tag``."""
    runs: list[tuple[int, int]] = []
    for position, value in enumerate(tags):
        if value != tag:
            continue
        if runs and runs[-1][1] == position:
            runs[-1] = (runs[-1][0], position + 1)
        else:
            runs.append((position, position + 1))
    return runs


#: The pipeline class of each task a CRF tagger serves; a model's ``pipeline_classes`` (see :class:`_TaskDispatch`).
#: Named in the torch-free config file, which writes them into ``custom_pipelines``.
PIPELINE_CLASSES = {
    task: {cls.__name__: cls for cls in (ClinicalNerPipeline, CrfTokenClassificationPipeline)}[name]
    for task, name in PIPELINE_CLASS_NAMES.items()
}


class _TaskDispatch:
    """What transformers' pipeline registry holds for ``clinical-ner`` and ``token-classification`` once this file is
    imported (:func:`register_pipeline`).

    ``pipeline(task, model=<model object>)`` reads no ``custom_pipelines`` (only ``pipeline(task, model=PATH)``
    does), so a CRF tagger object would get ``KeyError: Unknown task`` for ``clinical-ner`` and the argmax of its
    emissions from the standard ``token-classification``. A model gets the class its own code names for the task
    (``model.pipeline_classes``, this file's copy as it shipped with the model); any other model gets transformers'
    ``TokenClassificationPipeline`` (or, for ``clinical-ner``, the refusal of :class:`ClinicalNerPipeline`).
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __new__(cls, model, task: str = "", **kwargs):
        fallback = ClinicalNerPipeline if task == TASK else TokenClassificationPipeline
        pipeline_class = getattr(model, "pipeline_classes", {}).get(task, fallback)
        return pipeline_class(model=model, task=task, **kwargs)


def _single(items: list[dict[str, Any]]) -> dict[str, Any]:
    (item,) = items
    return item


def register_pipeline() -> None:
    """Make ``pipeline("clinical-ner" or "token-classification", model=<model object>, tokenizer=...)`` choose the
    CRF pipelines for a CRF tagger (see :class:`_TaskDispatch`). Run when this file is imported, which importing
    either model class does; calling it again is harmless."""
    from transformers.pipelines import PIPELINE_REGISTRY

    # Written into the registry directly: PIPELINE_REGISTRY.register_pipeline would warn that token-classification
    # is overwritten, though every model but a CRF tagger keeps the standard class.
    tasks = PIPELINE_REGISTRY.supported_tasks
    tasks[TASK] = {"impl": _TaskDispatch, "pt": (AutoModelForTokenClassification,), "type": "text"}
    tasks["token-classification"] = {**tasks["token-classification"], "impl": _TaskDispatch}


def pipeline_files() -> list[Path]:
    """This file and the sibling files it imports: what a model repository needs to run the pipeline."""
    return [Path(__file__), *(Path(name) for name in get_relative_import_files(__file__))]


def save_for_hub(model, tokenizer, folder: str | os.PathLike, **save_kwargs) -> Path:
    """Write a complete model repository to ``folder``: weights, config with ``auto_map`` and ``custom_pipelines``,
    the model's ``.py`` files, the tokenizer, and the pipeline's files.

    ``model.save_pretrained`` alone keeps ``custom_pipelines`` in the config but copies only the files the model
    imports; this adds the pipeline's. ``save_kwargs`` go to ``model.save_pretrained`` (e.g.
    ``save_function=accelerator.save``). Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    custom = dict(getattr(model.config, "custom_pipelines", None) or {})
    custom.update(clinical_ner_custom_pipelines())
    model.config.custom_pipelines = custom
    model.save_pretrained(folder, **save_kwargs)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    for path in pipeline_files():
        target = folder / path.name
        if not target.exists() or target.resolve() != path.resolve():
            shutil.copyfile(path, target)
    logger.info("saved a clinical-ner model repository to %s", folder)
    return folder


register_pipeline()
