"""What eighteen pieces of the lengths machinery cost: each switched back to its earlier form.

A training step (forward, then the gradients with respect to the input and every parameter) on
a batch with lengths, T = 100, over the same layer's step at full length; each piece timed in
its current form and in its earlier one, in one process, taking turns (interleaved repeats,
median):

* ``padded head`` (``engine.fused.PADDED_HEAD``): the fused "head" and "segments" routes of a
  plain LSTM (``engine="fused"``, "LSTM [fused]" below) read their first segment from the
  padded input as it is, or pack it too;
* ``eager twins`` (``engine.row_moves.EAGER_TWINS``): the gather and scatter between the padded
  and packed layouts as autograd functions with the context set in ``forward``, or in the
  transform-ready form that torch binds through ``inspect.signature`` at every call;
* ``gathered h_prev`` (``engine.weight_grad.GATHER_SEGMENTS``): the recurrent weight gradient
  from one product against the gathered previous outputs (1), or two products per run of
  equal rows up to 8 runs (8);
* ``padded outputs`` (``engine.sequence.PADDED_OUTPUT``): the compiled loops write their
  outputs into the padded layout and read the output gradient from it, or write packed rows
  that a scatter unpacks (and a gather packs the gradient);
* ``loop with lengths`` (``engine.fused.LOOP_WITH_LENGTHS``): "auto" runs a plain LSTM with
  lengths in the compiled loop, or takes the fused routes ("head" with more than 8 distinct
  lengths, else one fused call per run of equal rows);
* ``loop in inference`` (``engine.fused.LOOP_INFERENCE_MAX_BATCH``): the forward pass alone
  ("(forward)", under ``torch.no_grad()``) of a plain LSTM with lengths in the compiled loop
  ("now" column) or on the fused routes ("earlier"); "auto" takes the loop up to that many
  rows, the fused routes above;
* ``native rows`` (``engine.row_moves.NATIVE_ROWS``): the row moves between the layouts (the
  input's gather, its gradient's scatter, the gathered h_prev, the zero fill of the padded
  outputs) through the compiled library's one-pass copies, or torch's ``index_select`` and
  ``index_fill_``;
* ``views for the full steps`` (``engine.weight_grad.HEAD_VIEWS``): the recurrent weight
  gradient takes the h_prev of the first run of steps (every sequence still running) as views
  and gathers only the later rows', or gathers every row's;
* ``packed stack`` (``engine.packed_stack.PACKED_STACK``): a unidirectional stack of layers
  on the compiled loops hands its packed rows from layer to layer, or runs each layer through
  the padded layout (the models named "..., 2 layers" are such stacks);
* ``shared gather`` (``engine.packed_stack.SHARED_GATHER``): a bidirectional layer's two
  directions gather their input from one autograd node, whose backward makes one padded input
  gradient, or each on its own (two padded gradients, added by autograd);
* ``batch-order head`` (``engine.packing.TURN``): forwards, the compiled loops keep the steps
  every sequence runs in the batch's order, sort the rows once at the turn and project those
  steps' rows from the padded input where they lie; or sort every step's rows and gather them
  all;
* ``input on the turn`` (``engine.turn_input.TURN_INPUT``): the same layout with the first
  steps' rows projected where they lie, or gathered with the others first;
* ``split on small layers`` (``engine.packing.SPLIT_MIN_ELEMENTS``): below 2^18 elements in
  the first steps' rows, the input projection and the recurrent weight gradient gather every
  row into one product; or they split off those rows on views whatever their size (0);
* ``split by call`` (``engine.native_switches.set_split_by_call``): the loops' own kernel splits a
  product's columns over the threads by the call's batch, or by the product's own rows (then
  the late steps of a batch with lengths ran on one core).

* ``one length`` (``layer_routes.UNIFORM_LENGTHS``): a batch whose sequences all have the same
  length ("distinct lengths" 1: every sequence 50 steps of T = 100) runs as the batch without
  lengths over its first steps, outputs zero-padded to T; or through the sorted path like any
  other batch with lengths.
* ``small gathers`` (``engine.row_moves.NATIVE_GATHER_MAX``): a padded input of fewer than
  2^16 elements is gathered into the packed rows by torch's ``index_select`` (a C++ autograd
  node), or by the engine's autograd functions whatever its size (0).
* ``lengths as a list`` (``engine.packing.LIST_READ_MAX``): the lengths of a batch of up to
  256 rows are read on the host as a Python list (their check, their shortest and longest, the
  plan's cache key), or through NumPy whatever the batch (0).
* ``masked small layers`` (``engine.masked.MASKED_MAX``): a layer up to its kernel's
  ``masked_max`` (B·numel(W_hh)) runs a batch whose longest sequence is T masked, every row
  in place and frozen past its length in the compiled loops, or sorted and packed like
  larger layers (0).
* ``running rows`` (``engine.native_switches.set_live_rows``): in a masked loop, a step's recurrent
  products run on the rows not frozen at that step (gathered, multiplied, put back) where that
  saves a block of rows of the own kernel, or on every row of the batch.

The last column, "now / earlier", times the two forms of the step with lengths back to back in
pairs and takes the median of the pairs' ratios, which reads a difference of a few percent more
steadily on a noisy machine than the two ratios to the full batch.

    python benchmarks/lengths_overheads.py --reuse-freed-memory    # about 12 minutes on 2 cores
    python benchmarks/lengths_overheads.py --pieces 'padded outputs'
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from machine import add_allocator_flag, apply_machine_args, print_header
from rnn_speed import _input, build, interleaved, step_fns

import rnnkit
from rnnkit import Recurrent, layer_routes
from rnnkit.cells import MGUCell
from rnnkit.engine import (
    fused,
    masked,
    native_switches,
    packed_stack,
    packing,
    row_moves,
    sequence,
    turn_input,
    weight_grad,
)

T = 100


def _lengths(B: int, distinct: int | None) -> torch.Tensor:
    """Lengths over [T/2, T] in random order: B distinct values, or ``distinct`` repeated."""
    values = torch.linspace(T // 2, T, distinct or B).round().long()
    return values.repeat(B // values.numel() + 1)[:B][torch.randperm(B)]


def _switched(step: Callable[[], None], module, name: str, value) -> Callable[[], None]:
    def run() -> None:
        kept = getattr(module, name)
        setattr(module, name, value)
        try:
            step()
        finally:
            setattr(module, name, kept)

    return run


class _NativeSwitch:
    """A switch of the compiled loops (``native_switches.set_<name>`` and
    ``native_switches.<name>``) as an attribute ``on``, for :func:`_switched`."""

    def __init__(self, name: str) -> None:
        self._get = getattr(native_switches, name)
        self._set = getattr(native_switches, f"set_{name}")

    @property
    def on(self) -> bool:
        return self._get()

    @on.setter
    def on(self, value: bool) -> None:
        self._set(value)


# (piece, module, knob, current value, earlier value, [(model, B, H, distinct lengths)])
CASES = (
    (
        "padded head",
        fused,
        "PADDED_HEAD",
        True,
        False,
        [("LSTM [fused]", 32, 256, None), ("LSTM [fused]", 128, 256, None)]
        + [("LSTM [fused]", 32, 256, 4)],
    ),
    (
        "eager twins",
        row_moves,
        "EAGER_TWINS",
        True,
        False,
        [("Elman", 8, 64, None), ("GRU", 32, 64, None), ("Elman", 32, 256, None)],
    ),
    (
        "gathered h_prev",
        weight_grad,
        "GATHER_SEGMENTS",
        1,
        8,
        [("Elman", 8, 64, 8), ("GRU", 32, 64, 8), ("GRU", 32, 256, 8), ("MUT1", 128, 256, 8)],
    ),
    (
        "padded outputs",
        sequence,
        "PADDED_OUTPUT",
        True,
        False,
        [
            ("Elman", 32, 256, None),
            ("Elman", 128, 256, None),
            ("GRU", 32, 256, None),
            ("LSTM [native loop]", 32, 256, None),
            ("MUT1", 128, 256, None),
        ],
    ),
    (
        "loop with lengths",
        fused,
        "LOOP_WITH_LENGTHS",
        True,
        False,
        [
            ("LSTM", 8, 256, None),
            ("LSTM", 32, 64, None),
            ("LSTM", 32, 256, None),
            ("LSTM", 32, 256, 4),
            ("LSTM", 128, 256, None),
            ("LSTM", 32, 512, None),
        ],
    ),
    (
        "loop in inference",
        fused,
        "LOOP_INFERENCE_MAX_BATCH",
        10**9,
        -1,
        [
            ("LSTM (forward)", 8, 256, None),
            ("LSTM (forward)", 32, 256, None),
            ("LSTM (forward)", 32, 256, 4),
            ("LSTM (forward)", 64, 256, None),
            ("LSTM (forward)", 128, 256, None),
            ("LSTM (forward)", 128, 512, None),
        ],
    ),
    (
        "native rows",
        row_moves,
        "NATIVE_ROWS",
        True,
        False,
        [
            ("Elman", 8, 64, None),
            ("GRU", 32, 64, None),
            ("Elman", 32, 256, None),
            ("Elman", 128, 256, None),
            ("GRU", 32, 256, None),
            ("LSTM", 32, 256, None),
        ],
    ),
    (
        "views for the full steps",
        weight_grad,
        "HEAD_VIEWS",
        True,
        False,
        [
            ("Elman", 32, 256, None),
            ("Elman", 128, 256, None),
            ("GRU", 32, 256, None),
            ("LSTM [native loop]", 32, 256, None),
            ("MGU", 128, 256, None),
            ("NAS", 32, 256, None),
        ],
    ),
    (
        "packed stack",
        packed_stack,
        "PACKED_STACK",
        True,
        False,
        [
            ("Elman, 2 layers", 32, 256, None),
            ("Elman, 2 layers", 128, 256, None),
            ("GRU, 2 layers", 32, 256, None),
            ("GRU, 3 layers", 32, 256, None),
            ("LSTM, 2 layers", 32, 256, None),
            ("LSTM, 2 layers, dropout 0.3", 32, 256, None),
            ("GRU, 2 layers, dropout 0.3", 32, 256, None),
        ],
    ),
    (
        "shared gather",
        packed_stack,
        "SHARED_GATHER",
        True,
        False,
        [
            ("Elman, bidirectional", 32, 256, None),
            ("Elman, bidirectional", 128, 256, None),
            ("GRU, bidirectional", 32, 256, None),
            ("LSTM, bidirectional", 32, 256, None),
        ],
    ),
    (
        "batch-order head",
        packing,
        "TURN",
        True,
        False,
        [
            ("Elman", 32, 256, None),
            ("Elman", 128, 256, None),
            ("GRU", 32, 256, None),
            ("GRU", 128, 256, None),
            ("LSTM [native loop]", 32, 256, None),
            ("LSTM [native loop]", 128, 256, None),
            ("MGU", 128, 256, None),
            ("NAS", 32, 256, None),
            ("GRU, 2 layers", 32, 256, None),
        ],
    ),
    (
        "input on the turn",
        turn_input,
        "TURN_INPUT",
        True,
        False,
        [
            ("Elman", 32, 256, None),
            ("Elman", 128, 256, None),
            ("GRU", 128, 256, None),
        ],
    ),
    (
        "split on small layers",
        packing,
        "SPLIT_MIN_ELEMENTS",
        packing.SPLIT_MIN_ELEMENTS,
        0,
        [
            ("Elman", 32, 64, None),
            ("GRU", 32, 64, None),
            ("LSTM [native loop]", 32, 64, None),
            ("MGU", 32, 64, None),
            ("Elman", 32, 128, None),
            ("GRU", 32, 128, None),
            ("LSTM [native loop]", 32, 128, None),
            ("Elman", 128, 64, None),
        ],
    ),
    (
        "split by call",
        _NativeSwitch("split_by_call"),
        "on",
        True,
        False,
        [
            ("Elman", 8, 256, None),
            ("Elman", 32, 256, None),
            ("MGU", 32, 256, None),
            ("Elman", 16, 512, None),
            ("GRU", 16, 128, None),
            ("GRU", 32, 256, None),
            ("LSTM", 32, 256, None),
        ],
    ),
)


CASES += (
    (
        "one length",
        layer_routes,
        "UNIFORM_LENGTHS",
        True,
        False,
        [
            ("Elman", 1, 64, 1),
            ("GRU", 1, 64, 1),
            ("Elman", 8, 64, 1),
            ("LSTM [native loop]", 8, 64, 1),
            ("Elman", 32, 64, 1),
            ("GRU", 32, 64, 1),
            ("Elman", 32, 256, 1),
            ("GRU", 32, 256, 1),
            ("LSTM [native loop]", 32, 256, 1),
            ("Elman", 128, 64, 1),
        ],
    ),
)

CASES += (
    (
        "small gathers",
        row_moves,
        "NATIVE_GATHER_MAX",
        row_moves.NATIVE_GATHER_MAX,
        0,
        [
            ("Elman", 2, 64, None),
            ("GRU", 2, 64, None),
            ("Elman", 8, 64, None),
            ("GRU", 8, 64, None),
            ("LSTM [native loop]", 8, 64, None),
            ("MUT1", 8, 64, None),
            ("Elman", 32, 64, None),
        ],
    ),
)

CASES += (
    (
        "lengths as a list",
        packing,
        "LIST_READ_MAX",
        packing.LIST_READ_MAX,
        0,
        [
            ("Elman", 2, 64, None),
            ("GRU", 2, 64, None),
            ("LSTM [native loop]", 2, 64, None),
            ("Elman", 8, 64, None),
            ("GRU", 8, 64, None),
            ("LSTM [native loop]", 8, 64, None),
            ("MUT1", 8, 64, None),
            ("Elman", 32, 64, None),
            ("GRU", 32, 64, None),
            ("Elman", 32, 256, None),
            ("GRU", 128, 256, None),
        ],
    ),
)

CASES += (
    (
        "masked small layers",
        masked,
        "MASKED_MAX",
        masked.MASKED_MAX,
        0,
        [
            ("Elman", 2, 64, None),
            ("Elman", 8, 64, None),
            ("Elman", 32, 64, None),
            ("Elman", 8, 128, None),
            ("GRU", 2, 64, None),
            ("GRU", 4, 64, None),
            ("GRU reset before", 8, 64, None),
            ("LSTM [native loop]", 2, 64, None),
            ("LSTM [native loop]", 4, 64, None),
            ("LayerNorm LSTM", 2, 64, None),
            ("MGU", 2, 64, None),
            ("MGU", 8, 64, None),
            ("MUT1", 2, 128, None),
            ("MGU", 16, 64, None),
            ("GRU reset before", 10, 64, None),
            ("MUT1", 16, 64, None),
            ("Elman, bidirectional", 2, 64, None),
            ("Elman, bidirectional", 8, 64, None),
            ("Elman, bidirectional", 16, 64, None),
            ("GRU, bidirectional", 2, 64, None),
            ("LSTM, bidirectional", 2, 64, None),
            ("MGU, bidirectional", 2, 64, None),
            ("MGU, bidirectional", 4, 64, None),
        ],
    ),
    (
        "running rows",
        _NativeSwitch("live_rows"),
        "on",
        True,
        False,
        [
            ("Elman", 8, 64, None),
            ("Elman", 32, 64, None),
            ("Elman", 8, 128, None),
            ("GRU", 4, 64, None),
            ("LSTM [native loop]", 4, 64, None),
            ("MGU", 8, 64, None),
            ("MGU", 16, 64, None),
            ("GRU reset before", 10, 64, None),
            ("MUT3", 10, 64, None),
            ("Elman, bidirectional", 8, 64, None),
        ],
    ),
)

# Stacks for the "packed stack" piece: model name -> (layer class, layers)
STACKS = {
    "Elman, 2 layers": (rnnkit.RNN, dict(num_layers=2)),
    "GRU, 2 layers": (rnnkit.GRU, dict(num_layers=2)),
    "GRU, 3 layers": (rnnkit.GRU, dict(num_layers=3)),
    "LSTM, 2 layers": (rnnkit.LSTM, dict(num_layers=2)),
    "LSTM, 2 layers, dropout 0.3": (rnnkit.LSTM, dict(num_layers=2, dropout=0.3)),
    "GRU, 2 layers, dropout 0.3": (rnnkit.GRU, dict(num_layers=2, dropout=0.3)),
    "Elman, bidirectional": (rnnkit.RNN, dict(bidirectional=True)),
    "GRU, bidirectional": (rnnkit.GRU, dict(bidirectional=True)),
    "LSTM, bidirectional": (rnnkit.LSTM, dict(bidirectional=True)),
    "MGU, bidirectional": (partial(Recurrent, MGUCell), dict(bidirectional=True)),
}


def _model(name: str, H: int) -> torch.nn.Module:
    """rnn_speed's model ``name``; "LSTM [fused]" is its default LSTM on ``engine="fused"``;
    the names in ``STACKS`` are layers with those options (I = H; stacks of several layers,
    dropout between them in training, two directions), torch's initialisation."""
    if name == "LSTM [fused]":
        model = build("LSTM", H)
        model.engine = "fused"
        return model
    if name in STACKS:
        layer, options = STACKS[name]
        return layer(H, H, **options)
    return build(name, H)


def paired(before, now, repeats: int) -> float:
    """Median over ``repeats`` pairs of the time of ``now`` over that of ``before``, the two
    timed back to back in alternating order: the machine's slow drift cancels within a pair,
    so this reads a small difference more steadily than a ratio of two medians."""
    before(), now()  # warm-up
    start = time.perf_counter()
    before()
    number = max(1, int(0.02 / max(time.perf_counter() - start, 1e-6)))

    def timed(fn) -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start

    ratios = []
    for k in range(repeats):
        if k % 2:
            b = timed(before)
            n = timed(now)
        else:
            n = timed(now)
            b = timed(before)
        ratios.append(n / b)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--pieces",
        default=",".join(case[0] for case in CASES),
        help="comma-separated pieces to time (default: all)",
    )
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    print_header(
        f"Lengths: {len(CASES)} pieces against their earlier forms",
        args.threads,
        f"T = {T}, I = H, lengths over [T/2, T]; {args.repeats} interleaved repeats, median",
        "ratio: training step (the forward pass for '(forward)' models) with lengths / the "
        "same layer's at full length",
        f"now / earlier: the step with lengths, {2 * args.repeats + 1} pairs timed back to "
        "back in alternating order, median of the pairs' ratios",
    )
    print(
        "| piece | model | B | H | distinct lengths | full length ms | earlier | now | "
        "now / earlier |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    pieces = args.pieces.split(",")
    unknown = sorted(set(pieces) - {case[0] for case in CASES})
    if unknown:
        parser.error(f"--pieces: unknown {unknown}; expected some of {[c[0] for c in CASES]}")
    for piece, module, name, now, before, shapes in CASES:
        if piece not in pieces:
            continue
        for model_name, B, H, distinct in shapes:
            torch.manual_seed(0)
            forward_only = model_name.endswith(" (forward)")
            model = _model(model_name.removesuffix(" (forward)"), H)
            x = _input(T, B, H)
            lengths = _lengths(B, distinct)
            which = 0 if forward_only else 1  # step_fns: (forward, training step)
            full, with_lengths = step_fns(model, x)[which], step_fns(model, x, lengths)[which]
            fns = {
                "full": full,
                "before": _switched(with_lengths, module, name, before),
                "now": _switched(with_lengths, module, name, now),
            }
            t = interleaved(fns, args.repeats)
            pair = paired(fns["before"], fns["now"], 2 * args.repeats + 1)
            print(
                f"| {piece} | {model_name} | {B} | {H} | {distinct or B} | "
                f"{t['full'] * 1e3:.2f} | {t['before'] / t['full']:.3f} | "
                f"{t['now'] / t['full']:.3f} | {pair:.3f} |",
                flush=True,
            )
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
