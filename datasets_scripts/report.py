"""Corpus report: counts per type, data-quality findings, and a lossless span -> tag -> span round trip.

``python -m clinical_ner_zh.datasets_scripts.report --format {ccks2019,ccks2020,label-studio} FILE [--tokenizer DIR]
[--scheme BIO|BIOES] [--max-length N] [--stride N]``

The round trip encodes every record into windows of tag ids (:class:`~clinical_ner_zh.datasets_scripts.encoding.WindowEncoder`),
decodes the gold label ids back as if they were predictions (merging the windows), and compares the character
spans with the originals. Its last line is ``round-trip: recovered N/M entities (K not representable)``, where
K counts entities with a boundary inside a token and entities dropped as overlaps.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_ner_zh.cli_errors import add_debug_flag, run_command

from .ccks import ReadResult
from .char_tokenizer import build_char_tokenizer
from .encoding import IGNORE_INDEX, EncodingStats, WindowEncoder
from .quality import Finding, all_findings
from .readers import FORMATS, entity_types_of_format, read_records
from .schema import Record

logger = logging.getLogger(__name__)


@dataclass
class RoundTrip:
    """Result of :func:`round_trip`: counts, and entities lost or invented by the encoding (both should be empty).

    ``lost`` leaves out the entities the encoder reported as not representable: only silent losses are listed.
    """

    total: int
    recovered: int
    stats: EncodingStats
    lost: list[tuple[str, int, int, str]] = field(default_factory=list)
    spurious: list[tuple[str, int, int, str]] = field(default_factory=list)

    @property
    def last_line(self) -> str:
        """``round-trip: recovered N/M entities (K not representable)``."""
        return (
            f"round-trip: recovered {self.recovered}/{self.total} entities "
            f"({self.stats.not_representable} not representable)"
        )


def round_trip(records: Sequence[Record], encoder: WindowEncoder, batch_size: int = 256) -> RoundTrip:
    """Spans -> token windows -> tags -> merged tags -> spans -> character spans, compared with the originals."""
    result = RoundTrip(total=0, recovered=0, stats=encoder.stats)
    skipped: set[tuple[str, int, int, str]] = set()
    for first in range(0, len(records), batch_size):
        chunk = records[first : first + batch_size]
        batch = {name: [record[name] for record in chunk] for name in ("id", "text", "entities")}
        already_skipped = len(encoder.stats.skipped)
        windows = encoder.encode_batch(batch, range(first, first + len(chunk)))
        skipped.update((s.record_id, s.start, s.end, s.label) for s in encoder.stats.skipped[already_skipped:])
        per_record: dict[int, tuple[list[dict[str, Any]], list[list[int]]]] = defaultdict(lambda: ([], []))
        for row in range(len(windows["record_index"])):
            window = {name: windows[name][row] for name in ("special_tokens_mask", "offset_mapping", "window_start")}
            path = [label for label in windows["labels"][row] if label != IGNORE_INDEX]
            group = per_record[windows["record_index"][row]]
            group[0].append(window)
            group[1].append(path)
        for index, record in enumerate(chunk, start=first):
            gold = Counter((e["start"], e["end"], e["label"]) for e in record["entities"])
            decoded = Counter(encoder.decode_record(*per_record[index]))
            result.total += sum(gold.values())
            result.recovered += sum((gold & decoded).values())
            missing = ((record["id"], *span) for span in (gold - decoded).elements())
            result.lost.extend(entry for entry in missing if entry not in skipped)
            result.spurious.extend((record["id"], *span) for span in (decoded - gold).elements())
    return result


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def format_report(
    path: Path,
    read: ReadResult,
    tokenizer_name: str,
    findings: list[Finding],
    trip: RoundTrip,
    types: Sequence[str],
    max_examples: int,
) -> list[str]:
    """The report's lines, the round-trip line last."""
    stats = trip.stats
    counts = Counter(e["label"] for r in read.records for e in r["entities"])
    lines = [f"file: {path}", f"read: {read.report.summary()}"]
    for problem in read.report.problems[:max_examples]:
        lines.append(f"  problem: {problem.message}")
    rows = [["type", "entities", "not representable", "dropped as overlap"]]
    rows += [[t, str(counts[t]), str(stats.unrepresentable[t]), str(stats.overlap_dropped[t])] for t in types]
    rows.append(["total", str(sum(counts.values())), str(sum(stats.unrepresentable.values())),
                 str(sum(stats.overlap_dropped.values()))])  # fmt: skip
    lines += ["entities per type:", *_table(rows)]
    lines.append(f"tokenizer: {tokenizer_name}")
    lines.append(f"encoding: {stats.summary()}")
    for skipped in stats.skipped[:max_examples]:
        lines.append(f"  not encoded: {skipped.message}")
    if len(stats.skipped) > max_examples:
        lines.append(f"  ... and {len(stats.skipped) - max_examples} more")
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_kind[finding.kind].append(finding)
    lines.append("findings:")
    for kind in ("boundary_whitespace", "boundary_punctuation", "overlap", "duplicate_text", "misaligned"):
        group = by_kind.get(kind, [])
        lines.append(f"  {kind}: {len(group)}")
        lines += [f"    {finding.message}" for finding in group[:max_examples]]
        if len(group) > max_examples:
            lines.append(f"    ... and {len(group) - max_examples} more")
    for name, entries in (("lost", trip.lost), ("spurious", trip.spurious)):
        if entries:  # a bug in the encoding, not in the data
            lines.append(f"round-trip {name}: {len(entries)}")
            lines += [f"  record {rid} [{s}, {e}) {label}" for rid, s, e, label in entries[:max_examples]]
    lines.append(trip.last_line)
    return lines


def main(argv: list[str] | None = None) -> None:
    """Print the report of one corpus file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--tokenizer", type=Path, help="a saved tokenizer folder (default: characters of the file)")
    parser.add_argument("--scheme", default="BIO", choices=("BIO", "BIOES"))
    parser.add_argument("--max-length", type=int, default=512, help="tokens per window, [CLS] and [SEP] included")
    parser.add_argument("--stride", type=int, default=64, help="tokens shared by consecutive windows")
    parser.add_argument("--max-examples", type=int, default=20, help="examples listed per finding kind")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem in the file")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")

    read = read_records(args.format, args.file, strict=args.strict)
    if args.tokenizer is None:
        tokenizer = build_char_tokenizer(record["text"] for record in read.records)
        tokenizer_name = f"character tokenizer built from the file ({len(tokenizer)} tokens)"
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))
        tokenizer_name = f"{args.tokenizer} ({type(tokenizer).__name__}, {len(tokenizer)} tokens)"
    types = entity_types_of_format(args.format)
    encoder = WindowEncoder(tokenizer, types, scheme=args.scheme, max_length=args.max_length, stride=args.stride)
    trip = round_trip(read.records, encoder)
    findings = all_findings(read.records)
    tokenizer_name += f", {args.scheme}, max length {args.max_length}, stride {args.stride}"
    print("\n".join(format_report(args.file, read, tokenizer_name, findings, trip, types, args.max_examples)))


if __name__ == "__main__":
    run_command(main)
