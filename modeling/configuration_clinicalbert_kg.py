"""Configuration of CBT-KG: ClinicalBERT + knowledge graph + BiLSTM-CRF (Xu et al., Front. Artif. Intell. 8:1634774,
2025)."""

from __future__ import annotations

from transformers import BertConfig

from .crf_tagger import check_window_fields, fill_tagger_config_defaults, refresh_tagger_config
from .lexicon import POSITION_TAGS
from .tagging import SCHEMES, check_label_map

KG_CATEGORIES = ("Check", "Department", "Disease", "Drug", "Food", "Producer", "Symptom")


class ClinicalBertKgConfig(BertConfig):
    r"""BERT encoder, three knowledge features per token, a BiLSTM and a CRF.

    Every field of [`BertConfig`] describes the encoder. The head fields:

    Args:
        label_scheme (`str`, defaults to `"BIOES"`): tag scheme of `id2label`, `"BIO"` or `"BIOES"` (the paper: BIOES).
        use_kg_embedding (`bool`, defaults to `True`): concatenate `W·e_kg + b`, the projected knowledge-graph
            embedding of the entity the token's term links to (a learned placeholder when it links to none).
        use_position_feature (`bool`, defaults to `True`): concatenate an embedding of the token's place in its
            matched term (O/B/I/E/S, see `lexicon.POSITION_TAGS`; not BERT's token position).
        use_category_feature (`bool`, defaults to `True`): concatenate an embedding of the matched term's type.
        kg_embedding_dim (`int`, defaults to 100): width of the KG entity embeddings (`train_kge.py --dim`).
        num_kg_entities (`int`, defaults to 0): rows of the KG embedding table (entities in `train_kge.py`'s
            `entities.tsv`); the table has one more row, id 0, for "no entity".
        kg_projection_size (`int`, defaults to 128): output width of the projection `W·e_kg + b`.
        position_embedding_size (`int`, defaults to 32): width of the term-position feature embedding.
        kg_categories (`list[str]`, defaults to the seven types of the paper's KG, `KG_CATEGORIES`): term types in
            category-id order (`categories[i]` has id `i + 1`, 0 is "no term"); must equal the lexicon's categories.
        category_embedding_size (`int`, defaults to 32): width of the term-category feature embedding.
        freeze_kg_embeddings (`bool`, defaults to `True`): keep the TransE/H/R table fixed during training (the
            placeholder for "no entity" and the projection still learn).
        lstm_hidden_size (`int`, defaults to 256): hidden size of each LSTM direction (the paper: 256).
        lstm_num_layers (`int`, defaults to 2): stacked BiLSTM layers (the paper: 2).
        head_dropout (`float`, defaults to 0.5): dropout on the joint features and between LSTM layers.
        crf_constrain_training (`bool`, defaults to `True`): apply the scheme's transition constraints in the
            likelihood too, not only when decoding.
        special_token_ids (`list[int]`, *optional*): ids the CRF never sees ([CLS], [SEP], [PAD], ...), used when
            `special_tokens_mask` is not passed to `forward`.
        label_classes (`dict[str, str]`, *optional*): entity type -> class (e.g. the breast-cancer set's
            `{"Nodule": "Symptoms", ...}`); the `clinical-ner` pipeline adds each entity's `class`.
        lexicon_file (`str`, defaults to `"lexicon.tsv"`): name of the lexicon file in the model folder.
        lexicon_sha256 (`str`, *optional*): SHA-256 of the lexicon the model was saved with; set by the model when a
            lexicon is attached. A folder whose lexicon file does not match it is not trusted.
        window_max_length (`int`, *optional*): tokens per window, `[CLS]` and `[SEP]` included, that the model was
            trained with (`train_ner.py --max_length`); the `clinical-ner` pipeline and `predict.py` default to it, so
            that inference runs on the positions training used. At most `max_position_embeddings`; unset in models
            saved before this field (the pipeline then falls back to its own default).
        window_stride (`int`, *optional*): tokens shared by consecutive training windows (`train_ner.py --stride`),
            the pipeline's default stride for windows of `window_max_length`; in `[0, window_max_length - 2)`.

    The paper's ablations are configurations: without KG (all three `use_*` off: BERT-BiLSTM-CRF), without each
    feature (one `use_*` off); TransE vs TransH vs TransR is the embedding table loaded, not a config field.
    """

    model_type = "clinicalbert-kg-crf"

    label_scheme: str = "BIOES"
    use_kg_embedding: bool = True
    use_position_feature: bool = True
    use_category_feature: bool = True
    kg_embedding_dim: int = 100
    num_kg_entities: int = 0
    kg_projection_size: int = 128
    position_embedding_size: int = 32
    kg_categories: list[str] | None = None
    category_embedding_size: int = 32
    freeze_kg_embeddings: bool = True
    lstm_hidden_size: int = 256
    lstm_num_layers: int = 2
    head_dropout: float | int = 0.5
    crf_constrain_training: bool = True
    special_token_ids: list[int] | None = None
    label_classes: dict[str, str] | None = None
    lexicon_file: str = "lexicon.tsv"
    lexicon_sha256: str | None = None
    window_max_length: int | None = None
    window_stride: int | None = None

    def __post_init__(self, **kwargs):
        if self.kg_categories is None:
            self.kg_categories = list(KG_CATEGORIES)
        if self.special_token_ids is None:
            self.special_token_ids = []
        super().__post_init__(**kwargs)
        fill_tagger_config_defaults(
            self,
            "configuration_clinicalbert_kg.ClinicalBertKgConfig",
            "modeling_clinicalbert_kg.ClinicalBertKgForCrfTagging",
        )
        refresh_tagger_config(self)

    @property
    def num_term_positions(self) -> int:
        """Rows of the term-position embedding: O, B, I, E, S."""
        return len(POSITION_TAGS)

    @property
    def uses_lexicon(self) -> bool:
        """Whether any feature is on, so that the model needs a lexicon to tag text."""
        return self.use_kg_embedding or self.use_position_feature or self.use_category_feature

    def validate_head(self):
        """Raise ``ValueError`` naming the field when a head field holds an unusable value."""
        if self.label_scheme not in SCHEMES:
            raise ValueError(f"label_scheme must be one of {SCHEMES}, got {self.label_scheme!r}")
        for name in (
            "kg_embedding_dim", "kg_projection_size", "position_embedding_size", "category_embedding_size",
            "lstm_hidden_size", "lstm_num_layers",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if (
            isinstance(self.num_kg_entities, bool)
            or not isinstance(self.num_kg_entities, int)
            or self.num_kg_entities < 0
        ):
            raise ValueError(f"num_kg_entities must be an integer >= 0, got {self.num_kg_entities!r}")
        categories = self.kg_categories
        if (
            not isinstance(categories, list)
            or not categories
            or any(not isinstance(c, str) or not c or any(x in c for x in "\t\n\r") for c in categories)
            or len(set(categories)) != len(categories)
        ):
            raise ValueError(f"kg_categories must be a non-empty list of distinct type names, got {categories!r}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if (
            not isinstance(self.lexicon_file, str)
            or not self.lexicon_file
            or any(c in self.lexicon_file for c in "/\\")
        ):
            raise ValueError(f"lexicon_file must be a file name inside the model folder, got {self.lexicon_file!r}")
        check_window_fields(self)
        check_label_map(self.id2label, self.label_scheme)


ClinicalBertKgConfig.register_for_auto_class()
