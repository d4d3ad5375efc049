"""Records per second read and encoded into labelled windows, on the CCKS 2019 training set.

``python benchmarks/data_throughput.py [FILE] [--max-length N] [--stride N] [--repeat N]``
(default FILE: ../shared/data/ccks2019/train.jsonl from the project root). Times, for the character tokenizer
and a WordPiece vocabulary: reading the file, encoding with ``WindowEncoder.encode_batch`` directly, and through
``Dataset.map(batched=True)`` (``encode_dataset``). The tokenizers are built once, outside the timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from clinical_ner_zh.datasets_scripts.ccks import read_ccks
from clinical_ner_zh.datasets_scripts.char_tokenizer import build_char_tokenizer, build_wordpiece_tokenizer
from clinical_ner_zh.datasets_scripts.encoding import WindowEncoder, encode_dataset
from clinical_ner_zh.datasets_scripts.labels import CCKS_CODES
from clinical_ner_zh.datasets_scripts.schema import to_dataset

DEFAULT_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ccks2019" / "train.jsonl"


def best_of(repeat: int, function) -> tuple[float, object]:
    """Fastest wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    read_time, result = best_of(args.repeat, lambda: read_ccks(args.file))
    records = result.records
    count = len(records)
    print(f"{args.file}: {count} records, {result.report.entities} entities")
    print(f"read:                         {count / read_time:9.0f} records/s")
    texts = [record["text"] for record in records]
    batch = {name: [record[name] for record in records] for name in ("id", "text", "entities")}
    dataset = to_dataset(records)
    for name, tokenizer in (("char", build_char_tokenizer(texts)), ("wordpiece", build_wordpiece_tokenizer(texts))):

        def encoder(tokenizer=tokenizer) -> WindowEncoder:
            return WindowEncoder(tokenizer, CCKS_CODES, scheme="BIOES", max_length=args.max_length, stride=args.stride)

        direct, _ = best_of(args.repeat, lambda encoder=encoder: encoder().encode_batch(batch))
        mapped, windows = best_of(args.repeat, lambda encoder=encoder: encode_dataset(dataset, encoder()))
        print(f"{name:9s} encode_batch:       {count / direct:9.0f} records/s ({len(windows)} windows)")
        print(f"{name:9s} Dataset.map:        {count / mapped:9.0f} records/s")
        print(f"{name:9s} read + encode_batch:{count / (read_time + direct):9.0f} records/s")


if __name__ == "__main__":
    main()
