"""Continued-pretraining data: whole-word masking from jieba (with a domain lexicon) or random character masking,
the 80/10/10 replacement of the tokens chosen, sentence pairs for NSP, and train_mlm.py on a streamed corpus."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import train_mlm
from clinical_ner_zh.cli_errors import UserError, run_command
from clinical_ner_zh.datasets_scripts import build_char_tokenizer, build_wordpiece_tokenizer
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.training.common import ConfigurationError
from clinical_ner_zh.training.pretraining_data import (
    MASKINGS,
    MaskingCollator,
    WordSegmenter,
    pretraining_examples,
    segmenter_for,
    split_sentences,
)

TEXTS = [r["text"] for r in simulated_breast_cancer_records(12, seed=5, long_records=0)]


def test_sentences_split_after_terminal_punctuation_and_line_breaks():
    assert split_sentences("患者女。ER(+)；PR(-)!\n术后化疗?") == ["患者女。", "ER(+)；", "PR(-)!", "术后化疗?"]


def test_lexicon_terms_stay_whole_words(tmp_path):
    text = "行左乳腺癌改良根治术"
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("乳腺癌改良根治术\t手术\n", encoding="utf-8")
    plain, domain = WordSegmenter(), WordSegmenter(lexicon)
    assert domain.lexicon_size == 1
    words = domain.word_index_per_char(text)
    assert len(set(words[text.index("乳") :])) == 1, "the lexicon term is one word"
    assert len(set(plain.word_index_per_char(text)[text.index("乳") :])) > 1


def test_a_lexicon_line_that_is_not_utf8_is_a_user_error_naming_the_line(tmp_path):
    """It was a UnicodeDecodeError with a traceback; the message names file, line and byte, not the text."""
    lexicon = tmp_path / "terms.txt"
    lexicon.write_bytes("乳腺癌改良根治术\n".encode() + "张三\n".encode("gbk"))
    with pytest.raises(UserError) as raised:
        WordSegmenter(lexicon)
    assert str(raised.value) == f"{lexicon}:2: not UTF-8 text (byte 0 of the line)"


def test_whole_words_are_masked_together_with_both_tokenizers():
    segmenter = WordSegmenter()
    for tokenizer in (build_char_tokenizer(TEXTS), build_wordpiece_tokenizer(TEXTS)):
        examples = list(pretraining_examples(TEXTS, tokenizer, segmenter, max_length=64, seed=1))
        assert {e["next_sentence_label"] for e in examples} == {0, 1}, "both real and random next sentences"
        torch.manual_seed(0)
        batch = MaskingCollator(tokenizer, mlm_probability=0.15)(examples)
        predicted = batch["labels"] != -100
        assert predicted.any()
        for row, example in enumerate(examples):
            words = torch.tensor(example["word_ids"])
            size = len(words)
            chosen = predicted[row, :size]
            assert not chosen[words < 0].any(), "special tokens are never predicted"
            for word in words[chosen].unique():
                assert chosen[words == word].all(), "a word is predicted whole or not at all"
            # About 15% of the real tokens (whole words make it inexact).
            assert chosen.sum() <= max(1, round(0.15 * int((words >= 0).sum()))) + int(
                words[words >= 0].bincount().max()
            )
        masked = batch["input_ids"] == tokenizer.mask_token_id
        assert (masked <= predicted).all() and masked.sum() > 0.5 * predicted.sum()


def four_character_words(tokenizer, draws: int) -> list[dict]:
    """``draws`` copies of one example: [CLS], ten words of four characters, [SEP]."""
    text = "".join(TEXTS)[:40]
    input_ids = tokenizer(text)["input_ids"]
    assert len(input_ids) == 42, "one token per character"
    word_ids = [-1, *(index // 4 for index in range(40)), -1]
    return [{"input_ids": input_ids, "token_type_ids": [0] * 42, "word_ids": word_ids}] * draws


@pytest.mark.parametrize("masking", MASKINGS)
def test_whole_word_masking_chooses_words_and_char_masking_characters(masking):
    """Over many draws: whole-word masking predicts all four characters of a chosen word or none; character masking
    predicts each character on its own with probability 0.15, whatever happens to its neighbours in the word."""
    tokenizer = build_char_tokenizer(TEXTS)
    torch.manual_seed(0)
    draws = 3000
    batch = MaskingCollator(tokenizer, mlm_probability=0.15, masking=masking)(four_character_words(tokenizer, draws))
    predicted = batch["labels"] != -100
    assert not predicted[:, [0, 41]].any(), "special tokens are never predicted"
    words = predicted[:, 1:41].reshape(draws, 10, 4)
    characters_per_word = words.sum(-1)
    first_two = (words[..., 0] & words[..., 1]).float().mean()
    if masking == "whole_word":
        assert set(characters_per_word.unique().tolist()) == {0, 4}
        assert first_two == pytest.approx(words[..., 0].float().mean())  # together, always
    else:
        assert set(characters_per_word.unique().tolist()) == {0, 1, 2, 3, 4}
        rates = predicted[:, 1:41].float().mean(0)
        assert rates.min() > 0.12 and rates.max() < 0.18, rates  # every position about 0.15
        assert first_two == pytest.approx(0.15**2, abs=0.005)  # independent: 0.0225, not 0.15


@pytest.mark.parametrize("masking", MASKINGS)
def test_tokens_to_predict_become_mask_80_random_10_unchanged_10_percent(masking):
    tokenizer = build_char_tokenizer(TEXTS)
    examples = four_character_words(tokenizer, 4000)
    torch.manual_seed(1)
    batch = MaskingCollator(tokenizer, mlm_probability=0.15, masking=masking)(examples)
    predicted = batch["labels"] != -100
    inputs, originals = batch["input_ids"][predicted], batch["labels"][predicted]
    assert len(inputs) > 15000
    masked = (inputs == tokenizer.mask_token_id).float().mean()
    kept = (inputs == originals).float().mean()
    # A random token is drawn from the whole vocabulary: it is [MASK] or the original itself once in len(tokenizer).
    chance = 0.1 / len(tokenizer)
    assert masked == pytest.approx(0.8 + chance, abs=0.01)
    assert kept == pytest.approx(0.1 + chance, abs=0.01)
    assert 1 - masked - kept == pytest.approx(0.1 - 2 * chance, abs=0.01)
    unchanged = torch.tensor([example["input_ids"] for example in examples])
    assert torch.equal(batch["input_ids"][~predicted], unchanged[~predicted]), "the other tokens stay as they are"


def test_an_unknown_masking_is_refused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"^--masking 'word': expected one of whole_word, char$"):
        train_mlm.main([f"--train_files={corpus}", f"--output_dir={tmp_path / 'out'}", "--masking=word"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["flags", "config"])
def test_a_lexicon_with_char_masking_is_refused_before_anything_is_written(tmp_path, capsys, source):
    """The lexicon only keeps terms whole for whole-word masking: with --masking char it used to be read and
    silently ignored. Refused, from flags or from a --config file, before the output folder is touched (here a
    previous run's folder that --overwrite_output_dir would otherwise clear)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("改良根治术\n", encoding="utf-8")
    output = tmp_path / "out"
    (output / "logs").mkdir(parents=True)
    (output / "training_args.json").write_text("{}", encoding="utf-8")
    options = {"masking": "char", "lexicon_file": str(lexicon)}
    if source == "flags":
        argv = [f"--{name}={value}" for name, value in options.items()]
    else:
        config = tmp_path / "mlm.yaml"
        config.write_text("".join(f"{name}: {value}\n" for name, value in options.items()), encoding="utf-8")
        argv = [f"--config={config}"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_command(train_mlm.main, [f"--train_files={corpus}", f"--output_dir={output}", "--overwrite_output_dir",
                                     *argv])  # fmt: skip
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert err.splitlines() == [
        "error: --lexicon_file keeps terms whole for --masking whole_word; --masking char masks each character on "
        "its own and would ignore it: drop one of the two"
    ]
    assert sorted(path.name for path in output.rglob("*")) == ["logs", "training_args.json"]
    assert (output / "training_args.json").read_text(encoding="utf-8") == "{}"


def test_char_masking_never_runs_jieba(tmp_path, monkeypatch):
    """Character masking needs no words: jieba used to segment every document of the corpus for nothing."""
    import jieba

    def refuse(*args, **kwargs):
        raise AssertionError("jieba segmented a document under --masking char")

    monkeypatch.setattr(jieba.Tokenizer, "cut", refuse)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    train_mlm.main([f"--train_files={corpus}", f"--output_dir={tmp_path / 'out'}", "--masking=char", "--max_steps=1",
                    "--per_device_train_batch_size=4", "--max_seq_length=48", "--hidden_size=32",
                    "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64"])  # fmt: skip
    assert (tmp_path / "out" / "model.safetensors").is_file()
    tokenizer = build_char_tokenizer(TEXTS)
    (example,) = pretraining_examples(TEXTS[:1], tokenizer, segmenter_for("char"), 512, next_sentence_prediction=False)
    words = [word for word in example["word_ids"] if word >= 0]
    assert words == list(range(len(words))), "each character a word of its own"


def test_mlm_only_examples_are_single_segments():
    tokenizer = build_char_tokenizer(TEXTS)
    examples = list(pretraining_examples(TEXTS, tokenizer, WordSegmenter(), 64, next_sentence_prediction=False))
    assert examples and all("next_sentence_label" not in e and set(e["token_type_ids"]) == {0} for e in examples)
    assert all(len(e["input_ids"]) <= 64 for e in examples)


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path):
    """Killed after step 4 and resumed from its checkpoint, a run ends with the weights of an uninterrupted one: the
    resumed run masks the same tokens and drops out the same units (masks used to be drawn a batch ahead, before
    the random state a checkpoint saves)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    common = [f"--train_files={corpus}", "--max_steps=6", "--checkpointing_steps=2", "--per_device_train_batch_size=4",
              "--max_seq_length=48", "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2",
              "--intermediate_size=64"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train_mlm.main([*common, f"--output_dir={whole}"])
    step = {json.loads((f / "training_state.json").read_text())["step"]: f for f in (whole / "checkpoints").iterdir()}
    assert sorted(step) == [4, 6]
    shutil.copytree(whole, resumed, ignore=shutil.ignore_patterns(step[6].name))
    train_mlm.main([*common, f"--output_dir={resumed}", "--resume_from_checkpoint=latest"])
    expected, got = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def test_train_mlm_streams_a_corpus_and_saves_an_encoder(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "mlm"
    train_mlm.main([
        f"--train_files={corpus}", "--sample_by=paragraph", "--streaming", "--max_steps=3", f"--output_dir={output}",
        "--per_device_train_batch_size=4", "--max_seq_length=48", "--hidden_size=32", "--num_hidden_layers=1",
        "--num_attention_heads=2", "--intermediate_size=64", "--mlm_only", "--masking=char",
    ])  # fmt: skip
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(output)
    assert type(model).__name__ == "BertForMaskedLM"
    lines = (output / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines, "the loss was logged"
    assert json.loads(lines[-1])["learning_rate"] == 0.0  # logged as the Trainer names it; annealed at the end
    assert "masked-language modelling with\nrandom character masking" in (output / "README.md").read_text()
