"""Training throughput: ChCancerBertForCrfTagging (each variant) against BertForTokenClassification with the same
encoder and batch, optimiser steps per second on CPU, measured in one run. Target: the full model >= 0.75x.

    python benchmarks/training_speed.py [--hidden 256 --layers 4 --heads 4] [--batch 16] [--length 256] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import BertConfig, BertForTokenClassification

from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging
from clinical_ner_zh.modeling.tagging import build_label_list

TYPES = ["Disease", "ImagingExam", "LabTest", "Operation", "Drug", "Anatomy"]
VARIANTS = {
    "dgcnn-bilstm-mha-crf": {},
    "dgcnn-bilstm-crf": {"fusion": "concat"},
    "bilstm-crf": {"use_dgcnn": False},
    "crf": {"use_bilstm": False, "use_dgcnn": False},
}


def steps_per_second(model, batch, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    labels = build_label_list(TYPES, "BIO")
    encoder = dict(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden, id2label=dict(enumerate(labels)),
    )  # fmt: skip
    torch.manual_seed(0)
    input_ids = torch.randint(5, args.vocab, (args.batch, args.length))
    input_ids[:, 0], input_ids[:, -1] = 2, 3
    special = torch.zeros_like(input_ids)
    special[:, 0] = special[:, -1] = 1
    labels_tensor = torch.randint(len(labels), (args.batch, args.length)).masked_fill(special.bool(), -100)
    base_batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels_tensor}

    baseline = BertForTokenClassification(BertConfig(**encoder))
    reference = steps_per_second(baseline, base_batch, args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; encoder {args.layers}x{args.hidden}, "
          f"batch {args.batch} x {args.length} tokens, {len(labels)} labels, {args.steps} steps each")  # fmt: skip
    print(f"{'model':<38}{'steps/s':>9}{'ratio':>8}")
    print(f"{'BertForTokenClassification':<38}{reference:>9.3f}{1:>8.2f}")
    for name, overrides in VARIANTS.items():
        config = ChCancerBertConfig(**encoder, **overrides, special_token_ids=[0, 2, 3])
        model = ChCancerBertForCrfTagging(config)
        model.bert.load_state_dict(baseline.bert.state_dict())
        rate = steps_per_second(model, {**base_batch, "special_tokens_mask": special}, args.steps)
        note = "  (target >= 0.75x)" if name == "dgcnn-bilstm-mha-crf" else ""
        print(f"{'ChCancerBert ' + name:<38}{rate:>9.3f}{rate / reference:>8.2f}{note}")


if __name__ == "__main__":
    main()
