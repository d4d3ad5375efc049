"""int8 and bf16 against float32 on the CPU, one table: chars/s and strict F1 of a trained model on its eval file, and
chars/s of a base-size family-A model (random weights) on long simulated records.

    python benchmarks/accuracy.py --format ccks2019 --train ../shared/data/ccks2019/train.jsonl --minutes 15 \\
        --output-dir outputs/acc   # a trained model and its held-out eval file
    python benchmarks/quantization.py --model outputs/acc/ner-dgcnn-bilstm-mha-crf --eval outputs/acc/eval.jsonl \\
        [--rounds 3] [--threads 1] [--base-records 4]

``int8`` is the pipeline's ``quantize="int8"`` (``predict.py --quantize int8``): torch's dynamic quantization of the
linear layers, the DGCNN's convolutions run as int8 linear layers, the LSTMs left in float32. ``bf16`` is
``quantize="bf16"``: the encoder and heads under bfloat16 autocast, the CRF in float32; on a CPU without native
bfloat16 it is left out, with a line saying why. All settings run the same clinical-ner pipeline and model code (this
checkout's, whatever code the folder holds), the same records, windows (the model's training windows; 512 tokens for
the base-size model), batch 8 and torch threads, under ``torch.inference_mode``; rounds are interleaved and the best
round of each counts; the process keeps freed memory as predict.py does (``--system-malloc``: malloc's defaults). F1
is strict micro F1 against the eval file's gold entities; for the base-size model, whose random weights have no gold,
the int8 and bf16 entities are scored against the float32 ones (agreement). Target: >= 1.8x chars/s for <= 0.5 F1
points lost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settings() -> tuple[tuple[str | None, ...], str]:
    """float32 (``None``), int8, and bf16 where the CPU has it; and why bf16 is left out, if it is."""
    from clinical_ner_zh.modeling.pipeline_clinical_ner import check_bf16

    try:
        check_bf16()
    except ValueError as error:
        return (None, "int8"), f"bf16 left out: {error}"
    return (None, "int8", "bf16"), ""


def pipelines(model, tokenizer, kinds) -> dict[str | None, object]:
    from clinical_ner_zh.modeling.pipeline_clinical_ner import ClinicalNerPipeline

    return {
        q: ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1, batch_size=8, quantize=q) for q in kinds
    }


def best_of(pipes: dict, texts: list[str], rounds: int) -> tuple[dict, dict]:
    """Best seconds of each setting over interleaved rounds, and its entities."""
    for pipe in pipes.values():
        pipe(texts[:1])  # warm-up
    best, found = dict.fromkeys(pipes, float("inf")), {}
    for _ in range(rounds):
        for setting, pipe in pipes.items():
            start = time.perf_counter()
            found[setting] = pipe(texts)
            best[setting] = min(best[setting], time.perf_counter() - start)
    return best, found


def compare(folder: Path, texts: list[str], gold: list | None, rounds: int, name: str, kinds) -> list[tuple]:
    """Rows ``(name, setting, chars/s, strict micro F1)``, one per setting of ``kinds`` (float32 first); F1 against
    ``gold``, or against the float32 entities when there is no gold."""
    from transformers import AutoConfig, AutoTokenizer

    from clinical_ner_zh import modeling
    from clinical_ner_zh.metrics import score_entities

    # This checkout's model class, not the code saved in the folder (what trust_remote_code would run): a model
    # trained earlier is measured with the modeling code being benchmarked.
    architecture = AutoConfig.from_pretrained(folder, trust_remote_code=True).architectures[0]
    model = getattr(modeling, architecture).from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    best, found = best_of(pipelines(model, tokenizer, kinds), texts, rounds)
    if gold is None:
        gold = [[(e["start"], e["end"], e["entity_group"]) for e in record] for record in found[None]]
    chars = sum(map(len, texts))
    return [(name, q, chars / best[q], score_entities(gold, found[q]).micro.f1) for q in kinds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained clinical-ner model folder")
    parser.add_argument("--eval", type=Path, required=True, help="its eval file (CCKS or span-schema JSON lines)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--base-records",
        type=int,
        default=4,
        help="simulated records of 2,000 characters for the base-size model (0: leave it out)",
    )
    parser.add_argument("--folder", type=Path, default=Path("/tmp/clinical-ner-benchmark-base"))
    parser.add_argument(
        "--system-malloc", action="store_true", help="leave malloc as it is (not as predict.py sets it)"
    )
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from benchmarks import pipeline_speed
    from clinical_ner_zh.metrics.cli import read_scored_records

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)

    malloc = pipeline_speed.set_allocator(args.system_malloc)
    kinds, left_out = settings()
    gold = read_scored_records(args.eval)
    texts = [record.text for record in gold.values()]
    name = f"trained ({args.model.name}), {len(texts)} eval records"
    rows = compare(args.model, texts, [record.spans for record in gold.values()], args.rounds, name, kinds)
    if args.base_records:
        pipeline_speed.ENCODER.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                      intermediate_size=3072)  # fmt: skip
        pipeline_speed.build(args.folder)
        texts = [pipeline_speed.simulated_text(2000, seed=i) for i in range(args.base_records)]
        name = f"base size, random weights, {len(texts)} x 2,000 chars"
        rows += compare(args.folder / "full-head", texts, None, args.rounds, name, kinds)

    print(f"torch threads {torch.get_num_threads()}, best of {args.rounds} interleaved rounds, batch 8, inference_mode")
    print(malloc)
    width = max(len(row[0]) for row in rows) + 2
    print(f"{'model':<{width}}{'weights':<9}{'chars/s':>9}{'speed-up':>10}{'strict F1':>11}{'change':>9}")
    for index, (name, setting, speed, f1) in enumerate(rows):
        reference = rows[index - index % len(kinds)]
        change = 100 * (f1 - reference[3])
        print(
            f"{name:<{width}}{setting or 'float32':<9}{speed:>9.0f}{speed / reference[2]:>9.2f}x{f1:>11.4f}{change:>+9.2f}"
        )
    if args.base_records:
        print("(F1 of the base-size model: its int8 and bf16 entities scored against its float32 ones)")
    if left_out:
        print(left_out)
    for column, kind in enumerate(kinds[1:], start=1):
        speedups = [rows[i + column][2] / rows[i][2] for i in range(0, len(rows), len(kinds))]
        lost = 100 * (rows[0][3] - rows[column][3])
        verdict = "ok" if min(speedups) >= 1.8 and lost <= 0.5 else "MISSED"
        shown = ", ".join(f"{x:.2f}x" for x in speedups)
        print(f"{kind}: chars/s {shown} (trained{', base size' if args.base_records else ''}), {lost:.2f} F1 points "
              f"lost on the trained model (target >= 1.8x, <= 0.5 points): {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
