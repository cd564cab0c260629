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
    python benchmarks/allocator.py --task charlm # `rnnkit train charlm`: seconds per step

With ``--task``, the children run ``rnnkit train TASK`` (its real data, the task's model,
``trainer.num_threads`` as configured) for 5 and for 45 steps with
``trainer.reuse_freed_memory`` false and true, taking turns; a step's time is the difference of
the two runs' wall times over 40, which leaves the set-up out.
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


def task_child(task: str, steps: int, reuse: bool) -> None:
    """Train ``task`` for ``steps`` steps in a fresh run folder; print the wall seconds."""
    import tempfile
    import time
    from pathlib import Path

    from rnnkit.training.run import train

    overrides = {
        "trainer.max_steps": str(steps),
        "trainer.val_every_n_steps": "1000",
        "trainer.checkpoint_every_n_steps": "1000",
        "trainer.val_batches": "1",
        "trainer.progress_bar": "false",
        "trainer.logger": "none",
        "trainer.reuse_freed_memory": str(reuse).lower(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(task, overrides, run_dir=Path(tmp) / "run", echo=False)
        print(json.dumps({"seconds": time.perf_counter() - start}))


def task_steps(task: str, rounds: int) -> None:
    """Seconds per training step of ``rnnkit train TASK`` with and without the setting."""
    per_step: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for reuse in (False, True):
            wall = {}
            for steps in (5, 45):
                out = subprocess.run(
                    [sys.executable, __file__, "--task-child", task, str(steps), str(reuse)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                wall[steps] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            per_step[reuse].append((wall[45] - wall[5]) / 40)
    d, r = statistics.median(per_step[False]), statistics.median(per_step[True])
    runs = ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(per_step[False], per_step[True]))
    print(f"`rnnkit train {task}`: {d:.3f} s per step with glibc's defaults, {r:.3f} s with "
          f"reuse_freed_memory ({r / d:.2f}); rounds (default / reuse): {runs}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="children of each kind, alternating")
    parser.add_argument("--task", help="time `rnnkit train TASK` instead of the layers")
    parser.add_argument("--child", choices=("default", "reuse"), help=argparse.SUPPRESS)
    parser.add_argument("--task-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.repeats)
        return
    if args.task_child:
        task, steps, reuse = args.task_child
        task_child(task, int(steps), reuse == "True")
        return

    print("## The allocator: glibc's defaults against `reuse_freed_memory()`\n")
    threads = "the task's trainer.num_threads" if args.task else f"{args.threads} threads"
    print(f"- CPU: {cpu_name()}, {threads} (torch.set_num_threads)")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}, "
          f"glibc {platform.libc_ver()[1]}")  # fmt: skip
    print(f"- date: {datetime.date.today().isoformat()}")
    command = " ".join(["python benchmarks/allocator.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    if args.task:
        task_steps(args.task, args.rounds)
        return
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
