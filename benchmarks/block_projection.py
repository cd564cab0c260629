"""MUT1 and MUT2 input projections: column blocks written into one buffer, against torch ops.

With I = H, MUT1 projects its input to [W_zr x + b_zr | tanh(x) + b_h] and MUT2 to
[W_z x + b_z | x + b_r | W_xh x + b_h]. ``rnnkit.engine.projection`` writes each block straight
into its columns of one (N, 3H) buffer and reads each block's gradient where it lies; the
composed form builds a tensor a block and concatenates them. Two measurements, both forms in
one process, taking turns (``projection.IN_ONE_BUFFER`` switched per call):

* ``projection``: the projection's forward and backward passes alone (gradients with respect
  to x, weight_ih and bias) on N packed rows;
* ``layer``: the training step of a MUT1 or MUT2 layer (T = 100, I = H = 256, and 512 at
  B = 128), at full length and with lengths spread evenly over [T/2, T] (the ratio of
  rnn_speed.py's lengths table).

Ratios are one buffer over composed (below 1: faster); the layers' "paired ratio" is the median
of the ratios of the two forms timed back to back, which a noisy machine moves less.

    python benchmarks/block_projection.py --reuse-freed-memory     # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import time

import torch
from lengths_overheads import paired
from machine import add_allocator_flag, apply_machine_args, print_header
from rnn_speed import _input, build, interleaved, step_fns
from rnn_targets import table

from rnnkit.cells import MUT1Cell, MUT2Cell
from rnnkit.engine import projection

T, H = 100, 256


def _switched(fn, in_one_buffer: bool):
    def run() -> None:
        kept, projection.IN_ONE_BUFFER = projection.IN_ONE_BUFFER, in_one_buffer
        try:
            fn()
        finally:
            projection.IN_ONE_BUFFER = kept

    return run


def _projection_step(cell, N: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, H, generator=gen, requires_grad=True)
    grad = torch.randn(N, 3 * H, generator=gen)
    params = [cell.weight_ih, cell.bias]

    def run() -> None:
        out = cell.project_input(x)
        torch.autograd.grad(out, [x, *params], grad)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    print_header(
        "MUT input projections: one buffer / composed torch ops",
        args.threads,
        f"H = I = {H}; {args.repeats} interleaved repeats, median",
    )
    start = time.perf_counter()

    rows = []
    for cell_class in (MUT1Cell, MUT2Cell):
        torch.manual_seed(0)
        cell = cell_class(H, H)
        for N in (3200, 12800):
            step = _projection_step(cell, N)
            t = interleaved(
                {"one": _switched(step, True), "cat": _switched(step, False)}, args.repeats
            )
            rows.append(
                [
                    cell_class.__name__,
                    str(N),
                    f"{t['cat'] * 1e3:.2f}",
                    f"{t['one'] * 1e3:.2f}",
                    f"{t['one'] / t['cat']:.3f}",
                ]
            )
    print(
        table(
            "projection alone: forward and backward on N packed rows",
            ["cell", "N", "composed ms", "one buffer ms", "ratio"],
            rows,
        ),
        flush=True,
    )

    rows = []
    for name in ("MUT1", "MUT2"):
        for B, width in ((32, H), (128, H), (128, 2 * H)):
            torch.manual_seed(0)
            model = build(name, width)
            x = _input(T, B, width)
            lengths = torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]
            full, short = step_fns(model, x)[1], step_fns(model, x, lengths)[1]
            fns = {
                ("full", True): _switched(full, True),
                ("full", False): _switched(full, False),
                ("lengths", True): _switched(short, True),
                ("lengths", False): _switched(short, False),
            }
            t = interleaved(fns, args.repeats)
            pair = paired(fns["full", False], fns["full", True], 2 * args.repeats + 1)
            rows.append(
                [
                    name,
                    str(B),
                    str(width),
                    f"{t['full', False] * 1e3:.1f}",
                    f"{t['full', True] * 1e3:.1f}",
                    f"{t['full', True] / t['full', False]:.3f}",
                    f"{pair:.3f}",
                    f"{t['lengths', False] / t['full', False]:.3f}",
                    f"{t['lengths', True] / t['full', True]:.3f}",
                ]
            )
    print(
        table(
            f"layer training step, T = {T}, I = H",
            [
                "model",
                "B",
                "H",
                "composed ms",
                "one buffer ms",
                "ratio",
                "paired ratio",
                "lengths ratio, composed",
                "lengths ratio, one buffer",
            ],
            rows,
        ),
        flush=True,
    )
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
