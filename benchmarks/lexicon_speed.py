"""Term matching speed: ``clinical_ner_zh.modeling.lexicon.TermLexicon`` (pure Python) against ``pyahocorasick`` (C), in one run.

Names: the ~170,000 distinct node strings of CMeKG when ``pycmekg`` is installed (its pickle is read with an
unpickler that refuses every global, so no code in it can run), else ``../shared/data/kg/medical_entities.tsv``.
Texts: 1,000-character records simulated by concatenating random names and filler characters (seeded), and, when
present, the CCKS2019 training texts (``--ccks``).

Rule: leftmost-longest, non-overlapping matching over folded text (``TermLexicon``'s forward maximum matching).
pyahocorasick is used as its documentation says for that rule: ``Automaton.iter_long`` over the folded text, each
key's value the ``(length, term)`` it stands for, so both sides return the same matches with their terms. Timed:
``lexicon.matches(text)`` against ``list(automaton.iter_long(fold(text)))``, one warm-up pass, best of
``--repeats``, ``--rounds`` rounds alternating the two sides (the spread of the per-round ratio is printed).

Correctness first. Every text is matched three ways: ours, ``iter_long``, and a slow reference built on
pyahocorasick's ``iter`` (every match, then the longest at each position taken greedily in Python). Ours must equal
the reference on every text, or the benchmark stops. ``iter_long`` (pyahocorasick 2.3.1) means the same rule but
drops matches (issues WojciechMula/pyahocorasick#133, #185, #224: a term reached through a failure link, at the
end of a text, e.g. "知识产权" at the end of "...国家知识产权" when "国家知识产权局" is a name, or mid-text after a
mismatch). Sometimes it then reports a match starting right of the one it dropped and overlapping it (leftmost
broken). The benchmark counts the matches iter_long drops and adds against the reference, and times both sides
on the texts where the two agree; the ratio on all texts is printed beside it. Target: ours within 2x of
pyahocorasick's time.

    pip install pyahocorasick pycmekg   # benchmark-only, never needed by the package
    python benchmarks/lexicon_speed.py [--records 200] [--length 1000] [--repeats 3] [--rounds 3] [--names PATH.tsv]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from importlib.metadata import version
from pathlib import Path

import ahocorasick

from clinical_ner_zh.kg.cmekg import load_cmekg
from clinical_ner_zh.modeling.lexicon import TermLexicon, fold

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILLER = "患者男女性岁因于年月日入院出院查体示无明显伴有及行术后左右侧见约大小cm，。；、：（）0123456789 "


def cmekg_names() -> list[str] | None:
    try:
        graph = load_cmekg()  # the package's reader: an unpickler that refuses every global
    except FileNotFoundError:
        return None
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
    """Folded names as keys, ``(length, term)`` as values; the first listed name wins, as in ``TermLexicon``."""
    automaton = ahocorasick.Automaton()
    for name in names:
        key = fold(name)
        if automaton.get(key, None) is None:
            automaton.add_word(key, (len(key), name))
    automaton.make_automaton()
    return automaton


def aho_long(automaton: ahocorasick.Automaton, text: str) -> list[tuple[int, tuple[int, str]]]:
    """pyahocorasick's leftmost-longest matching, as its documentation recommends: ``iter_long``."""
    return list(automaton.iter_long(fold(text)))


def aho_long_spans(automaton: ahocorasick.Automaton, text: str) -> list[tuple[int, int]]:
    return [(end + 1 - length, end + 1) for end, (length, _) in aho_long(automaton, text)]


def reference_spans(automaton: ahocorasick.Automaton, text: str) -> list[tuple[int, int]]:
    """The rule spelt out on pyahocorasick's ``iter`` (every match): longest at each position, greedy. Untimed."""
    longest: dict[int, int] = {}
    for end, (length, _) in automaton.iter(fold(text)):
        start = end + 1 - length
        longest[start] = max(length, longest.get(start, 0))
    spans, position = [], 0
    while position < len(text):
        length = longest.get(position)
        if length:
            spans.append((position, position + length))
            position += length
        else:
            position += 1
    return spans


def ours_spans(lexicon: TermLexicon, text: str) -> list[tuple[int, int]]:
    return [(match.start, match.end) for match in lexicon.matches(text)]


def seconds(function, texts: list[str], repeats: int) -> float:
    """Best of ``repeats`` passes over ``texts`` after one warm-up pass."""
    for text in texts:
        function(text)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per round, the best counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours-then-pyahocorasick, for the spread")
    parser.add_argument("--names", type=Path, help="name<TAB>type table to use instead of CMeKG")
    parser.add_argument("--ccks", type=Path, default=DATA / "ccks2019" / "train.jsonl", help="used when present")
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
    if args.ccks.is_file():
        lines = args.ccks.read_text(encoding="utf-8-sig").splitlines()
        corpora["CCKS2019 train texts"] = [json.loads(line)["originalText"] for line in lines if line.strip()]

    print(
        f"{len(lexicon):,} names from {source}; pyahocorasick {version('pyahocorasick')}; "
        f"build: ours {build_ours:.2f} s, pyahocorasick {build_aho:.2f} s"
    )
    print(
        "timed: ours lexicon.matches(text) vs pyahocorasick list(automaton.iter_long(fold(text))); "
        f"best of {args.repeats} after a warm-up pass, {args.rounds} rounds; 1 Python thread"
    )
    print(
        f"{'texts':<22}{'texts equal':>13}{'dropped':>9}{'added':>7}{'chars':>11}{'ours c/s':>12}"
        f"{'iter_long c/s':>15}{'aho faster':>12}{'rounds':>13}{'all texts':>11}{'target':>9}"
    )
    for name, texts in corpora.items():
        ours = [ours_spans(lexicon, text) for text in texts]
        reference = [reference_spans(automaton, text) for text in texts]
        wrong = sum(a != b for a, b in zip(ours, reference))
        if wrong:
            raise SystemExit(f"{name}: ours differs from the iter-based reference on {wrong} of {len(texts)} texts")
        long = [aho_long_spans(automaton, text) for text in texts]
        dropped = sum(len(set(a) - set(b)) for a, b in zip(ours, long))
        added = sum(len(set(b) - set(a)) for a, b in zip(ours, long))
        equal = [text for text, a, b in zip(texts, ours, long) if a == b]

        per_round, all_round = [], []
        best_ours = best_aho = float("inf")
        for _ in range(args.rounds):
            t_ours = seconds(lexicon.matches, equal, args.repeats)
            t_aho = seconds(lambda text: aho_long(automaton, text), equal, args.repeats)
            per_round.append(t_ours / t_aho)
            best_ours, best_aho = min(best_ours, t_ours), min(best_aho, t_aho)
            all_round.append(
                seconds(lexicon.matches, texts, args.repeats)
                / seconds(lambda text: aho_long(automaton, text), texts, args.repeats)
            )
        chars = sum(map(len, equal))
        ratio = best_ours / best_aho
        verdict = "ok" if ratio <= 2.0 else "MISSED"
        print(
            f"{name:<22}{f'{len(equal)}/{len(texts)}':>13}{dropped:>9,}{added:>7,}{chars:>11,}{chars / best_ours:>12,.0f}"
            f"{chars / best_aho:>15,.0f}{ratio:>11.2f}x{f'{min(per_round):.2f}-{max(per_round):.2f}x':>13}"
            f"{min(all_round):>10.2f}x{'<=2x':>9} {verdict}"
        )
    print(
        "ours equals the iter-based reference on every text. 'dropped'/'added': leftmost-longest matches iter_long "
        "leaves out / matches it reports that the rule does not (pyahocorasick#185, #224)."
    )
    print(
        "'aho faster' = ours time / iter_long time on the texts where both agree (best of all rounds); 'rounds' = "
        "its per-round range; 'all texts' = the same ratio on every text (lowest round)."
    )


if __name__ == "__main__":
    main()
