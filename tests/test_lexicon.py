"""TermLexicon: forward maximum matching against brute force, features per character and per token, folding,
duplicates, and the lexicon file (round trip and malformed content)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinical_ner_zh.modeling.lexicon import POSITION_TAGS, Term, TermLexicon, fold

CATEGORIES = ["Disease", "Drug", "Check"]


def brute_force(names: list[str], text: str) -> list[tuple[int, int, str]]:
    """Forward maximum matching, written the slow obvious way: at each position try every length, longest first;
    a name's first listed spelling (after folding) is the one reported."""
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(fold(name), name)
    folded, found, position = fold(text), [], 0
    while position < len(folded):
        for length in range(len(folded) - position, 0, -1):
            if folded[position : position + length] in first:
                found.append((position, position + length, first[folded[position : position + length]]))
                position += length
                break
        else:
            position += 1
    return found


ALPHABET = "ab乳腺癌AＢ"  # a small alphabet makes overlaps, nesting and folding collisions ("A"/"a", "Ｂ"/"b") common


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.text(ALPHABET, min_size=1, max_size=6), min_size=1, max_size=25),
    text=st.text(ALPHABET + "x，", max_size=60),
)
def test_matches_equal_brute_force_forward_maximum_matching(names, text):
    lexicon = TermLexicon((name, "Disease") for name in names)
    got = [(m.start, m.end, m.term.name) for m in lexicon.matches(text)]
    assert got == brute_force(names, text)
    features = lexicon.char_features(text)
    expected_positions = [0] * len(text)
    for start, end, _ in got:
        expected_positions[start:end] = [4] if end - start == 1 else [1] + [2] * (end - start - 2) + [3]
    assert features["kg_position_ids"] == expected_positions
    assert all(len(values) == len(text) for values in features.values())


def test_longest_match_wins_and_the_leftmost_match_blocks_later_overlaps():
    lexicon = TermLexicon([("乳腺", "Disease"), ("乳腺癌", "Disease"), ("腺癌术后", "Disease"), ("癌", "Disease")])
    # At 0 the longest term is 乳腺癌; 腺癌术后 (longer, starting at 1) overlaps it and is not taken.
    assert [(m.start, m.end) for m in lexicon.matches("乳腺癌术后")] == [(0, 3)]
    assert [(m.start, m.end) for m in lexicon.matches("腺癌术后乳腺")] == [(0, 4), (4, 6)]


def test_features_per_character():
    lexicon = TermLexicon(
        [("乳腺癌", "Disease", 3), ("紫杉醇", "Drug", None), ("癌", "Disease", 0), ("HER2", "Check", 5)], CATEGORIES
    )
    text = "左乳腺癌，紫杉醇，癌"
    features = lexicon.char_features(text)
    tags = [POSITION_TAGS[i] for i in features["kg_position_ids"]]
    assert "".join(tags) == "OBIEOBIEOS"
    assert features["kg_category_ids"] == [0, 1, 1, 1, 0, 2, 2, 2, 0, 1]
    assert features["kg_entity_ids"] == [0, 4, 4, 4, 0, 0, 0, 0, 0, 1]  # rows shifted by one; 0 = no KG entity


def test_token_features_take_the_first_character_and_zero_for_special_tokens():
    lexicon = TermLexicon([("HER2阳性", "Check", 1), ("阳性", "Disease", 2)], CATEGORIES)
    text = "HER2阳性"
    # WordPiece: [CLS] "her2" 阳 性 [SEP]
    offsets = [(0, 0), (0, 4), (4, 5), (5, 6), (0, 0)]
    features = lexicon.token_features(text, offsets)
    assert features == {
        "kg_position_ids": [0, 1, 2, 3, 0],
        "kg_category_ids": [0, 3, 3, 3, 0],
        "kg_entity_ids": [0, 2, 2, 2, 0],
    }
    with pytest.raises(ValueError, match=r"token 1: expected offsets inside a text of 6 characters, got \(7, 8\)"):
        lexicon.token_features(text, [(0, 0), (7, 8)])


def test_folding_is_per_character_nfkc_and_lower_case_so_offsets_stay_original():
    lexicon = TermLexicon([("HER2", "Check"), ("mg", "Check")])
    text = "ＨＥＲ２阳性，her2，5㎎，5MG"
    assert len(fold(text)) == len(text)
    found = [(m.start, m.end, text[m.start : m.end]) for m in lexicon.matches(text)]
    # "㎎" would fold to two characters: it is kept as is and does not match "mg".
    assert found == [(0, 4, "ＨＥＲ２"), (7, 11, "her2"), (16, 18, "MG")]


def test_first_listed_entry_wins_for_duplicate_names_and_two_types():
    lexicon = TermLexicon([("阿司匹林", "Drug", 4), ("阿司匹林", "Disease", 9), ("ab", "Drug"), ("AB", "Check")])
    assert lexicon.terms == (Term("阿司匹林", "Drug", 4), Term("ab", "Drug", None))
    assert lexicon.categories == ["Drug", "Disease", "Check"]  # the types seen, in first-seen order
    assert lexicon.matches("AB")[0].term == Term("ab", "Drug", None)


def test_save_and_load_round_trip(tmp_path):
    lexicon = TermLexicon([("乳腺癌", "Disease", 3), ("紫杉醇", "Drug"), ("#x", "Check", 0)], CATEGORIES)
    path = tmp_path / "lexicon.tsv"
    lexicon.save(path)
    loaded = TermLexicon.load(path)
    assert loaded == lexicon and loaded.categories == CATEGORIES
    assert loaded.sha256() == lexicon.sha256() and loaded.dumps() == path.read_text(encoding="utf-8")
    assert loaded.char_features("乳腺癌#x") == lexicon.char_features("乳腺癌#x")


HEADER = '#TermLexicon\t{"version": 1, "categories": ["Disease", "Drug"]}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"line 1: expected the header"),
        ("乳腺癌\tDisease\t\n", r"line 1: expected the header '#TermLexicon<TAB>.*got '乳腺癌\\tDisease\\t'"),
        ('#TermLexicon\t{"version": 2, "categories": []}\n', r"line 1: expected the header"),
        ("#TermLexicon\t{not json\n", r"line 1: expected the header"),
        ('#TermLexicon\t{"version": 1, "categories": ["A", "A"]}\n', r"line 1: expected distinct categories"),
        (HEADER + "乳腺癌\tDisease\n", r"line 2: expected 3 tab-separated fields \(name, type, entity row\), got 2"),
        (HEADER + "乳腺癌\tDisease\t1\tx\n", r"line 2: expected 3 tab-separated fields .*got 4"),
        (
            HEADER + "乳腺癌\tDisease\t1\n紫杉醇\tDrug\t-1\n",
            r"line 3: expected an empty or non-negative entity row, got '-1'",
        ),
        (HEADER + "乳腺癌\tSymptom\t\n", r"line 2: expected a type among the header's categories .*got 'Symptom'"),
        (HEADER + "\tDisease\t\n", r"line 2: term: expected a non-empty name"),
    ],
)
def test_malformed_lexicon_files_raise_value_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "lexicon.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"lexicon.tsv, {message}"):
        TermLexicon.load(path)


@pytest.mark.parametrize(
    ("terms", "categories", "message"),
    [
        ([("乳腺癌", "Symptom")], CATEGORIES, r"expected term types among categories .*got \['Symptom'\]"),
        ([("乳腺\t癌", "Disease")], None, r"term 0: expected a non-empty name without tabs or newlines"),
        ([("乳腺癌", "Disease", -1)], None, r"term 0: expected entity_row None or an int >= 0, got -1"),
        ([("乳腺癌",)], None, r"term 0: expected \(name, type\) or \(name, type, entity_row\)"),
        ([("乳腺癌", "")], None, r"term 0: expected a non-empty type"),
    ],
)
def test_bad_terms_raise_value_error(terms, categories, message):
    with pytest.raises(ValueError, match=message):
        TermLexicon(terms, categories)


def test_lexicon_from_the_kg_leaves_out_one_character_names_by_default(tmp_path):
    """train_ner.py builds the lexicon: CMeKG names such as 上, 大, 心 would tag common characters, so terms shorter
    than --min_term_length (default 2) are left out; the kept terms keep their KG rows."""
    import torch
    from safetensors.torch import save_file

    from train_ner import ModelArguments, load_knowledge

    save_file({"entity_embeddings": torch.zeros(4, 3)}, tmp_path / "entity_embeddings.safetensors")
    (tmp_path / "entities.tsv").write_text("心\tOther\n心悸\tSymptom\n上\tOther\n胸痛\tSymptom\n", encoding="utf-8")
    arguments = dict(family="clinicalbert-kg", variant="kg", kg_embeddings=str(tmp_path))
    lexicon, _ = load_knowledge(ModelArguments(**arguments))
    assert lexicon.terms == (Term("心悸", "Symptom", 1), Term("胸痛", "Symptom", 3))
    assert lexicon.char_features("上午心悸")["kg_position_ids"] == [0, 0, 1, 3]
    lexicon, _ = load_knowledge(ModelArguments(**arguments, min_term_length=1))
    assert [term.name for term in lexicon.terms] == ["心", "心悸", "上", "胸痛"]
    names = tmp_path / "terms.tsv"
    names.write_text("痛\tSymptom\n胸痛\tSymptom\n", encoding="utf-8")
    lexicon, _ = load_knowledge(ModelArguments(**arguments, lexicon=str(names)))
    assert lexicon.terms == (Term("胸痛", "Symptom", 3),)
