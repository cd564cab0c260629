"""``next_frame``: predict the next frame of moving digits, ConvLSTM against a fully connected
LSTM (the comparison of Shi et al. 2015 on Moving MNIST, scaled down to a CPU).

Data: :func:`rnnkit.tasks.moving_digits.moving_digits`, two 8x8 digits bouncing on a
``data.canvas`` square canvas. Training videos use digits of the "train" split (seed
``data.seed``), test videos those of "test" (``seed + 1``), validation videos those of
"valid" (``seed + 2``).

One step ahead: the model reads frames 1..t and predicts frame t+1 for every t (the true
frames as input), trained with per-pixel binary cross-entropy. ``model.kind`` picks

* ``convlstm``: one :class:`rnnkit.cells.ConvLSTMCell` layer (Hadamard peepholes by default)
  through :class:`rnnkit.Recurrent`, then a 1x1 convolution to the next frame's logits;
* ``fc_lstm``: :class:`rnnkit.LSTMCell` over the flattened frame, then a linear layer; with
  ``model.hidden_size=0`` its width is chosen to give as many parameters as the ConvLSTM of
  ``model.channels`` and ``model.kernel_size`` would have.

Metrics, per predicted frame (frame 2 is predicted from frame 1 alone, before any motion is
seen) and their mean over frames: BCE and MSE on the test videos, against copying the last
frame and against predicting the mean training pixel everywhere (the BCE of those two clips
their pixels to [0.001, 0.999]).

Shapes: frames (B, T, 1, S, S), T frames of one channel on an S x S canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..cells import ConvLSTMCell, LSTMCell
from ..models import Model
from ..models.checks import check_bool, check_choice, check_int
from ..recurrent import Recurrent
from ..training.config import ConfigError, OptimConfig, TrainerConfig
from ..training.modules import SupervisedModule
from ._common import array_loaders, predict_in_batches
from .base import Task
from .moving_digits import DIGIT, moving_digits

KINDS = ("convlstm", "fc_lstm")


# -- the two predictors ------------------------------------------------------------------------
class ConvLSTMPredictor(nn.Module):
    """ConvLSTM over the frames, then a 1x1 convolution to the next frame's logits."""

    def __init__(self, canvas: int, channels: int, kernel_size: int, peephole: bool) -> None:
        super().__init__()
        cell = partial(
            ConvLSTMCell, kernel_size=kernel_size, spatial_size=(canvas, canvas), peephole=peephole
        )
        self.rnn = Recurrent(cell, 1, channels, batch_first=True)
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 1, S, S) -> next-frame logits (B, T, 1, S, S)."""
        out, _ = self.rnn(frames)  # (B, T, C, S, S)
        B, T = out.shape[:2]
        return self.head(out.flatten(0, 1)).view(B, T, *frames.shape[2:])  # (B, T, 1, S, S)


class FCLSTMPredictor(nn.Module):
    """LSTM over flattened frames, then a linear map to the next frame's logits."""

    def __init__(self, canvas: int, hidden: int) -> None:
        super().__init__()
        self.rnn = Recurrent(LSTMCell, canvas * canvas, hidden, batch_first=True)
        self.head = nn.Linear(hidden, canvas * canvas)

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 1, S, S) -> next-frame logits (B, T, 1, S, S)."""
        out, _ = self.rnn(frames.flatten(2))  # (B, T, H)
        return self.head(out).view(frames.shape)  # (B, T, 1, S, S)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fc_hidden_matching(canvas: int, target: int, *, largest: int = 4096) -> int:
    """The FC-LSTM width H in 1..``largest`` whose parameter count is closest to ``target``
    (the smaller H on a tie)."""

    def count(h: int) -> int:  # grows with h
        return n_params(FCLSTMPredictor(canvas, h))

    lo, hi = 1, largest
    while lo < hi:  # the first h whose count reaches the target
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < target else (lo, mid)
    if lo > 1 and abs(count(lo - 1) - target) <= abs(count(lo) - target):
        return lo - 1
    return lo


def per_frame_losses(
    pred_logits: Tensor | None, pred_probs: Tensor, target: Tensor
) -> dict[str, Tensor]:
    """Mean per-pixel BCE and MSE of each predicted frame: (T,) each, from predictions and
    targets (B, T, 1, S, S). Without logits the probabilities are clipped to [0.001, 0.999]
    for the BCE (a baseline that outputs hard 0/1 pixels)."""
    dims = (0, 2, 3, 4)
    mse = ((pred_probs - target) ** 2).mean(dim=dims)
    if pred_logits is None:
        p = pred_probs.clamp(1e-3, 1 - 1e-3)
        bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean(dim=dims)
    else:
        bce = F.binary_cross_entropy_with_logits(pred_logits, target, reduction="none").mean(dims)
    return {"bce": bce, "mse": mse}


# -- the saved model ---------------------------------------------------------------------------
@dataclass
class FramePredictorConfig:
    """One of the two predictors (module docstring) on an S = ``canvas`` square canvas.

    ``channels``, ``kernel_size`` (odd) and ``peephole`` describe the ConvLSTM;
    ``hidden_size`` the FC-LSTM (>= 1 to build one; the task resolves 0).
    """

    canvas: int
    kind: Literal["convlstm", "fc_lstm"] = "convlstm"
    channels: int = 16
    kernel_size: int = 5
    peephole: bool = True
    hidden_size: int = 0

    def __post_init__(self) -> None:
        check_int("canvas", self.canvas, low=1)
        check_choice("kind", self.kind, KINDS)
        check_int("channels", self.channels, low=1)
        if check_int("kernel_size", self.kernel_size, low=1) % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (a 'same' convolution), got {self.kernel_size}"
            )
        check_bool("peephole", self.peephole)
        check_int("hidden_size", self.hidden_size)


class FramePredictor(Model):
    """``logits = model(frames)``: frames (B, T, 1, S, S) in [0, 1] -> the logits of frames
    2..T+1 (B, T, 1, S, S), output t predicting frame t+1 from frames 1..t."""

    config_class = FramePredictorConfig

    def __init__(self, config: FramePredictorConfig) -> None:
        super().__init__(config)
        c = config
        if c.kind == "convlstm":
            self.net: nn.Module = ConvLSTMPredictor(c.canvas, c.channels, c.kernel_size, c.peephole)
        else:
            if c.hidden_size < 1:
                raise ValueError(
                    f"hidden_size must be >= 1 for kind 'fc_lstm', got {c.hidden_size}"
                )
            self.net = FCLSTMPredictor(c.canvas, c.hidden_size)

    def forward(self, frames: Tensor) -> Tensor:
        S = self.config.canvas
        if not isinstance(frames, Tensor) or frames.dim() != 5 or frames.shape[2:] != (1, S, S):
            got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"frames must be a float tensor (B, T, 1, {S}, {S}), got {got}")
        return self.net(frames)

    def loss(self, x: Tensor, y: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mean per-pixel BCE of the predictions for ``x`` (B, T, 1, S, S) against the next
        frames ``y`` (same shape). Every video has all its frames: ``lengths`` must be None."""
        if lengths is not None:
            raise ValueError("FramePredictor takes videos of equal length: lengths must be None")
        logits = self(x)
        if y.shape != logits.shape:
            raise ValueError(f"y must have shape {tuple(logits.shape)}, got {tuple(y.shape)}")
        return F.binary_cross_entropy_with_logits(logits, y)

    def predict_proba(self, frames: Tensor) -> Tensor:
        """(B, T, 1, S, S) probabilities that each pixel of the next frame is on."""
        return torch.sigmoid(self(frames))


# -- the task ----------------------------------------------------------------------------------
@dataclass
class NextFrameData:
    seq_len: int = 10  # frames per video
    canvas: int = 18  # canvas side in pixels
    num_digits: int = 2
    train_size: int = 800
    valid_size: int = 100
    test_size: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ConfigError(
                f"data.seq_len must be >= 2 (one frame in, the next out), got {self.seq_len}"
            )
        if self.canvas < DIGIT:
            raise ConfigError(
                f"data.canvas must be >= {DIGIT} (the digits' side), got {self.canvas}"
            )
        for name in ("num_digits", "train_size", "valid_size", "test_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class NextFrameConfig:
    data: NextFrameData = field(default_factory=NextFrameData)
    model: FramePredictorConfig = field(default_factory=lambda: FramePredictorConfig(canvas=18))
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=200, batch_size=16, val_every_n_steps=50, checkpoint_every_n_steps=50
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class Videos:
    frames: dict[str, Tensor]  # split -> (N, T, 1, S, S)


class NextFrameTask(Task):
    name = "next_frame"
    config_class = NextFrameConfig
    module_class = SupervisedModule
    derived_keys = ("model.canvas",)

    def load_data(self, config: NextFrameConfig) -> Videos:
        d = config.data
        frames = {}
        for split, seed, n in [("train", d.seed, d.train_size), ("test", d.seed + 1, d.test_size),
                               ("valid", d.seed + 2, d.valid_size)]:  # fmt: skip
            frames[split] = moving_digits(n, seed=seed, split=split, seq_len=d.seq_len,
                                          canvas=d.canvas, num_digits=d.num_digits)  # fmt: skip
        return Videos(frames)

    def derive(self, config: NextFrameConfig, data: Videos) -> NextFrameConfig:
        m = replace(config.model, canvas=config.data.canvas)
        if m.kind == "fc_lstm" and m.hidden_size == 0:
            conv = ConvLSTMPredictor(m.canvas, m.channels, m.kernel_size, m.peephole)
            m = replace(m, hidden_size=fc_hidden_matching(m.canvas, n_params(conv)))
        return replace(config, model=m)

    def build_model(self, config: NextFrameConfig, data: Videos) -> FramePredictor:
        return FramePredictor(config.model)

    def _loader(self, frames: Tensor, **kwargs: Any):
        # input frames 1..T-1, targets frames 2..T
        return array_loaders(frames[:, :-1], frames[:, 1:], **kwargs)

    def train_loader(self, config: NextFrameConfig, data: Videos, rank: int, world: int):
        t = config.trainer
        return self._loader(data.frames["train"], batch_size=t.batch_size, seed=t.seed,
                            rank=rank, world_size=world, train=True)  # fmt: skip

    def val_loader(self, config: NextFrameConfig, data: Videos, rank: int, world: int):
        return self._loader(data.frames["valid"], batch_size=64, seed=0, rank=0, world_size=1,
                            train=False)  # fmt: skip

    def evaluate(
        self, model: FramePredictor, config: NextFrameConfig, data: Videos, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        test = data.frames["test"]
        target = test[:, 1:]  # (N, T-1, 1, S, S)
        logits = predict_in_batches(model, test[:, :-1], batch_size=64)
        mean_pixel = float(data.frames["train"].mean())
        losses = {
            "": per_frame_losses(logits, torch.sigmoid(logits), target),
            "baseline_copy_last_": per_frame_losses(None, test[:, :-1], target),
            "baseline_constant_": per_frame_losses(None, torch.full_like(target, mean_pixel),
                                                   target),
        }  # fmt: skip
        out: dict[str, Any] = {"split": "test", "n": int(test.shape[0]),
                               "kind": config.model.kind, "parameters": n_params(model),
                               "predicted_frames": list(range(2, test.shape[1] + 1)),
                               "baseline_constant_pixel": mean_pixel}  # fmt: skip
        for prefix, per_frame in losses.items():
            for metric, values in per_frame.items():
                out[f"{prefix}{metric}"] = float(values.mean())
                out[f"{prefix}{metric}_per_frame"] = values.tolist()
        return out

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test {m.upper()} per pixel, mean over frames {metrics['predicted_frames'][0]}-"
            f"{metrics['predicted_frames'][-1]}: {metrics['kind']} {metrics[m]:.4f}, copy the "
            f"last frame {metrics[f'baseline_copy_last_{m}']:.4f}, constant "
            f"{metrics['baseline_constant_pixel']:.3f} {metrics[f'baseline_constant_{m}']:.4f} "
            f"({metrics['n']} videos)"
            for m in ("bce", "mse")
        ]
