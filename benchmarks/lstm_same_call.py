"""How far apart the same training step reads on this machine: two identical
``torch.nn.LSTM`` layers and ``rnnkit.LSTM`` (the same oneDNN op) timed in turns.

Each round times the three training steps back to back, in alternating order; the table gives
each one's median over the rounds of its time over the first torch layer's in the same round.
Two identical torch layers should read 1.000; how far they do not is the noise a single
reading of the plain LSTM's ratio carries at that shape.

    python benchmarks/lstm_same_call.py --reuse-freed-memory            # B = 32, H = 512
    python benchmarks/lstm_same_call.py --batch 32 --hidden 256 --rounds 21
    python benchmarks/lstm_same_call.py --grid --rounds 31 --reuse-freed-memory   # 9 shapes

``--grid`` runs the nine shapes of the engine's speed grid (B in 1, 32, 128; I = H in 64, 256,
512) one after the other and prints one row per shape: the plain-LSTM target (rnnkit's
training step at most 1.02 times ``torch.nn.LSTM``'s) read against the spread of two identical
torch layers at the same shape.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import add_allocator_flag, apply_machine_args, print_header
from rnn_speed import build, step_fns

T = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--grid", action="store_true", help="the nine shapes, one row each")
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    if args.grid:
        grid(args.threads, args.rounds)
        return
    B, H = args.batch, args.hidden
    print_header(
        "The same training step, three times",
        args.threads,
        f"T = {T}, B = {B}, I = H = {H}; {args.rounds} rounds in alternating order",
        "each step's median over the rounds of its time / the first torch layer's time",
    )
    spent = rounds(B, H, args.rounds)
    first = spent["torch.nn.LSTM (first)"]
    print("| step | median ms | median ratio to the first torch layer |")
    print("|---|---|---|")
    for name, times in spent.items():
        print(f"| {name} | {statistics.median(times) * 1e3:.1f} | {_ratio(times, first):.3f} |")


def _ratio(times: list[float], first: list[float]) -> float:
    """The median over the rounds of each round's time over the first torch layer's."""
    return statistics.median(t / f for t, f in zip(times, first))


def rounds(B: int, H: int, count: int) -> dict[str, list[float]]:
    """Each step's time in each of ``count`` rounds, the three steps back to back in
    alternating order."""
    x = torch.randn(T, B, H, requires_grad=True)
    steps = {
        "torch.nn.LSTM (first)": step_fns(build("torch LSTM", H), x)[1],
        "torch.nn.LSTM (second, identical)": step_fns(build("torch LSTM", H), x)[1],
        "rnnkit.LSTM": step_fns(build("LSTM", H), x)[1],
    }
    for step in steps.values():
        step(), step()  # warm-up
    spent: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(count):
        order = list(steps.items())
        for name, step in order if k % 2 else order[::-1]:
            start = time.perf_counter()
            step()
            spent[name].append(time.perf_counter() - start)
    return spent


def grid(threads: int, count: int) -> None:
    """The nine shapes of the speed grid, one row each."""
    print_header(
        "The plain LSTM against torch.nn.LSTM, and two torch layers against each other",
        threads,
        f"T = {T}, I = H; {count} rounds per shape in alternating order; each ratio is the "
        "median over the rounds of a step's time over the first torch layer's",
    )
    print("| B | H | torch.nn.LSTM ms | second torch layer | rnnkit.LSTM | target ≤ 1.02 |")
    print("|---|---|---|---|---|---|")
    for B in (1, 32, 128):
        for H in (64, 256, 512):
            spent = rounds(B, H, count)
            first = spent["torch.nn.LSTM (first)"]
            twin = _ratio(spent["torch.nn.LSTM (second, identical)"], first)
            ours = _ratio(spent["rnnkit.LSTM"], first)
            verdict = "met" if ours <= 1.02 else "not met"
            print(
                f"| {B} | {H} | {statistics.median(first) * 1e3:.2f} | {twin:.3f} | "
                f"{ours:.3f} | {verdict} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
