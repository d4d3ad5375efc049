"""Tokenizers for models trained from scratch: a character tokenizer, and a small standard WordPiece vocabulary.

The character tokenizer (:func:`build_char_tokenizer`) applies NFKC and gives every character one token, ASCII
letters and digits included; every whitespace character becomes the dedicated ``[SPACE]`` token, because real
CCKS entities start or end with a space and a standard BERT tokenizer drops whitespace. ``offset_mapping`` points
into the original text, also where NFKC changed a character (full-width forms, "㎎"). When NFKC expands one
character into several ("㎎" -> "mg"), each resulting token carries the offsets of that one character, so every
character boundary is still a token boundary. BERT special tokens and post-processing make it usable for
masked-LM and next-sentence pretraining as well as tagging.

:func:`build_wordpiece_tokenizer` makes a bert-base-chinese style vocabulary for tests and comparisons: CJK
characters one token each, ASCII runs ("HER2", "2019") whole word pieces, lower-cased, whitespace dropped. It is
built with ``BertTokenizer(vocab=...)``: ``BertTokenizerFast(vocab_file=...)`` silently ignores the file in
transformers 5.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertTokenizer, PreTrainedTokenizerFast

from .readers import FORMATS, read_records

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPACE_TOKEN = "[SPACE]"
# Exactly the characters Python's str.isspace() accepts (the regex engine's \s misses U+001C..U+001F).
_WHITESPACE = "[\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]


def _char_pipeline(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    # NFKC first, so that full-width and compatibility forms share the ids of their plain forms.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(_WHITESPACE), SPACE_TOKEN)]
    )
    # One piece per character ([\s\S]: any code point, newlines included), the space token kept whole.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\[SPACE\]|[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.Replace(SPACE_TOKEN, " "), decoders.Fuse()])
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def build_char_tokenizer(
    texts: Iterable[str], min_frequency: int = 1, max_vocab: int | None = None, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A character tokenizer whose vocabulary is the characters of ``texts`` (after NFKC).

    Ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4, ``[SPACE]`` 5, then characters seen at least
    ``min_frequency`` times, most frequent first (ties by code point), at most ``max_vocab`` entries in all.
    Save it with ``save_pretrained``; ``AutoTokenizer.from_pretrained`` reloads it as the generic
    ``TokenizersBackend`` (alias ``PreTrainedTokenizerFast``) with the same ids and offsets.
    """
    base = {token: index for index, token in enumerate((*SPECIAL_TOKENS, SPACE_TOKEN))}
    if max_vocab is not None and max_vocab < len(base):
        raise ValueError(f"max_vocab must be at least {len(base)} (the special tokens), got {max_vocab}")
    counting = _char_pipeline(base)
    counts: Counter[str] = Counter()
    for text in texts:
        normalised = counting.normalizer.normalize_str(text)
        counts.update(piece for piece, _ in counting.pre_tokenizer.pre_tokenize_str(normalised))
    counts.pop(SPACE_TOKEN, None)
    chars = sorted((c for c, n in counts.items() if n >= min_frequency), key=lambda c: (-counts[c], c))
    if max_vocab is not None:
        chars = chars[: max_vocab - len(base)]
    vocab = {**base, **{char: len(base) + index for index, char in enumerate(chars)}}
    logger.info("character vocabulary: %d entries (%d characters seen)", len(vocab), len(counts))
    return PreTrainedTokenizerFast(
        tokenizer_object=_char_pipeline(vocab),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=_MODEL_INPUT_NAMES,
        model_max_length=model_max_length,
    )


def _is_cjk(char: str) -> bool:
    # BERT's own definition of a "Chinese character" (tokenization_bert._is_chinese_char): one token each.
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def wordpiece_vocab(texts: Iterable[str], min_frequency: int = 1, lowercase: bool = True) -> list[str]:
    """A bert-base-chinese style vocabulary for ``texts``.

    Special tokens first; then every single character and its ``##`` continuation (so any word can be spelled),
    and every whole word (an ASCII run such as "her2" or "2019", split the way ``BertPreTokenizer`` splits)
    seen at least ``min_frequency`` times, so that such runs are single word pieces.
    """
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in words for char in word})
    continuations = [f"##{char}" for char in chars if not _is_cjk(char)]
    whole = sorted(word for word, count in words.items() if len(word) > 1 and count >= min_frequency)
    return list(dict.fromkeys([*SPECIAL_TOKENS, *chars, *continuations, *whole]))


def build_wordpiece_tokenizer(
    texts: Iterable[str] | None = None,
    *,
    vocab: list[str] | str | Path | None = None,
    lowercase: bool = True,
    model_max_length: int = 512,
) -> BertTokenizer:
    """A standard BERT WordPiece tokenizer from ``texts`` (see :func:`wordpiece_vocab`) or a vocab list / vocab.txt.

    Uses ``BertTokenizer(vocab=dict)``; ``save_pretrained`` writes ``tokenizer.json`` that ``AutoTokenizer`` reloads.
    """
    if (texts is None) == (vocab is None):
        raise ValueError("expected exactly one of texts or vocab")
    if texts is not None:
        tokens = wordpiece_vocab(texts, lowercase=lowercase)
    elif isinstance(vocab, (str, Path)):
        tokens = Path(vocab).read_text(encoding="utf-8").split("\n")
        tokens = [token for token in tokens if token]
    else:
        tokens = list(vocab)
    return BertTokenizer(
        vocab={token: index for index, token in enumerate(tokens)},
        do_lower_case=lowercase,
        model_max_length=model_max_length,
    )


def write_wordpiece_vocab(path: str | Path, texts: Iterable[str], min_frequency: int = 1) -> Path:
    """Write :func:`wordpiece_vocab` as a ``vocab.txt`` (one token per line); a folder gets ``vocab.txt`` inside."""
    path = Path(path)
    if path.is_dir():
        path = path / "vocab.txt"
    path.write_text("\n".join(wordpiece_vocab(texts, min_frequency)) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    """Build a tokenizer from a corpus file's texts and save it with ``save_pretrained``."""
    parser = argparse.ArgumentParser(description="Build a character (or WordPiece) tokenizer from a corpus file.")
    parser.add_argument("input", type=Path)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--wordpiece", action="store_true", help="a standard WordPiece vocabulary instead")
    parser.add_argument("--min-frequency", type=int, default=1)
    parser.add_argument("--max-vocab", type=int)
    parser.add_argument("--model-max-length", type=int, default=512)
    args = parser.parse_args(argv)
    texts = [record["text"] for record in read_records(args.format, args.input).records]
    if args.wordpiece:
        tokenizer = build_wordpiece_tokenizer(texts, model_max_length=args.model_max_length)
    else:
        tokenizer = build_char_tokenizer(texts, args.min_frequency, args.max_vocab, args.model_max_length)
    tokenizer.save_pretrained(str(args.output_dir))
    print(f"saved a {len(tokenizer)}-token {type(tokenizer).__name__} to {args.output_dir}", file=sys.stdout)


if __name__ == "__main__":
    main()
