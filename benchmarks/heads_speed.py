"""Inference cost of the heads: ChCancerBertForCrfTagging (DGCNN-BiLSTM-MHA-CRF, Viterbi decode included) against
BertForTokenClassification (linear head + argmax) with the same base-size encoder, random weights, on CPU.

Target: ours <= 1.25x the time of the plain token classifier.

    python benchmarks/heads_speed.py [--batch 8] [--length 512] [--repeats 3] [--layers 12]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import BertConfig, BertForTokenClassification

from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging
from clinical_ner_zh.modeling.tagging import build_label_list

# The breast-cancer label set: 16 types, BIO -> 33 labels.
TYPES = [f"T{i}" for i in range(16)]


def best_time(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 = BERT-base)")
    args = parser.parse_args()

    labels = build_label_list(TYPES, "BIO")
    encoder = dict(vocab_size=21128, num_hidden_layers=args.layers, id2label=dict(enumerate(labels)))
    torch.manual_seed(0)
    baseline = BertForTokenClassification(BertConfig(**encoder)).eval()
    ours = ChCancerBertForCrfTagging(ChCancerBertConfig(**encoder, special_token_ids=[0, 101, 102])).eval()
    ours.bert.load_state_dict(baseline.bert.state_dict())

    input_ids = torch.randint(103, 21128, (args.batch, args.length))
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    attention_mask = torch.ones_like(input_ids)

    @torch.inference_mode()
    def run_baseline():
        return baseline(input_ids=input_ids, attention_mask=attention_mask).logits.argmax(-1).tolist()

    @torch.inference_mode()
    def run_ours():
        return ours.decode(input_ids=input_ids, attention_mask=attention_mask)

    t_baseline, t_ours = best_time(run_baseline, args.repeats), best_time(run_ours, args.repeats)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x {args.length} tokens, "
        f"{args.layers}-layer 768-hidden encoder, {len(labels)} labels, best of {args.repeats}"
    )
    print(f"{'model':<42}{'time (s)':>10}{'ratio':>8}")
    print(f"{'BertForTokenClassification (argmax)':<42}{t_baseline:>10.3f}{1:>8.2f}")
    print(f"{'ChCancerBert DGCNN-BiLSTM-MHA-CRF (Viterbi)':<42}{t_ours:>10.3f}{t_ours / t_baseline:>8.2f}")
    verdict = "ok" if t_ours / t_baseline <= 1.25 else "MISSED"
    print(f"heads cost {t_ours / t_baseline:.2f}x the plain classifier (target <= 1.25x): {verdict}")


if __name__ == "__main__":
    main()
