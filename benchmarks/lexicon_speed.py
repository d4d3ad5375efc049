"""Term matching speed: ``modeling.lexicon.TermLexicon`` (pure Python) against ``pyahocorasick`` (C), in one run.

Names: the ~170,000 distinct node strings of CMeKG when ``pycmekg`` is installed (its pickle is read with an
unpickler that refuses every global, so no code in it can run), else ``../shared/data/kg/medical_entities.tsv``.
Texts: 1,000-character records simulated by concatenating random names and filler characters (seeded), and, when
present, the CCKS2019 training texts. Both matchers use the same rule, forward maximum matching over folded text:
pyahocorasick's automaton reports every match (``iter``), and the longest one starting at each position is then
taken greedily left to right. The benchmark checks that both give identical matches before timing them, and
reports characters per second. pyahocorasick's own ``iter_long`` (leftmost-longest in C) is timed too, but it is
not a correct reference: it drops matches, e.g. a term at the very end of a text that is the prefix of a longer
name, and the benchmark counts the texts where it differs.

    pip install pyahocorasick pycmekg   # benchmark-only, never needed by the package
    python benchmarks/lexicon_speed.py [--records 200] [--length 1000] [--repeats 3] [--names PATH.tsv]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import pickle
import random
import time
from pathlib import Path

import ahocorasick

from modeling.lexicon import TermLexicon, fold

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILLER = "患者男女性岁因于年月日入院出院查体示无明显伴有及行术后左右侧见约大小cm，。；、：（）0123456789 "


class _NoGlobals(pickle.Unpickler):
    """CMeKG's pickle holds only dicts, lists and strings: any global (class, function) is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the CMeKG pickle")


def cmekg_names() -> list[str] | None:
    spec = importlib.util.find_spec("pyCMeKG")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "cmekg.pkl"
    graph = _NoGlobals(io.BytesIO(path.read_bytes())).load()
    names = dict.fromkeys(graph)
    for predicates in graph.values():
        for objects in predicates.values():
            names.update(dict.fromkeys(objects))
    return list(names)


def table_names(path: Path) -> list[str]:
    return list(dict.fromkeys(line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if line))


def simulated_records(names: list[str], count: int, length: int, seed: int = 0) -> list[str]:
    """Names (at most 20 characters, as mentions are) alternating with 1-8 filler characters."""
    rng = random.Random(seed)
    short = [name for name in names if len(name) <= 20]
    records = []
    for _ in range(count):
        parts, size = [], 0
        while size < length:
            piece = rng.choice(short) if rng.random() < 0.5 else "".join(rng.choices(FILLER, k=rng.randint(1, 8)))
            parts.append(piece)
            size += len(piece)
        records.append("".join(parts)[:length])
    return records


def automaton_for(names: list[str]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for name in names:
        key = fold(name)
        if automaton.get(key, None) is None:  # first listed wins, as in TermLexicon
            automaton.add_word(key, len(key))
    automaton.make_automaton()
    return automaton


def aho_spans(automaton: ahocorasick.Automaton, text: str) -> list[tuple[int, int]]:
    """Every match from the automaton, then the longest starting at each position, taken greedily."""
    folded = fold(text)
    longest: dict[int, int] = {}
    for end, length in automaton.iter(folded):
        start = end + 1 - length
        if length > longest.get(start, 0):
            longest[start] = length
    spans, position = [], 0
    while position < len(folded):
        length = longest.get(position)
        if length:
            spans.append((position, position + length))
            position += length
        else:
            position += 1
    return spans


def aho_long_spans(automaton: ahocorasick.Automaton, text: str) -> list[tuple[int, int]]:
    return [(end + 1 - length, end + 1) for end, length in automaton.iter_long(fold(text))]


def ours_spans(lexicon: TermLexicon, text: str) -> list[tuple[int, int]]:
    return [(match.start, match.end) for match in lexicon.matches(text)]


def chars_per_second(function, texts: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - start)
    return sum(map(len, texts)) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--names", type=Path, help="name<TAB>type table to use instead of CMeKG")
    args = parser.parse_args()

    names = table_names(args.names) if args.names else cmekg_names()
    source = str(args.names) if args.names else "CMeKG (pycmekg)"
    if names is None:
        args.names = DATA / "kg" / "medical_entities.tsv"
        names, source = table_names(args.names), str(args.names)
    names = [name for name in names if name and not any(c in name for c in "\t\n\r")]

    start = time.perf_counter()
    lexicon = TermLexicon((name, "Term") for name in names)
    build_ours = time.perf_counter() - start
    start = time.perf_counter()
    automaton = automaton_for(names)
    build_aho = time.perf_counter() - start

    corpora = {f"simulated {args.length}-char": simulated_records(names, args.records, args.length)}
    ccks = DATA / "ccks2019" / "train.jsonl"
    if ccks.exists():
        lines = ccks.read_text(encoding="utf-8-sig").splitlines()
        corpora["CCKS2019 train texts"] = [json.loads(line)["originalText"] for line in lines if line.strip()]

    print(f"{len(lexicon):,} names from {source}; build: ours {build_ours:.2f} s, pyahocorasick {build_aho:.2f} s")
    print(
        f"{'texts':<22}{'chars':>10}{'matches':>9}{'ours':>12}{'ours+features':>15}{'aho iter':>12}{'ours/aho':>10}"
        f"{'aho iter_long':>15}{'(differs)':>10}"
    )
    for name, texts in corpora.items():
        ours = [ours_spans(lexicon, text) for text in texts]
        reference = [aho_spans(automaton, text) for text in texts]
        mismatched = sum(a != b for a, b in zip(ours, reference))
        if mismatched:
            raise SystemExit(f"{name}: {mismatched} of {len(texts)} texts matched differently")
        speed_ours = chars_per_second(lexicon.matches, texts, args.repeats)
        speed_features = chars_per_second(lexicon.char_features, texts, args.repeats)
        speed_aho = chars_per_second(lambda text: aho_spans(automaton, text), texts, args.repeats)
        speed_long = chars_per_second(lambda text: aho_long_spans(automaton, text), texts, args.repeats)
        differs = sum(a != aho_long_spans(automaton, text) for a, text in zip(ours, texts))
        print(
            f"{name:<22}{sum(map(len, texts)):>10,}{sum(map(len, ours)):>9,}{speed_ours:>12,.0f}"
            f"{speed_features:>15,.0f}{speed_aho:>12,.0f}{speed_ours / speed_aho:>9.2f}x{speed_long:>15,.0f}"
            f"{differs:>6}/{len(texts)}"
        )
    print("chars/s, best of --repeats. Ours and 'aho iter' (automaton + the same resolution) matched identically.")
    print("'ours+features' = char_features: matching plus the three per-character id lists.")


if __name__ == "__main__":
    main()
