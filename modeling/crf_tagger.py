"""What every CRF tagger of this package shares: its output type and the decoding entry points.

A model using :class:`CrfTaggerMixin` has ``self.crf`` and a ``forward`` that returns :class:`CrfTaggerOutput`
with the CRF emissions as ``logits`` (a tuple with ``return_dict=False``, as transformers models do). The CRF sees
the tokens where ``attention_mask`` is on and which are not special tokens ([CLS], [SEP], ...): those are given by
``special_tokens_mask`` (as tokenizers return it with ``return_special_tokens_mask=True``) or, when it is absent,
by ``config.special_token_ids``, found in ``input_ids`` or, given ``inputs_embeds`` alone, by their embedding
(pass ``special_tokens_mask`` with embeddings that are not the model's own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import initialization as init
from transformers.utils import ModelOutput

from .crf import ConditionalRandomField
from .pipeline_clinical_ner import PIPELINE_CLASSES, clinical_ner_custom_pipelines

#: transformers' label for a token no loss scores (``nn.CrossEntropyLoss``'s default ``ignore_index``).
IGNORE_INDEX = -100


@dataclass
class CrfTaggerOutput(ModelOutput):
    """Output of a CRF tagger.

    Args:
        loss: mean negative log-likelihood of ``labels`` under the CRF, when labels are given.
        logits: ``(batch, seq, num_labels)`` CRF emission scores. Decode them with the CRF, never with argmax.
        tag_mask: ``(batch, seq)`` booleans, the tokens the CRF scores.
        hidden_states, attentions: from the encoder, when requested.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    tag_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def fill_tagger_config_defaults(config, config_class: str, model_class: str) -> None:
    """What every tagger config sets in ``__post_init__`` when loading did not: ``auto_map`` for ``AutoConfig``,
    ``AutoModel`` and ``AutoModelForTokenClassification`` (``register_for_auto_class`` records only one class),
    ``custom_pipelines`` so that ``pipeline("clinical-ner" or "token-classification", model=...,
    trust_remote_code=True)`` finds the CRF pipeline classes.
    Class paths are ``"module.Class"`` as written in a model repository."""
    if getattr(config, "auto_map", None) is None:
        config.auto_map = {
            "AutoConfig": config_class,
            "AutoModel": model_class,
            "AutoModelForTokenClassification": model_class,
        }
    if getattr(config, "custom_pipelines", None) is None:
        config.custom_pipelines = clinical_ner_custom_pipelines()


def refresh_tagger_config(config) -> None:
    """Check the head fields and re-derive ``label2id`` from ``id2label``. The configs call this in
    ``__post_init__`` and the models again in ``__init__``: ``from_pretrained`` sets its keyword arguments on a
    config already built from the checkpoint's file, so ``id2label`` alone would keep the checkpoint's ``label2id``
    and a bad value would go unchecked."""
    config.validate_head()
    config.label2id = {label: index for index, label in config.id2label.items()}


def check_window_fields(config) -> None:
    """Raise ``ValueError`` naming the field when the training window (``window_max_length``, ``window_stride``)
    recorded in a tagger config cannot be used for inference."""
    length, stride = config.window_max_length, config.window_stride
    limit = config.max_position_embeddings
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or not 3 <= length <= limit):
        raise ValueError(
            f"window_max_length must be an integer in [3, max_position_embeddings = {limit}] ([CLS], a token, [SEP]), "
            f"got {length!r}"
        )
    if stride is None:
        return
    if length is None:
        raise ValueError(f"window_stride ({stride!r}) needs window_max_length, got None")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < length - 2:
        raise ValueError(
            f"window_stride must be an integer in [0, {length - 2}) (window_max_length - 2), got {stride!r}"
        )


def init_crf_weights(crf: ConditionalRandomField) -> None:
    """For a tagger's ``_init_weights``: transitions uniform in [-0.1, 0.1] and the constraint buffers refilled
    (transformers creates non-persistent buffers empty when it builds a model for loading)."""
    for parameter in (crf.start_transitions, crf.end_transitions, crf.transitions):
        init.uniform_(parameter, -0.1, 0.1)
    for name, value in crf.constraint_values().items():
        init.copy_(getattr(crf, name), value)


class CrfTaggerMixin:
    """Tag mask, loss and decoding for a model with a ``crf`` attribute."""

    #: Which pipeline class serves each task for this model, from the model's own copy of the pipeline file:
    #: ``pipeline(task, model=<model object>)`` finds it there (``pipeline_clinical_ner._TaskDispatch``).
    pipeline_classes = PIPELINE_CLASSES

    def encode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        **kwargs,
    ) -> tuple:
        """Check the inputs and run the encoder (``self.bert``); returns its output and the boolean attention mask
        ``(batch, seq)``, all on when ``attention_mask`` is not given."""
        shape_source = input_ids if input_ids is not None else inputs_embeds
        if shape_source is None:
            raise ValueError("expected input_ids or inputs_embeds, got neither")
        if shape_source.dim() < 2:
            raise ValueError(f"expected inputs of shape (batch, seq), got {tuple(shape_source.shape)}")
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        batch_seq = shape_source.shape[:2]
        if attention_mask is None:
            return outputs, torch.ones(batch_seq, dtype=torch.bool, device=shape_source.device)
        return outputs, attention_mask.bool()

    def tagger_output(
        self,
        emissions: torch.Tensor,
        encoder_outputs,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attended: torch.Tensor,
        special_tokens_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> CrfTaggerOutput:
        """The CRF's view of the emissions: tag mask, and the loss when labels are given.

        A token labelled ``-100`` (transformers' ignored label: special tokens, padding, the word pieces after a
        word's first) is left out of the tag mask like a special token, so the CRF reads the labelled tokens as one
        sequence (it accepts masks with holes); the output's ``tag_mask`` says which tokens it scored."""
        tag_mask = self.tag_mask(input_ids, attended, special_tokens_mask, inputs_embeds)
        if labels is not None:
            if labels.shape != tag_mask.shape:
                raise ValueError(f"expected labels of shape {tuple(tag_mask.shape)}, got {tuple(labels.shape)}")
            tag_mask = tag_mask & (labels != IGNORE_INDEX)
        return CrfTaggerOutput(
            loss=self.crf_loss(emissions, labels, tag_mask) if labels is not None else None,
            logits=emissions,
            tag_mask=tag_mask,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )

    def tag_mask(
        self,
        input_ids: torch.Tensor | None,
        attended: torch.Tensor,
        special_tokens_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Boolean ``(batch, seq)``: attended tokens that are not special tokens."""
        if special_tokens_mask is not None:
            if special_tokens_mask.shape != attended.shape:
                raise ValueError(
                    f"expected special_tokens_mask of shape {tuple(attended.shape)}, "
                    f"got {tuple(special_tokens_mask.shape)}"
                )
            return attended & ~special_tokens_mask.bool()
        special_ids = self.config.special_token_ids
        if not special_ids:
            return attended
        if input_ids is not None:
            return attended & ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
        # Without ids a special token is known by its embedding, as transformers' multimodal models find their
        # placeholder tokens (inputs_embeds equal to the embedding of the id).
        table = self.get_input_embeddings()(torch.tensor(special_ids, device=inputs_embeds.device))
        special = torch.zeros_like(attended)
        for row in table.to(inputs_embeds.dtype):
            special |= (inputs_embeds == row).all(dim=-1)
        return attended & ~special

    def crf_loss(self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood; label values outside the tag mask are ignored."""
        scored = labels[mask]
        if scored.numel() and (scored.min() < 0 or scored.max() >= self.config.num_labels):
            raise ValueError(
                f"expected label ids in [0, {self.config.num_labels}) on tagged tokens (the config has "
                f"{self.config.num_labels} labels), got values in [{int(scored.min())}, {int(scored.max())}]"
            )
        return self.crf(emissions, labels, mask)

    @torch.no_grad()
    def decode(self, input_ids: torch.Tensor | None = None, **inputs) -> list[list[int]]:
        """Viterbi label-id paths, one list per sequence, over the tagged tokens (special tokens and padding
        excluded) in order. Takes the same inputs as ``forward``, without labels."""
        output = self(input_ids=input_ids, **{**inputs, "return_dict": True})
        return self.crf.decode(output.logits, output.tag_mask)

    @torch.no_grad()
    def marginals(self, input_ids: torch.Tensor | None = None, **inputs) -> torch.Tensor:
        """``(batch, seq, num_labels)`` CRF marginal probabilities of each label; zero rows off the tag mask."""
        output = self(input_ids=input_ids, **{**inputs, "return_dict": True})
        return self.crf.marginals(output.logits, output.tag_mask)
