"""What every CRF tagger of this package shares: the encoder, its output type and the decoding entry points.

A subclass of :class:`CrfTaggerPreTrainedModel` builds its heads and ``self.crf`` on the encoder the base class
builds from ``config.encoder`` (any ``AutoModel``), and has a ``forward`` that returns :class:`CrfTaggerOutput`
with the CRF emissions as ``logits`` (a tuple with ``return_dict=False``, as transformers models do). The CRF sees
the tokens where ``attention_mask`` is on and which are not special tokens ([CLS], [SEP], ...): those are given by
``special_tokens_mask`` (as tokenizers return it with ``return_special_tokens_mask=True``) or, when it is absent,
by ``config.special_token_ids``, found in ``input_ids`` or, given ``inputs_embeds`` alone, by their embedding
(pass ``special_tokens_mask`` with embeddings that are not the model's own).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput

from .configuration_crf_tagger import CrfTaggerConfig
from .crf import ConditionalRandomField
from .pipeline_clinical_ner import PIPELINE_CLASSES

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


def init_crf_weights(crf: ConditionalRandomField) -> None:
    """For a tagger's ``_init_weights``: transitions uniform in [-0.1, 0.1] and the constraint buffers refilled
    (transformers creates non-persistent buffers empty when it builds a model for loading)."""
    for parameter in (crf.start_transitions, crf.end_transitions, crf.transitions):
        init.uniform_(parameter, -0.1, 0.1)
    for name, value in crf.constraint_values().items():
        init.copy_(getattr(crf, name), value)


def build_encoder(config) -> PreTrainedModel:
    """The ``AutoModel`` of an encoder config, without the pooler BERT-like models add by default: nothing in a
    tagger reaches it, and DDP fails on parameters that never get a gradient."""
    model_class = MODEL_MAPPING[type(config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return AutoModel.from_config(config, add_pooling_layer=False)
    return AutoModel.from_config(config)


class CrfTaggerPreTrainedModel(PreTrainedModel):
    """Base of the taggers: the encoder, weight initialisation, tag mask, loss and decoding; a subclass adds its
    heads and ``self.crf``, then calls ``post_init()``.

    The encoder sits under its own model's ``base_model_prefix`` (``bert`` for BERT, ``roberta``, ``albert``,
    ``ernie``, ``transformer`` for XLNet, ...), as in transformers' ``*ForTokenClassification`` models, so that a
    plain encoder checkpoint (its weights bare or under that prefix, as its masked-LM heads save them) loads into it
    and folders saved before the encoder was a sub-config (``bert.*``) load unchanged.
    """

    config_class = CrfTaggerConfig
    config: CrfTaggerConfig
    base_model_prefix = "bert"  # the class's default; __init__ sets the encoder's own on the instance
    # The encoder's attention implementation is its own to choose (transformers sets it on config.encoder too).
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The CRF's log-sum-exp recursions lose too much precision in half precision.
    _keep_in_fp32_modules_strict = ["crf"]

    #: Which pipeline class serves each task for this model, from the model's own copy of the pipeline file:
    #: ``pipeline(task, model=<model object>)`` finds it there (``pipeline_clinical_ner._TaskDispatch``).
    pipeline_classes = PIPELINE_CLASSES

    def __init__(self, config: CrfTaggerConfig):
        super().__init__(config)
        encoder = build_encoder(config.encoder)
        self.base_model_prefix = encoder.base_model_prefix
        self.add_module(self.base_model_prefix, encoder)

    def _init_weights(self, module):
        # Weights missing from a checkpoint (every head on top of a plain encoder) are created empty and initialised
        # here; the base class covers Linear, Conv1d, LSTM, Embedding and LayerNorm, the encoder has its own.
        super()._init_weights(module)
        if isinstance(module, ConditionalRandomField):
            init_crf_weights(module)

    def encode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        **kwargs,
    ) -> tuple:
        """Check the inputs and run the encoder (``self.base_model``); returns its output and the boolean attention
        mask ``(batch, seq)``, all on when ``attention_mask`` is not given."""
        shape_source = input_ids if input_ids is not None else inputs_embeds
        if shape_source is None:
            raise ValueError("expected input_ids or inputs_embeds, got neither")
        if shape_source.dim() < 2:
            raise ValueError(f"expected inputs of shape (batch, seq), got {tuple(shape_source.shape)}")
        # Only the optional inputs given: not every encoder takes them (XLNet has no position_ids).
        optional = {"token_type_ids": token_type_ids, "position_ids": position_ids}
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **{name: value for name, value in optional.items() if value is not None},
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
