"""The split by hidden units against the column split, paired in one process.

A call of the compiled loops whose step is small (at most 16 rows and 2^21 multiply-adds in its
recurrent products) and whose products split over the threads (Elman, LSTM with or without
peepholes, GRU both forms, MGU, MUT1-3, NAS) runs as one parallel region split by hidden units:
each thread's product computes its units' columns of every gate block, its pointwise pass the
same units of every row, one or two barriers a step. Before, every step opened two parallel
regions or four, the products split by columns and the passes by rows (``_loops_units.h``;
``engine.native_switches.set_units``). The values are the same bits (the peephole LSTM's
weight sums to rounding).

For each model and shape this times the training step (forward, then the gradients with respect
to the input and every parameter), the forward pass and, from B = 2 on, the training step with
lengths spread evenly over [T/2, T], in both forms in one process: back to back in every round,
in alternating order, and the median of the rounds' ratios (units over columns).

    python benchmarks/units.py --reuse-freed-memory    # the table in docs/benchmarks.md, ~1 min
    python benchmarks/units.py --quick                 # GRU, B = 1, H = 256 only
"""

from __future__ import annotations

import statistics

import torch
from machine import paired_ratios, paired_setup, print_header
from rnn_speed import _input, build, step_fns

from rnnkit.engine import native_switches

T = 100
CASES = (
    ("GRU", 1, 256),
    ("Elman", 1, 256),
    ("LSTM [native loop]", 1, 256),
    ("LSTM peephole", 1, 256),
    ("GRU reset before", 1, 256),
    ("MGU", 1, 256),
    ("MUT1", 1, 256),
    ("MUT2", 1, 256),
    ("MUT3", 1, 256),
    ("NAS", 1, 256),
    ("GRU", 1, 512),
    ("Elman", 1, 512),
    ("LSTM [native loop]", 1, 512),
    ("NAS", 1, 512),
    ("GRU", 4, 256),
    ("NAS", 4, 256),
    ("GRU", 8, 256),
    ("Elman", 8, 256),
    ("LSTM [native loop]", 8, 256),
    ("GRU reset before", 8, 256),
    ("MUT3", 8, 256),
    ("GRU", 16, 128),
    ("Elman", 16, 256),
)


def spread_lengths(B: int) -> torch.Tensor:
    return torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]


def measure(name: str, B: int, H: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = _input(T, B, H)
    forward, train = step_fns(build(name, H), x)
    fns = {"train": train, "forward": forward}
    if B > 1:  # lengths over [T/2, T]: the sorted layout, its first steps before the turn
        fns["lengths"] = step_fns(build(name, H), x, spread_lengths(B))[1]
    for on in (True, False):
        native_switches.set_units(on)
        for fn in fns.values():
            fn()  # warm-up: packed copies, allocator
    return {
        key: statistics.median(paired_ratios(fn, native_switches.set_units, rounds))
        for key, fn in fns.items()
    }


def main() -> None:
    _, args = paired_setup(__doc__, 15, "the GRU at B = 1, H = 256 only", own_kernel=True)
    print_header(
        "The split by hidden units: time split by units / split by columns and rows",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both forms back to back in alternating order; median of the "
        "rounds' ratios",
    )
    print("| model | B | H | training units / columns | forward | training with lengths |")
    print("|---|---|---|---|---|---|")
    for name, B, H in CASES[:1] if args.quick else CASES:
        r = measure(name, B, H, args.rounds)
        shown = f"{r['lengths']:.3f}" if "lengths" in r else ""
        print(
            f"| {name} | {B} | {H} | {r['train']:.3f} | {r['forward']:.3f} | {shown} |", flush=True
        )


if __name__ == "__main__":
    main()
