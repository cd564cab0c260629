"""Real-valued outputs, many-to-one or many-to-many (the lecture's sunspot forecasting).

With ``horizon`` h the model predicts the next h values at once (direct multi-step forecast):

* ``mode="many_to_one"``: the pooled sequence gives ŷ (B, h, O), the h values that follow it;
* ``mode="many_to_many"``: every step t gives ŷ^<t> (B, T, h, O), the h values after step t.

``autoregressive`` = p > 0 (many-to-one) adds a linear autoregressive term to the output, the
"highway" of Lai et al. 2018 (LSTNet): ŷ = head(pooled) + A·vec(x^<n-p+1>, ..., x^<n>) + a,
where n is each sequence's last valid step (steps before its start count as zero). The linear
part carries the scale and the persistence of the series; the recurrent part learns what a
linear model misses.

:meth:`SequenceRegressor.forecast` goes further than h by feeding its predictions back as
inputs (recursive forecast; needs O = I, e.g. a univariate series).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .base import Model
from .checks import batch_lengths, check_choice, check_float, check_int, check_targets
from .encoder import RecurrentEncoderConfig, build_encoder
from .pooling import POOLINGS, Pooling, valid_mask

MODES = ("many_to_one", "many_to_many")


@dataclass
class RegressorConfig:
    """Features (B, T, I) -> encoder -> the next ``horizon`` values of O features."""

    input_size: int
    output_size: int = 1
    encoder: RecurrentEncoderConfig = field(
        default_factory=RecurrentEncoderConfig, metadata={"encoder": True}
    )
    mode: str = "many_to_one"
    horizon: int = 1
    pooling: str = "last"
    attention_size: int = 32
    dropout: float = 0.0
    autoregressive: int = 0  # p: a linear term on the last p input steps (many_to_one); 0: none

    def __post_init__(self) -> None:
        check_int("input_size", self.input_size, low=1)
        check_int("output_size", self.output_size, low=1)
        check_choice("mode", self.mode, MODES)
        check_int("horizon", self.horizon, low=1)
        check_choice("pooling", self.pooling, POOLINGS)
        check_int("attention_size", self.attention_size, low=1)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_int("autoregressive", self.autoregressive, low=0)
        if self.autoregressive and self.mode != "many_to_one":
            raise ValueError(
                f"autoregressive={self.autoregressive} needs mode='many_to_one', got {self.mode!r}"
            )


class SequenceRegressor(Model):
    """Regression over sequences; trained with the mean squared error over valid outputs."""

    config_class = RegressorConfig

    def __init__(self, config: RegressorConfig) -> None:
        super().__init__(config)
        self.encoder = build_encoder(config.encoder, config.input_size)
        H = self.encoder.output_size
        self.pooling = (
            Pooling(config.pooling, H, config.attention_size)
            if config.mode == "many_to_one"
            else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, config.horizon * config.output_size)
        p = config.autoregressive
        self.linear_ar = (
            nn.Linear(p * config.input_size, config.horizon * config.output_size) if p else None
        )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, I) -> (B, h, O) for many_to_one, (B, T, h, O) for many_to_many."""
        self._check_input(x)
        lengths = batch_lengths(x, lengths)
        out = self.encoder(x, lengths)  # (B, T, H)
        if self.pooling is not None:
            out = self.pooling(out, lengths)  # (B, H)
        y = self.head(self.dropout(out))  # (..., h*O)
        if self.linear_ar is not None:
            y = y + self.linear_ar(last_steps(x, lengths, self.config.autoregressive))
        return y.view(*y.shape[:-1], self.config.horizon, self.config.output_size)

    def loss(self, x: Tensor, y: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mean squared error; ``y`` shaped as the output, padded steps ignored (many_to_many)."""
        pred = self(x, lengths)
        y = check_targets("y", y, tuple(pred.shape), integer=False)
        if self.pooling is not None:
            return torch.mean((pred - y) ** 2)
        mask = valid_mask(batch_lengths(x, lengths), x.shape[0], x.shape[1], x.device)
        return torch.mean((pred[mask] - y[mask]) ** 2)

    @torch.no_grad()
    def forecast(self, x: Tensor, steps: int, lengths: Tensor | None = None) -> Tensor:
        """The ``steps`` values after each sequence (B, steps, O), feeding predictions back.

        Each round predicts the next h values from the sequence so far (the output at its last
        valid step for many_to_many) and appends them to it. Needs O = I.
        """
        check_int("steps", steps, low=1)
        self._check_input(x)
        cfg = self.config
        if cfg.output_size != cfg.input_size:
            raise ValueError(
                f"forecast feeds predictions back as inputs: output_size={cfg.output_size} "
                f"must equal input_size={cfg.input_size}"
            )
        B = x.shape[0]
        n = batch_lengths(x, lengths)
        n = torch.full((B,), x.shape[1], device=x.device) if n is None else n
        rows = torch.arange(B, device=x.device)
        predictions = []
        done = 0
        while done < steps:
            y = self(x, n)
            if self.pooling is None:
                y = y[rows, n - 1]  # (B, h, O): the prediction after the last valid step
            take = min(cfg.horizon, steps - done)
            predictions.append(y[:, :take])
            x = _append(x, n, y[:, :take])
            n = n + take
            done += take
        return torch.cat(predictions, dim=1)

    def _check_input(self, x: object) -> None:
        I = self.config.input_size
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != I:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a float tensor (B, T, I={I}), got {got}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def last_steps(x: Tensor, lengths: Tensor | None, p: int) -> Tensor:
    """(B, p·I): x^<n-p+1>, ..., x^<n> of each sequence, n its last valid step, oldest first;
    steps before the sequence's start are zeros."""
    B, T, I = x.shape
    n = torch.full((B,), T, device=x.device) if lengths is None else lengths.to(x.device)
    steps = n.unsqueeze(1) - p + torch.arange(p, device=x.device)  # (B, p), may be < 0
    inside = (steps >= 0).to(x.dtype).unsqueeze(2)  # (B, p, 1)
    index = steps.clamp(min=0).unsqueeze(2).expand(B, p, I)
    return (x.gather(1, index) * inside).reshape(B, p * I)


def _append(x: Tensor, n: Tensor, values: Tensor) -> Tensor:
    """Write ``values`` (B, k, I) into ``x`` (B, T, I) at steps n_b .. n_b + k - 1, growing T."""
    B, T, I = x.shape
    k = values.shape[1]
    grown = x.new_zeros(B, max(T, int(n.max()) + k), I)
    grown[:, :T] = x
    index = (n.unsqueeze(1) + torch.arange(k, device=x.device)).unsqueeze(2).expand(B, k, I)
    return grown.scatter(1, index, values)
