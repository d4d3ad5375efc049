"""CBT-KG: ClinicalBERT + knowledge graph + BiLSTM-CRF (Xu et al., "Named entity recognition for Chinese electronic
medical records by integrating knowledge graph and ClinicalBERT", Front. Artif. Intell. 8:1634774, 2025).

Per token, three knowledge features are looked up from a term lexicon (``lexicon.TermLexicon``, forward maximum
matching over the text): the token's position in its matched term (O/B/I/E/S), the term's category, and the
knowledge-graph embedding of the entity the term links to (TransE/H/R, from ``train_kge.py``). Early fusion as in
the paper: ``h_joint = [h_bert ; W·e_kg + b ; position_emb ; category_emb]`` -> dropout -> 2-layer BiLSTM -> linear
emissions -> CRF (BIOES). Each feature is a config switch (the paper's ablations, see ``ClinicalBertKgConfig``).

The lexicon travels with the model: ``save_pretrained`` writes it to ``config.lexicon_file`` in the folder and
records its SHA-256 in the config; building the model from a config whose ``name_or_path`` is that folder (or a Hub
repository holding it), as ``from_pretrained`` does, reads it back with ``cached_file`` and checks the hash. The
features are computed by :meth:`ClinicalBertKgForCrfTagging.text_features`, the same code at training and at
inference, once per record over all its tokens; each window takes its slice (``WindowEncoder`` in training, the
``clinical-ner`` pipeline at inference), so a long record is matched once, not once per window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import cached_file, can_return_tuple, logging

from .configuration_clinicalbert_kg import ClinicalBertKgConfig
from .crf import ConditionalRandomField
from .crf_tagger import CrfTaggerOutput, CrfTaggerPreTrainedModel
from .layers import BiLSTM
from .lexicon import FEATURE_NAMES, TermLexicon
from .tagging import transition_constraints

logger = logging.get_logger(__name__)


class KgEntityEmbedding(nn.Module):
    """The KG entity table plus a learned placeholder for tokens linked to no entity.

    Id 0 means "no entity"; id ``r + 1`` is row ``r`` of ``train_kge.py``'s embeddings. The table keeps a zero row 0
    (``padding_idx``, so it never trains) and the placeholder is a separate vector, so it keeps learning when the
    table is frozen (the paper: characters linked to nothing get a learned placeholder).

    A frozen table is a buffer, not a parameter, under the same name (``table.weight``, so folders saved either way
    load either way): loading a checkpoint creates parameters with ``requires_grad=True`` whatever was set here, and
    DDP fails on a parameter that requires a gradient but never receives one. As a buffer it gets no gradient, no
    optimiser state and no weight decay.
    """

    def __init__(self, num_entities: int, dim: int, frozen: bool):
        super().__init__()
        self.table = nn.Embedding(num_entities + 1, dim, padding_idx=0)
        if frozen:
            weight = self.table.weight.detach()
            del self.table.weight
            self.table.register_buffer("weight", weight)
        self.placeholder = nn.Parameter(torch.empty(dim))

    def forward(self, entity_ids: torch.Tensor) -> torch.Tensor:
        # shape: (batch, seq, dim); row 0 of the table is zero, so adding the placeholder there selects it
        embedded = self.table(entity_ids)
        unlinked = (entity_ids == 0).unsqueeze(-1).to(embedded.dtype)
        return embedded + unlinked * self.placeholder.to(embedded.dtype)


class ClinicalBertKgForCrfTagging(CrfTaggerPreTrainedModel):
    config_class = ClinicalBertKgConfig
    config: ClinicalBertKgConfig

    def __init__(self, config: ClinicalBertKgConfig):
        super().__init__(config)
        joint_size = config.hidden_size

        self.kg_embeddings = self.kg_projection = None
        if config.use_kg_embedding:
            self.kg_embeddings = KgEntityEmbedding(
                config.num_kg_entities, config.kg_embedding_dim, config.freeze_kg_embeddings
            )
            self.kg_projection = nn.Linear(config.kg_embedding_dim, config.kg_projection_size)  # W·e_kg + b
            joint_size += config.kg_projection_size
        self.position_embeddings = (
            nn.Embedding(config.num_term_positions, config.position_embedding_size)
            if config.use_position_feature
            else None
        )
        if self.position_embeddings is not None:
            joint_size += config.position_embedding_size
        self.category_embeddings = (
            nn.Embedding(len(config.kg_categories) + 1, config.category_embedding_size)
            if config.use_category_feature
            else None
        )
        if self.category_embeddings is not None:
            joint_size += config.category_embedding_size

        self.dropout = nn.Dropout(config.head_dropout)
        self.bilstm = BiLSTM(joint_size, config.lstm_hidden_size, config.lstm_num_layers, config.head_dropout)
        self.classifier = nn.Linear(self.bilstm.output_size, config.num_labels)
        self.crf = ConditionalRandomField(
            config.num_labels,
            **transition_constraints(config.id2label, config.label_scheme),
            constrain_training=config.crf_constrain_training,
        )
        self.lexicon: TermLexicon | None = None
        self._lexicon_problem: str | None = None  # why the saved lexicon was not attached, for text_features to say
        self._attach_saved_lexicon()
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, KgEntityEmbedding):
            init.normal_(module.placeholder, mean=0.0, std=self.config.initializer_range)

    # ------------------------------------------------------------------ the lexicon and the KG table

    def _attach_saved_lexicon(self) -> None:
        """Read the lexicon saved next to the config (local folder or Hub repository) when the config names one."""
        expected = self.config.lexicon_sha256
        folder = self.config.name_or_path
        if not expected or not folder:
            return
        try:
            path = cached_file(folder, self.config.lexicon_file, _raise_exceptions_for_missing_entries=False)
        except OSError as error:
            path, reason = None, str(error)
        else:
            reason = "no such file"
        if path is None:
            self._lexicon_problem = f"{folder}: the config expects the lexicon {self.config.lexicon_file!r} ({reason})"
            logger.warning(
                f"{self._lexicon_problem}; text_features will fail until a lexicon is attached with "
                "model.set_lexicon(TermLexicon.load(path))"
            )
            return
        lexicon = TermLexicon.load(path)
        if lexicon.sha256() != expected:
            self._lexicon_problem = (
                f"{path}: SHA-256 {lexicon.sha256()} differs from the config's lexicon_sha256 {expected}, not attached"
            )
            logger.warning(
                f"{self._lexicon_problem} (attach it explicitly with model.set_lexicon if it is the right one)"
            )
            return
        self.set_lexicon(lexicon)

    def set_lexicon(self, lexicon: TermLexicon | None) -> None:
        """Attach the lexicon the features are computed from (``None`` detaches it); records its hash in the config.

        Its categories must equal ``config.kg_categories`` and its entity rows must index the KG table.
        """
        if lexicon is not None:
            if lexicon.categories != list(self.config.kg_categories):
                raise ValueError(
                    f"expected a lexicon with categories {self.config.kg_categories} (config.kg_categories), "
                    f"got {lexicon.categories}"
                )
            max_row = lexicon.max_entity_row
            if max_row is not None and max_row >= self.config.num_kg_entities:
                raise ValueError(
                    f"expected lexicon entity rows < {self.config.num_kg_entities} (config.num_kg_entities), "
                    f"got row {max_row}"
                )
        self.lexicon = lexicon
        self.config.lexicon_sha256 = None if lexicon is None else lexicon.sha256()

    @torch.no_grad()
    def load_kg_embeddings(self, embeddings: torch.Tensor) -> None:
        """Copy ``train_kge.py``'s entity embeddings (``(num_kg_entities, kg_embedding_dim)``, row ``r`` = entity row
        ``r`` of its ``entities.tsv``) into the KG table (ids ``r + 1``)."""
        if self.kg_embeddings is None:
            raise ValueError("expected a model with use_kg_embedding=True, got one without a KG table")
        expected = (self.config.num_kg_entities, self.config.kg_embedding_dim)
        if tuple(embeddings.shape) != expected:
            raise ValueError(
                f"expected KG embeddings of shape {expected} (num_kg_entities, kg_embedding_dim), "
                f"got {tuple(embeddings.shape)}"
            )
        weight = self.kg_embeddings.table.weight
        weight[1:] = embeddings.to(device=weight.device, dtype=weight.dtype)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, is_main_process: bool = True, **kwargs):
        """As ``PreTrainedModel.save_pretrained``, plus the lexicon file (written first, so that ``push_to_hub=True``
        uploads it too)."""
        if self.lexicon is not None and is_main_process and not os.path.isfile(save_directory):
            os.makedirs(save_directory, exist_ok=True)
            self.lexicon.save(os.path.join(save_directory, self.config.lexicon_file))
        return super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)

    # ------------------------------------------------------------------ features from text

    def text_features(self, text: str, offsets: Sequence[Sequence[int]]) -> dict[str, list[int]]:
        """``kg_position_ids``, ``kg_category_ids`` and ``kg_entity_ids`` per token of ``text``.

        ``offsets`` is the tokenizer's ``offset_mapping`` into ``text``; a token takes the features of its first
        character and special tokens (empty offsets) get 0. Without a lexicon this works only when every feature
        is off (the "without KG" ablation), and gives zeros.
        """
        if self.lexicon is None:
            if self.config.uses_lexicon:
                problem = self._lexicon_problem or "none was attached"
                raise ValueError(
                    f"expected a model with a lexicon (its features are on), got none ({problem}): attach one with "
                    "model.set_lexicon(TermLexicon(...)) or load a folder saved with one"
                )
            return {name: [0] * len(offsets) for name in FEATURE_NAMES}
        return self.lexicon.token_features(text, offsets)

    def batch_text_features(
        self, texts: Sequence[str], offsets: Sequence[Sequence[Sequence[int]]], length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`text_features` for a batch, right-padded with 0 to ``length`` (default: the longest) as long
        tensors ``(batch, length)``, ready to pass to ``forward`` with the tokenizer's output."""
        if len(texts) != len(offsets):
            raise ValueError(f"expected one offset list per text ({len(texts)}), got {len(offsets)}")
        length = max((len(o) for o in offsets), default=0) if length is None else length
        batch = {name: torch.zeros(len(texts), length, dtype=torch.long) for name in FEATURE_NAMES}
        for row, (text, token_offsets) in enumerate(zip(texts, offsets)):
            if len(token_offsets) > length:
                raise ValueError(f"text {row}: expected at most {length} tokens, got {len(token_offsets)}")
            for name, values in self.text_features(text, token_offsets).items():
                batch[name][row, : len(values)] = torch.tensor(values, dtype=torch.long)
        return batch

    # ------------------------------------------------------------------ forward

    def _feature_ids(self, name: str, ids: torch.Tensor | None, size: int, shape: torch.Size) -> torch.Tensor:
        if ids is None:
            raise ValueError(f"expected {name} (the model's config has this feature on), got None")
        if ids.shape != shape:
            raise ValueError(f"expected {name} of shape {tuple(shape)}, got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= size):
            raise ValueError(f"expected {name} in [0, {size}), got values in [{int(ids.min())}, {int(ids.max())}]")
        return ids

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        kg_position_ids: torch.Tensor | None = None,
        kg_category_ids: torch.Tensor | None = None,
        kg_entity_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        special_tokens_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> CrfTaggerOutput | tuple:
        r"""
        kg_position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Place of each token in its matched term, 0 = O (none), 1 = B, 2 = I, 3 = E, 4 = S. Required when
            `config.use_position_feature`; see `text_features`.
        kg_category_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Category of the matched term, 0 = none, `i + 1` = `config.kg_categories[i]`. Required when
            `config.use_category_feature`.
        kg_entity_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Linked KG entity, 0 = none (the learned placeholder), `r + 1` = row `r` of the KG embeddings. Required
            when `config.use_kg_embedding`.
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
        batch_seq = attended.shape
        # shape: (batch, seq, hidden + the enabled feature widths)
        joint = [outputs.last_hidden_state]
        if self.kg_embeddings is not None:
            ids = self._feature_ids("kg_entity_ids", kg_entity_ids, self.config.num_kg_entities + 1, batch_seq)
            joint.append(self.kg_projection(self.kg_embeddings(ids)))
        if self.position_embeddings is not None:
            ids = self._feature_ids("kg_position_ids", kg_position_ids, self.config.num_term_positions, batch_seq)
            joint.append(self.position_embeddings(ids))
        if self.category_embeddings is not None:
            ids = self._feature_ids("kg_category_ids", kg_category_ids, len(self.config.kg_categories) + 1, batch_seq)
            joint.append(self.category_embeddings(ids))
        dtype = outputs.last_hidden_state.dtype
        joint = self.dropout(torch.cat([part.to(dtype) for part in joint], dim=2))

        emissions = self.classifier(self.bilstm(joint, attended))
        return self.tagger_output(emissions, outputs, input_ids, inputs_embeds, attended, special_tokens_mask, labels)


ClinicalBertKgForCrfTagging.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["ClinicalBertKgForCrfTagging", "KgEntityEmbedding"]
