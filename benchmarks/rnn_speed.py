"""Speed and memory of rnnkit's recurrent layers against torch.nn on the CPU.

Every rnnkit cell runs through rnnkit.Recurrent (so through rnnkit.engine) next to
torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN and a naive loop over torch.nn.LSTMCell, all measured
in the same run. The models take turns within every repeat (interleaved), and each number is the
median over repeats, so load from other processes falls on all of them alike.

* forward: no grad.  training step: forward, then the gradients with respect to the input and
  every parameter for a fixed dense gradient of the output (torch.autograd.grad, nothing
  accumulated).
* ratios are to torch.nn.LSTM's time for the same mode and shape; "per FLOP" divides each
  time by the model's matrix-product FLOPs relative to the LSTM's (a GRU does 3/4 of them).
* GFLOP/s counts the matrix-product FLOPs (2 per multiply-add; a training step is 3x the
  forward's) and compares them with torch.mm on 2048^3 float32, measured in the same run.
* lengths: drawn uniformly from [T/2, T]; the time of the batch with lengths over the time of
  the same batch at full length, the two timed back to back in every round, the median of the
  rounds' ratios (three times the repeats: a ratio of two short calls).
* memory: peak resident memory of one training step, measured in a fresh process per model
  (Linux: VmHWM reset through /proc/self/clear_refs), minus the memory resident before it.
* checkpoint: LSTM and NAS layers with ``layer.checkpoint = 50`` (activations recomputed in
  50-step segments) against the same layers without it: training time and peak memory.

    python benchmarks/rnn_speed.py            # the full run (a few minutes on 2 threads)
    python benchmarks/rnn_speed.py --quick    # a smaller grid and one repeat
    python benchmarks/rnn_speed.py --lengths-only   # only the variable-lengths ratios
    python benchmarks/rnn_speed.py --lengths-only --lengths-shapes 32x64,128x64,32x128
    python benchmarks/rnn_speed.py --checkpoint-only   # only recomputation's time and memory
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from machine import add_allocator_flag, cpu_name
from rnn_targets import TORCH_MODELS, print_targets, table
from torch import nn

import rnnkit
from rnnkit import Recurrent
from rnnkit.cells import (
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MUT1Cell,
    MUT2Cell,
    MUT3Cell,
    NASCell,
)

# The device every model and tensor lives on (--device; the CPU unless told otherwise).
DEVICE = torch.device("cpu")


def _sync() -> None:
    """Wait for the GPU's queued work, so that a timed call includes it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _input(T: int, B: int, H: int) -> torch.Tensor:
    return torch.randn(T, B, H, device=DEVICE, requires_grad=True)


# -- models -----------------------------------------------------------------------------------
class LSTMCellLoop(nn.Module):
    """The naive custom-cell baseline: a Python loop over torch.nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = c = x.new_zeros(x.shape[1], self.cell.hidden_size)
        outs = []
        for x_t in x.unbind(0):
            h, c = self.cell(x_t, (h, c))
            outs.append(h)
        return torch.stack(outs), None  # (T, B, H)


def _native(layer: Recurrent) -> Recurrent:
    layer.engine = "native"
    return layer


def _checkpointed(layer: Recurrent, steps: int = 50) -> Recurrent:
    layer.checkpoint = steps
    return layer


def build(name: str, H: int) -> nn.Module:
    """Model ``name`` with I = H; rnnkit LSTMs start from torch's initialisation."""
    makers: dict[str, Callable[[], nn.Module]] = {
        "torch LSTM": lambda: nn.LSTM(H, H),
        "torch GRU": lambda: nn.GRU(H, H),
        "torch RNN": lambda: nn.RNN(H, H),
        "torch LSTMCell loop": lambda: LSTMCellLoop(H, H),
        "LSTM": lambda: rnnkit.LSTM(H, H, forget_bias=0.0),
        "LSTM [native loop]": lambda: _native(rnnkit.LSTM(H, H, forget_bias=0.0)),
        "LSTM peephole": lambda: Recurrent(partial(LSTMCell, peephole=True), H, H),
        "LayerNorm LSTM": lambda: Recurrent(LayerNormLSTMCell, H, H),
        "GRU": lambda: rnnkit.GRU(H, H),
        "GRU reset before": lambda: rnnkit.GRU(H, H, reset_after=False),
        "Elman": lambda: rnnkit.RNN(H, H),
        "MGU": lambda: Recurrent(MGUCell, H, H),
        "MUT1": lambda: Recurrent(MUT1Cell, H, H),
        "MUT2": lambda: Recurrent(MUT2Cell, H, H),
        "MUT3": lambda: Recurrent(MUT3Cell, H, H),
        "NAS": lambda: Recurrent(NASCell, H, H),
        # recomputed in segments of 50 steps (rnnkit.engine.checkpoint): less memory
        "LSTM [checkpoint 50]": lambda: _checkpointed(rnnkit.LSTM(H, H, forget_bias=0.0)),
        "NAS [checkpoint 50]": lambda: _checkpointed(Recurrent(NASCell, H, H)),
    }
    return makers[name]().to(DEVICE)


MODELS = (
    *TORCH_MODELS,
    "LSTM",
    "LSTM [native loop]",
    "LSTM peephole",
    "LayerNorm LSTM",
    "GRU",
    "GRU reset before",
    "Elman",
    "MGU",
    "MUT1",
    "MUT2",
    "MUT3",
    "NAS",
)


def forward_flops(model: nn.Module, T: int, B: int) -> float:
    """Matrix-product FLOPs of one forward pass: 2·T·B·(entries of every weight matrix)."""
    entries = sum(
        p.numel()
        for name, p in model.named_parameters()
        if any(k in name for k in ("weight_ih", "weight_hh", "weight_hr"))
    )
    return 2.0 * T * B * entries


# -- timing -----------------------------------------------------------------------------------
def step_fns(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None):
    """(forward, training step) closures for ``model`` on ``x`` (T, B, I)."""
    params = [p for p in model.parameters()]
    kw = {} if lengths is None else {"lengths": lengths}
    with torch.no_grad():
        out, _ = model(x, **kw)
    dout = torch.randn_like(out)  # a dense upstream gradient, as a real loss gives

    def forward() -> None:
        with torch.no_grad():
            model(x, **kw)
        _sync()

    def train() -> None:
        out, _ = model(x, **kw)
        torch.autograd.grad(out, [x, *params], dout)
        _sync()

    return forward, train


def interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function; the functions take turns in every repeat.
    Calls shorter than 20 ms are repeated within one sample and averaged; when every call is
    shorter than 0.1 s, the number of repeats is doubled (plus one); when one round takes under
    10 s, two more; over 20 s, one less (the run stays short)."""
    return {name: statistics.median(s) for name, s in interleaved_samples(fns, repeats).items()}


def interleaved_samples(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """:func:`interleaved`'s samples: seconds per call of each function in each round, the
    rounds in order (sample k of every function comes from round k)."""
    number, first = {}, {}
    for name, fn in fns.items():
        if DEVICE.type == "cuda":
            fn()  # a shape's first call on the GPU runs the autograd loop, its second records
            # the CUDA graphs of the cells without a cuDNN kernel (rnnkit.engine.graphs)
        start = time.perf_counter()
        fn()  # warm-up: first calls build kernels and compile loops
        first[name] = time.perf_counter() - start
        number[name] = max(1, int(0.02 / max(first[name], 1e-6)))
    if max(first.values()) < 0.1:
        repeats = 2 * repeats + 1
    elif sum(first.values()) < 10.0:
        repeats += 2
    elif sum(first.values()) > 20.0 and repeats > 2:  # the largest shapes: keep the run short
        repeats -= 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / number[name])
    return samples


def round_ratio(samples: dict, num, den) -> float:
    """The median over rounds of sample ``num`` over sample ``den`` of the same round
    (:func:`interleaved_samples`): two calls timed back to back, so the machine's drift between
    rounds cancels, which a ratio of two medians does not do."""
    return statistics.median(a / b for a, b in zip(samples[num], samples[den]))


def gemm_ceiling(repeats: int = 5) -> float:
    """GFLOP/s of torch.mm on 2048 x 2048 x 2048 float32 (on the GPU: 8192^3)."""
    n = 8192 if DEVICE.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=DEVICE), torch.randn(n, n, device=DEVICE)

    def mm() -> None:
        torch.mm(a, b)
        _sync()

    seconds = interleaved({"mm": mm}, repeats)["mm"]
    return 2 * n**3 / seconds / 1e9


# -- memory -----------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name: str, T: int, B: int, H: int, threads: int) -> None:
    """In a fresh process: print the peak MB that one training step adds."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, H)
    x = _input(T, B, H)
    _, train = step_fns(model, x)
    train()  # warm-up: kernels, compiled loops, allocator pools
    if DEVICE.type == "cuda":  # the allocator's peak of tensor memory
        train()  # (the second call records the CUDA graphs of the cells that take them)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        before = torch.cuda.memory_allocated(DEVICE)
        train()
        print((torch.cuda.max_memory_allocated(DEVICE) - before) / 2**20)
        return
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kb("VmRSS")
    train()
    print((_status_kb("VmHWM") - before) / 1024)


def peak_memories(names, T: int, B: int, H: int, threads: int) -> dict[str, float]:
    """Peak MB of one training step per model, two child processes at a time (memory does not
    depend on timing, so they may share the cores)."""
    result: dict[str, float] = {}
    names = list(names)
    for k in range(0, len(names), 2):
        procs = {}
        for name in names[k : k + 2]:
            cmd = [sys.executable, __file__, "--memory-child", name]
            cmd += [f"--T={T}", f"--B={B}", f"--H={H}", f"--threads={threads}"]
            cmd += [f"--device={DEVICE}"]
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        for name, proc in procs.items():
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"memory measurement of {name} failed")
            result[name] = float(out.strip().splitlines()[-1])
    return result


# -- report -----------------------------------------------------------------------------------
def run_grid(
    T: int,
    shapes: list[tuple[int, int]],
    models: tuple[str, ...],
    repeats: int,
    modes: tuple[str, ...] = ("forward", "training"),
):
    """times[(B, H)][mode][model] seconds, flops[(B, H)][model] forward FLOPs."""
    times, flops = {}, {}
    for B, H in shapes:
        torch.manual_seed(0)
        x = _input(T, B, H)
        built = {name: build(name, H) for name in models}
        fns = {}
        for name, model in built.items():
            fwd, train = step_fns(model, x)
            for mode, fn in (("forward", fwd), ("training", train)):
                if mode in modes:
                    fns[(name, mode)] = fn
        measured = interleaved(fns, repeats)
        times[(B, H)] = {mode: {name: measured[(name, mode)] for name in models} for mode in modes}
        flops[(B, H)] = {name: forward_flops(m, T, B) for name, m in built.items()}
        lstm = times[(B, H)]["training"]["torch LSTM"]
        print(f"  T={T} B={B} H={H}: torch LSTM training step {lstm * 1e3:.1f} ms", flush=True)
    return times, flops


def ratio_rows(times, flops, shapes, models, mode, per_flop=False):
    rows = []
    for name in models:
        cells = []
        for shape in shapes:
            t = times[shape][mode]
            r = t[name] / t["torch LSTM"]
            if per_flop:
                r *= flops[shape]["torch LSTM"] / flops[shape][name]
            cells.append(f"{r:.2f}")
        rows.append([name, *cells])
    return rows


def lengths_table(
    len_shapes: list[tuple[int, int]], rnnkit_models: tuple[str, ...], repeats: int
) -> dict[tuple[int, int], dict[str, float]]:
    """Print and return, per shape, each model's training time with lengths spread evenly over
    [T/2, T] over its time at full length (and torch's PackedSequence over its padded batch)."""
    len_ratio: dict[tuple[int, int], dict[str, float]] = {}
    work: dict[tuple[int, int], float] = {}
    for B, H in len_shapes:
        torch.manual_seed(0)
        x = _input(100, B, H)
        # evenly spaced over [T/2, T] in random order: a uniform draw whose mean is exactly
        # 3T/4, so the ideal ratio is the work fraction printed with the table
        lengths = torch.linspace(50, 100, B).round().long()[torch.randperm(B)]
        work[(B, H)] = float(lengths.sum()) / (100 * B)
        fns = {}
        for name in ("torch LSTM", *rnnkit_models):
            model = build(name, H)
            fns[(name, "full")] = step_fns(model, x)[1]
            if name != "torch LSTM":
                fns[(name, "lengths")] = step_fns(model, x, lengths)[1]
        # a ratio of two short calls: three times the repeats, or the scatter hides the 5 %
        # that separate the results from the target; and the median of the rounds' own ratios
        # (the two calls back to back in every round), not a ratio of two medians, which mixes
        # calls from different moments of this machine's drift
        samples = interleaved_samples(fns, 3 * repeats)
        measured = {name: statistics.median(s) for name, s in samples.items()}
        len_ratio[(B, H)] = {
            name: round_ratio(samples, (name, "lengths"), (name, "full")) for name in rnnkit_models
        }
        packed = _packed_lstm_time(H, x, lengths, repeats)
        len_ratio[(B, H)]["torch LSTM (packed, vs padded)"] = (
            packed / measured[("torch LSTM", "full")]
        )
    names = list(len_ratio[len_shapes[0]])
    rows = [["padded work done (Σ lengths / T·B)", *(f"{work[s]:.3f}" for s in len_shapes)]]
    rows += [[n, *(f"{len_ratio[s][n]:.2f}" for s in len_shapes)] for n in names]
    print(
        table(
            "T=100, lengths spread evenly over [50, 100], training: time with lengths / time "
            "at full length",
            ["model", *(f"B={B} H={H}" for B, H in len_shapes)],
            rows,
        ),
        flush=True,
    )
    return len_ratio


CHECKPOINTED = {"LSTM [checkpoint 50]": "LSTM", "NAS [checkpoint 50]": "NAS"}


def checkpoint_table(repeats: int) -> None:
    """Print the training time of layers recomputed in 50-step segments over the same layers
    without recomputation (and both over torch.nn.LSTM), interleaved in one run."""
    shapes = [(100, 32, 256), (500, 128, 256)]
    rows: dict[str, list[str]] = {}
    for T, B, H in shapes:
        torch.manual_seed(0)
        x = _input(T, B, H)
        names = ("torch LSTM", *CHECKPOINTED.values(), *CHECKPOINTED)
        t = interleaved({n: step_fns(build(n, H), x)[1] for n in names}, repeats)
        for n in names[1:]:
            cell = [f"{t[n] / t['torch LSTM']:.2f}"]
            if n in CHECKPOINTED:
                cell.append(f"{t[n] / t[CHECKPOINTED[n]]:.2f}")
            rows.setdefault(n, []).append(" / ".join(cell))
    print(
        table(
            "Training with recomputation (checkpoint=50): time / torch LSTM "
            "[/ the same layer without checkpoint]",
            ["model", *(f"T={T} B={B} H={H}" for T, B, H in shapes)],
            [[n, *r] for n, r in rows.items()],
        ),
        flush=True,
    )


def _shapes(parser: argparse.ArgumentParser, text: str) -> list[tuple[int, int]]:
    """ "32x256,128x256" -> [(32, 256), (128, 256)]; a malformed entry is a usage error."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--lengths-shapes: expected BxH entries such as 32x256, got {item!r}")
        shapes.append((int(parts[0]), int(parts[1])))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, one repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda to time against cuDNN (no compiled loops there: models that force "
        "them are left out, and memory is the CUDA allocator's peak)",
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated rnnkit models to time (default: all); torch.nn's are always timed, "
        "and the targets are printed only for the full set",
    )
    parser.add_argument(
        "--lengths-only", action="store_true", help="only the variable-lengths ratios"
    )
    parser.add_argument(
        "--lengths-shapes",
        default="32x256,128x256",
        help="with --lengths-only: comma-separated BxH shapes (default: 32x256,128x256, the "
        "target's; 32x64,128x64,32x128 for small layers)",
    )
    parser.add_argument(
        "--checkpoint-only",
        action="store_true",
        help="only the time and memory of recomputation in segments (checkpoint=50)",
    )
    add_allocator_flag(
        parser,
        "; the memory children keep glibc's defaults, since their measure is the RSS a step adds",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--B", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--H", type=int, default=512, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if DEVICE.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.memory_child:
        memory_child(args.memory_child, args.T, args.B, args.H, args.threads)
        return

    torch.set_num_threads(args.threads)
    reused = args.reuse_freed_memory and rnnkit.engine.reuse_freed_memory()
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        shapes = [(1, 64), (32, 256), (128, 512)]
    else:
        shapes = [(B, H) for B in (1, 32, 128) for H in (64, 256, 512)]
    models = MODELS
    if args.models:
        chosen = [m.strip() for m in args.models.split(",")]
        unknown = [m for m in chosen if m not in MODELS or m in TORCH_MODELS]
        if unknown:
            rnnkit_names = ", ".join(m for m in MODELS if m not in TORCH_MODELS)
            parser.error(f"--models: unknown {unknown}; choose from {rnnkit_names}")
        models = (*TORCH_MODELS, *(m for m in MODELS if m in chosen))
    if DEVICE.type != "cpu":
        models = tuple(m for m in models if "[native loop]" not in m)
    rnnkit_models = tuple(m for m in models if m not in TORCH_MODELS)

    print("## Recurrent layers (engine)\n")
    print(f"- CPU: {cpu_name()}, {args.threads} threads (torch.set_num_threads)")
    if DEVICE.type == "cuda":
        print(f"- device: {torch.cuda.get_device_name(DEVICE)} (CUDA {torch.version.cuda})")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}")
    print(f"- date: {datetime.date.today().isoformat()}")
    command = " ".join(["python benchmarks/rnn_speed.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(f"- compiled loops available: {rnnkit.engine.native_available()}")
    print(f"- allocator: {'reuse_freed_memory()' if reused else 'glibc defaults'} (timings)")
    ceiling = gemm_ceiling()
    n = 8192 if DEVICE.type == "cuda" else 2048
    print(f"- GEMM ceiling (torch.mm {n}^3 float32): {ceiling:.0f} GFLOP/s")
    print(f"- float32, I = H, T = 100, {repeats} interleaved repeats, median\n", flush=True)
    if args.lengths_only:
        lengths_table(_shapes(parser, args.lengths_shapes), rnnkit_models, repeats)
        return
    if args.checkpoint_only:
        checkpoint_table(repeats)
        names = ("torch LSTM", *CHECKPOINTED.values(), *CHECKPOINTED)
        memory = peak_memories(names, 500, 128, 512, args.threads)
        rows = [[n, f"{mb:.0f}", f"{mb / memory['torch LSTM']:.2f}"] for n, mb in memory.items()]
        print(table("Peak memory, T=500, B=128, H=512", ["model", "MB", "/ torch LSTM"], rows))
        return

    times, flops = run_grid(100, shapes, models, repeats)
    header = ["model", *(f"B={B} H={H}" for B, H in shapes)]
    for mode in ("training", "forward"):
        absolute = ["torch LSTM ms", *(f"{times[s][mode]['torch LSTM'] * 1e3:.2f}" for s in shapes)]
        rows = [absolute, *ratio_rows(times, flops, shapes, models, mode)]
        print(table(f"T=100, {mode}: time / torch.nn.LSTM's time", header, rows))
    varied = [m for m in models if flops[shapes[0]][m] != flops[shapes[0]]["torch LSTM"]]
    print(
        table(
            "T=100, training, per FLOP: (time / FLOPs) / torch.nn.LSTM's",
            header,
            ratio_rows(times, flops, shapes, varied, "training", per_flop=True),
        )
    )
    rows = []
    for name in models:
        cells = []
        for s in shapes:
            gflops = 3 * flops[s][name] / times[s]["training"][name] / 1e9
            cells.append(f"{gflops:.0f} ({100 * gflops / ceiling:.0f} %)")
        rows.append([name, *cells])
    print(table("T=100, training, effective GFLOP/s (% of the GEMM ceiling)", header, rows))

    # long sequences
    long_shapes = [(32, 256)]
    long_times, long_flops = run_grid(500, long_shapes, models, max(1, repeats - 1), ("training",))
    rows = [["torch LSTM ms", f"{long_times[long_shapes[0]]['training']['torch LSTM'] * 1e3:.1f}"]]
    rows += ratio_rows(long_times, long_flops, long_shapes, models, "training")
    print(table("T=500, B=32, H=256, training: time / torch.nn.LSTM's", ["model", "ratio"], rows))

    # variable lengths
    len_shapes = [(32, 256), (128, 256)] if not args.quick else [(128, 256)]
    len_ratio = lengths_table(len_shapes, rnnkit_models, repeats)

    # memory
    mem_models = (
        ("torch LSTM", "LSTM", "LSTM [native loop]", "GRU")
        if args.quick
        else (
            "torch LSTM",
            "torch GRU",
            "LSTM",
            "LSTM [native loop]",
            "LSTM peephole",
            "LayerNorm LSTM",
            "GRU",
            "Elman",
            "MUT3",
            "NAS",
            *CHECKPOINTED,
        )
    )
    mem_models = tuple(
        m for m in mem_models if m in models or (m in CHECKPOINTED and not args.models)
    )
    if not args.quick and not args.models:
        checkpoint_table(repeats)
    memory = peak_memories(mem_models, 500, 128, 512, args.threads)
    base = memory["torch LSTM"]
    rows = [[n, f"{mb:.0f}", f"{mb / base:.2f}"] for n, mb in memory.items()]
    print(
        table(
            "Peak memory of one training step, T=500, B=128, H=512",
            ["model", "MB", "/ torch LSTM"],
            rows,
        )
    )
    if args.models:
        print("\n(targets: printed for the full set of models only)")
        return
    print_targets(times, flops, shapes, rnnkit_models, len_ratio, memory)


def _packed_lstm_time(H: int, x: torch.Tensor, lengths: torch.Tensor, repeats: int) -> float:
    """torch.nn.LSTM on a PackedSequence (its own variable-length path)."""
    torch.manual_seed(0)
    model = nn.LSTM(H, H).to(DEVICE)
    params = list(model.parameters())

    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    dout = torch.randn(packed.data.shape[0], H, device=DEVICE)

    def train() -> None:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = model(packed)
        torch.autograd.grad(out.data, [x, *params], dout)
        _sync()

    return interleaved({"packed": train}, repeats)["packed"]


if __name__ == "__main__":
    main()
