"""Score one cell: a short training run on a task, at a fixed parameter budget.

A candidate is a *spec*: the name of a built-in baseline (``"lstm"``, ``"gru"``) or the text of
a cell program. Its model is the runner over the cell plus a linear read-out of the last
step, :class:`Regressor`; its hidden size H is the largest whose model fits the parameter
budget (:func:`fit_hidden_size`), so every candidate is compared at (nearly) equal parameter
count. The score is the validation loss after ``steps`` Adam steps (lower is better); a
run whose loss stops being finite scores ``None``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, RecurrentCell
from ..cells.base import check_positive_int
from ..recurrent import Recurrent
from ..tasks.synthetic import adding_problem
from .compile import ExpressionCell
from .dsl import parse

BASELINES: dict[str, Callable[[int, int], RecurrentCell]] = {
    "lstm": LSTMCell,  # forget-gate bias 1 at initialisation (Jozefowicz et al. 2015)
    "gru": GRUCell,
}
"""Built-in cells a search compares against, by name."""

VALIDATION_SEED = 2**62 + 1  # far from every training seed below
VALIDATION_CHUNK = 512


@dataclass(frozen=True)
class Task:
    """A regression task: ``sample(n, seq_len, seed) -> (x (n, T, I), y (n,))``, MSE loss."""

    name: str
    input_size: int
    sample: Callable[..., tuple[Tensor, Tensor]]
    baseline_loss: float


TASKS = {
    "adding": Task("adding", 2, adding_problem, 1.0 / 6.0),
}
"""Tasks a search can run on. The adding problem (Hochreiter & Schmidhuber 1997) comes from
:func:`rnnkit.tasks.synthetic.adding_problem`; predicting the mean scores 1/6."""


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}; got {name!r}")
    return TASKS[name]


@dataclass(frozen=True)
class TrainConfig:
    """How each candidate is trained and scored."""

    task: str = "adding"
    seq_len: int = 50
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    clip: float = 1.0
    val_size: int = 1000
    param_budget: int = 1_297  # an LSTM with H = 16 on the adding task, read-out included

    def __post_init__(self) -> None:
        get_task(self.task)
        for name in ("seq_len", "steps", "batch_size", "val_size", "param_budget"):
            check_positive_int(name, getattr(self, name))
        for name in ("lr", "clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def cell_factory(spec: str) -> Callable[[int, int], RecurrentCell]:
    """The cell factory of a spec: a baseline name or a cell program's text."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str (a baseline name or a program), got {type(spec)}")
    if spec in BASELINES:
        return BASELINES[spec]
    return partial(ExpressionCell, program=parse(spec))


class Regressor(nn.Module):
    """``Recurrent(cell, I, H)`` read out by ``Linear(H, 1)`` at the last step.

    (B, T, I) -> (B,).
    """

    def __init__(
        self, cell: Callable[[int, int], RecurrentCell], input_size: int, hidden_size: int
    ) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(self.rnn.output_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1]).squeeze(1)  # (B,)


def model_parameters(spec: str, input_size: int, hidden_size: int) -> int:
    """Parameters of ``Regressor`` for ``spec`` (built on the meta device: no memory used)."""
    with torch.device("meta"):
        model = Regressor(cell_factory(spec), input_size, hidden_size)
    return sum(p.numel() for p in model.parameters())


def fit_hidden_size(spec: str, input_size: int, budget: int) -> int:
    """The largest H whose model has at most ``budget`` parameters (counts grow with H)."""
    if model_parameters(spec, input_size, 1) > budget:
        raise ValueError(
            f"param_budget={budget} is too small: {spec!r} needs "
            f"{model_parameters(spec, input_size, 1)} parameters at H=1"
        )
    lo, hi = 1, 2
    while model_parameters(spec, input_size, hi) <= budget:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: lo fits, hi does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if model_parameters(spec, input_size, mid) <= budget else (lo, mid)
    return lo


def lstm_budget(input_size: int, hidden_size: int) -> int:
    """The parameter count of the LSTM baseline with ``hidden_size``: a search's budget."""
    return model_parameters("lstm", input_size, hidden_size)


def evaluate(spec: str, config: TrainConfig, seed: int) -> dict:
    """Train ``spec`` on ``config.task`` from ``seed`` and score it on a fixed validation set.

    Returns a dict: ``score`` (validation MSE, or None if training diverged), ``hidden_size``,
    ``params``, ``seconds``. The same arguments give the same score (single-threaded CPU).
    """
    start = time.perf_counter()
    task = get_task(config.task)
    factory = cell_factory(spec)
    H = fit_hidden_size(spec, task.input_size, config.param_budget)
    with torch.random.fork_rng(devices=[]):  # seed the run without touching the caller's RNG
        torch.manual_seed(seed)
        model = Regressor(factory, task.input_size, H)
        score = _train(model, task, config, seed)
    return {
        "score": score,
        "hidden_size": H,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _train(model: Regressor, task: Task, config: TrainConfig, seed: int) -> float | None:
    """Adam with gradient-norm clipping on fresh batches; the validation loss at the end, or
    None as soon as the training loss is not finite."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    for step in range(config.steps):
        x, y = task.sample(config.batch_size, config.seq_len, seed=seed * 1_000_003 + step)
        loss = nn.functional.mse_loss(model(x), y)
        if not torch.isfinite(loss):
            return None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
    return validation_loss(model, task, config)


def validation_loss(model: nn.Module, task: Task, config: TrainConfig) -> float | None:
    """Mean squared error on ``config.val_size`` fixed sequences (the same for every cell)."""
    x, y = task.sample(config.val_size, config.seq_len, seed=VALIDATION_SEED)
    total = 0.0
    with torch.no_grad():
        for xs, ys in zip(x.split(VALIDATION_CHUNK), y.split(VALIDATION_CHUNK)):
            total += nn.functional.mse_loss(model(xs), ys, reduction="sum").item()
    mse = total / len(y)
    return mse if math.isfinite(mse) else None
