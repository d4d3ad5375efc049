"""CRF speed: ours against pytorch-crf on the same machine, in one run, under the same conditions.

Viterbi decode and mean negative log-likelihood forward+backward at batch 32, length 512, 33 tags (the BIO label set
of 16 breast-cancer types), ragged lengths. Both sides get the same inputs (emissions, tags, mask), the same
transition scores, the same device and thread count, and the same grad mode: decode under ``torch.inference_mode()``
on emissions that do not require grad; the likelihood with autograd on, emissions requiring grad, backward through
emissions and the CRF parameters. Outputs are checked equal (paths, loss, gradients) before anything is timed.

Timing: one warm-up call, then best of ``--repeats``; each of ``--rounds`` rounds times ours then pytorch-crf, so
both see the same machine noise. The table shows the best time of each side over all rounds and their ratio, with
the lowest and highest per-round ratio beside it. Targets: decode >= 2.5x faster than pytorch-crf, likelihood
forward+backward >= 1.5x.

    python benchmarks/crf_speed.py [--batch 32] [--length 512] [--tags 33] [--repeats 5] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchcrf import CRF

from clinical_ner_zh.modeling.crf import ConditionalRandomField

TARGETS = {"viterbi decode": 2.5, "nll forward+backward": 1.5}


def best_time(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--tags", type=int, default=33)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round, the best counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours-then-pytorch-crf, for the spread")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours = ConditionalRandomField(args.tags).to(device)
    reference = CRF(args.tags, batch_first=True).to(device)
    reference.load_state_dict(ours.state_dict())
    # shape: (batch, length, tags); decode reads them as they are, the likelihood through a leaf that requires grad
    emissions = torch.randn(args.batch, args.length, args.tags, device=device)
    emissions_grad = emissions.clone().requires_grad_(True)
    tags = torch.randint(args.tags, (args.batch, args.length), device=device)
    # Ragged lengths, as real batches are: between half and all of the padded length.
    lengths = torch.randint(args.length // 2, args.length + 1, (args.batch,), device=device)
    lengths[0] = args.length
    mask = torch.arange(args.length, device=device).unsqueeze(0) < lengths.unsqueeze(1)

    def decode_ours():
        with torch.inference_mode():
            return ours.decode(emissions, mask)

    def decode_reference():
        with torch.inference_mode():
            return reference.decode(emissions, mask)

    def nll_ours():
        return ours(emissions_grad, tags, mask)

    def nll_reference():
        return -reference(emissions_grad, tags, mask, reduction="mean")

    def backward(crf, loss):
        def run():
            emissions_grad.grad = None
            crf.zero_grad(set_to_none=True)
            loss().backward()

        return run

    # Same answers before any timing: paths, loss, and the gradients of both.
    if decode_ours() != decode_reference():
        raise SystemExit("decode: ours and pytorch-crf give different paths")
    gradients = []
    for crf, loss in ((ours, nll_ours), (reference, nll_reference)):
        backward(crf, loss)()
        gradients.append([emissions_grad.grad] + [p.grad for _, p in sorted(crf.named_parameters())])
    nll = nll_ours().item(), nll_reference().item()
    if abs(nll[0] - nll[1]) > 1e-3 + 1e-5 * abs(nll[1]):
        raise SystemExit(f"nll: ours {nll[0]} and pytorch-crf {nll[1]} differ")
    # float32 sums over every step: compare against each gradient's largest entry
    if not all((a - b).abs().max() <= 1e-3 * b.abs().max() + 1e-6 for a, b in zip(*gradients)):
        raise SystemExit("nll backward: ours and pytorch-crf give different gradients")

    rows = {
        "viterbi decode": (decode_ours, decode_reference),
        "nll forward+backward": (backward(ours, nll_ours), backward(reference, nll_reference)),
    }
    times = {name: ([], []) for name in rows}
    for _ in range(args.rounds):
        for name, (run_ours, run_reference) in rows.items():
            times[name][0].append(best_time(run_ours, args.repeats))
            times[name][1].append(best_time(run_reference, args.repeats))

    print(
        f"torch {torch.__version__}, device {device}, torch.set_num_threads({args.threads}); "
        f"batch {args.batch} x length {args.length} (lengths {int(lengths.min())}-{int(lengths.max())}), "
        f"{args.tags} tags; best of {args.repeats} after a warm-up, {args.rounds} rounds"
    )
    print(
        "grad mode: decode under torch.inference_mode() on both sides; nll with autograd on both sides "
        "(backward to emissions and CRF parameters)"
    )
    print(f"{'operation':<22}{'ours (s)':>10}{'pytorch-crf (s)':>17}{'speed-up':>10}{'rounds':>14}{'target':>9}")
    for name, (ours_times, reference_times) in times.items():
        best_ours, best_reference = min(ours_times), min(reference_times)
        speedup = best_reference / best_ours
        per_round = [r / o for o, r in zip(ours_times, reference_times)]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}x"
        verdict = "ok" if speedup >= TARGETS[name] else "MISSED"
        print(
            f"{name:<22}{best_ours:>10.4f}{best_reference:>17.4f}{speedup:>9.2f}x{spread:>14}"
            f"{f'>={TARGETS[name]}x':>9} {verdict}"
        )


if __name__ == "__main__":
    main()
