"""How low can the lengths ratio go? The cost of a step as a function of its active rows.

The lengths target compares one training step on a batch whose lengths are spread evenly over
[T/2, T] with the same batch at full length; the padded work done is 0.75 of the full batch's.
The engine sorts the sequences once and drops finished rows, so step s runs n_s rows. If a step
cost exactly its rows' share, the ratio would be 0.75. It does not: a step reads all of W_hh
whatever its rows, and fewer rows make the product less efficient. This script measures, in one
run, three ratios for each rnnkit model:

* product alone: the recurrent product of one thread's slice of W_hh (the loops split W_hh's
  output columns over the threads), timed with torch.mm on one thread for every row count,
  summed over the steps' row counts n_s, over T times its cost at the full batch;
* step cost: the model's whole training step (forward and backward, through the engine) timed
  at full length with a batch of m rows, for m from 1 to B; the same sum with its cost per
  step. This is the ratio the lengths run would reach if nothing but the steps cost anything
  (no gathers into and out of the packed layout, no bookkeeping);
* measured: the training step with lengths over the training step at full length, as in
  rnn_speed.py's lengths table (three times the repeats).

Every model and row count takes turns within every repeat (interleaved, median).

``--parts`` splits both steps, at full length and with lengths, into their parts, timed by
wrappers around the engine's functions: the input projection's forward product, the compiled
loops forward and backward, the recurrent weight gradient's product, the layout moves (the
gathers and scatters between the padded and packed layouts, the zero fill of the padded
outputs, the gathered h_{t-1}), and the rest (the input projection's backward products and
every other op, Python and autograd). Each part's ratio says how far it follows the 0.75 of
the padded work done.

``--layout`` measures instead what the layout work weighs in the step with lengths: the share
of the gathers and scatters between the padded (T, B) layout and the packed rows (and the zero
fill of the padding) in torch's profile of the training step, and the measured ratio with that
share taken out; then, timed directly, the ratio with the layout free: the same step with the
gathers and scatters of x, y and their gradients replaced by tensors of the right shape left
unfilled (the values are wrong; the time is what no layout work would cost), which is what
moving the layout work into the loops could reach at best.

``--padded-floor`` asks the opposite question, for small layers where skipping finished rows
may save less than it costs: what the least a route that keeps the padded work would cost.
Such a route (masking: every step runs all B rows, the finished ones left unchanged) still has
to validate the lengths and to pick each sequence's final state at its own last step; this
mode times the full step plus exactly those two things (``check_lengths`` and one row pick of
the outputs), next to the step with lengths, each over the full step in the same round. A
masked route built from torch ops pays at least this; a masked compiled loop could keep each
row's final state itself and spare the pick, and save the finished rows' pointwise work on
top (a few per cent of the step). A fourth column times the full step again,
last in each round: how far two identical steps read apart here (the machine's memory
placement moves single steps by a few per cent).

    python benchmarks/rnn_lengths_bound.py             # B = 32 and 128, H = 256
    python benchmarks/rnn_lengths_bound.py --quick     # B = 32 only, four models, fewer repeats
    python benchmarks/rnn_lengths_bound.py --layout    # about 3 minutes
    python benchmarks/rnn_lengths_bound.py --parts     # about 4 minutes
    python benchmarks/rnn_lengths_bound.py --padded-floor --reuse-freed-memory   # about 1 minute
    (add --reuse-freed-memory to time as `rnnkit train` runs: see rnn_speed.py)
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time

import numpy as np
import torch
from machine import add_allocator_flag, cpu_name
from rnn_speed import (
    MODELS,
    _input,
    build,
    interleaved,
    interleaved_samples,
    round_ratio,
    step_fns,
)
from rnn_targets import TORCH_MODELS, table

import rnnkit
from rnnkit.engine import (
    fused,
    native,
    native_memory,
    row_moves,
    sequence,
    turn_input,
    weight_grad,
)
from rnnkit.loop import check_lengths

T = 100
ROWS = {32: (1, 2, 4, 8, 12, 16, 20, 24, 28, 32), 128: (1, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)}


def evenly_spread_lengths(B: int) -> torch.Tensor:
    """The lengths rnn_speed.py uses: evenly spaced over [T/2, T], in random order."""
    torch.manual_seed(0)
    return torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]


def active_rows(lengths: torch.Tensor) -> np.ndarray:
    """n_s, the rows still running at each step s (those with length > s)."""
    lens = lengths.numpy()
    return np.array([(lens > s).sum() for s in range(int(lens.max()))])


def ratio_from_costs(rows: tuple[int, ...], cost: list[float], n: np.ndarray, B: int) -> float:
    """Σ_s c(n_s) / (T·c(B)), with c interpolated linearly between the measured row counts."""
    c = np.interp(n, rows, cost)
    return float(c.sum() / (T * cost[rows.index(B)]))


def product_costs(model: torch.nn.Module, rows: tuple[int, ...], threads: int, repeats: int):
    """Seconds of one thread's recurrent product h (m, H) · W_sliceᵀ for each m in ``rows``,
    less torch.mm's own call overhead (a 1×8·8×8 product)."""
    W = next(p for n, p in model.named_parameters() if "weight_hh" in n).detach()
    H = W.shape[1]
    width = W.shape[0] // threads  # the loops give each thread W_hh's columns lo..hi
    Wt = W[:width].t().contiguous()  # (H, width)
    hs = {m: torch.randn(m, H) for m in rows}
    outs = {m: torch.empty(m, width) for m in rows}
    tiny_a, tiny_b, tiny_out = torch.randn(1, 8), torch.randn(8, 8), torch.empty(1, 8)

    def product(m):
        def run() -> None:
            for _ in range(20):
                torch.mm(hs[m], Wt, out=outs[m])

        return run

    def overhead() -> None:
        for _ in range(20):
            torch.mm(tiny_a, tiny_b, out=tiny_out)

    fns = {m: product(m) for m in rows}
    fns["overhead"] = overhead
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = interleaved(fns, repeats)
    finally:
        torch.set_num_threads(before)
    return [(t[m] - t["overhead"]) / 20 for m in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="B = 32, four models, 2 repeats")
    parser.add_argument(
        "--layout", action="store_true", help="the share of the layout copies in the step"
    )
    parser.add_argument(
        "--parts", action="store_true", help="the time of each part of the step, both batches"
    )
    parser.add_argument(
        "--padded-floor",
        action="store_true",
        help="small layers: the step with lengths against the padded step plus the least "
        "bookkeeping (checking the lengths, picking the final states)",
    )
    add_allocator_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reused = args.reuse_freed_memory and rnnkit.engine.reuse_freed_memory()
    if args.padded_floor:
        padded_floor_table(args.repeats, reused)
        return
    if args.layout:
        layout_table(args.repeats, reused)
        return
    if args.parts:
        parts_table(args.repeats, reused)
        return
    models = tuple(m for m in MODELS if m not in TORCH_MODELS)
    shapes = [(32, 256), (128, 256)]
    repeats = args.repeats
    if args.quick:
        models, shapes, repeats = ("LSTM [native loop]", "GRU", "Elman", "NAS"), [(32, 256)], 2

    print("## Lengths: the cost of a step against its active rows\n")
    print(f"- CPU: {cpu_name()}, {args.threads} threads (torch.set_num_threads)")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}")
    print(f"- date: {datetime.date.today().isoformat()}")
    command = " ".join(["python benchmarks/rnn_lengths_bound.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(f"- compiled loops available: {rnnkit.engine.native_available()}")
    print(f"- allocator: {'reuse_freed_memory()' if reused else 'glibc defaults'}")
    print(f"- float32, I = H, T = {T}, {repeats} interleaved repeats, median\n", flush=True)

    for B, H in shapes:
        rows = ROWS[B]
        lengths = evenly_spread_lengths(B)
        n = active_rows(lengths)
        work = float(lengths.sum()) / (T * B)
        fns, built = {}, {}
        for name in models:
            model = built[name] = build(name, H)
            for m in rows:
                fns[(name, m)] = step_fns(model, _input(T, m, H))[1]
            x = _input(T, B, H)
            fns[(name, "lengths")] = step_fns(model, x, lengths)[1]
        step = interleaved(fns, repeats)
        # the measured ratio: as in rnn_speed.py, three times the repeats for two short calls
        pairs = {}
        for name in models:
            x = _input(T, B, H)
            pairs[(name, "full")] = step_fns(built[name], x)[1]
            pairs[(name, "lengths")] = step_fns(built[name], x, lengths)[1]
        measured = interleaved_samples(pairs, 3 * repeats)
        out = []
        for name in models:
            product = product_costs(built[name], rows, args.threads, repeats)
            costs = [step[(name, m)] / T for m in rows]
            out.append(
                [
                    name,
                    f"{ratio_from_costs(rows, product, n, B):.3f}",
                    f"{ratio_from_costs(rows, costs, n, B):.3f}",
                    f"{round_ratio(measured, (name, 'lengths'), (name, 'full')):.3f}",
                    f"{product[rows.index(B)] * 1e6:.0f} / {product[0] * 1e6:.0f}",
                ]
            )
        print(
            table(
                f"B={B} H={H}, lengths spread evenly over [{T // 2}, {T}] (padded work done "
                f"{work:.3f}): time with lengths / time at full length",
                [
                    "model",
                    "product alone",
                    "step cost",
                    "measured",
                    f"product µs at {B} / 1 rows",
                ],
                out,
            ),
            flush=True,
        )


# The ops that move rows between the padded (T, B) layout and the packed rows, and fill the
# padding with zeros (row_moves.py's gathers and scatters, the final states' rows).
LAYOUT_OPS = ("aten::index_select", "aten::index_fill_", "aten::copy_", "aten::fill_")
LAYOUT_MODELS = ("LSTM", "LSTM [native loop]", "GRU", "Elman", "MGU", "NAS")


def layout_share(model: torch.nn.Module, B: int, H: int, steps: int = 5) -> float:
    """The layout ops' share of the training step with lengths, in torch's CPU profile. The
    engine's own row copies (row_moves.NATIVE_ROWS) are calls the profiler does not see, so the
    profiled steps move their rows with torch's ops, which cost a little more."""
    train = step_fns(model, _input(T, B, H), evenly_spread_lengths(B))[1]
    kept, row_moves.NATIVE_ROWS = row_moves.NATIVE_ROWS, False
    try:
        for _ in range(2):
            train()
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                train()
    finally:
        row_moves.NATIVE_ROWS = kept
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in LAYOUT_OPS) / total


class _Unfilled(torch.autograd.Function):
    """Stand-in for a gather or scatter between layouts: a tensor of the result's shape, left
    unfilled, and a gradient of the input's shape, a view or left unfilled."""

    @staticmethod
    def forward(ctx, t, rows: int):
        ctx.shape = t.shape
        return t[:rows] if rows <= t.shape[0] else t.new_empty(rows, *t.shape[1:])

    @staticmethod
    def backward(ctx, grad):
        if grad.shape[0] >= ctx.shape[0]:
            return grad[: ctx.shape[0]], None
        return grad.new_empty(ctx.shape), None


def _free_pack(x, plan):
    flat = x.reshape(plan.T * plan.B, *x.shape[2:])
    return flat if plan.index is None else _Unfilled.apply(flat, plan.rows)


def _free_unpack(y, plan):
    shape = (plan.T, plan.B, *y.shape[1:])
    return y.view(shape) if plan.index is None else _Unfilled.apply(y, plan.T * plan.B).view(shape)


def free_layout(fn):
    """``fn`` with the layout work free (see the module's docstring; timing only)."""
    names = [(m, f) for m in (sequence, fused) for f in ("pack", "unpack")]

    def run() -> None:
        kept = [getattr(m, f) for m, f in names]
        kept_gather, kept_padded = weight_grad.GATHER_SEGMENTS, sequence.PADDED_OUTPUT
        kept_turn = turn_input.TURN_INPUT
        for (m, f), new in zip(names, (_free_pack, _free_unpack) * 2):
            setattr(m, f, new)
        weight_grad.GATHER_SEGMENTS = 10**9  # products on views, no gathered h_{t-1}
        turn_input.TURN_INPUT = False  # every input row through the (free) pack
        # the loops' outputs in packed rows, then the free unpack (not the padded layout,
        # whose zero fill and row copies are layout work too)
        sequence.PADDED_OUTPUT = False
        try:
            fn()
        finally:
            for (m, f), old in zip(names, kept):
                setattr(m, f, old)
            weight_grad.GATHER_SEGMENTS, sequence.PADDED_OUTPUT = kept_gather, kept_padded
            turn_input.TURN_INPUT = kept_turn

    return run


def _report_head(title: str, reused: bool, *lines: str) -> None:
    """A mode's heading: ``title``, the CPU, threads and torch version, the allocator, today's
    date, then ``lines`` as items of the same list (the last one ends the list)."""
    print(f"## {title}\n")
    print(f"- CPU: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"- allocator: {'reuse_freed_memory()' if reused else 'glibc defaults'}")
    print(f"- date: {datetime.date.today().isoformat()}")
    for line in lines:
        print(f"- {line}")
    print(flush=True)


def layout_table(repeats: int, reused: bool) -> None:
    _report_head("Lengths: what the layout work weighs", reused, f"{repeats} interleaved repeats")
    for B, H in ((32, 256), (128, 256)):
        lengths = evenly_spread_lengths(B)
        built = {name: build(name, H) for name in LAYOUT_MODELS}
        pairs = {}
        for name, model in built.items():
            x = _input(T, B, H)
            pairs[(name, "full")] = step_fns(model, x)[1]
            pairs[(name, "lengths")] = step_fns(model, x, lengths)[1]
            pairs[(name, "free")] = free_layout(pairs[(name, "lengths")])
        measured = interleaved_samples(pairs, 3 * repeats)
        rows = []
        for name, model in built.items():
            share = layout_share(model, B, H)
            ratio = round_ratio(measured, (name, "lengths"), (name, "full"))
            without = ratio * (1 - share)
            free = round_ratio(measured, (name, "free"), (name, "full"))
            rows.append(
                [name, f"{ratio:.3f}", f"{100 * share:.1f} %", f"{without:.3f}", f"{free:.3f}"]
            )
        print(
            table(
                f"B={B} H={H}, lengths spread evenly over [{T // 2}, {T}]",
                [
                    "model",
                    "measured ratio",
                    "layout ops' share",
                    "ratio without them",
                    "ratio, layout free",
                ],
                rows,
            ),
            flush=True,
        )


# -- where the time goes --------------------------------------------------------------------
PARTS_MODELS = ("LSTM [native loop]", "GRU", "Elman", "MGU", "MUT1", "NAS")
PARTS = (
    "input projection (forward)",
    "loop, forward",
    "loop, backward",
    "W_hh gradient",
    "layout moves",
    "the rest",
)


class _Clock:
    """Seconds spent in each part of one call, collected by wrappers around the engine's
    functions (:func:`_timed_parts`); timing only."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, fn, part: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - start

        return timed


def _timed_parts(clock: _Clock):
    """Install the wrappers; returns a function that removes them. The loops are the calls
    into the compiled library (``native.call``, by direction); the layout moves are the row
    copies between the padded and packed layouts and the zero fill of the padded outputs
    (``row_moves.take``, ``place``, ``native_memory.zero_rows``, and the same copies of
    ``engine.turn_input``) and the gathered h_{t-1} of the weight gradient (``PreviousOutputs``'
    construction). The input projection's forward product is ``sequence.project_rows``, or with
    lengths the two products of ``turn_input._project``."""
    kept = [
        (native, "call", native.call),
        (native_memory, "zero_rows", native_memory.zero_rows),
        (row_moves, "take", row_moves.take),
        (row_moves, "place", row_moves.place),
        (turn_input, "take", turn_input.take),
        (turn_input, "place", turn_input.place),
        (turn_input, "_project", turn_input._project),
        (sequence, "project_rows", sequence.project_rows),
        (weight_grad.PreviousOutputs, "__init__", weight_grad.PreviousOutputs.__init__),
        (weight_grad.PreviousOutputs, "weight_grad", weight_grad.PreviousOutputs.weight_grad),
    ]
    call = native.call

    def loop(kernel, direction, *args, **kwargs):
        return clock.wrap(call, f"loop, {direction}")(kernel, direction, *args, **kwargs)

    native.call = loop
    native_memory.zero_rows = clock.wrap(native_memory.zero_rows, "layout moves")
    row_moves.take = clock.wrap(row_moves.take, "layout moves")
    row_moves.place = clock.wrap(row_moves.place, "layout moves")
    # with lengths, the first steps' input projection on the padded input (engine.turn_input)
    turn_input.take = clock.wrap(turn_input.take, "layout moves")
    turn_input.place = clock.wrap(turn_input.place, "layout moves")
    turn_input._project = clock.wrap(turn_input._project, "input projection (forward)")
    prev = weight_grad.PreviousOutputs
    prev.__init__ = clock.wrap(prev.__init__, "layout moves")
    prev.weight_grad = clock.wrap(prev.weight_grad, "W_hh gradient")
    sequence.project_rows = clock.wrap(sequence.project_rows, "input projection (forward)")

    def remove() -> None:
        for owner, name, value in kept:
            setattr(owner, name, value)

    return remove


def parts_table(repeats: int, reused: bool) -> None:
    _report_head(
        "Lengths: where the time goes",
        reused,
        f"{2 * repeats + 1} alternating calls, median",
        "each part: ms of one training step at full length / with lengths spread evenly over "
        "[T/2, T], and their ratio; the part's share of the full step in brackets (the layout "
        "moves: ms with lengths, and their share of that step)",
    )
    for B, H in ((32, 256), (128, 256)):
        lengths = evenly_spread_lengths(B)
        rows = []
        for name in PARTS_MODELS:
            model = build(name, H)
            x = _input(T, B, H)
            calls = {"full": step_fns(model, x)[1], "lengths": step_fns(model, x, lengths)[1]}
            clock = _Clock()
            samples: dict[str, list[dict[str, float]]] = {k: [] for k in calls}
            for fn in calls.values():
                fn()  # warm-up
            remove = _timed_parts(clock)
            try:
                for _ in range(2 * repeats + 1):
                    for key, fn in calls.items():
                        clock.spent = {}
                        start = time.perf_counter()
                        fn()
                        total = time.perf_counter() - start
                        spent = dict(clock.spent, total=total)
                        spent["the rest"] = total - sum(spent.get(p, 0.0) for p in PARTS[:-1])
                        samples[key].append(spent)
            finally:
                remove()
            med = {
                key: {p: float(np.median([s.get(p, 0.0) for s in got])) for p in (*PARTS, "total")}
                for key, got in samples.items()
            }
            full, short = med["full"], med["lengths"]
            cells = [name, f"{short['total'] / full['total']:.3f}"]
            for p in PARTS:
                if p == "layout moves":  # nothing to move at full length
                    share = 100 * short[p] / short["total"]
                    cells.append(f"{short[p] * 1e3:.2f} ({share:.1f} % of the step with lengths)")
                    continue
                cells.append(
                    f"{full[p] * 1e3:.2f} / {short[p] * 1e3:.2f}: {short[p] / full[p]:.2f} "
                    f"({100 * full[p] / full['total']:.0f} %)"
                )
            rows.append(cells)
        print(
            table(
                f"B={B} H={H}, lengths spread evenly over [{T // 2}, {T}] (padded work done "
                f"{float(lengths.sum()) / (T * B):.3f})",
                ["model", "step ratio", *PARTS],
                rows,
            ),
            flush=True,
        )


FLOOR_SHAPES = ((2, 64), (8, 64), (32, 64), (128, 64), (32, 128), (32, 256))
FLOOR_MODELS = ("Elman", "GRU", "LSTM [native loop]")


def padded_floor_step(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor):
    """The full step plus the least a route that keeps the padded work must add: the lengths
    checked (as ``rnnkit.Recurrent`` checks them) and each sequence's output at its last step
    picked as its final state. The pick is not part of the graph; its cost is what counts."""
    params = list(model.parameters())
    T_, B = x.shape[0], x.shape[1]
    with torch.no_grad():
        out, _ = model(x)
    dout = torch.randn_like(out)

    def run() -> None:
        checked = check_lengths(lengths, B, T_, x.device)
        out, _ = model(x)
        last = (checked - 1) * B + torch.arange(B)
        out.detach().view(T_ * B, -1).index_select(0, last)
        torch.autograd.grad(out, [x, *params], dout)

    return run


def padded_floor_table(repeats: int, reused: bool) -> None:
    """Small layers: the step with lengths and the padded floor, each over the full step."""
    _report_head(
        "Lengths on small layers: the step with lengths against the padded floor",
        reused,
        f"float32, I = H, T = {T}, lengths spread evenly over [{T // 2}, {T}]; each ratio is "
        "the median over interleaved rounds of the step's time over the full step's in the "
        "same round",
    )
    rows = []
    for B, H in FLOOR_SHAPES:
        lengths = evenly_spread_lengths(B)
        for name in FLOOR_MODELS:
            model = build(name, H)
            x = _input(T, B, H)
            fns = {
                "full": step_fns(model, x)[1],
                "lengths": step_fns(model, x, lengths)[1],
                "floor": padded_floor_step(model, x, lengths),
                "control": step_fns(model, x)[1],  # the full step again, last in each round
            }
            samples = interleaved_samples(fns, 3 * repeats)
            full_ms = statistics.median(samples["full"]) * 1e3
            rows.append(
                [
                    f"B={B} H={H}",
                    name,
                    f"{full_ms:.2f}",
                    f"{round_ratio(samples, 'lengths', 'full'):.3f}",
                    f"{round_ratio(samples, 'floor', 'full'):.3f}",
                    f"{round_ratio(samples, 'control', 'full'):.3f}",
                ]
            )
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    print()
    print(
        table(
            "time over the full step's: the step with lengths, and the padded step plus "
            "the check of the lengths and the pick of the final states",
            ["shape", "model", "full step ms", "with lengths", "padded floor", "control"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
