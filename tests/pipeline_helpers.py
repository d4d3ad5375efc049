"""Tiny family-A models and tokenizers for the pipeline and predict.py tests.

:func:`hand_set_model` is a BERT-CRF whose tags are fixed by hand: the encoder has no layers (its output is the
layer-normalised word embedding, position and segment embeddings are zero), each token id's embedding is a row of
a Hadamard matrix chosen by the label the id should get, and the classifier scores that row. So a token's emissions
depend on its id alone, the chosen label wins by a wide margin, and the CRF only enforces BIO well-formedness. What
such a model finds in a text is known in advance, wherever the window edges fall.
"""

from __future__ import annotations

import torch

from clinical_ner_zh.datasets_scripts import build_char_tokenizer, build_wordpiece_tokenizer
from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging
from clinical_ner_zh.modeling.tagging import build_label_list

from .conftest import TINY_BERT

TYPES = ["Drug", "Time"]
CLASSES = {"Drug": "Treatments", "Time": "Time"}
# Characters the hand-set model tags, whatever surrounds them.
TAGGED = {"药": "B-Drug", "物": "I-Drug", "时": "B-Time", "间": "I-Time"}
ALPHABET = (
    "患者于年月日行左乳腺癌改良根治术结节阳性化疗周期"
    + "药物时间"
    + "HERki2067mg"
    + "ＡＢＣ１２３（）"
    + "😀🏥"
    + " \t\r\n\u3000"
)
HEAD = dict(lstm_hidden_size=8, fusion_hidden_size=16, fusion_num_heads=2, dgcnn_dilations=[1, 2])


def char_tokenizer(model_max_length: int = 512):
    return build_char_tokenizer([ALPHABET], model_max_length=model_max_length)


def wordpiece_tokenizer():
    return build_wordpiece_tokenizer([ALPHABET, "HER2 ki67 20mg 2019"])


def _config(
    tokenizer, scheme: str = "BIO", types=TYPES, classes=CLASSES, max_position_embeddings: int = 512, **overrides
) -> ChCancerBertConfig:
    labels = build_label_list(types, scheme)
    fields = {
        **TINY_BERT,
        **HEAD,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": max_position_embeddings,
        "id2label": dict(enumerate(labels)),
        "label_scheme": scheme,
        "label_classes": classes,
        "special_token_ids": [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id],
    }
    return ChCancerBertConfig(**{**fields, **overrides})


def random_model(tokenizer, seed: int = 0, scheme: str = "BIO", **overrides) -> ChCancerBertForCrfTagging:
    """The full default architecture (BiLSTM + DGCNN + attention fusion + CRF) with seeded random weights."""
    torch.manual_seed(seed)
    return ChCancerBertForCrfTagging(_config(tokenizer, scheme, **overrides)).eval()


def _hadamard(size: int) -> torch.Tensor:
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < size:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return matrix


@torch.no_grad()
def hand_set_model(
    tokenizer, tagged: dict[str, str] = TAGGED, types=TYPES, classes=CLASSES, scale: float = 10.0
) -> ChCancerBertForCrfTagging:
    """BERT-CRF that gives each token in ``tagged`` (token string -> label) its label and every other token O."""
    config = _config(
        tokenizer,
        types=types,
        classes=classes,
        num_hidden_layers=0,
        use_bilstm=False,
        use_dgcnn=False,
        head_dropout=0.0,
    )
    model = ChCancerBertForCrfTagging(config).eval()
    hidden = config.hidden_size
    # Rows 1.. of a Hadamard matrix have mean 0 and variance 1: layer normalisation leaves them unchanged, and
    # they are orthogonal, so label k's classifier row scores only the tokens whose embedding is row k + 1.
    rows = _hadamard(hidden)[1 : config.num_labels + 1]
    label_ids = {label: index for index, label in config.id2label.items()}
    embeddings = model.bert.embeddings
    embeddings.word_embeddings.weight.copy_(rows[label_ids["O"]].expand(config.vocab_size, hidden))
    for token, label in tagged.items():
        embeddings.word_embeddings.weight[tokenizer.convert_tokens_to_ids(token)] = rows[label_ids[label]]
    embeddings.position_embeddings.weight.zero_()
    embeddings.token_type_embeddings.weight.zero_()
    model.classifier.weight.copy_(scale * rows)
    model.classifier.bias.zero_()
    for parameter in (model.crf.start_transitions, model.crf.end_transitions, model.crf.transitions):
        parameter.zero_()
    return model


def spans(entities) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["entity_group"]) for e in entities]
