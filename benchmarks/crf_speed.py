"""CRF speed: ours against pytorch-crf on the same machine, in one run.

Viterbi decode and negative log-likelihood forward+backward at batch 32, length 512, 33 tags (the BIO label set of
16 breast-cancer types). Targets: decode >= 1.5x faster than pytorch-crf; likelihood no slower.

    python benchmarks/crf_speed.py [--batch 32] [--length 512] [--tags 33] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchcrf import CRF

from modeling.crf import ConditionalRandomField


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
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    ours = ConditionalRandomField(args.tags)
    reference = CRF(args.tags, batch_first=True)
    reference.load_state_dict(ours.state_dict())
    emissions = torch.randn(args.batch, args.length, args.tags, requires_grad=True)
    tags = torch.randint(args.tags, (args.batch, args.length))
    # Ragged lengths, as real batches are: between half and all of the padded length.
    lengths = torch.randint(args.length // 2, args.length + 1, (args.batch,))
    lengths[0] = args.length
    mask = torch.arange(args.length).unsqueeze(0) < lengths.unsqueeze(1)

    assert ours.decode(emissions, mask) == reference.decode(emissions, mask)
    nll_ours, nll_reference = ours(emissions, tags, mask), -reference(emissions, tags, mask, reduction="mean")
    assert torch.allclose(nll_ours, nll_reference, rtol=1e-5, atol=1e-3), (nll_ours, nll_reference)

    def backward(crf_loss):
        def run():
            emissions.grad = None
            crf_loss().backward()

        return run

    rows = [
        ("viterbi decode", lambda: ours.decode(emissions, mask), lambda: reference.decode(emissions, mask), 1.5),
        (
            "nll forward+backward",
            backward(lambda: ours(emissions, tags, mask)),
            backward(lambda: -reference(emissions, tags, mask, reduction="mean")),
            1.0,
        ),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x length {args.length}, "
        f"{args.tags} tags, best of {args.repeats}"
    )
    print(f"{'operation':<22}{'ours (s)':>10}{'pytorch-crf (s)':>17}{'speed-up':>10}{'target':>9}")
    speedups = []
    for name, run_ours, run_reference, target in rows:
        t_ours, t_reference = best_time(run_ours, args.repeats), best_time(run_reference, args.repeats)
        speedups.append(t_reference / t_ours)
        verdict = "ok" if t_reference / t_ours >= target else "MISSED"
        print(
            f"{name:<22}{t_ours:>10.3f}{t_reference:>17.3f}{t_reference / t_ours:>9.2f}x{f'>={target}x':>9} {verdict}"
        )
    print(f"geometric mean speed-up {statistics.geometric_mean(speedups):.2f}x")


if __name__ == "__main__":
    main()
