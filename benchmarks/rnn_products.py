"""The compiled loops' recurrent products: rnnkit's own kernel against torch's BLAS.

Each step of a compiled loop multiplies the step's active rows (the batch) by W_hh, forwards
and backwards. The loops split W_hh's output columns over the threads. With torch's BLAS (MKL),
each thread then calls sgemm on its own slice. With the own kernel, added to ``_loops.cpp`` for
AVX2 + FMA and AVX-512 builds, each thread packs its slice once per call and multiplies it in
registers. The own kernel runs a call whose steps times batch rows reach
``native.OWN_MIN_ROWS``, with a batch of at least 2, for the products of at most
``native.OWN_MAX_ROWS`` rows (by vector width); ``native_switches.set_own_min_rows(-1)`` gives
the BLAS back. Two measurements in one run:

* ``loops``: the forward and backward loops alone, called directly on buffers, T = 100 steps
  of m rows each, µs per step. The BLAS is timed on 1 thread (one sgemm over all columns) and on
  2 (a slice each), the own kernel on 2, at every row count (whatever the row limit). If the
  two BLAS threads ran as fast as one alone, the 2-thread time would be half the 1-thread time
  plus the pointwise part.
* ``layers``: the training step (forward and backward, T = 100) of rnnkit's layers, own kernel
  over BLAS in the same process, taking turns; and the lengths ratio (lengths spread evenly over
  [T/2, T], as in rnn_speed.py) under each.

    python benchmarks/rnn_products.py          # about 4 minutes on 2 cores
    python benchmarks/rnn_products.py --quick  # fewer models and sizes
    python benchmarks/rnn_products.py --layers-H 64   # only the layers, at H = 64
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import add_allocator_flag, apply_machine_args, print_header
from rnn_speed import _input, build, interleaved, step_fns

from rnnkit.engine import native, native_switches
from rnnkit.engine.kernel_base import geometry
from rnnkit.engine.packing import make_plan

T = 100
LOOP_ROWS = (1, 2, 4, 8, 16, 32, 64, 128)
LAYER_MODELS = ("Elman", "GRU", "GRU reset before", "MUT1", "LSTM [native loop]", "NAS")


def _loop_calls(kind: str, H: int, m: int, threads: int):
    """(forward, backward) closures of one compiled loop, T steps of m rows (B = m)."""
    G = {"elman": H, "lstm": 4 * H}[kind]
    N = T * m
    g = torch.Generator().manual_seed(0)
    W = torch.randn(G, H, generator=g) / H**0.5
    gx, y, dy = torch.randn(N, G, generator=g), torch.zeros(N, H), torch.randn(N, H, generator=g)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the geometry block carries the loops' thread count
    try:
        geo = geometry(make_plan(T, m, None, False), H, True)
    finally:
        torch.set_num_threads(previous)
    h0, dh = torch.zeros(m, H), torch.zeros(m, H)
    if kind == "elman":
        fwd = [gx, W, torch.zeros(H), h0, y, torch.zeros(m, H)]
        bwd = [W, h0, y, dy, dh, torch.zeros(N, H)]
        state_grads = [dh]
    else:
        zeros = torch.zeros(H)
        act, cs, c0, dc = torch.zeros(N, G), torch.zeros(N, H), torch.zeros(m, H), torch.zeros(m, H)
        fwd = [gx, W, torch.zeros(G), zeros, zeros, zeros, h0, c0, y, act, cs, torch.zeros(m, G)]
        bwd = [W, zeros, zeros, zeros, h0, c0, y, act, cs, dy, dh, dc, torch.zeros(N, G)]
        bwd.append(torch.zeros(threads, 3 * H))
        state_grads = [dh, dc]

    def backward() -> None:
        for t in state_grads:  # the final state's gradient, zero at every call
            t.zero_()
        native.call(kind, "backward", geo, bwd)

    return lambda: native.call(kind, "forward", geo, fwd), backward


def loops_table(H: int, rows, repeats: int) -> None:
    print(f"**Loops alone, H = {H}, T = {T}: µs per step, forward + backward**\n")
    print("| cell | m rows | BLAS, 1 thread | BLAS, 2 threads | own, 2 threads | own / BLAS (2) |")
    print("|---|---|---|---|---|---|")
    # (m = 1 takes the BLAS in every column: the own kernel needs a batch of 2 rows)
    for kind in ("elman", "lstm"):
        for m in rows:
            fns = {}
            runs = (("blas1", 1, False), ("blas2", 2, False), ("own2", 2, True))
            for label, threads, own in runs:
                fwd, bwd = _loop_calls(kind, H, m, threads)

                def step(fwd=fwd, bwd=bwd, own=own) -> None:
                    native_switches.set_own_min_rows(0 if own else -1)
                    native_switches.set_own_max_rows(1 << 30)  # the kernel at every row count
                    fwd()
                    bwd()

                fns[label] = step
            t = interleaved(fns, repeats)
            us = {k: v / T * 1e6 for k, v in t.items()}
            print(
                f"| {kind} | {m} | {us['blas1']:.1f} | {us['blas2']:.1f} | {us['own2']:.1f} | "
                f"{us['own2'] / us['blas2']:.2f} |",
                flush=True,
            )
    native_switches.set_own_min_rows(native.OWN_MIN_ROWS)
    native_switches.set_own_max_rows(None)
    print()


def layers_table(models, batches, H: int, repeats: int) -> None:
    print(f"**Layers, H = I = {H}, T = {T}, training step: own kernel / BLAS**\n")
    print("| model | B | full length ms (BLAS / own) | own / BLAS |", end="")
    print(" with lengths: own / BLAS | lengths ratio: BLAS / own |")
    print("|---|---|---|---|---|---|")
    for B in batches:
        for name in models:
            torch.manual_seed(0)
            model = build(name, H)
            x = _input(T, B, H)
            lengths = torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]
            full, with_lengths = step_fns(model, x)[1], step_fns(model, x, lengths)[1]
            fns = {}
            for label, f in (("full", full), ("len", with_lengths)):
                for own in (False, True):

                    def step(f=f, own=own) -> None:
                        native_switches.set_own_min_rows(native.OWN_MIN_ROWS if own else -1)
                        f()

                    fns[(label, own)] = step
            t = interleaved(fns, repeats)
            ms = f"{t[('full', False)] * 1e3:.1f} / {t[('full', True)] * 1e3:.1f}"
            print(
                f"| {name} | {B} | {ms} | "
                f"{t[('full', True)] / t[('full', False)]:.3f} | "
                f"{t[('len', True)] / t[('len', False)]:.3f} | "
                f"{t[('len', False)] / t[('full', False)]:.3f} / "
                f"{t[('len', True)] / t[('full', True)]:.3f} |",
                flush=True,
            )
    native_switches.set_own_min_rows(native.OWN_MIN_ROWS)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer models, sizes and repeats")
    parser.add_argument(
        "--layers-H", type=int, default=None, help="only the layers' table, at this H (B = 32, 128)"
    )
    add_allocator_flag(parser)
    args = parser.parse_args()
    if not native_switches.own_products():
        raise SystemExit("the compiled loops were built without their own kernel (no AVX2 + FMA)")
    bits = native_switches.own_vector_bits()
    apply_machine_args(args)
    print_header(
        "Recurrent products: own kernel / BLAS",
        args.threads,
        f"own kernel: {bits}-bit vectors, products of up to {native.OWN_MAX_ROWS[bits]} rows",
        f"{args.repeats} interleaved repeats, median",
    )
    start = time.perf_counter()
    if args.layers_H is not None:
        layers_table(LAYER_MODELS, (32, 128), args.layers_H, args.repeats)
    elif args.quick:
        loops_table(256, (1, 8, 32), max(3, args.repeats // 2))
        layers_table(("Elman", "GRU"), (32,), 256, max(3, args.repeats // 2))
    else:
        loops_table(256, LOOP_ROWS, args.repeats)
        layers_table(LAYER_MODELS, (8, 32, 128), 256, args.repeats)
        layers_table(("GRU", "LSTM [native loop]"), (32,), 512, args.repeats)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
