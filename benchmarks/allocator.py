"""What glibc's malloc costs a training step, and what rnnkit.engine.reuse_freed_memory saves.

Every training step allocates and frees the same large tensors. By default glibc maps a large
block afresh (mmap) and hands freed memory back to the system, so each step page-faults on
fresh pages. ``rnnkit.engine.reuse_freed_memory()`` (called by ``rnnkit train``) keeps freed
memory in the process. This script times the training step (forward, then the gradients of a
dense output gradient w.r.t. the input and every parameter) of torch's and rnnkit's layers
in child processes that take turns, one with glibc's defaults and one after
``reuse_freed_memory()``, and counts the minor page faults per step in each.

    python benchmarks/allocator.py               # about 5 minutes on 2 cores
    python benchmarks/allocator.py --rounds 1    # one child of each kind
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys

import torch
from machine import cpu_name
from rnn_lengths_bound import evenly_spread_lengths
from rnn_speed import _input, build, interleaved, step_fns
from rnn_targets import table

import rnnkit

T, H = 100, 256
SHAPES = (32, 128)
TORCH = ("torch LSTM", "torch GRU")
RNNKIT = ("LSTM", "GRU", "Elman", "MUT1", "NAS", "LayerNorm LSTM")


def _faults_per_step(fn, steps: int = 3) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def child(mode: str, threads: int, repeats: int) -> None:
    """Time every case in this process and print the results as one JSON line."""
    applied = rnnkit.engine.reuse_freed_memory() if mode == "reuse" else False
    torch.set_num_threads(threads)
    fns = {}
    for B in SHAPES:
        x = _input(T, B, H)
        lengths = evenly_spread_lengths(B)
        for name in TORCH + RNNKIT:
            torch.manual_seed(0)
            model = build(name, H)
            fns[f"{name}|{B}|full"] = step_fns(model, x)[1]
            if name in RNNKIT:
                fns[f"{name}|{B}|lengths"] = step_fns(model, x, lengths)[1]
    times = interleaved(fns, repeats)
    faults = {key: _faults_per_step(fn) for key, fn in fns.items()}
    print(json.dumps({"applied": applied, "times": times, "faults": faults}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="children of each kind, alternating")
    parser.add_argument("--child", choices=("default", "reuse"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.repeats)
        return

    print("## The allocator: glibc's defaults against `reuse_freed_memory()`\n")
    print(f"- CPU: {cpu_name()}, {args.threads} threads (torch.set_num_threads)")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}, "
          f"glibc {platform.libc_ver()[1]}")  # fmt: skip
    print(f"- date: {datetime.date.today().isoformat()}")
    command = " ".join(["python benchmarks/allocator.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(f"- float32, T = {T}, I = H = {H}, lengths evenly spread over [T/2, T]; "
          f"{args.rounds} child processes of each kind, alternating; each: "
          f"{args.repeats} interleaved repeats, median; the table: median over the children\n",
          flush=True)  # fmt: skip

    runs: dict[str, list[dict]] = {"default": [], "reuse": []}
    for _ in range(args.rounds):
        for mode in ("default", "reuse"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--threads", str(args.threads),
                 "--repeats", str(args.repeats)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    if not all(r["applied"] for r in runs["reuse"]):
        print("reuse_freed_memory() did not apply here (not glibc): nothing to compare")
        return

    def med(mode: str, what: str, key: str) -> float:
        return statistics.median(r[what][key] for r in runs[mode])

    rows = []
    for key in runs["default"][0]["times"]:
        name, B, kind = key.split("|")
        d, r = med("default", "times", key), med("reuse", "times", key)
        base = f"torch LSTM|{B}|full"
        rows.append([
            name, B, kind, f"{d * 1e3:.1f}", f"{r * 1e3:.1f}", f"{r / d:.2f}",
            f"{d / med('default', 'times', base):.2f}", f"{r / med('reuse', 'times', base):.2f}",
            f"{med('default', 'faults', key):.0f}", f"{med('reuse', 'faults', key):.0f}",
        ])  # fmt: skip
    print(table(
        "Training step: time and minor page faults",
        ["model", "B", "batch", "default ms", "reuse ms", "reuse / default",
         "/ torch LSTM (default)", "/ torch LSTM (reuse)", "faults (default)", "faults (reuse)"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
