"""On the GPU: the cells without a cuDNN kernel on CUDA graphs, against the autograd loop they
ran before and against cuDNN's LSTM, in the same run.

Every cell that "auto" runs in the autograd loop on the GPU (peephole and LayerNorm LSTM, GRU
with the reset before, MGU, MUT1-3, NAS) is timed twice: ``engine="graph"`` (the loop recorded
once per shape and replayed, rnnkit.engine.graphs) and ``engine="autograd"`` (the loop launched
from Python). torch.nn.LSTM (cuDNN) is timed in the same rounds; the models take turns in every
repeat, each number the median. T = 100, I = H, float32; the training step is forward plus the
gradients of the input and every parameter, as in rnn_speed.py. Then one training step's peak
memory and the memory a model holds between steps (a graph keeps its pool) at T = 500,
B = 128, H = 512; and steps whose T changes from call to call (buckets of T).

    python benchmarks/gpu_graphs.py              # about two minutes on an H100
    python benchmarks/gpu_graphs.py --quick      # three shapes
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time

import rnn_speed
import torch
from rnn_speed import build, interleaved, step_fns
from rnn_targets import table

import rnnkit

CELLS = (
    "LSTM peephole",
    "LayerNorm LSTM",
    "GRU reset before",
    "MGU",
    "MUT1",
    "MUT2",
    "MUT3",
    "NAS",
)


def _on(name: str, H: int, path: str) -> torch.nn.Module:
    model = build(name, H)
    model.engine = path
    return model


def _models_names() -> list[str]:
    return ["torch LSTM", *(f"{name} [{path}]" for name in CELLS for path in ("graph", "loop"))]


def _models(H: int) -> dict[str, torch.nn.Module]:
    models = {"torch LSTM": build("torch LSTM", H)}
    for name in CELLS:
        models[f"{name} [graph]"] = _on(name, H, "graph")
        models[f"{name} [loop]"] = _on(name, H, "autograd")
    return models


def time_shapes(shapes, repeats: int):
    """times[(B, H)][mode][model] seconds."""
    times = {}
    for B, H in shapes:
        torch.manual_seed(0)
        x = rnn_speed._input(100, B, H)
        fns = {}
        for name, model in _models(H).items():
            try:
                fwd, train = step_fns(model, x)
                fwd()  # the graph path's first call records; the timed calls replay
                train()
            except RuntimeError as err:  # reported, and the other models still timed
                print(f"  {name} at B={B} H={H} failed: {err}", file=sys.stderr, flush=True)
                continue
            fns[(name, "forward")] = fwd
            fns[(name, "training")] = train
        measured = interleaved(fns, repeats)
        nan = float("nan")
        times[(B, H)] = {
            mode: {name: measured.get((name, mode), nan) for name in _models_names()}
            for mode in ("forward", "training")
        }
        rnnkit.engine.graphs.clear()
        print(f"  B={B} H={H} done", file=sys.stderr, flush=True)
    return times


def variable_steps(
    names, B: int = 32, H: int = 256, calls: int = 40, seed: int = 0
) -> dict[str, float]:
    """Seconds per training step when every call brings its own T, drawn from [50, 100] with
    lengths spread over [T/2, T] (batches padded to their longest sequence): "auto" (which
    records buckets of T on the GPU) against the autograd loop, and torch.nn.LSTM on the same
    padded batches. The same T and lengths for every model; the models take turns call by
    call; ``calls`` warm-up calls first (the graph path records its buckets there)."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(2 * calls):
        T = int(torch.randint(50, 101, (1,), generator=gen))
        lengths = torch.randint(T // 2, T + 1, (B,), generator=gen)
        lengths[0] = T
        batches.append((rnn_speed._input(T, B, H), lengths.to(rnn_speed.DEVICE)))
    models = {}
    for name in names:
        if name == "torch LSTM":
            models[name] = build(name, H)
        else:
            path = None if name.endswith("[auto]") else "autograd"
            models[name] = _on(name.split(" [")[0], H, path)
    spent = dict.fromkeys(names, 0.0)
    for k, (x, lengths) in enumerate(batches):
        for name, model in models.items():
            start = time.perf_counter()
            out, _ = model(x) if name == "torch LSTM" else model(x, lengths=lengths)
            torch.autograd.grad(out.sum(), [x, *model.parameters()])
            rnn_speed._sync()
            if k >= calls:
                spent[name] += time.perf_counter() - start
    rnnkit.engine.graphs.clear()
    return {name: t / calls for name, t in spent.items()}


def memory(names, T: int = 500, B: int = 128, H: int = 512) -> dict[str, tuple[float, float]]:
    """(peak MB of one training step over what was allocated before it, MB the model's
    recorded graphs keep between steps) per model; the step measured is the second."""
    result = {}
    for name in names:
        if name == "torch LSTM":
            model = build(name, H)
        else:
            path = "graph" if name.endswith("[graph]") else "autograd"
            model = _on(name.split(" [")[0], H, path)
        x = rnn_speed._input(T, B, H)
        _, train = step_fns(model, x)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        train()  # the graph path records its training graphs here
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        result[name] = (peak / 2**20, (base - before) / 2**20)
        del model, x, train, _
        rnnkit.engine.graphs.clear()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three shapes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device is visible to torch: this benchmark times CUDA graphs")
    rnn_speed.DEVICE = torch.device("cuda")
    if args.quick:
        shapes = [(1, 64), (32, 256), (128, 512)]
    else:
        shapes = [(B, H) for B in (1, 32, 128) for H in (64, 256, 512)]

    print("## CUDA graphs for the cells without a cuDNN kernel\n")
    print(f"- device: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}")
    print(f"- date: {datetime.date.today().isoformat()}")
    print(f"- command: `{' '.join(['python benchmarks/gpu_graphs.py', *sys.argv[1:]])}`")
    print(f"- float32, I = H, T = 100, {args.repeats} interleaved repeats, median\n", flush=True)

    times = time_shapes(shapes, args.repeats)
    header = ["model", *(f"B={B} H={H}" for B, H in shapes)]
    for mode in ("training", "forward"):
        t = {s: times[s][mode] for s in shapes}  # t[shape][model] seconds

        def ratios(num: str, den: str, digits: int = 2, t=t) -> list[str]:
            return [f"{t[s][num] / t[s][den]:.{digits}f}" for s in shapes]

        rows = [["torch LSTM ms", *(f"{t[s]['torch LSTM'] * 1e3:.2f}" for s in shapes)]]
        for name in CELLS:
            for path in ("graph", "loop"):
                rows.append([f"{name} [{path}]", *ratios(f"{name} [{path}]", "torch LSTM")])
        print(table(f"T=100, {mode}: time / torch.nn.LSTM's (cuDNN)", header, rows))
        rows = [[name, *ratios(f"{name} [graph]", f"{name} [loop]", 3)] for name in CELLS]
        print(table(f"T=100, {mode}: graph / autograd loop", header, rows), flush=True)

    names = ["torch LSTM", "MUT1 [auto]", "MUT1 [loop]", "NAS [auto]", "NAS [loop]"]
    varied = variable_steps(names)
    lstm = varied["torch LSTM"]
    rows = [[n, f"{t * 1e3:.2f}", f"{t / lstm:.2f}"] for n, t in varied.items()]
    print(
        table(
            "Training steps of 50-100 steps each, lengths over [T/2, T], B=32, H=256 "
            "(torch LSTM: padded, no lengths)",
            ["model", "ms per step", "/ torch LSTM"],
            rows,
        ),
        flush=True,
    )

    names = ["torch LSTM", "MUT1 [graph]", "MUT1 [loop]", "NAS [graph]", "NAS [loop]"]
    mem = memory(names)
    lstm = mem["torch LSTM"][0]
    rows = [[n, f"{p:.0f}", f"{h:.0f}", f"{p / lstm:.2f}"] for n, (p, h) in mem.items()]
    print(
        table(
            "Memory, T=500, B=128, H=512, training step",
            ["model", "peak MB (step)", "held MB (between steps)", "peak / torch LSTM"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
