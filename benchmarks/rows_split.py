"""The pointwise pass on two threads: Elman's rows split from 4096 values, now and earlier.

A step of the compiled loops is a recurrent product, split over the threads by output columns,
then a pointwise pass, split by rows from a number of values (rows times width). Elman's pass
used the gated cells' line, 8192 values, so at H = 256 a step of fewer than 32 rows ran it on
one thread, and a batch of 32 with lengths did so at every step after its first sequence ended.
Elman's line is now 4096 values (``_loops_geo.h``, ``for_rows``;
``engine.native_switches.set_rows_split``).

For each model and shape, this times the training step (forward, then the gradients with respect
to the input and every parameter) in both forms in one process, back to back in every round, in
alternating order, and gives the median of the rounds' ratios; with ``lengths``, the batch's
lengths spread evenly over [T/2, T], and the last column the step with lengths over the step at
full length, now. The gated cells keep their line: their rows are timed at a line of 4096 values
against 8192, the form Elman now has, to show why they keep it.

    python benchmarks/rows_split.py                # about 15 seconds on 2 cores
    python benchmarks/rows_split.py --quick        # Elman at B = 31, H = 256 only
"""

from __future__ import annotations

import statistics

import torch
from machine import paired_ratios, paired_setup, print_header, timed
from rnn_speed import _input, build, step_fns
from switched import spread_lengths

from rnnkit.engine import native_switches

T = 100
# (model, B, H, lengths)
CASES = (
    ("Elman", 16, 256, False),
    ("Elman", 31, 256, False),
    ("Elman", 32, 256, True),
    ("Elman", 48, 128, False),
    ("Elman", 100, 64, False),
    ("Elman", 8, 512, False),
    ("Elman", 32, 64, False),
    ("GRU", 24, 64, False),
    ("LSTM [native loop]", 16, 64, False),
    ("GRU", 32, 256, True),
)


def use(now: bool, gated_too: bool) -> None:
    """The line of 4096 values (now: Elman's; with gated_too the gated cells' as well), or the
    earlier 8192 for every cell."""
    if now:
        native_switches.set_rows_split(4096 if gated_too else None, 4096)
    else:
        native_switches.set_rows_split(8192, 8192)


def measure(name: str, B: int, H: int, lengths: bool, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = _input(T, B, H)
    model = build(name, H)
    gated = name != "Elman"
    _, train = step_fns(model, x, spread_lengths(B) if lengths else None)
    _, full = step_fns(model, x)
    for now in (True, False):
        use(now, gated)
        for fn in (train, full, train):
            fn()  # warm-up: compiled loops, packed copies, allocator
    earlier_ms = []
    for _ in range(3):
        use(False, gated)
        earlier_ms.append(timed(train) * 1e3)
    ratios = paired_ratios(train, lambda now: use(now, gated), rounds)
    to_full: list[float] = []
    if lengths:  # now: the step with lengths over the full step, back to back, alternating
        use(True, gated)
        chosen = {"step": train}

        def pick(with_lengths: bool) -> None:
            chosen["step"] = train if with_lengths else full

        to_full = paired_ratios(lambda: chosen["step"](), pick, rounds)
    native_switches.set_rows_split(None)
    result = {"ratio": statistics.median(ratios), "earlier ms": statistics.median(earlier_ms)}
    if lengths:
        result["to full"] = statistics.median(to_full)
    return result


def main() -> None:
    _, args = paired_setup(__doc__, 21, "Elman at B = 31, H = 256 only")
    print_header(
        "The pointwise pass split from 4096 values: now / earlier (8192)",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both forms back to back in alternating order; median of the "
        "rounds' ratios",
    )
    print(
        "| model | B | H | lengths | training step ms (earlier) | training now / earlier | "
        "with lengths / full, now |"
    )
    print("|---|---|---|---|---|---|---|")
    cases = CASES[1:2] if args.quick else CASES
    for name, B, H, lengths in cases:
        r = measure(name, B, H, lengths, args.rounds)
        shown = f"{r['to full']:.3f}" if lengths else ""
        label = name if name == "Elman" else f"{name} (line 4096 for it too)"
        print(
            f"| {label} | {B} | {H} | {'[T/2, T]' if lengths else 'none'} | "
            f"{r['earlier ms']:.2f} | {r['ratio']:.3f} | {shown} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
