"""Continued-pretraining data: documents -> sentence-pair examples (next-sentence prediction) or single segments,
with Chinese whole-word masking from jieba segmentation, or the random character masking the ChCancerBERT paper
used.

transformers 5 has no Chinese whole-word masking (``DataCollatorForWholeWordMask`` is gone and its
``whole_word_mask=True`` treats an unspaced Chinese sentence as one word), so words come from jieba, optionally
with a domain lexicon whose terms are kept as single words and therefore masked as whole units. Each example
carries ``word_ids``: for every token the index of the word it belongs to (-1 for special tokens), found through
the tokenizer's ``offset_mapping``, so it works for the character tokenizer and for WordPiece vocabularies alike.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from clinical_ner_zh.cli_errors import UserError
from clinical_ner_zh.datasets_scripts.schema import ProblemSink, ReadReport

logger = logging.getLogger(__name__)

# A sentence ends after Chinese or Western terminal punctuation, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|\n+")
# High enough that jieba prefers a lexicon term over any split of it.
_LEXICON_WORD_FREQUENCY = 10**6


class TextCorpus:
    """Plain-text files as documents: each non-blank line (``sample_by="line"``), or each paragraph between blank
    lines (``"paragraph"``). The files are read again at every pass, so a corpus larger than memory streams.

    A document holding a line that is not UTF-8 is left out (as the corpus readers leave out a record they cannot
    decode): :meth:`read_report` counts and logs them by file and line, for ``--max_bad_fraction``.
    """

    def __init__(self, paths: Iterable[str | Path], sample_by: str = "line"):
        if sample_by not in ("line", "paragraph"):
            raise ValueError(f"sample_by must be 'line' or 'paragraph', got {sample_by!r}")
        self.paths, self.sample_by = [Path(path) for path in paths], sample_by

    def __iter__(self) -> Iterator[str]:
        for path in self.paths:
            yield from self._documents(path, None)

    def read_report(self) -> ReadReport:
        """One pass over the files: documents kept and dropped, each dropped one logged as ``file:line``."""
        report = ReadReport()
        for path in self.paths:
            sink = ProblemSink(path, report=report)
            for _ in self._documents(path, sink):
                report.records += 1
        return report

    def _documents(self, path: Path, sink: ProblemSink | None) -> Iterator[str]:
        document: list[str] = []
        undecodable = None  # (line, byte offset) of the first line of ``document`` that is not UTF-8
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    line, undecodable = None, undecodable or (number, error.start)
                blank = line is not None and not line.strip()  # a blank line ends a document
                if line is not None and not blank:
                    document.append(line)
                if blank or self.sample_by == "line":
                    yield from self._finish(document, undecodable, sink)
                    document, undecodable = [], None
        yield from self._finish(document, undecodable, sink)

    @staticmethod
    def _finish(lines: list[str], bad: tuple[int, int] | None, sink: ProblemSink | None) -> Iterator[str]:
        if bad is not None:
            if sink is not None:
                sink("bad_encoding", f"not UTF-8 text (byte {bad[1]} of the line)", line=bad[0])
                sink.report.records_skipped += 1
        elif lines:
            yield "\n".join(lines)


def split_sentences(text: str) -> list[str]:
    return [sentence for sentence in (s.strip() for s in _SENTENCE_END.split(text)) if sentence]


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, decoded line by line so that a line that is not UTF-8 is a user error
    naming its number, not a traceback; utf-8-sig drops the BOM of files saved by Windows tools."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                yield line_number, raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise UserError(f"{path}:{line_number}: not UTF-8 text (byte {error.start} of the line)") from None


class WordSegmenter:
    """jieba segmentation with an optional domain lexicon (one term per line; further columns ignored)."""

    def __init__(self, lexicon_file: str | Path | None = None):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self.lexicon_size = 0
        if lexicon_file:
            path = Path(lexicon_file)
            if not path.is_file():
                raise FileNotFoundError(f"lexicon file {path} does not exist")
            for line_number, line in _decoded_lines(path):
                term = line.split("\t")[0].strip()
                if not term:
                    continue
                if any(ch.isspace() for ch in term):
                    logger.warning("%s:%d: lexicon term contains whitespace, skipped", path, line_number)
                    continue
                self._jieba.add_word(term, freq=_LEXICON_WORD_FREQUENCY)
                self.lexicon_size += 1

    def word_index_per_char(self, text: str) -> list[int]:
        """For each character of ``text`` the index of its word."""
        indices: list[int] = []
        for index, word in enumerate(self._jieba.cut(text, HMM=False)):
            indices.extend([index] * len(word))
        return indices


class CharSegmenter:
    """Each character a word of its own: what ``--masking char`` reads, without running jieba over the corpus."""

    @staticmethod
    def word_index_per_char(text: str) -> list[int]:
        return list(range(len(text)))


def segmenter_for(masking: str, lexicon_file: str | Path | None = None) -> WordSegmenter | CharSegmenter:
    """The segmenter that a masking of :data:`MASKINGS` needs."""
    return CharSegmenter() if masking == "char" else WordSegmenter(lexicon_file)


def pretraining_examples(
    documents: Iterable[str],
    tokenizer,
    segmenter: WordSegmenter | CharSegmenter,
    max_length: int,
    next_sentence_prediction: bool = True,
    seed: int = 0,
    buffer_size: int = 1000,
) -> Iterator[dict]:
    """Examples for ``BertForPreTraining`` (pairs, ``next_sentence_label`` 0 = B follows A) or ``BertForMaskedLM``.

    Sentences of a document are packed greedily into chunks that fill ``max_length``. For next-sentence
    prediction a chunk is cut at a random sentence boundary into A and B; half of the time B is replaced by
    sentences from another document, drawn from a buffer of recent documents so that streaming works.
    """
    rng = random.Random(seed)
    recent: list[list[str]] = []
    budget = max_length - (3 if next_sentence_prediction else 2)
    for document in documents:
        sentences = split_sentences(document)
        if not sentences:
            continue
        for chunk in _chunks(sentences, budget):
            if not next_sentence_prediction:
                yield _encode(tokenizer, segmenter, "".join(chunk), None, max_length, None)
                continue
            if len(chunk) < 2 and not recent:
                continue
            cut = rng.randint(1, len(chunk) - 1) if len(chunk) > 1 else 1
            first, second, label = "".join(chunk[:cut]), "".join(chunk[cut:]), 0
            if not second or (recent and rng.random() < 0.5):
                other = rng.choice(recent)
                start = rng.randrange(len(other))
                second, label = "".join(other[start : start + max(1, len(chunk) - cut)]), 1
            yield _encode(tokenizer, segmenter, first, second, max_length, label)
        if len(recent) < buffer_size:
            recent.append(sentences)
        else:
            recent[rng.randrange(buffer_size)] = sentences


def _chunks(sentences: list[str], budget: int) -> Iterator[list[str]]:
    """Greedy packing of consecutive sentences into chunks of about ``budget`` characters."""
    chunk, size = [], 0
    for sentence in sentences:
        if chunk and size + len(sentence) > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(sentence)
        size += len(sentence)
    if chunk:
        yield chunk


def _encode(
    tokenizer, segmenter: WordSegmenter | CharSegmenter, first: str, second: str | None, max_length: int, label
) -> dict:
    encoding = tokenizer(
        first,
        second,
        truncation="longest_first" if second is not None else True,
        max_length=max_length,
        return_offsets_mapping=True,
    )
    sequence_ids = encoding.sequence_ids()
    words_first = segmenter.word_index_per_char(first)
    word_ids = []
    offset = {0: 0, 1: (words_first[-1] + 1) if words_first else 0}
    words = {0: words_first, 1: segmenter.word_index_per_char(second) if second is not None else []}
    for (start, end), sequence_id in zip(encoding["offset_mapping"], sequence_ids):
        if sequence_id is None or end <= start:
            word_ids.append(-1)
        else:
            word_ids.append(words[sequence_id][start] + offset[sequence_id])
    example = {
        "input_ids": encoding["input_ids"],
        "token_type_ids": encoding.get("token_type_ids", [0] * len(encoding["input_ids"])),
        "word_ids": word_ids,
    }
    if label is not None:
        example["next_sentence_label"] = label
    return example


# How the tokens to predict are chosen: whole words (jieba, with the lexicon's terms kept whole), or each character
# on its own, as BERT and the ChCancerBERT paper (Chen et al. 2025) pretrained.
MASKINGS = ("whole_word", "char")


class MaskingCollator:
    """Pads a batch and chooses the tokens to predict: ``whole_word`` takes whole words in random order until about
    ``mlm_probability`` of the tokens are covered; ``char`` takes each token on its own with probability
    ``mlm_probability``. Of the tokens chosen, 80% become [MASK], 10% a random token and 10% stay (Devlin et al.
    2019)."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15, masking: str = "whole_word"):
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a [MASK] and a [PAD] token for masked-LM training")
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if masking not in MASKINGS:
            raise ValueError(f"masking must be one of {', '.join(MASKINGS)}, got {masking!r}")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.masking = masking
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        return self.mask(self.pad(examples))

    def pad(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """Right-pad a batch; each token's word index goes along as ``word_ids`` (-1: special token, padding)."""
        length = max(len(example["input_ids"]) for example in examples)
        batch_size = len(examples)
        input_ids = torch.full((batch_size, length), self.tokenizer.pad_token_id)
        token_type_ids = torch.zeros((batch_size, length), dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        word_ids = torch.full((batch_size, length), -1)
        for row, example in enumerate(examples):
            size = len(example["input_ids"])
            input_ids[row, :size] = torch.tensor(example["input_ids"])
            token_type_ids[row, :size] = torch.tensor(example["token_type_ids"])
            attention_mask[row, :size] = 1
            word_ids[row, :size] = torch.tensor(example["word_ids"])
        batch = {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "word_ids": word_ids,
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([example["next_sentence_label"] for example in examples])
        return batch

    def mask(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Choose the tokens to predict in a padded batch (``labels``, -100 elsewhere), replace them 80/10/10, drop
        ``word_ids``. train_mlm.py masks in its training loop rather than in the DataLoader: Accelerate fetches a
        batch ahead, so masks drawn there would precede the random state a checkpoint saves, and a resumed run would
        mask that batch differently."""
        batch = dict(batch)
        word_ids = batch.pop("word_ids").cpu()
        input_ids = batch["input_ids"].cpu().clone()
        labels = torch.full(input_ids.shape, -100)
        for row, size in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
            chosen = self._choose_tokens(word_ids[row, :size])
            labels[row, :size][chosen] = input_ids[row, :size][chosen]
        predicted = labels != -100
        decision = torch.rand(labels.shape)
        masked = predicted & (decision < 0.8)
        randomised = predicted & (decision >= 0.8) & (decision < 0.9)
        input_ids[masked] = self.tokenizer.mask_token_id
        input_ids[randomised] = torch.randint(len(self.tokenizer), (int(randomised.sum()),))
        device = batch["input_ids"].device
        return {**batch, "input_ids": input_ids.to(device), "labels": labels.to(device)}

    def _choose_tokens(self, word_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask over one example's tokens (``word_ids`` -1: a special token, never chosen)."""
        if self.masking == "char":
            return (word_ids >= 0) & (torch.rand(word_ids.shape) < self.mlm_probability)
        # Whole words in random order until the budget is reached.
        words = word_ids[word_ids >= 0].unique()
        chosen = torch.zeros_like(word_ids, dtype=torch.bool)
        if len(words) == 0:
            return chosen
        budget = max(1, round(int((word_ids >= 0).sum()) * self.mlm_probability))
        covered = 0
        for word in words[torch.randperm(len(words))]:
            tokens = word_ids == word
            size = int(tokens.sum())
            if covered and covered + size > budget:
                continue
            chosen |= tokens
            covered += size
            if covered >= budget:
                break
        return chosen
