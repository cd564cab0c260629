"""Sweeps that turn back, and calls of one row: the compiled loops' recurrent products, now and
earlier.

A recurrent product on a few rows reads its whole slice of W_hh at every step for little
arithmetic; when the slice is larger than a core's L2 cache, the step waits on L3. The loops'
own kernel now reads every other step's packed W_hh from the far end, so that each sweep starts
on the lines the sweep before read last, still in the L2; and a call of one row takes the own
kernel (its columns split over the threads from 2^16 multiply-adds), where it took the BLAS's
matrix-vector product before (``_loops_products.h``, "Sweeps that turn back";
``engine.native_switches.set_turn_back``, ``set_one_row``).

For each model and shape, this times the training step (forward, then the gradients with respect
to the input and every parameter) and the forward pass alone in both forms, in one process: the
two forms back to back in every round, in alternating order (the second call of a pair reads
faster on this machine, whichever it is), and the median of the rounds' own ratios. The last
column gives the training step now over ``torch.nn.LSTM``'s, timed in the same rounds (also
back to back in alternating order).

    python benchmarks/turn_back.py                 # about 5 minutes on 2 cores
    python benchmarks/turn_back.py --quick         # B = 1, H = 64 only
"""

from __future__ import annotations

import statistics

import torch
from machine import paired_setup, print_header, timed
from rnn_speed import _input, build, step_fns

from rnnkit.engine import native_switches

T = 100
MODELS = ("LSTM [native loop]", "GRU", "Elman", "MUT1", "NAS")
SHAPES = ((1, 64), (1, 256), (1, 512), (4, 512), (32, 256), (32, 512))


def use(now: bool) -> None:
    """The loops as they are now (True) or as they were (False: every sweep from the first
    panel, and a call of one row on the BLAS)."""
    native_switches.set_turn_back(now)
    native_switches.set_one_row(now)


def measure(name: str, B: int, H: int, rounds: int) -> dict[str, float]:
    """Median ratios now / earlier (training step, forward pass) and now / torch.nn.LSTM
    (training step), and the earlier training step in ms."""
    torch.manual_seed(0)
    x = _input(T, B, H)
    forward, train = step_fns(build(name, H), x)
    _, torch_train = step_fns(build("torch LSTM", H), x)
    for now in (True, False):
        use(now)
        for fn in (forward, train, forward, train):
            fn()  # warm-up: compiled loops, packed copies, allocator
    ratios: dict[str, list[float]] = {"train": [], "forward": [], "torch": []}
    earlier_ms: list[float] = []
    for r in range(rounds):
        for key, fn in (("train", train), ("forward", forward)):
            order = (True, False) if r % 2 == 0 else (False, True)
            got = {}
            for now in order:
                use(now)
                got[now] = timed(fn)
            ratios[key].append(got[True] / got[False])
            if key == "train":
                earlier_ms.append(got[False] * 1e3)
                use(True)
                pair = (train, torch_train) if r % 2 == 0 else (torch_train, train)
                first, second = timed(pair[0]), timed(pair[1])
                mine, base = (first, second) if r % 2 == 0 else (second, first)
                ratios["torch"].append(mine / base)
    use(True)
    result = {k: statistics.median(v) for k, v in ratios.items()}
    result["earlier ms"] = statistics.median(earlier_ms)
    return result


def main() -> None:
    _, args = paired_setup(__doc__, 15, "B = 1, H = 64 only", own_kernel=True)
    print_header(
        "Sweeps that turn back, and calls of one row: now / earlier",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, each form of each step back to back in alternating order; "
        "median of the rounds' ratios",
    )
    print(
        "| model | B | H | training step ms (earlier) | training now / earlier | "
        "forward now / earlier | training now / torch.nn.LSTM |"
    )
    print("|---|---|---|---|---|---|---|")
    shapes = SHAPES[:1] if args.quick else SHAPES
    for B, H in shapes:
        for name in MODELS:
            r = measure(name, B, H, args.rounds)
            print(
                f"| {name} | {B} | {H} | {r['earlier ms']:.2f} | {r['train']:.3f} | "
                f"{r['forward']:.3f} | {r['torch']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
