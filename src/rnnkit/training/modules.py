"""LightningModules for rnnkit's models: the loss of a batch, the optimizer, what to checkpoint.

:class:`RnnkitModule` holds one model from :mod:`rnnkit.models`, the optimizer settings and
the run's identity (task, configuration, vocabulary), which it writes into every checkpoint
under ``"rnnkit"``. Each subclass turns one kind of batch into the model's loss:

============================  ==========================================  ==================
module                        batch                                       loss
============================  ==========================================  ==================
:class:`SupervisedModule`     :class:`LabelledBatch` (x, lengths, y)      ``model.loss``
:class:`LanguageModelModule`  :class:`TokenBatch` (tokens)                mean NLL per token
:class:`Seq2SeqModule`        :class:`PairBatch` (source, target...)      mean NLL per token
============================  ==========================================  ==================

Batches come from the model-agnostic loaders of :mod:`rnnkit.training.loader`; the data
loaders themselves are built by the task, per process, through the two callables given here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from .config import OptimConfig

LoaderFactory = Callable[[int, int], Any]  # (rank, world_size) -> loader


class LabelledBatch(NamedTuple):
    """x (B, T, I) features or (B, T) ids; lengths (B,) or None; y targets of any shape (B, ...)."""

    x: Tensor
    lengths: Tensor | None
    y: Tensor


class TokenBatch(NamedTuple):
    """tokens (B, T + 1): windows of a token stream; position t predicts t + 1."""

    tokens: Tensor


class PairBatch(NamedTuple):
    """source (B, S) ids with lengths (B,); target (B, U) ids with lengths (B,), each target
    starting with ``<bos>`` and ending with ``<eos>``."""

    source: Tensor
    source_lengths: Tensor
    target: Tensor
    target_lengths: Tensor


class RnnkitModule(pl.LightningModule):
    """A model, its optimizer and its loaders, for ``lightning.pytorch.Trainer``.

    Args:
        model: the ``nn.Module`` to train.
        optim: optimizer and learning-rate schedule.
        train_loader, val_loader: ``(rank, world_size) -> loader``; called by Lightning once
            the process's rank is known.
        run_info: JSON-ready dict saved into each checkpoint (task name, config, vocabulary).
        total_steps: the step budget, for the cosine schedule (-1 when the budget is epochs or
            minutes: Lightning's estimate is used).
    """

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        *,
        train_loader: LoaderFactory,
        val_loader: LoaderFactory,
        run_info: dict[str, Any],
        total_steps: int = -1,
    ) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self._train_loader = train_loader
        self._val_loader = val_loader
        self.run_info = run_info
        self.total_steps = total_steps

    # -- what subclasses define ------------------------------------------------------------------
    def loss(self, batch: Any) -> tuple[Tensor, int]:
        """(mean loss of the batch, the number of items it averages over)."""
        raise NotImplementedError

    # -- Lightning hooks ---------------------------------------------------------------------
    def forward(self, *args: Any) -> Any:
        return self.model(*args)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, n = self.loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, n = self.loss(batch)
        self.log("val_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)

    def train_dataloader(self) -> Any:
        return self._train_loader(self.global_rank, self.trainer.world_size)

    def val_dataloader(self) -> Any:
        return self._val_loader(self.global_rank, self.trainer.world_size)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rnnkit"] = self.run_info

    def configure_optimizers(self) -> Any:
        o = self.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        elif o.name == "adamw":
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        if o.schedule == "constant" and o.warmup_steps == 0:
            return opt
        total = (
            self.total_steps if self.total_steps > 0 else self.trainer.estimated_stepping_batches
        )
        factor = lr_factor(o, int(total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lr_factor(o: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """step -> lr multiplier: linear warm-up over ``warmup_steps``, then constant or a cosine
    from 1 down to ``min_lr_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        span = max(1, total_steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class SupervisedModule(RnnkitModule):
    """Models whose ``loss(x, y, lengths)`` is the batch mean: classifier, tagger, regressor."""

    def loss(self, batch: LabelledBatch) -> tuple[Tensor, int]:
        return self.model.loss(batch.x, batch.y, batch.lengths), batch.y.shape[0]


class LanguageModelModule(RnnkitModule):
    """Next-token prediction: mean negative log-likelihood per target token (nats)."""

    def loss(self, batch: TokenBatch) -> tuple[Tensor, int]:
        tokens = batch.tokens  # (B, T + 1)
        return self.model.loss(tokens), tokens.shape[0] * (tokens.shape[1] - 1)


class Seq2SeqModule(RnnkitModule):
    """Teacher-forced encoder-decoder: mean NLL per target token after ``<bos>``."""

    def loss(self, batch: PairBatch) -> tuple[Tensor, int]:
        loss = self.model.loss(
            batch.source, batch.source_lengths, batch.target, batch.target_lengths
        )
        return loss, int(batch.target_lengths.sum()) - batch.target.shape[0]
