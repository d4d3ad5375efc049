"""The character tokenizer and the WordPiece helper: ids, offsets into the original text, save and reload."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer

from clinical_ner_zh.datasets_scripts.char_tokenizer import (
    SPACE_TOKEN,
    build_char_tokenizer,
    build_wordpiece_tokenizer,
    wordpiece_vocab,
    write_wordpiece_vocab,
)

TEXTS = ["患者HER2(3+)阳性，Ki67 30%。", "2019年3月5日 行TC方案化疗\t6周期\n", "ＣＴ示肝内低密度影，剂量5㎎😀"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer(TEXTS)


def test_special_tokens_have_bert_ids(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", SPACE_TOKEN])
    assert ids == [0, 1, 2, 3, 4, 5]
    assert tokenizer.pad_token_id == 0 and tokenizer.mask_token_id == 4


def test_every_character_is_one_token_with_offsets_into_the_original(tokenizer):
    text = "HER2 阳性\t2019"
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["H", "E", "R", "2", SPACE_TOKEN, "阳", "性", SPACE_TOKEN, "2", "0", "1", "9"]
    assert encoded["offset_mapping"] == [(i, i + 1) for i in range(len(text))]


def test_nfkc_forms_share_ids_and_keep_original_offsets(tokenizer):
    text = "ＣＴ5㎎"
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    plain = tokenizer("CT5mg", add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"] == plain
    # "㎎" becomes "m" "g": both tokens carry the one original character's offsets
    assert encoded["offset_mapping"] == [(0, 1), (1, 2), (2, 3), (3, 4), (3, 4)]


def test_unicode_whitespace_and_emoji(tokenizer):
    text = "a\u3000b\xa0c\x1cd😀"
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[1::2][:3] == [SPACE_TOKEN] * 3
    assert encoded["offset_mapping"] == [(i, i + 1) for i in range(len(text))]


def test_bert_post_processing_single_and_pair(tokenizer):
    single = tokenizer("肝内", return_special_tokens_mask=True)
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    assert single["special_tokens_mask"] == [1, 0, 0, 1]
    pair = tokenizer("肝内", "化疗")
    assert pair["input_ids"][0] == 2 and pair["input_ids"].count(3) == 2
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_vocabulary_limits():
    assert len(build_char_tokenizer(["aab"], min_frequency=2)) == 7  # specials, [SPACE], "a"
    assert len(build_char_tokenizer(["abcdef"], max_vocab=8)) == 8
    with pytest.raises(ValueError, match="max_vocab must be at least 6"):
        build_char_tokenizer(["a"], max_vocab=3)


def test_save_and_auto_tokenizer_reload_unchanged(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TokenizersBackend"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [*TEXTS, "未见过的字 Ｘ"]:
        before = tokenizer(text, "第二句", return_offsets_mapping=True)
        after = reloaded(text, "第二句", return_offsets_mapping=True)
        assert dict(after) == dict(before)
    assert reloaded.model_max_length == 512
    assert reloaded.decode(reloaded("肝 内")["input_ids"], skip_special_tokens=True) == "肝 内"


def test_wordpiece_keeps_ascii_runs_whole_and_reloads(tmp_path):
    tokenizer = build_wordpiece_tokenizer(TEXTS)
    text = "HER2阳性 2019年"
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == ["her2", "阳", "性", "2019", "年"]
    assert encoded["offset_mapping"] == [(0, 4), (4, 5), (5, 6), (7, 11), (11, 12)]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_wordpiece_vocab_file_is_really_used(tmp_path):
    # BertTokenizerFast(vocab_file=...) would silently give a 5-token vocabulary in transformers 5
    path = write_wordpiece_vocab(tmp_path, TEXTS)
    tokenizer = build_wordpiece_tokenizer(vocab=path)
    assert len(tokenizer) == len(wordpiece_vocab(TEXTS)) > 5
    assert tokenizer.unk_token_id not in tokenizer("患者HER2", add_special_tokens=False)["input_ids"]
