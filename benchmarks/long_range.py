"""TCN vs LSTM vs GRU on the long-range tasks of Bai et al. 2018, at a CPU-sized budget.

Every model is the same two parts: an encoder with rnnkit's encoder contract, sized to about
the same number of parameters per task, and a linear head (on the last step, or on every step
for copy memory). All models of a task get the same data, batch size, optimiser, gradient
clipping and number of updates. The budget is a few hundred updates instead of the paper's
tens of thousands, so these numbers say which model learns *fast*, not what each reaches.

All encoders are rnnkit's, built by :func:`rnnkit.models.build_encoder`: ``"tcn"``
(:class:`rnnkit.tcn.TCNEncoder`) and ``"recurrent"`` with the LSTM or GRU cell.

    python benchmarks/long_range.py                    # the paper's lengths
    python benchmarks/long_range.py --tasks adding50 copy50    # shorter sequences
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch
from machine import cpu_name
from torch import Tensor, nn
from torch.nn import functional as F

import rnnkit
from rnnkit.models.encoder import RecurrentEncoderConfig, build_encoder
from rnnkit.tasks.synthetic import (
    ADDING_BASELINE_MSE,
    COPY_SYMBOLS,
    adding_problem,
    copy_memory,
    copy_memory_baseline,
    seq_digits,
)
from rnnkit.tcn import TCNEncoderConfig


@dataclass
class Task:
    name: str
    data: tuple[Tensor, Tensor, Tensor, Tensor]  # x_train, y_train, x_test, y_test
    input_size: int
    output_size: int
    per_step: bool  # a prediction at every step (copy memory) or at the last one
    loss: str  # "mse" or "ce"
    iters: int
    lr: float
    encoders: dict = field(default_factory=dict)
    baseline: str = ""


def make_tasks(seed: int) -> dict[str, Task]:
    tasks = {}
    x, y = adding_problem(8000, 200, seed=seed)
    xt, yt = adding_problem(1000, 200, seed=seed + 1)
    tasks["adding"] = Task(
        "adding T=200", (x, y, xt, yt), 2, 1, False, "mse", 400, 2e-3,
        {
            "TCN (7x16, k=4, RF 763)": TCNEncoderConfig(
                hidden_size=16, num_layers=7, kernel_size=4
            ),
            "LSTM (H=56)": RecurrentEncoderConfig(cell="lstm", hidden_size=56),
            "GRU (H=64)": RecurrentEncoderConfig(cell="gru", hidden_size=64),
        },
        f"test MSE; predicting 1 scores {ADDING_BASELINE_MSE:.4f}",
    )  # fmt: skip
    x, y = copy_memory(4000, 500, seed=seed)
    xt, yt = copy_memory(500, 500, seed=seed + 1)
    tasks["copy"] = Task(
        "copy memory T=500", (x, y, xt, yt), COPY_SYMBOLS, COPY_SYMBOLS, True, "ce", 250, 2e-3,
        {
            "TCN (6x12, k=8, RF 883)": TCNEncoderConfig(
                hidden_size=12, num_layers=6, kernel_size=8
            ),
            "LSTM (H=50)": RecurrentEncoderConfig(cell="lstm", hidden_size=50),
            "GRU (H=58)": RecurrentEncoderConfig(cell="gru", hidden_size=58),
        },
        f"test CE per step; remembering nothing scores {copy_memory_baseline(500):.4f}",
    )  # fmt: skip
    # shorter than the paper's: long enough to need memory, short enough to learn in minutes
    x, y = adding_problem(8000, 50, seed=seed)
    xt, yt = adding_problem(1000, 50, seed=seed + 1)
    tasks["adding50"] = Task(
        "adding T=50 (shorter than the paper)", (x, y, xt, yt), 2, 1, False, "mse", 1000, 2e-3,
        {
            "TCN (4x16, k=4, RF 91)": TCNEncoderConfig(hidden_size=16, num_layers=4, kernel_size=4),
            "LSTM (H=42)": RecurrentEncoderConfig(cell="lstm", hidden_size=42),
            "GRU (H=48)": RecurrentEncoderConfig(cell="gru", hidden_size=48),
        },
        f"test MSE; predicting 1 scores {ADDING_BASELINE_MSE:.4f}",
    )  # fmt: skip
    x, y = copy_memory(4000, 50, seed=seed)
    xt, yt = copy_memory(500, 50, seed=seed + 1)
    tasks["copy50"] = Task(
        "copy memory T=50 (shorter than the paper)", (x, y, xt, yt), COPY_SYMBOLS, COPY_SYMBOLS,
        True, "ce", 1000, 2e-3,
        {
            "TCN (3x12, k=8, RF 99)": TCNEncoderConfig(hidden_size=12, num_layers=3, kernel_size=8),
            "LSTM (H=36)": RecurrentEncoderConfig(cell="lstm", hidden_size=36),
            "GRU (H=42)": RecurrentEncoderConfig(cell="gru", hidden_size=42),
        },
        f"test CE per step; remembering nothing scores {copy_memory_baseline(50):.4f}",
    )  # fmt: skip
    for key, permuted in [("seqdigits", False), ("pseqdigits", True)]:
        x, y = seq_digits("train", permuted=permuted)
        xt, yt = seq_digits("test", permuted=permuted)
        tasks[key] = Task(
            f"{'permuted ' if permuted else ''}sequential digits (8x8, T=64)",
            (x, y, xt, yt), 1, 10, False, "ce", 400, 2e-3,
            {
                "TCN (5x16, k=3, RF 125)": TCNEncoderConfig(hidden_size=16, num_layers=5),
                "LSTM (H=40)": RecurrentEncoderConfig(cell="lstm", hidden_size=40),
                "GRU (H=46)": RecurrentEncoderConfig(cell="gru", hidden_size=46),
            },
            "test accuracy; chance is 0.10",
        )  # fmt: skip
    return tasks


class SequenceModel(nn.Module):
    """An rnnkit encoder and a linear head."""

    def __init__(self, encoder_config, task: Task) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder_config, task.input_size)
        self.head = nn.Linear(self.encoder.output_size, task.output_size)
        self.per_step = task.per_step

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(x)  # (B, T, H)
        return self.head(h if self.per_step else h[:, -1])


def features(task: Task, x: Tensor) -> Tensor:
    if task.input_size == COPY_SYMBOLS and x.dim() == 2:
        return F.one_hot(x, COPY_SYMBOLS).float()  # (B, T, 10)
    return x


def loss_fn(task: Task, out: Tensor, y: Tensor) -> Tensor:
    if task.loss == "mse":
        return F.mse_loss(out.squeeze(-1), y)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(task: Task, model: nn.Module) -> tuple[float, str]:
    model.eval()
    _, _, xt, yt = task.data
    outs = torch.cat([model(features(task, xt[i : i + 250])) for i in range(0, len(xt), 250)])
    if task.loss == "mse":
        return F.mse_loss(outs.squeeze(-1), yt).item(), ""
    if task.per_step:
        ce = loss_fn(task, outs, yt).item()
        recall = (outs[:, -10:].argmax(-1) == yt[:, -10:]).float().mean().item()
        return ce, f"recall accuracy {recall:.2f} (chance 0.125)"
    return (outs.argmax(-1) == yt).float().mean().item(), ""


def train(task: Task, model: nn.Module, batch: int, seed: int) -> float:
    x, y, _, _ = task.data
    opt = torch.optim.Adam(model.parameters(), lr=task.lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for it in range(task.iters):
        idx = torch.randint(len(x), (batch,), generator=g)
        loss = loss_fn(task, model(features(task, x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % max(1, task.iters // 4) == 0:
            print(f"    update {it + 1}: train loss {loss.item():.4f}", flush=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["adding", "copy", "seqdigits", "pseqdigits"])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every task's updates")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = make_tasks(args.seed)
    print(f"{cpu_name()}; torch {torch.__version__}; rnnkit {rnnkit.__version__}; "
          f"threads {torch.get_num_threads()}")  # fmt: skip

    rows = []
    for key in args.tasks:
        task = tasks[key]
        task.iters = max(1, round(task.iters * args.scale))
        print(f"{task.name}: {task.iters} updates of batch {args.batch}, Adam lr {task.lr}")
        for name, cfg in task.encoders.items():
            torch.manual_seed(args.seed)
            model = SequenceModel(cfg, task)
            n = sum(p.numel() for p in model.parameters())
            print(f"  {name}: {n} parameters", flush=True)
            seconds = train(task, model, args.batch, args.seed)
            metric, extra = evaluate(task, model)
            rows.append((task.name, task.baseline, name, n, task.iters, seconds, metric, extra))

    print("\n| task | model | params | updates | train s | result | |")
    print("|---|---|---|---|---|---|---|")
    for task_name, _, name, n, iters, seconds, metric, extra in rows:
        print(f"| {task_name} | {name} | {n} | {iters} | {seconds:.0f} | {metric:.4f} | {extra} |")
    print()
    for key in args.tasks:
        print(f"{tasks[key].name}: {tasks[key].baseline}")


if __name__ == "__main__":
    main()
