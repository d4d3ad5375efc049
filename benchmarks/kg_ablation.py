"""The family-B knowledge-graph ablation as one command: the same from-scratch CBT-KG model with all knowledge
features (``clinical_ner_zh.kg``), without any (``no-kg``) and without each character feature in turn (``no-kg-embedding``,
``no-position``, ``no-category``), several training seeds each, on one held-out eval file, every run with the same
budget of optimiser steps (not minutes: on a shared machine the same minutes buy different amounts of training).
Prints strict micro F1 per variant, mean ± standard deviation over the seeds, and its difference to ``clinical_ner_zh.kg``
paired by seed, whatever its sign.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/kg_ablation.py --train ../shared/data/ccks2019/train.jsonl \\
        --kg-embeddings outputs/kge --lexicon terms.tsv --max-steps 400 --seeds 1 2 3 --split-seed 7

The eval file is a seeded share of ``--train`` (``--split-seed``, as in benchmarks/accuracy.py, whose model
settings every run uses); a training seed also draws the dev split that picks the saved model. Any other flag
(``--token_dropout 0.1``) goes to ``train_ner.py`` as it is.

Resumable: each finished run (a variant and a seed) is one line of ``--results``; the same command run again, after
a kill or with more variants or seeds, keeps those lines and trains only the runs missing. A line is kept only for
the same settings (files by content, budget, split, other flags; ``no-kg`` reads no knowledge file, so its runs
stay valid when the KG files change); a run of other settings is refused: choose another ``--results`` file.
Models are deleted once scored; each run's log stays in ``logs/`` beside the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.accuracy import NER, SCRATCH, hold_out  # noqa: E402  (the accuracy benchmark's settings and split)
from clinical_ner_zh.cli_errors import UserError, add_debug_flag, run_command  # noqa: E402

VARIANTS = ("kg", "no-kg", "no-kg-embedding", "no-position", "no-category")  # train_ner.py's family-B variants
REFERENCE = "kg"  # the differences are to the full model
WITHOUT_KNOWLEDGE = "no-kg"


def digest(path: Path) -> str:
    """A short content hash of a file, or of every file in a folder (train_kge.py's output)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    hasher = hashlib.sha256()
    for file in files:
        hasher.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        hasher.update(file.read_bytes())
    return hasher.hexdigest()[:16]


def run_settings(args: argparse.Namespace, extra: list[str], variant: str) -> dict:
    """What a run's score depends on besides its variant and seed: a result is reused only for the same."""
    settings = {
        "train": digest(args.train),
        "eval_fraction": args.eval_fraction,
        "split_seed": args.split_seed,
        "max_steps": args.max_steps,
        "train_ner_flags": extra,
    }
    if variant != WITHOUT_KNOWLEDGE:
        for name in ("kg_embeddings", "lexicon"):
            path = getattr(args, name)
            settings[name] = digest(path) if path else None
    return settings


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    results = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path}:{number}: not a result line ({error.msg}): was it written by this script?"
            ) from error
    return results


def add_result(path: Path, results: list[dict], result: dict) -> None:
    """Append a run's line; the file is replaced whole, so a kill never leaves half a line."""
    results.append(result)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    os.replace(partial, path)


def train_and_score(variant: str, seed: int, split: tuple[Path, Path], args, extra: list[str], folder: Path) -> dict:
    """One run of train_ner.py; its strict micro scores on the eval file."""
    name = f"{variant}-seed{seed}"
    output, log = folder / "runs" / name, folder / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    knowledge = [] if variant == WITHOUT_KNOWLEDGE else [
        f"--{name}={path.resolve()}" for name, path in
        (("kg_embeddings", args.kg_embeddings), ("lexicon", args.lexicon)) if path
    ]  # fmt: skip
    command = [sys.executable, "train_ner.py", "--family=clinicalbert-kg", f"--variant={variant}",
               "--corpus=ccks2019", f"--train_file={split[0]}", f"--test_file={split[1]}", f"--output_dir={output}",
               "--overwrite_output_dir", f"--max_steps={args.max_steps}", f"--seed={seed}", *knowledge,
               *[f"--{k}={v}" for k, v in {**NER, **SCRATCH}.items()], *extra]  # fmt: skip
    print(f"{name}: training ({args.max_steps} steps), log {log}", flush=True)
    with log.open("w", encoding="utf-8") as handle:
        status = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    if status != 0:
        lines = log.read_text(encoding="utf-8").strip().splitlines()
        raise UserError(f"train_ner.py failed for {name} (exit status {status}): {lines[-1] if lines else ''} ({log})")
    report = json.loads((output / "test_results.json").read_text(encoding="utf-8"))
    trained = json.loads((output / "all_results.json").read_text(encoding="utf-8"))
    shutil.rmtree(output)  # a family-B model holds the KG table: scored, it is not kept
    micro = report["micro"]
    return {
        "variant": variant,
        "seed": seed,
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1"],
        "eval_records": report["num_records"],
        "eval_entities": micro["support"],
        "steps": trained["steps"],
        "train_seconds": trained["train_seconds"],
        "best_dev_f1": trained["best_dev_f1"],
    }


def mean_sd(values: list[float], signed: bool = False) -> str:
    """``mean ± sample standard deviation`` (``nan`` for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):{'+' if signed else ''}.4f} ± {spread:.4f}"


def table(results: list[dict], variants: list[str], seeds: list[int]) -> list[str]:
    """Mean ± standard deviation over the seeds per variant, and the difference to ``clinical_ner_zh.kg`` paired by seed."""
    by_run = {(r["variant"], r["seed"]): r for r in results}
    lines = [f"{'variant':<17}{'runs':>5}  {'strict F1 mean ± sd':<19}  {'min-max':<13}  {'P':>6}  {'R':>6}  "
             f"{'F1 - kg F1, same seed':<21}"]  # fmt: skip
    for variant in variants:
        runs = [by_run[variant, seed] for seed in seeds if (variant, seed) in by_run]
        if not runs:
            lines.append(f"{variant:<17}{'0/' + str(len(seeds)):>5}")
            continue
        scores = [r["f1"] for r in runs]
        paired = [r["f1"] - by_run[REFERENCE, r["seed"]]["f1"] for r in runs if (REFERENCE, r["seed"]) in by_run]
        difference = mean_sd(paired, signed=True) if paired and variant != REFERENCE else ""
        lines.append(
            f"{variant:<17}{f'{len(runs)}/{len(seeds)}':>5}  {mean_sd(scores):<19}  "
            f"{min(scores):.4f}-{max(scores):.4f}  {statistics.fmean(r['precision'] for r in runs):>6.4f}  "
            f"{statistics.fmean(r['recall'] for r in runs):>6.4f}  {difference}"
        )
    return [line.rstrip() for line in lines]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="CCKS JSON lines; the eval file is held out of it")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="share of --train held out as the eval file")
    parser.add_argument("--split-seed", type=int, default=7, help="seed of the held-out eval split (fixed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--max-steps", type=int, default=400, help="optimiser steps of every run (the budget)")
    parser.add_argument("--kg-embeddings", type=Path, help="train_kge.py output folder")
    parser.add_argument("--lexicon", type=Path, help="term list, name<TAB>type (default: the KG's entity table)")
    parser.add_argument(
        "--results", type=Path, default=Path("outputs/kg-ablation/results.jsonl"),
        help="one line per finished run; runs, logs and the eval split go in its folder",
    )  # fmt: skip
    add_debug_flag(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    extra = [flag for flag in extra if flag != "--debug"]
    for name in ("train", "kg_embeddings", "lexicon"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise UserError(f"--{name.replace('_', '-')} {path} does not exist")
    if any(variant != WITHOUT_KNOWLEDGE for variant in args.variants) and not (args.kg_embeddings or args.lexicon):
        raise UserError("the variants with knowledge features need --kg-embeddings and/or --lexicon")

    folder = args.results.parent
    folder.mkdir(parents=True, exist_ok=True)
    results = read_results(args.results)
    done = {}
    for result in results:
        key = (result["variant"], result["seed"])
        if result["variant"] in args.variants and result["seed"] in args.seeds:
            settings = run_settings(args, extra, result["variant"])
            if result["settings"] != settings:
                differ = "; ".join(
                    f"{name} {result['settings'].get(name)!r} there, {settings.get(name)!r} now"
                    for name in sorted(set(settings) | set(result["settings"]))
                    if result["settings"].get(name) != settings.get(name)
                )
                raise UserError(
                    f"{args.results}: the run {key[0]} seed {key[1]} there was made with other settings ({differ}): "
                    "choose another --results file, or delete that file to start afresh"
                )
            done[key] = result
    (folder / "split").mkdir(exist_ok=True)
    split = hold_out(args.train.resolve(), args.eval_fraction, args.split_seed, folder.resolve() / "split")
    # Variants outer, in the order given: a grid cut short has its first variants complete, every seed.
    for variant in args.variants:
        for seed in args.seeds:
            if (variant, seed) in done:
                print(f"{variant}-seed{seed}: kept from {args.results} (F1 {done[variant, seed]['f1']:.4f})")
                continue
            result = train_and_score(variant, seed, split, args, extra, folder)
            result["settings"] = run_settings(args, extra, variant)
            add_result(args.results, results, result)
            done[variant, seed] = result
            print(f"{variant}-seed{seed}: F1 {result['f1']:.4f} ({result['steps']} steps, {result['train_seconds']} s)")

    first = next(iter(done.values()))
    print(f"\nFamily B (clinicalbert-kg) from scratch, strict micro scores on {split[1].name}: {first['eval_records']} "
          f"records held out of {args.train.name} (split seed {args.split_seed}), {first['eval_entities']} entities; "
          f"{args.max_steps} optimiser steps per run, training seeds {', '.join(map(str, args.seeds))}")  # fmt: skip
    for line in table(list(done.values()), args.variants, args.seeds):
        print(line)
    print(f"command: python benchmarks/kg_ablation.py {shlex.join(argv)}")


if __name__ == "__main__":
    run_command(main)
