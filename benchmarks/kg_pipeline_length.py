"""Family-B (``clinicalbert-kg``) pipeline time per character on a long record against a short one, in one run.

    python benchmarks/kg_pipeline_length.py [--long 100000] [--short 4000] [--rounds 3] [--threads 1]

A family-B model with a small encoder (hidden 64, 2 layers, random weights: speed does not depend on them), the
project's character tokenizer and a term lexicon of the simulated breast-cancer records' entity mentions (so the
text is dense with terms, several per window) tags one simulated record of ``--short`` and one of ``--long``
characters, windows of 128 tokens with stride 32 (``train_ner.py``'s defaults). The lexicon features must be
computed once per record and sliced per window: then every step of the pipeline is linear in the record's length
and the time per character stays flat (target: long / short <= 1.2x). Rounds are interleaved and the best round of
each length counts; both wall time and the process's CPU time are shown, the latter being less sensitive to other
load on a shared machine (one torch thread by default, so that CPU time is not spent spinning).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_speed import simulated_text  # noqa: E402  (the same simulated records)

ENCODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
MAX_LENGTH, STRIDE = 128, 32


def build(folder: Path) -> None:
    """Save a family-B model with its lexicon and tokenizer to ``folder``."""
    import torch

    from clinical_ner_zh.datasets_scripts import build_char_tokenizer
    from clinical_ner_zh.datasets_scripts.labels import BREAST_CANCER_CODES
    from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
    from clinical_ner_zh.modeling import ClinicalBertKgConfig, ClinicalBertKgForCrfTagging, TermLexicon
    from clinical_ner_zh.modeling.configuration_clinicalbert_kg import KG_CATEGORIES
    from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub
    from clinical_ner_zh.modeling.tagging import build_label_list

    records = simulated_breast_cancer_records(count=200, seed=99, long_records=0)
    mentions = dict.fromkeys(record["text"][e["start"] : e["end"]] for record in records for e in record["entities"])
    mentions = [name for name in mentions if len(name) <= 20]  # as long as lexicon terms are
    terms = [(name, KG_CATEGORIES[i % len(KG_CATEGORIES)], i) for i, name in enumerate(mentions)]
    tokenizer = build_char_tokenizer([r["text"] for r in records], model_max_length=512)
    labels = build_label_list(BREAST_CANCER_CODES, "BIOES")
    config = ClinicalBertKgConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        id2label=dict(enumerate(labels)),
        label_scheme="BIOES",
        num_kg_entities=len(terms),
        kg_embedding_dim=16,
        lstm_hidden_size=32,
        special_token_ids=[tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id],
        **ENCODER,
    )
    torch.manual_seed(0)
    model = ClinicalBertKgForCrfTagging(config).eval()
    model.set_lexicon(TermLexicon(terms, list(KG_CATEGORIES)))
    save_for_hub(model, tokenizer, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", type=int, default=100_000, help="characters of the long record")
    parser.add_argument("--short", type=int, default=4_000, help="characters of the short record")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder))
        ner = pipeline("clinical-ner", model=folder, trust_remote_code=True, device=-1, batch_size=8)
        texts = {"short": simulated_text(args.short, seed=1), "long": simulated_text(args.long, seed=2)}
        terms = {name: len(ner.model.lexicon.matches(text)) for name, text in texts.items()}
        ner(texts["short"][:500], max_length=MAX_LENGTH, stride=STRIDE)  # warm-up
        best = {(name, clock): float("inf") for name in texts for clock in ("wall", "cpu")}
        for _ in range(args.rounds):
            for name, text in texts.items():
                wall, cpu = time.perf_counter(), time.process_time()
                ner(text, max_length=MAX_LENGTH, stride=STRIDE)
                best[name, "wall"] = min(best[name, "wall"], time.perf_counter() - wall)
                best[name, "cpu"] = min(best[name, "cpu"], time.process_time() - cpu)
    print(f"family B, encoder {ENCODER}, windows of {MAX_LENGTH} tokens (stride {STRIDE}), batch 8, "
          f"torch threads {torch.get_num_threads()}, best of {args.rounds} interleaved rounds\n")  # fmt: skip
    print(f"{'record':<10}{'characters':>12}{'lexicon terms':>15}{'wall s':>9}{'us/char':>9}{'CPU s':>9}{'us/char':>9}")
    per_char = {key: seconds / len(texts[key[0]]) * 1e6 for key, seconds in best.items()}
    for name, text in texts.items():
        print(f"{name:<10}{len(text):>12,}{terms[name]:>15,}{best[name, 'wall']:>9.2f}{per_char[name, 'wall']:>9.1f}"
              f"{best[name, 'cpu']:>9.2f}{per_char[name, 'cpu']:>9.1f}")  # fmt: skip
    ratios = {clock: per_char["long", clock] / per_char["short", clock] for clock in ("wall", "cpu")}
    print(f"\ntime per character, long / short: wall {ratios['wall']:.2f}x, CPU {ratios['cpu']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
