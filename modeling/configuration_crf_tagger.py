"""What the configurations of both taggers share: the encoder as a sub-config and the CRF tagger fields.

Like transformers' ``configuration_*.py`` files this imports neither torch (beyond what transformers' own config
classes import) nor the pipeline: ``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` stays cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .tagging import SCHEMES, check_label_map

#: The file of the pipeline classes in a model repository, and the class serving each task. transformers looks a
#: task name up in ``custom_pipelines`` before resolving aliases, so the alias "ner" needs its own entry.
PIPELINE_MODULE = "pipeline_clinical_ner"
PIPELINE_CLASS_NAMES = {
    "clinical-ner": "ClinicalNerPipeline",
    "token-classification": "CrfTokenClassificationPipeline",
    "ner": "CrfTokenClassificationPipeline",
}

#: Encoders whose position ids start after the padding id (fairseq's ``make_positions``: token ``i`` of an input takes
#: row ``padding_idx + 1 + i``), with where that id is: the config's ``pad_token_id``, or a fixed one (MPNet). Of
#: their ``max_position_embeddings`` rows, ``padding_idx + 1`` never hold a token.
POSITION_OFFSET_ENCODERS: dict[str, int | None] = {
    **dict.fromkeys(
        ("roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "ibert",
         "longformer", "luke", "xmod"),
        None,
    ),
    "mpnet": 1,
}  # fmt: skip

#: ``model_type`` of the encoder of a config written before the encoder was a sub-config (flat ``BertConfig``
#: fields beside the tagger's).
LEGACY_ENCODER_TYPE = "bert"


def max_input_length(config) -> int | None:
    """Most tokens one input can hold, special tokens included: ``max_position_embeddings`` (BERT, ALBERT, ERNIE),
    less ``pad_token_id + 1`` for RoBERTa-like encoders whose positions start after the padding id
    (:data:`POSITION_OFFSET_ENCODERS`); ``None`` when the encoder has no limit (XLNet reports -1).

    ``config`` is any tagger config, also one that an earlier version's remote code loaded (a model saved before
    this function existed, given to this version's pipeline): only its stored fields are read, the encoder's
    sub-config or, in configs written before the encoder was a sub-config, its own flat BERT fields.
    """
    encoder = getattr(config, "encoder", None) or config
    limit = getattr(encoder, "max_position_embeddings", None)
    if limit is None or limit <= 0:
        return None
    return limit - _position_offset(encoder)


def check_input_length(config, name: str, length: int) -> None:
    """Raise ``ValueError`` when an input of ``length`` tokens (the argument ``name``) is longer than
    :func:`max_input_length`: the encoder would index past its position table."""
    limit = max_input_length(config)
    if limit is None or length <= limit:
        return
    encoder = getattr(config, "encoder", None) or config
    offset = _position_offset(encoder)
    why = (
        f"max_position_embeddings {limit + offset} less {offset}: {encoder.model_type}'s positions start "
        f"after its padding id {offset - 1}"
        if offset
        else "its max_position_embeddings"
    )
    raise ValueError(f"{name} ({length}) exceeds the {limit} tokens the encoder takes ({why})")


def _position_offset(encoder) -> int:
    """Rows of the position table before a text's first token: ``padding_idx + 1`` for RoBERTa-like encoders,
    else 0."""
    model_type = getattr(encoder, "model_type", None)
    if model_type not in POSITION_OFFSET_ENCODERS:
        return 0
    padding_idx = POSITION_OFFSET_ENCODERS[model_type]
    return (encoder.pad_token_id if padding_idx is None else padding_idx) + 1


def clinical_ner_custom_pipelines() -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` entry of a model config, a fresh dict each call (transformers edits it in place):
    ``clinical-ner`` and the standard ``token-classification`` (and its alias ``ner``), so that
    ``pipeline(task, model=FOLDER_OR_REPO, trust_remote_code=True)`` runs the CRF for either task name."""
    return {
        task: {"impl": f"{PIPELINE_MODULE}.{name}", "pt": ["AutoModelForTokenClassification"], "type": "text"}
        for task, name in PIPELINE_CLASS_NAMES.items()
    }


def encoder_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The encoder's config, as a dict with its ``model_type``, within the fields of a saved config: a tagger's
    ``encoder``; else the flat fields of a plain encoder checkpoint (of its ``model_type``) or of a tagger saved
    before the encoder was a sub-config (a ``model_type`` transformers does not know: BERT)."""
    if isinstance(values.get("encoder"), dict):
        return values["encoder"]
    model_type = values.get("model_type")
    if model_type not in CONFIG_MAPPING:
        model_type = LEGACY_ENCODER_TYPE
    names = encoder_field_names(model_type)
    return {"model_type": model_type, **{key: value for key, value in values.items() if key in names}}


def encoder_field_names(model_type: str) -> set[str]:
    """The fields of an encoder config of ``model_type`` that are the encoder's own: those of ``PreTrainedConfig``
    (``id2label`` & co.) belong to the tagger."""
    names = {f.name for f in dataclasses.fields(CONFIG_MAPPING[model_type])}
    return names - {f.name for f in dataclasses.fields(PreTrainedConfig)}


class CrfTaggerConfig(PreTrainedConfig):
    r"""Base of the tagger configs: any `transformers` encoder as the `encoder` sub-config, then the head fields.

    Args:
        encoder (`PreTrainedConfig` or `dict`, *optional*): configuration of the encoder, any model whose
            `AutoModel` returns `last_hidden_state` (BERT, RoBERTa, ALBERT, ERNIE, XLNet, ...); a dict needs its
            `model_type`. Unset, the flat encoder fields given beside the head fields (and the `model_type` of a
            plain encoder checkpoint's `config.json`) make it, BERT by default: configs saved before this field
            load unchanged, and `from_pretrained` on a plain encoder checkpoint reads it as the encoder.
        label_scheme (`str`): tag scheme of `id2label`, `"BIO"` or `"BIOES"`.
        lstm_hidden_size (`int`, defaults to 256): hidden size of each LSTM direction.
        lstm_num_layers (`int`): stacked BiLSTM layers.
        head_dropout (`float`, defaults to 0.5): dropout in the heads (both papers: 0.5).
        crf_constrain_training (`bool`, defaults to `True`): apply the scheme's transition constraints in the
            likelihood too, not only when decoding.
        special_token_ids (`list[int]`, *optional*): ids the CRF never sees ([CLS], [SEP], [PAD], ...), used when
            `special_tokens_mask` is not passed to `forward`.
        label_classes (`dict[str, str]`, *optional*): entity type -> class (e.g. the breast-cancer set's
            `{"Nodule": "Symptoms", ...}`); the `clinical-ner` pipeline adds each entity's `class`.
        window_max_length (`int`, *optional*): tokens per window, `[CLS]` and `[SEP]` included, that the model was
            trained with (`train_ner.py --max_length`); the `clinical-ner` pipeline and `predict.py` default to it, so
            that inference runs on the positions training used. At most `max_input_length` (the tokens the encoder
            takes); unset in models saved before this field (the pipeline then falls back to its own default).
        window_stride (`int`, *optional*): tokens shared by consecutive training windows (`train_ner.py --stride`),
            the pipeline's default stride for windows of `window_max_length`; in `[0, window_max_length - 2)`.

    `hidden_size`, `vocab_size`, `max_position_embeddings` and `initializer_range` (the heads' too) read the
    encoder's; `max_input_length` is the longest input the encoder takes (RoBERTa: `pad_token_id + 1` less than
    its `max_position_embeddings`).
    """

    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type=LEGACY_ENCODER_TYPE)}
    #: ``"module.Class"`` of the model class in a model repository, for ``auto_map``.
    model_class_path: ClassVar[str] = ""

    encoder: PreTrainedConfig | dict | None = None
    label_scheme: str = "BIO"
    lstm_hidden_size: int = 256
    lstm_num_layers: int = 1
    head_dropout: float | int = 0.5
    crf_constrain_training: bool = True
    special_token_ids: list[int] | None = None
    label_classes: dict[str, str] | None = None
    window_max_length: int | None = None
    window_stride: int | None = None

    def __post_init__(self, **kwargs):
        if self.encoder is None:
            # the model_type of a plain encoder checkpoint's config.json (from_pretrained on it) or our own
            model_type = kwargs.pop("model_type", None)
            self.encoder = encoder_fields({**kwargs, "model_type": model_type})
            kwargs = {key: value for key, value in kwargs.items() if key not in self.encoder}
        if self.special_token_ids is None:
            self.special_token_ids = []
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            # register_for_auto_class records one class only; AutoModel and the task class both load the tagger
            self.auto_map = {
                "AutoConfig": f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}",
                "AutoModel": self.model_class_path,
                "AutoModelForTokenClassification": self.model_class_path,
            }
        if getattr(self, "custom_pipelines", None) is None:
            self.custom_pipelines = clinical_ner_custom_pipelines()
        self.validate_head()
        self.label2id = {label: index for index, label in self.id2label.items()}

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        # from_pretrained(folder, id2label=..., lstm_hidden_size=...) would set these on the config after
        # __post_init__, past the checks and the label2id it derives; given to the constructor, they go through both.
        own = {f.name for f in dataclasses.fields(cls)} - {f.name for f in dataclasses.fields(PreTrainedConfig)}
        own = (own | {"id2label", "label2id"}) - set(cls.sub_configs)
        config_dict = {**config_dict, **{key: kwargs.pop(key) for key in list(kwargs) if key in own}}
        # A field of the encoder's config (from_pretrained(folder, hidden_dropout_prob=0.3)) goes to the encoder, as
        # transformers sets it on a flat BertConfig; the tagger has no such attribute, so transformers would hand it
        # to the model's __init__ (a TypeError) or, loading a config alone, drop it.
        names = encoder_field_names(encoder_fields(config_dict).get("model_type", LEGACY_ENCODER_TYPE))
        encoder = {key: kwargs.pop(key) for key in list(kwargs) if key in names}
        if isinstance(config_dict.get("encoder"), dict):
            config_dict["encoder"] = {**config_dict["encoder"], **encoder}
        else:  # a plain encoder checkpoint, or a tagger saved with flat encoder fields: they make the encoder
            config_dict.update(encoder)
        return super().from_dict(config_dict, **kwargs)

    @property
    def hidden_size(self) -> int:
        """Width of the encoder's output."""
        return self.encoder.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.encoder.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int):
        # resize_token_embeddings sets it here (get_text_config() is the tagger config)
        self.encoder.vocab_size = value

    @property
    def initializer_range(self) -> float:
        """Standard deviation of the initial weights, the encoder's and the heads'."""
        return getattr(self.encoder, "initializer_range", 0.02)

    @property
    def max_position_embeddings(self) -> int | None:
        """Rows of the encoder's position table; ``None`` when it has none (XLNet reports -1)."""
        limit = getattr(self.encoder, "max_position_embeddings", None)
        return limit if limit is not None and limit > 0 else None

    @property
    def max_input_length(self) -> int | None:
        """Most tokens one input can hold, special tokens included (:func:`max_input_length`)."""
        return max_input_length(self)

    def validate_head(self):
        """Raise ``ValueError`` naming the field when a head field holds an unusable value; subclasses check their
        own fields and call this."""
        if self.label_scheme not in SCHEMES:
            raise ValueError(f"label_scheme must be one of {SCHEMES}, got {self.label_scheme!r}")
        for name in ("lstm_hidden_size", "lstm_num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        self.check_window_fields()
        check_label_map(self.id2label, self.label_scheme)

    def check_window_fields(self) -> None:
        """Raise ``ValueError`` naming the field when the training window (``window_max_length``,
        ``window_stride``) cannot be used for inference."""
        length, stride = self.window_max_length, self.window_stride
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int) or length < 3:
                raise ValueError(f"window_max_length must be an integer >= 3 ([CLS], a token, [SEP]), got {length!r}")
            check_input_length(self, "window_max_length", length)
        if stride is None:
            return
        if length is None:
            raise ValueError(f"window_stride ({stride!r}) needs window_max_length, got None")
        if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < length - 2:
            raise ValueError(
                f"window_stride must be an integer in [0, {length - 2}) (window_max_length - 2), got {stride!r}"
            )
