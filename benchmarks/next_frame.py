"""Next-frame prediction on moving digits: ConvLSTM vs a fully connected LSTM of about the same
number of parameters (the comparison of Shi et al. 2015 on Moving MNIST, scaled down to CPU).

Each model reads frames 1..t and predicts frame t+1 for every t (one step ahead, the true frames
as input), trained with per-pixel binary cross-entropy. The test loss is reported per predicted
frame: frame 2 is predicted from one frame (no motion seen yet), later frames from more.

    python benchmarks/next_frame.py                 # the run recorded in docs/results.md
    python benchmarks/next_frame.py --epochs 1      # a quick look
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import cpu_name
from torch import Tensor, nn
from torch.nn import functional as F

import rnnkit
from rnnkit.tasks.moving_digits import moving_digits
from rnnkit.tasks.next_frame import (
    ConvLSTMPredictor,
    FCLSTMPredictor,
    fc_hidden_matching,
    n_params,
    per_frame_losses,
)


def train(model: nn.Module, train_x: Tensor, epochs: int, batch: int, lr: float, seed: int):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=g)
        total = 0.0
        for i in range(0, len(order), batch):
            frames = train_x[order[i : i + batch]]  # (B, T, 1, S, S)
            logits = model(frames[:, :-1])
            loss = F.binary_cross_entropy_with_logits(logits, frames[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(frames)
        print(f"  epoch {epoch + 1}: train BCE {total / len(order):.4f}", flush=True)
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model: nn.Module, test_x: Tensor) -> dict:
    model.eval()
    logits = torch.cat([model(test_x[i : i + 100, :-1]) for i in range(0, len(test_x), 100)])
    return per_frame_losses(logits, torch.sigmoid(logits), test_x[:, 1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=800, help="training sequences")
    ap.add_argument("--test", type=int, default=200, help="test sequences")
    ap.add_argument("--frames", type=int, default=10, help="frames per sequence")
    ap.add_argument("--canvas", type=int, default=18, help="canvas side in pixels")
    ap.add_argument("--channels", type=int, default=16, help="ConvLSTM channels")
    ap.add_argument("--kernel", type=int, default=5, help="ConvLSTM kernel size")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    S, T = args.canvas, args.frames
    train_x = moving_digits(args.train, seed=args.seed, split="train", seq_len=T, canvas=S)
    test_x = moving_digits(args.test, seed=args.seed + 1, split="test", seq_len=T, canvas=S)

    torch.manual_seed(args.seed)
    conv = ConvLSTMPredictor(S, args.channels, args.kernel, peephole=True)
    hidden = fc_hidden_matching(S, n_params(conv))
    torch.manual_seed(args.seed)
    fc = FCLSTMPredictor(S, hidden)

    results = {}
    for name, model in [
        (f"ConvLSTM (C={args.channels}, k={args.kernel}, peepholes)", conv),
        (f"FC-LSTM (H={hidden})", fc),
    ]:
        print(f"{name}: {n_params(model)} parameters", flush=True)
        seconds = train(model, train_x, args.epochs, args.batch, args.lr, args.seed)
        results[name] = (n_params(model), seconds, evaluate(model, test_x))

    target = test_x[:, 1:]
    copy_last = per_frame_losses(None, test_x[:, :-1], target)
    mean_pixel = train_x.mean()
    const = per_frame_losses(None, torch.full_like(target, float(mean_pixel)), target)

    print()
    print(f"{cpu_name()}; torch {torch.__version__}; rnnkit {rnnkit.__version__}")
    print(f"threads {torch.get_num_threads()}, command: python benchmarks/next_frame.py "
          f"--train {args.train} --test {args.test} --epochs {args.epochs}")  # fmt: skip
    frames = " | ".join(f"{t + 2}" for t in range(T - 1))
    print(f"\n| model | params | train s | metric | {frames} | mean |")
    print("|---|---|---|---|" + "---|" * (T - 1) + "---|")
    rows = [(name, p, f"{s:.0f}", r) for name, (p, s, r) in results.items()]
    rows += [("copy last frame", 0, "-", copy_last), (f"constant {mean_pixel:.3f}", 0, "-", const)]
    for name, p, s, r in rows:
        for metric in ("bce", "mse"):
            v = r[metric]
            cells = " | ".join(f"{x:.4f}" for x in v.tolist())
            print(f"| {name} | {p} | {s} | {metric.upper()} | {cells} | {v.mean():.4f} |")


if __name__ == "__main__":
    main()
