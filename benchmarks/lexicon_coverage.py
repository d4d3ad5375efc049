"""What each term lexicon tags in a corpus, against the corpus's gold entities, side by side in one run.

    python benchmarks/lexicon_coverage.py --corpus ../shared/data/ccks2019/train.jsonl \\
        --lexicon cmekg=outputs/cmekg/entities.tsv --lexicon medical=../shared/data/kg/medical_entities.tsv \\
        [--min-term-length 1 2]

A lexicon is a ``name<TAB>type`` file, as ``train_ner.py --lexicon`` takes it (or a KG entity table, the default
lexicon). For each lexicon and each minimum term length it is built as ``train_ner.py`` builds it (terms shorter
than ``--min_term_length`` left out) and matched over every record (forward maximum matching); then per row:
``terms``; ``tagged``, the share of the corpus's characters that get term features; ``precision``, the share of
tagged characters that lie inside a gold entity; ``recall``, the share of gold-entity characters tagged; ``exact``,
the share of gold entities that one match covers exactly (same start and end). Only offsets are compared: no text
is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinical_ner_zh.datasets_scripts.ccks import read_ccks  # noqa: E402
from clinical_ner_zh.kg.io import read_entities  # noqa: E402
from clinical_ner_zh.modeling.lexicon import TermLexicon  # noqa: E402


def coverage(records: list[dict], lexicon: TermLexicon) -> dict[str, float]:
    characters = tagged = tagged_in_gold = gold_characters = exact = entities = 0
    for record in records:
        gold = [False] * len(record["text"])
        spans = {(entity["start"], entity["end"]) for entity in record["entities"]}
        for start, end in spans:
            gold[start:end] = [True] * (end - start)
        matches = lexicon.matches(record["text"])
        characters += len(gold)
        gold_characters += sum(gold)
        entities += len(spans)
        exact += len(spans & {(match.start, match.end) for match in matches})
        for match in matches:
            tagged += match.end - match.start
            tagged_in_gold += sum(gold[match.start : match.end])
    return {
        "terms": len(lexicon),
        "tagged": tagged / max(1, characters),
        "precision": tagged_in_gold / max(1, tagged),
        "recall": tagged_in_gold / max(1, gold_characters),
        "exact": exact / max(1, entities),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="CCKS JSON lines with gold entities")
    parser.add_argument("--lexicon", action="append", required=True, help="NAME=PATH of a name<TAB>type file")
    parser.add_argument("--min-term-length", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    records = read_ccks(args.corpus).records
    print(f"{len(records)} records from {args.corpus.name}, {sum(len(r['entities']) for r in records)} entities")
    print(f"{'lexicon':<12} {'min length':>10} {'terms':>8} {'tagged':>7} {'precision':>9} {'recall':>7} {'exact':>7}")
    for item in args.lexicon:
        name, _, path = item.partition("=")
        terms = read_entities(path, allow_duplicates=True)
        for min_length in args.min_term_length:
            lexicon = TermLexicon([(t.name, t.type) for t in terms if len(t.name) >= min_length])
            row = coverage(records, lexicon)
            print(
                f"{name:<12} {min_length:>10} {row['terms']:>8,} {row['tagged']:>7.1%} {row['precision']:>9.1%} "
                f"{row['recall']:>7.1%} {row['exact']:>7.1%}"
            )


if __name__ == "__main__":
    main()
