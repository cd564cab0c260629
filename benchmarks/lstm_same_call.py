"""How far apart the same training step reads on this machine: two identical
``torch.nn.LSTM`` layers and ``rnnkit.LSTM`` (the same oneDNN op) timed in turns.

Each round times the three training steps back to back, in alternating order; the table gives
each one's median over the rounds of its time over the first torch layer's in the same round.
Two identical torch layers should read 1.000; how far they do not is the noise a single
reading of the plain LSTM's ratio carries at that shape.

    python benchmarks/lstm_same_call.py --reuse-freed-memory            # B = 32, H = 512
    python benchmarks/lstm_same_call.py --batch 32 --hidden 256 --rounds 21
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
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    B, H = args.batch, args.hidden
    print_header(
        "The same training step, three times",
        args.threads,
        f"T = {T}, B = {B}, I = H = {H}; {args.rounds} rounds in alternating order",
        "each step's median over the rounds of its time / the first torch layer's time",
    )
    x = torch.randn(T, B, H, requires_grad=True)
    steps = {
        "torch.nn.LSTM (first)": step_fns(build("torch LSTM", H), x)[1],
        "torch.nn.LSTM (second, identical)": step_fns(build("torch LSTM", H), x)[1],
        "rnnkit.LSTM": step_fns(build("LSTM", H), x)[1],
    }
    for step in steps.values():
        step(), step()  # warm-up
    spent: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(args.rounds):
        order = list(steps.items())
        for name, step in order if k % 2 else order[::-1]:
            start = time.perf_counter()
            step()
            spent[name].append(time.perf_counter() - start)
    first = spent["torch.nn.LSTM (first)"]
    print("| step | median ms | median ratio to the first torch layer |")
    print("|---|---|---|")
    for name, times in spent.items():
        ratio = statistics.median(t / f for t, f in zip(times, first))
        print(f"| {name} | {statistics.median(times) * 1e3:.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
