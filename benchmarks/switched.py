"""One switch of the compiled loops timed both ways in one process: the shared part of the
benchmarks that time a change of the loops through its switch (``few_rows.py``, ``units.py``).

For each model and shape, :func:`measure` times the training step (forward, then the gradients
with respect to the input and every parameter), the forward pass and, from B = 2 on, the
training step with lengths spread evenly over [T/2, T], with the switch on and off: back to back
in every round, in alternating order, and the median of the rounds' ratios (on over off).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import torch
from machine import paired_ratios, paired_setup, print_header
from rnn_speed import _input, build, step_fns

T = 100


def spread_lengths(B: int) -> torch.Tensor:
    """B lengths spread evenly over [T/2, T], in a random order."""
    return torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]


def measure(
    name: str, B: int, H: int, switch: Callable[[bool], None], rounds: int
) -> dict[str, float]:
    """Median ratios, the switch on over off: "train", "forward" and, from B = 2, "lengths"."""
    torch.manual_seed(0)
    x = _input(T, B, H)
    forward, train = step_fns(build(name, H), x)
    fns = {"train": train, "forward": forward}
    if B > 1:  # lengths over [T/2, T]: the sorted layout (a small layer: masked)
        fns["lengths"] = step_fns(build(name, H), x, spread_lengths(B))[1]
    for on in (True, False):
        switch(on)
        for fn in fns.values():
            fn()  # warm-up: packed copies, allocator
    return {key: statistics.median(paired_ratios(fn, switch, rounds)) for key, fn in fns.items()}


def main(
    doc: str,
    title: str,
    ratio: str,
    cases: Sequence[tuple[str, int, int]],
    switch: Callable[[bool], None],
) -> None:
    """The command line and table of a switch's benchmark: ``doc`` (its help), ``title``,
    ``ratio`` (what the training column's ratio is, e.g. "now / earlier"), the (model, B, H)
    ``cases`` (--quick: the first), and ``switch``."""
    first = f"the {cases[0][0]} at B = {cases[0][1]}, H = {cases[0][2]} only"
    _, args = paired_setup(doc, 15, first, own_kernel=True)
    print_header(
        title,
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both forms back to back in alternating order; median of the "
        "rounds' ratios",
    )
    print(f"| model | B | H | training {ratio} | forward | training with lengths |")
    print("|---|---|---|---|---|---|")
    for name, B, H in cases[:1] if args.quick else cases:
        r = measure(name, B, H, switch, args.rounds)
        shown = f"{r['lengths']:.3f}" if "lengths" in r else ""
        print(
            f"| {name} | {B} | {H} | {r['train']:.3f} | {r['forward']:.3f} | {shown} |", flush=True
        )
