"""Configuration of ChCancerBERT-DGCNN-BiLSTM-MHA-CRF (Chen et al., JMIR Med Inform 2025;13:e76912)."""

from __future__ import annotations

from .configuration_crf_tagger import CrfTaggerConfig

FUSIONS = ("attention", "self_attention", "concat")


class ChCancerBertConfig(CrfTaggerConfig):
    r"""An encoder (BERT in the paper), then a BiLSTM and a dilated gated CNN in parallel, attention fusion, and a CRF.

    The encoder and the fields every tagger shares are described in [`CrfTaggerConfig`]. The head fields:

    Args:
        label_scheme (`str`, defaults to `"BIO"`): tag scheme of `id2label`, `"BIO"` or `"BIOES"`.
        use_bilstm (`bool`, defaults to `True`): run a BiLSTM over the encoder output.
        use_dgcnn (`bool`, defaults to `True`): run a dilated gated CNN over the encoder output.
        fusion (`str`, defaults to `"attention"`): how the two streams are combined when both are on:
            `"attention"` (each stream attends to the other, multi-head, see `layers.AttentionFusion`),
            `"self_attention"` (each stream attends to itself, the paper's Eq. 7 read literally, see
            `layers.SelfAttentionFusion`) or `"concat"`. Ignored when only one stream (or none) is on.
        lstm_num_layers (`int`, defaults to 1): stacked BiLSTM layers.
        dgcnn_dilations (`list[int]`, defaults to `[1, 2, 4]`): dilation of each DGCNN layer, one layer per entry.
        dgcnn_kernel_size (`int`, defaults to 3): odd convolution width.
        fusion_hidden_size (`int`, *optional*): width of the fused stream; unset, it follows the LSTM
            (`2 * lstm_hidden_size`, see `fusion_size`), also when `lstm_hidden_size` is given to `from_pretrained`.
        fusion_num_heads (`int`, defaults to 8): attention heads of the fusion.

    The paper's ablations are configurations, each with any encoder: BERT-BiLSTM-CRF (`use_dgcnn=False`),
    BERT-DGCNN-CRF (`use_bilstm=False`), BERT-DGCNN-BiLSTM-CRF (`fusion="concat"`) and BERT-DGCNN-BiLSTM-MHA-CRF (the
    default, or `fusion="self_attention"`); with both streams off the model is BERT-CRF.
    """

    model_type = "chcancerbert-crf"
    model_class_path = "modeling_chcancerbert.ChCancerBertForCrfTagging"

    label_scheme: str = "BIO"
    use_bilstm: bool = True
    use_dgcnn: bool = True
    fusion: str = "attention"
    lstm_num_layers: int = 1
    dgcnn_dilations: list[int] | None = None
    dgcnn_kernel_size: int = 3
    fusion_hidden_size: int | None = None
    fusion_num_heads: int = 8

    def __post_init__(self, **kwargs):
        if self.dgcnn_dilations is None:
            self.dgcnn_dilations = [1, 2, 4]
        super().__post_init__(**kwargs)

    @property
    def fusion_size(self) -> int:
        """Width of the fused stream: `fusion_hidden_size`, or `2 * lstm_hidden_size` when that is unset."""
        return self.fusion_hidden_size or 2 * self.lstm_hidden_size

    def validate_head(self):
        """Raise ``ValueError`` naming the field when a head field holds an unusable value."""
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("fusion_hidden_size", "fusion_num_heads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.dgcnn_dilations or any(d < 1 for d in self.dgcnn_dilations):
            raise ValueError(f"dgcnn_dilations must be a non-empty list of integers >= 1, got {self.dgcnn_dilations}")
        if self.dgcnn_kernel_size < 1 or self.dgcnn_kernel_size % 2 == 0:
            raise ValueError(f"dgcnn_kernel_size must be odd and >= 1, got {self.dgcnn_kernel_size}")
        super().validate_head()
        if self.fusion_size % self.fusion_num_heads:
            width = "" if self.fusion_hidden_size else " = 2 * lstm_hidden_size"
            raise ValueError(
                f"fusion_hidden_size ({self.fusion_size}{width}) must be divisible by "
                f"fusion_num_heads ({self.fusion_num_heads})"
            )


ChCancerBertConfig.register_for_auto_class()
