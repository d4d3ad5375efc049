"""Configuration of CBT-KG: ClinicalBERT + knowledge graph + BiLSTM-CRF (Xu et al., Front. Artif. Intell. 8:1634774,
2025)."""

from __future__ import annotations

from .configuration_crf_tagger import CrfTaggerConfig
from .lexicon import POSITION_TAGS

KG_CATEGORIES = ("Check", "Department", "Disease", "Drug", "Food", "Producer", "Symptom")


class ClinicalBertKgConfig(CrfTaggerConfig):
    r"""An encoder (ClinicalBERT in the paper), three knowledge features per token, a BiLSTM and a CRF.

    The encoder and the fields every tagger shares are described in [`CrfTaggerConfig`]. The head fields:

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
        lstm_num_layers (`int`, defaults to 2): stacked BiLSTM layers (the paper: 2).
        lexicon_file (`str`, defaults to `"lexicon.tsv"`): name of the lexicon file in the model folder.
        lexicon_sha256 (`str`, *optional*): SHA-256 of the lexicon the model was saved with; set by the model when a
            lexicon is attached. A folder whose lexicon file does not match it is not trusted.

    The paper's ablations are configurations, each with any encoder: without KG (all three `use_*` off:
    BERT-BiLSTM-CRF), without each feature (one `use_*` off); TransE vs TransH vs TransR is the embedding table
    loaded, not a config field.
    """

    model_type = "clinicalbert-kg-crf"
    model_class_path = "modeling_clinicalbert_kg.ClinicalBertKgForCrfTagging"

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
    lstm_num_layers: int = 2
    lexicon_file: str = "lexicon.tsv"
    lexicon_sha256: str | None = None

    def __post_init__(self, **kwargs):
        if self.kg_categories is None:
            self.kg_categories = list(KG_CATEGORIES)
        super().__post_init__(**kwargs)

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
        for name in ("kg_embedding_dim", "kg_projection_size", "position_embedding_size", "category_embedding_size"):
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
        if (
            not isinstance(self.lexicon_file, str)
            or not self.lexicon_file
            or any(c in self.lexicon_file for c in "/\\")
        ):
            raise ValueError(f"lexicon_file must be a file name inside the model folder, got {self.lexicon_file!r}")
        super().validate_head()


ClinicalBertKgConfig.register_for_auto_class()
