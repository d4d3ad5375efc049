"""Continued-pretraining data: whole-word masking from jieba (with a domain lexicon), sentence pairs for NSP, and
train_mlm.py on a streamed corpus."""

from __future__ import annotations

import json

import torch

import train_mlm
from datasets_scripts import build_char_tokenizer, build_wordpiece_tokenizer
from datasets_scripts.fixtures import simulated_breast_cancer_records
from training.pretraining_data import WholeWordMaskCollator, WordSegmenter, pretraining_examples, split_sentences

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


def test_whole_words_are_masked_together_with_both_tokenizers():
    segmenter = WordSegmenter()
    for tokenizer in (build_char_tokenizer(TEXTS), build_wordpiece_tokenizer(TEXTS)):
        examples = list(pretraining_examples(TEXTS, tokenizer, segmenter, max_length=64, seed=1))
        assert {e["next_sentence_label"] for e in examples} == {0, 1}, "both real and random next sentences"
        torch.manual_seed(0)
        batch = WholeWordMaskCollator(tokenizer, mlm_probability=0.15)(examples)
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


def test_mlm_only_examples_are_single_segments():
    tokenizer = build_char_tokenizer(TEXTS)
    examples = list(pretraining_examples(TEXTS, tokenizer, WordSegmenter(), 64, next_sentence_prediction=False))
    assert examples and all("next_sentence_label" not in e and set(e["token_type_ids"]) == {0} for e in examples)
    assert all(len(e["input_ids"]) <= 64 for e in examples)


def test_train_mlm_streams_a_corpus_and_saves_an_encoder(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "mlm"
    train_mlm.main([
        f"--train_files={corpus}", "--sample_by=paragraph", "--streaming", "--max_steps=3", f"--output_dir={output}",
        "--per_device_train_batch_size=4", "--max_seq_length=48", "--hidden_size=32", "--num_hidden_layers=1",
        "--num_attention_heads=2", "--intermediate_size=64", "--mlm_only",
    ])  # fmt: skip
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(output)
    assert type(model).__name__ == "BertForMaskedLM"
    lines = (output / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines, "the loss was logged"
    assert json.loads(lines[-1])["learning_rate"] == 0.0  # logged as the Trainer names it; annealed at the end
