"""The plain LSTM's training step on oneDNN in chunks of steps: time and peak memory.

A training call of ``rnnkit.LSTM`` on the CPU over at least ``2 * CHUNK_ROWS`` rows (steps
times batch), whose output has at least ``CHUNK_MIN_OUTPUT`` elements, runs as several calls
of torch's op, each over a run of consecutive steps (``rnnkit.engine.fused.chunk_steps``).
This script measures what that costs and saves, in one run, against the same layer in one call
(``CHUNK_ROWS = 0``) and ``torch.nn.LSTM`` (one call):

* training time (forward, then the gradients of a fixed dense output gradient with respect to
  the input and every parameter), interleaved repeats, median, as ratios to torch.nn.LSTM's;
* peak memory of one training step, each model in a fresh process (the RSS that the step adds
  to the process, glibc's allocator), as ratios to torch.nn.LSTM's.

    python benchmarks/lstm_chunks.py --reuse-freed-memory   # about 12 minutes on 2 cores
    python benchmarks/lstm_chunks.py --slices 1,2,5,10,20,50,100   # torch.nn.LSTM in slices
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from pathlib import Path

import torch
from machine import add_allocator_flag, cpu_name
from rnn_speed import _status_kb, interleaved
from rnn_targets import table
from torch import nn

import rnnkit
from rnnkit.engine import fused

MODELS = ("torch LSTM", "LSTM (chunks)", "LSTM (one call)")
# (T, B, H), I = H: the memory target's shape first, then longer sequences at smaller batches;
# the last one is just under CHUNK_MIN_OUTPUT (one call)
SHAPES = ((500, 128, 512), (1000, 64, 512), (2000, 64, 256), (500, 128, 256))


class Slices(nn.Module):
    """torch.nn.LSTM called on ``k`` consecutive slices of the sequence, each from the state
    the previous one ended in: the chunks, without rnnkit."""

    def __init__(self, H: int, k: int) -> None:
        super().__init__()
        self.lstm, self.k = nn.LSTM(H, H), k

    def forward(self, x: torch.Tensor):
        state, outs = None, []
        for piece in x.chunk(self.k):
            out, state = self.lstm(piece, state)
            outs.append(out)
        return torch.cat(outs), state


def build(name: str, H: int) -> nn.Module:
    torch.manual_seed(0)
    if name == "torch LSTM":
        return nn.LSTM(H, H)
    if name.startswith("torch LSTM x"):
        return Slices(H, int(name.rsplit("x", 1)[1]))
    layer = rnnkit.LSTM(H, H)
    layer.load_state_dict(nn.LSTM(H, H).state_dict())
    return layer


def training_step(name: str, model: nn.Module, x: torch.Tensor, dy: torch.Tensor):
    params = list(model.parameters())
    rows = 0 if name == "LSTM (one call)" else fused.CHUNK_ROWS

    def step() -> None:
        saved, fused.CHUNK_ROWS = fused.CHUNK_ROWS, rows
        try:
            out, _ = model(x)
        finally:
            fused.CHUNK_ROWS = saved
        torch.autograd.grad(out, [x, *params], dy)

    return step


def memory_child(name: str, T: int, B: int, H: int, threads: int) -> None:
    """In a fresh process: print the peak MB that one training step adds."""
    torch.set_num_threads(threads)
    model = build(name, H)
    x = torch.randn(T, B, H, requires_grad=True)
    step = training_step(name, model, x, torch.randn(T, B, H))
    step()  # warm-up
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kb("VmRSS")
    step()
    print((_status_kb("VmHWM") - before) / 1024)


def peak_mb(name: str, T: int, B: int, H: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", name, f"--shape={T},{B},{H}"]
    out = subprocess.run(cmd + [f"--threads={threads}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement of {name} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    add_allocator_flag(parser, "; the memory children keep glibc's defaults")
    parser.add_argument(
        "--slices",
        default=None,
        help="instead: the peak memory of torch.nn.LSTM called on K consecutive slices of the "
        "sequence, for each K of this comma-separated list (T=500, B=128, H=512)",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shape", default="500,128,512", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        T, B, H = map(int, args.shape.split(","))
        memory_child(args.memory_child, T, B, H, args.threads)
        return
    torch.set_num_threads(args.threads)
    reused = args.reuse_freed_memory and rnnkit.engine.reuse_freed_memory()
    print(
        f"# {cpu_name()}, {args.threads} threads, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {datetime.date.today()}, CHUNK_ROWS {fused.CHUNK_ROWS}, "
        f"allocator: {'reuse_freed_memory()' if reused else 'glibc defaults'}"
    )
    if args.slices:
        rows = []
        for k in [int(v) for v in args.slices.split(",")]:
            name = "torch LSTM" if k == 1 else f"torch LSTM x{k}"
            mb = peak_mb(name, 500, 128, 512, args.threads)
            rows.append([str(k), f"{mb:.0f}"])
            print(rows[-1], flush=True)
        print()
        print(table("torch.nn.LSTM on K slices, T=500 B=128 H=512", ["K", "peak MB"], rows))
        return
    rows = []
    for T, B, H in SHAPES:
        torch.manual_seed(1)
        x = torch.randn(T, B, H, requires_grad=True)
        dy = torch.randn(T, B, H)
        models = {name: build(name, H) for name in MODELS}
        steps = fused.chunk_steps(tuple(models["LSTM (chunks)"].cells), x)
        chunks = 1 if steps is None else -(-T // steps)
        fns = {name: training_step(name, m, x, dy) for name, m in models.items()}
        times = interleaved(fns, args.repeats)
        memory = {name: peak_mb(name, T, B, H, args.threads) for name in MODELS}
        base, mem = times["torch LSTM"], memory["torch LSTM"]
        rows.append(
            [
                f"T={T} B={B} H={H}",
                str(chunks),
                f"{base * 1e3:.0f} ms, {mem:.0f} MB",
                f"{times['LSTM (chunks)'] / base:.3f} / {memory['LSTM (chunks)'] / mem:.2f}",
                f"{times['LSTM (one call)'] / base:.3f} / {memory['LSTM (one call)'] / mem:.2f}",
            ]
        )
        print(rows[-1], flush=True)
    print()
    print(
        table(
            "Training step: time / peak memory, over torch.nn.LSTM's",
            ["shape", "chunks", "torch.nn.LSTM", "LSTM, chunks", "LSTM, one call"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
