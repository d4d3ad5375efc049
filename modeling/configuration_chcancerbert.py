"""Configuration of ChCancerBERT-DGCNN-BiLSTM-MHA-CRF (Chen et al., JMIR Med Inform 2025;13:e76912)."""

from __future__ import annotations

from transformers import BertConfig

from .crf_tagger import check_window_fields, fill_tagger_config_defaults, refresh_tagger_config
from .tagging import SCHEMES, check_label_map

FUSIONS = ("attention", "concat")


class ChCancerBertConfig(BertConfig):
    r"""BERT encoder, then a BiLSTM and a dilated gated CNN in parallel, attention fusion, and a CRF.

    Every field of [`BertConfig`] describes the encoder. The head fields:

    Args:
        label_scheme (`str`, defaults to `"BIO"`): tag scheme of `id2label`, `"BIO"` or `"BIOES"`.
        use_bilstm (`bool`, defaults to `True`): run a BiLSTM over the encoder output.
        use_dgcnn (`bool`, defaults to `True`): run a dilated gated CNN over the encoder output.
        fusion (`str`, defaults to `"attention"`): how the two streams are combined when both are on:
            `"attention"` (multi-head cross-attention fusion, see `layers.AttentionFusion`) or `"concat"`.
            Ignored when only one stream (or none) is on.
        lstm_hidden_size (`int`, defaults to 256): hidden size of each LSTM direction.
        lstm_num_layers (`int`, defaults to 1): stacked BiLSTM layers.
        dgcnn_dilations (`list[int]`, defaults to `[1, 2, 4]`): dilation of each DGCNN layer, one layer per entry.
        dgcnn_kernel_size (`int`, defaults to 3): odd convolution width.
        fusion_hidden_size (`int`, *optional*): width of the fused stream; unset, it follows the LSTM
            (`2 * lstm_hidden_size`, see `fusion_size`), also when `lstm_hidden_size` is given to `from_pretrained`.
        fusion_num_heads (`int`, defaults to 8): attention heads of the fusion.
        head_dropout (`float`, defaults to 0.5): dropout on the encoder output and inside the heads (the paper: 0.5).
        crf_constrain_training (`bool`, defaults to `True`): apply the scheme's transition constraints in the
            likelihood too, not only when decoding.
        special_token_ids (`list[int]`, *optional*): ids the CRF never sees ([CLS], [SEP], [PAD], ...), used when
            `special_tokens_mask` is not passed to `forward`.
        label_classes (`dict[str, str]`, *optional*): entity type -> class (e.g. the breast-cancer set's
            `{"Nodule": "Symptoms", ...}`); the `clinical-ner` pipeline adds each entity's `class`.
        window_max_length (`int`, *optional*): tokens per window, `[CLS]` and `[SEP]` included, that the model was
            trained with (`train_ner.py --max_length`); the `clinical-ner` pipeline and `predict.py` default to it, so
            that inference runs on the positions training used. At most `max_position_embeddings`; unset in models
            saved before this field (the pipeline then falls back to its own default).
        window_stride (`int`, *optional*): tokens shared by consecutive training windows (`train_ner.py --stride`),
            the pipeline's default stride for windows of `window_max_length`; in `[0, window_max_length - 2)`.

    The paper's ablations are configurations: BERT-BiLSTM-CRF (`use_dgcnn=False`), BERT-DGCNN-CRF
    (`use_bilstm=False`), BERT-DGCNN-BiLSTM-CRF (`fusion="concat"`) and BERT-DGCNN-BiLSTM-MHA-CRF (the default);
    with both streams off the model is BERT-CRF.
    """

    model_type = "chcancerbert-crf"

    label_scheme: str = "BIO"
    use_bilstm: bool = True
    use_dgcnn: bool = True
    fusion: str = "attention"
    lstm_hidden_size: int = 256
    lstm_num_layers: int = 1
    dgcnn_dilations: list[int] | None = None
    dgcnn_kernel_size: int = 3
    fusion_hidden_size: int | None = None
    fusion_num_heads: int = 8
    head_dropout: float | int = 0.5
    crf_constrain_training: bool = True
    special_token_ids: list[int] | None = None
    label_classes: dict[str, str] | None = None
    window_max_length: int | None = None
    window_stride: int | None = None

    def __post_init__(self, **kwargs):
        if self.dgcnn_dilations is None:
            self.dgcnn_dilations = [1, 2, 4]
        if self.special_token_ids is None:
            self.special_token_ids = []
        super().__post_init__(**kwargs)
        fill_tagger_config_defaults(
            self, "configuration_chcancerbert.ChCancerBertConfig", "modeling_chcancerbert.ChCancerBertForCrfTagging"
        )
        refresh_tagger_config(self)

    @property
    def fusion_size(self) -> int:
        """Width of the fused stream: `fusion_hidden_size`, or `2 * lstm_hidden_size` when that is unset."""
        return self.fusion_hidden_size or 2 * self.lstm_hidden_size

    def validate_head(self):
        """Raise ``ValueError`` naming the field when a head field holds an unusable value."""
        if self.label_scheme not in SCHEMES:
            raise ValueError(f"label_scheme must be one of {SCHEMES}, got {self.label_scheme!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("lstm_hidden_size", "lstm_num_layers", "fusion_hidden_size", "fusion_num_heads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.dgcnn_dilations or any(d < 1 for d in self.dgcnn_dilations):
            raise ValueError(f"dgcnn_dilations must be a non-empty list of integers >= 1, got {self.dgcnn_dilations}")
        if self.dgcnn_kernel_size < 1 or self.dgcnn_kernel_size % 2 == 0:
            raise ValueError(f"dgcnn_kernel_size must be odd and >= 1, got {self.dgcnn_kernel_size}")
        if self.fusion_size % self.fusion_num_heads:
            width = "" if self.fusion_hidden_size else " = 2 * lstm_hidden_size"
            raise ValueError(
                f"fusion_hidden_size ({self.fusion_size}{width}) must be divisible by "
                f"fusion_num_heads ({self.fusion_num_heads})"
            )
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        check_window_fields(self)
        check_label_map(self.id2label, self.label_scheme)


ChCancerBertConfig.register_for_auto_class()
