"""A bidirectional layer's backward pass on the compiled loops: each direction's half of the
output gradient read where it lies, or copied into a contiguous block first.

``torch.cat`` joins the two directions' outputs, so each direction's output gradient is a view
of one half of the joined gradient: rows of H values, 2H apart. The loops read those rows in
place (``engine.sequence.DY_IN_PLACE``); before, each direction copied its half first. The
training step of one bidirectional layer, T = 100, I = H = 256, with and without lengths over
[T/2, T], the two forms timed back to back in alternating order, median of the pairs' ratios.

    python benchmarks/bidirectional_rows.py --reuse-freed-memory    # about 2 minutes
"""

from __future__ import annotations

import argparse
import time

import torch
from lengths_overheads import _switched, paired
from machine import add_allocator_flag, apply_machine_args, print_header

import rnnkit
from rnnkit.engine import sequence

T, H = 100, 256
LAYERS = {"Elman": rnnkit.RNN, "GRU": rnnkit.GRU, "LSTM [native loop]": rnnkit.LSTM}
CASES = [(name, B, lengths) for name in LAYERS for B in (32, 128) for lengths in (False, True)]


def _step(name: str, B: int, with_lengths: bool):
    layer = LAYERS[name](H, H, bidirectional=True)
    if name.endswith("[native loop]"):
        layer.engine = "native"
    x = torch.randn(T, B, H, requires_grad=True)
    lengths = (
        torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)] if with_lengths else None
    )
    params = list(layer.parameters())
    with torch.no_grad():
        out, _ = layer(x, lengths=lengths)
    dout = torch.randn_like(out)

    def step() -> None:
        out, _ = layer(x, lengths=lengths)
        torch.autograd.grad(out, [x, *params], dout)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21, help="pairs per case")
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    print_header(
        "Bidirectional layers: the output gradient's rows read in place",
        args.threads,
        f"T = {T}, I = H = {H}; {args.repeats} pairs timed back to back, median of the ratios",
        "in place / copied: the training step with each direction's half of the output "
        "gradient read where it lies, over the same step with it copied first",
    )
    print("| layer | B | lengths | in place / copied |")
    print("|---|---|---|---|")
    start = time.perf_counter()
    for name, B, with_lengths in CASES:
        step = _step(name, B, with_lengths)
        before = _switched(step, sequence, "DY_IN_PLACE", False)
        now = _switched(step, sequence, "DY_IN_PLACE", True)
        ratio = paired(before, now, args.repeats)
        print(f"| {name} | {B} | {'[T/2, T]' if with_lengths else 'none'} | {ratio:.3f} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
