"""Products of one to three rows, several panels of W_hh at a time: the compiled loops now and
earlier.

The loops' own product kernel keeps 2 vectors of output columns by up to 12 rows in registers
and streams W_hh's packed panels through them. On 1 to 3 rows that leaves 2 to 6 chains of
multiply-adds, each waiting on the one before it, so a panel took as long on one row as on
four. Such products (a batch of one to three sequences, and the last steps of a batch with
lengths) now take 4 panels at a time on one row and 2 on two or three (``_loops_products.h``,
``micro_panels``; ``engine.native_switches.set_few_rows``). The values are the same bits.

For each model and shape this times the training step (forward, then the gradients with respect
to the input and every parameter), the forward pass and, from B = 2 on, the training step with
lengths spread evenly over [T/2, T], in both forms in one process: back to back in every round,
in alternating order, and the median of the rounds' ratios (now over earlier).

    python benchmarks/few_rows.py                  # about a minute on 2 cores
    python benchmarks/few_rows.py --quick          # the GRU at B = 1, H = 256 only
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
    ("LSTM [native loop]", 1, 256),
    ("Elman", 1, 256),
    ("MUT1", 1, 256),
    ("NAS", 1, 256),
    ("GRU", 1, 64),
    ("LSTM [native loop]", 1, 512),
    ("NAS", 1, 512),
    ("GRU", 2, 256),
    ("Elman", 3, 256),
    ("GRU", 32, 256),
    ("Elman", 32, 256),
)


def spread_lengths(B: int) -> torch.Tensor:
    return torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]


def measure(name: str, B: int, H: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = _input(T, B, H)
    forward, train = step_fns(build(name, H), x)
    fns = {"train": train, "forward": forward}
    if B > 1:
        fns["lengths"] = step_fns(build(name, H), x, spread_lengths(B))[1]
    for on in (True, False):
        native_switches.set_few_rows(on)
        for fn in fns.values():
            fn()  # warm-up: packed copies, allocator
    return {
        key: statistics.median(paired_ratios(fn, native_switches.set_few_rows, rounds))
        for key, fn in fns.items()
    }


def main() -> None:
    _, args = paired_setup(__doc__, 15, "the GRU at B = 1, H = 256 only", own_kernel=True)
    print_header(
        "Products of one to three rows, several panels at a time: now / earlier",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both forms back to back in alternating order; median of the "
        "rounds' ratios",
    )
    print("| model | B | H | training now / earlier | forward | training with lengths |")
    print("|---|---|---|---|---|---|")
    for name, B, H in CASES[:1] if args.quick else CASES:
        r = measure(name, B, H, args.rounds)
        shown = f"{r['lengths']:.3f}" if "lengths" in r else ""
        print(
            f"| {name} | {B} | {H} | {r['train']:.3f} | {r['forward']:.3f} | {shown} |", flush=True
        )


if __name__ == "__main__":
    main()
