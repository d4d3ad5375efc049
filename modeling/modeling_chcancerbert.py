"""ChCancerBERT-DGCNN-BiLSTM-MHA-CRF (Chen et al., "Named Entity Recognition for Chinese Cancer Electronic Health
Records", JMIR Med Inform 2025;13:e76912).

Encoder (any ``transformers`` encoder, e.g. a BERT continued-pretrained by ``train_mlm.py``) -> dropout -> a BiLSTM and a
dilated gated CNN in parallel -> multi-head attention fusion -> linear emissions -> CRF. Switching streams off or
fusing by concatenation gives the paper's ablations (see ``ChCancerBertConfig``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .configuration_chcancerbert import ChCancerBertConfig
from .crf import ConditionalRandomField
from .crf_tagger import CrfTaggerOutput, CrfTaggerPreTrainedModel
from .layers import AttentionFusion, BiLSTM, DilatedGatedConv, SelfAttentionFusion
from .tagging import transition_constraints

#: The attention fusions by ``config.fusion``; ``"concat"`` needs no layer.
FUSION_LAYERS = {"attention": AttentionFusion, "self_attention": SelfAttentionFusion}


class ChCancerBertForCrfTagging(CrfTaggerPreTrainedModel):
    config_class = ChCancerBertConfig
    config: ChCancerBertConfig

    def __init__(self, config: ChCancerBertConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.head_dropout)
        hidden = config.hidden_size

        self.bilstm = (
            BiLSTM(hidden, config.lstm_hidden_size, config.lstm_num_layers, config.head_dropout)
            if config.use_bilstm
            else None
        )
        self.dgcnn = (
            DilatedGatedConv(hidden, config.dgcnn_dilations, config.dgcnn_kernel_size, config.head_dropout)
            if config.use_dgcnn
            else None
        )
        self.fusion = None
        if self.bilstm is not None and self.dgcnn is not None:
            if config.fusion in FUSION_LAYERS:
                self.fusion = FUSION_LAYERS[config.fusion](
                    self.bilstm.output_size, hidden, config.fusion_size, config.fusion_num_heads,
                    config.head_dropout,
                )  # fmt: skip
                feature_size = self.fusion.output_size
            else:
                feature_size = self.bilstm.output_size + hidden
        elif self.bilstm is not None:
            feature_size = self.bilstm.output_size
        else:
            feature_size = hidden  # DGCNN keeps the width; with no stream this is BERT-CRF

        self.classifier = nn.Linear(feature_size, config.num_labels)
        self.crf = ConditionalRandomField(
            config.num_labels,
            **transition_constraints(config.id2label, config.label_scheme),
            constrain_training=config.crf_constrain_training,
        )
        self.post_init()

    def features(self, sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The head's features over the encoder output ``(batch, seq, hidden)``; ``mask`` marks real tokens."""
        streams = []
        if self.bilstm is not None:
            streams.append(self.bilstm(sequence, mask))
        if self.dgcnn is not None:
            streams.append(self.dgcnn(sequence, mask))
        if not streams:
            return sequence
        if len(streams) == 1:
            return streams[0]
        if self.fusion is not None:
            return self.fusion(streams[0], streams[1], mask)
        return torch.cat(streams, dim=2)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        special_tokens_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> CrfTaggerOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Label ids; -100 leaves a token out of the CRF (special tokens, padding, the word pieces after a
            word's first), as do special tokens and padding whatever their label.
        special_tokens_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for tokens the CRF must not see; defaults to the tokens in `config.special_token_ids`.
        """
        outputs, attended = self.encode(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions, **kwargs,
        )  # fmt: skip
        sequence = self.dropout(outputs.last_hidden_state)
        emissions = self.classifier(self.features(sequence, attended))
        return self.tagger_output(emissions, outputs, input_ids, inputs_embeds, attended, special_tokens_mask, labels)


ChCancerBertForCrfTagging.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["ChCancerBertForCrfTagging"]
