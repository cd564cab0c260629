"""A plain LSTM on small batches: oneDNN (what ``rnnkit.LSTM`` runs by default, the very call
``torch.nn.LSTM`` makes) against the compiled loop (``layer.engine = "native"``).

For each batch size and hidden size, the same layer (the same weights) runs both ways on the
same input, back to back in alternating order (paired, median of the pairs' ratios): the
training step (forward, then the gradients of the input and every parameter for a dense
output gradient) and the forward pass alone under ``torch.no_grad()``. A ratio below 1 means
the compiled loop is faster.

    python benchmarks/lstm_small_batch.py --reuse-freed-memory          # about 3 minutes
"""

from __future__ import annotations

import argparse

from lengths_overheads import paired
from machine import add_allocator_flag, apply_machine_args, print_header
from rnn_speed import _input, build, step_fns

T = 100
BATCHES = (1, 2, 4, 8, 16, 32)
HIDDEN = (32, 64, 128, 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=15)
    add_allocator_flag(parser)
    args = parser.parse_args()
    apply_machine_args(args)
    print_header(
        "A plain LSTM on small batches: the compiled loop over oneDNN",
        args.threads,
        f"T = {T}, I = H, float32; {args.pairs} pairs timed back to back in alternating "
        "order, median of the pairs' ratios (compiled loop / oneDNN)",
    )
    print("| B | " + " | ".join(f"H={H} training | H={H} forward" for H in HIDDEN) + " |")
    print("|---|" + "---|---|" * len(HIDDEN))
    for B in BATCHES:
        cells = []
        for H in HIDDEN:
            fused = build("LSTM", H)
            loop = build("LSTM", H)
            loop.load_state_dict(fused.state_dict())
            loop.engine = "native"
            x = _input(T, B, H)
            (fused_fwd, fused_train), (loop_fwd, loop_train) = (
                step_fns(fused, x),
                step_fns(loop, x),
            )
            cells.append(f"{paired(fused_train, loop_train, args.pairs):.2f}")
            cells.append(f"{paired(fused_fwd, loop_fwd, args.pairs):.2f}")
        print(f"| {B} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
