r"""``chorales``: polyphonic next-frame prediction on Bach's chorales, and composing new ones.

Data: :mod:`rnnkit.datasets.chorales` (music21's corpus as 88-key piano rolls on a grid of
``data.step`` quarter notes, split by chorale, each labelled major or minor).

Model (:class:`PianoRollModel`): the lecture's one-to-many with a style label. At step t it
reads the previous frame x^<t-1> (x^<0> = 0) and the embedded mode label, and outputs one
sigmoid per key,

.. math::
    P(x^{<t>} \mid x^{<1>}, \ldots, x^{<t-1>}, \text{mode})
      = \prod_k \hat y_k^{x_k} (1 - \hat y_k)^{1 - x_k},
    \qquad \hat y = \sigma(W_y a^{<t>} + b_y),

so the loss is the binary cross-entropy summed over the 88 keys: the negative log-likelihood
per frame (nats) that Bai et al. (2018) report on JSB Chorales (LSTM 8.45, GRU 8.43,
TCN 8.10). Any causal, stateful encoder works: ``--model.encoder.type=tcn`` swaps the LSTM
for a TCN.

Metrics on the test chorales: NLL per frame of frames 2..T, each predicted from those before
it (Bai et al.'s evaluation), against independent keys (each key on with its training
frequency, whatever came before). Generation: ``data.generate`` pieces per mode are sampled and
analysed by music21; the share whose analysed mode is the one asked for is the conditioning's
effect (chance: 50%).

``rnnkit compose RUN`` (:func:`compose_main`) samples new chorales from a trained run and
writes each as MIDI, MusicXML and a piano-roll PNG.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..datasets import chorales as ch
from ..models import Model, RecurrentEncoderConfig
from ..models.checks import batch_lengths, check_float, check_int
from ..models.encoder import build_encoder
from ..models.pooling import valid_mask
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader, shuffled_batches
from ..training.modules import RnnkitModule
from .base import Task


# -- the model -------------------------------------------------------------------------------------
@dataclass
class PianoRollConfig:
    """Frames of ``num_keys`` on/off keys, conditioned on one of ``num_labels`` labels."""

    num_keys: int = ch.NUM_KEYS
    num_labels: int = len(ch.MODES)
    label_size: int = 8
    encoder: RecurrentEncoderConfig = field(
        default_factory=lambda: RecurrentEncoderConfig(cell="lstm", hidden_size=128),
        metadata={"encoder": True},
    )
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("num_keys", self.num_keys, low=1)
        check_int("num_labels", self.num_labels)
        check_int("label_size", self.label_size, low=1)
        self.dropout = check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)


class PianoRollModel(Model):
    """Next-frame model over piano rolls with a label (module docstring).

    ``logits, state = model(previous, lengths=None, labels=None, state=None)``: ``previous``
    (B, T, K) the frames before each step -> ``logits`` (B, T, K) of the frames at each step.
    """

    config_class = PianoRollConfig

    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__(config)
        K, L = config.num_keys, config.num_labels
        self.label_embedding = nn.Embedding(L, config.label_size) if L else None
        self.encoder = build_encoder(config.encoder, K + (config.label_size if L else 0))
        if not getattr(self.encoder, "causal", False) or not hasattr(
            self.encoder, "forward_with_state"
        ):
            raise ValueError("the piano-roll model needs a causal, stateful encoder")
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, K)
        # start from P(key on) = 4/K, four voices among K keys, not 1/2: the first steps then
        # learn the music rather than how sparse a roll is
        nn.init.constant_(self.head.bias, math.log(4 / (K - 4)) if K > 4 else 0.0)

    def forward(
        self,
        previous: Tensor,
        lengths: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        state: Any = None,
    ) -> tuple[Tensor, Any]:
        """(B, T, K) previous frames -> (logits (B, T, K), encoder state)."""
        cfg = self.config
        if not isinstance(previous, Tensor) or previous.dim() != 3:
            raise ValueError(f"previous must be a (B, T, K) tensor, got {previous!r:.60}")
        if previous.shape[2] != cfg.num_keys or not previous.dtype.is_floating_point:
            raise ValueError(
                f"previous must be float frames of K={cfg.num_keys} keys, got dtype "
                f"{previous.dtype} and shape {tuple(previous.shape)}"
            )
        B, T, _ = previous.shape
        x = previous
        if self.label_embedding is not None:
            if not isinstance(labels, Tensor) or labels.shape != (B,) or labels.is_floating_point():
                raise ValueError(f"labels must be integer ids of shape ({B},), got {labels!r:.60}")
            if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_labels:
                raise ValueError(f"labels must lie in [0, {cfg.num_labels}), got {labels.tolist()}")
            e = self.label_embedding(labels)  # (B, E)
            x = torch.cat([x, e.unsqueeze(1).expand(B, T, e.shape[1])], dim=2)  # (B, T, K+E)
        elif labels is not None:
            raise ValueError("labels were given but the model has num_labels=0")
        h, state = self.encoder.forward_with_state(x, state, batch_lengths(previous, lengths))
        return self.head(self.dropout(h)), state

    def frame_nll(
        self, frames: Tensor, lengths: Tensor | None = None, *, labels: Tensor | None = None
    ) -> Tensor:
        """(B, T) -log P(x^<t> | x^<<t>, label), summed over keys; 0 at padded frames."""
        previous = F.pad(frames[:, :-1], (0, 0, 1, 0))  # (B, T, K): x^<0> = 0, then shifted
        logits, _ = self(previous, lengths, labels=labels)
        nll = F.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(2)
        mask = valid_mask(batch_lengths(frames, lengths), *frames.shape[:2], frames.device)
        return nll * mask

    def loss(
        self, frames: Tensor, lengths: Tensor | None = None, *, labels: Tensor | None = None
    ) -> Tensor:
        """Mean NLL per valid frame (nats)."""
        nll = self.frame_nll(frames, lengths, labels=labels)
        count = frames.shape[0] * frames.shape[1] if lengths is None else lengths.sum()
        return nll.sum() / count

    @torch.no_grad()
    def sample(
        self,
        num_frames: int,
        *,
        labels: Tensor | None = None,
        num_pieces: int | None = None,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> Tensor:
        """Sample (B, num_frames, K) frames, each key drawn from its Bernoulli with logit / τ.

        Piece i draws from its own generator seeded ``seed + i``, so a batch equals its pieces
        sampled one by one.
        """
        check_int("num_frames", num_frames, low=1)
        temperature = check_float("temperature", temperature, low=0.0, high=float("inf"),
                                  low_open=True)  # fmt: skip
        B = labels.shape[0] if isinstance(labels, Tensor) else check_int("num_pieces", num_pieces)
        K = self.config.num_keys
        gens = [torch.Generator().manual_seed(seed + i) for i in range(B)]
        was_training = self.training
        self.eval()
        frame = torch.zeros(B, 1, K)
        state, out = None, []
        for _ in range(num_frames):
            logits, state = self(frame, labels=labels, state=state)
            p = torch.sigmoid(logits[:, 0] / temperature)  # (B, K)
            frame = torch.stack([torch.bernoulli(p[i], generator=g) for i, g in enumerate(gens)])
            frame = frame.unsqueeze(1)  # (B, 1, K)
            out.append(frame)
        self.train(was_training)
        return torch.cat(out, dim=1)


# -- training --------------------------------------------------------------------------------------
class ChoraleBatch(NamedTuple):
    """frames (B, T, K) float 0/1 padded with zeros, lengths (B,), labels (B,)."""

    frames: Tensor
    lengths: Tensor
    labels: Tensor


class ChoraleModule(RnnkitModule):
    """Mean NLL per frame of a batch of chorales."""

    def loss(self, batch: ChoraleBatch) -> tuple[Tensor, int]:
        loss = self.model.loss(batch.frames, batch.lengths, labels=batch.labels)
        return loss, int(batch.lengths.sum())


@dataclass
class ChoralesData:
    step: float = 1.0  # the grid, in quarter notes (1.0: JSB Chorales' grid; 0.25: sixteenths)
    limit: int = 0  # parse only the first N chorales of each split; 0 parses all 350
    generate: int = 20  # pieces sampled per mode for the conditioning check
    generate_frames: int = 48  # their length, in frames
    temperature: float = 1.0


@dataclass
class ChoralesConfig:
    data: ChoralesData = field(default_factory=ChoralesData)
    model: PianoRollConfig = field(default_factory=PianoRollConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=2000, batch_size=16, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))


def _batch(chorales: ch.Chorales, idx: list[int]) -> ChoraleBatch:
    rolls = [chorales.rolls[i] for i in idx]
    frames = torch.zeros(len(idx), max(len(r) for r in rolls), ch.NUM_KEYS)
    for b, r in enumerate(rolls):
        frames[b, : len(r)] = torch.from_numpy(r.astype(np.float32))
    lengths = torch.tensor([len(r) for r in rolls], dtype=torch.int64)
    return ChoraleBatch(frames, lengths, torch.from_numpy(chorales.modes[idx]))


def independent_keys_nll(train: list[np.ndarray], test: list[np.ndarray]) -> float:
    """NLL per frame (frames 2..T) when key k is on with its training frequency p_k, add-one
    smoothed: p_k = (on_k + 1) / (frames + 2)."""
    frames = np.concatenate(train)
    p = (frames.sum(0) + 1.0) / (len(frames) + 2.0)  # (K,)
    y = np.concatenate([r[1:] for r in test]).astype(np.float64)  # (N, K)
    return float(-(y @ np.log(p) + (1 - y) @ np.log1p(-p)).sum() / len(y))


def mode_agreement(
    model: PianoRollModel, *, per_mode: int, num_frames: int, temperature: float, seed: int,
    step: float,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # fmt: skip
    """Sample ``per_mode`` pieces per mode and analyse their keys with music21.

    Returns the rates ``{"major": share analysed major, "minor": ..., "balanced": mean}`` with
    a one-sided binomial p-value against chance, and one sampled roll per mode.
    """
    from scipy.stats import binomtest

    rates, hits, examples = {}, 0, {}
    for label, mode in enumerate(ch.MODES):
        labels = torch.full((per_mode,), label, dtype=torch.int64)
        rolls = model.sample(num_frames, labels=labels, temperature=temperature,
                             seed=seed + 1000 * label).numpy().astype(bool)  # fmt: skip
        analysed = [ch.key_of(r, step).mode if r.any() else "none" for r in rolls]
        agree = sum(a == mode for a in analysed)
        rates[mode], hits = agree / per_mode, hits + agree
        examples[mode] = rolls[0]
    total = per_mode * len(ch.MODES)
    result = {
        **{f"asked_{m}_analysed_{m}": rates[m] for m in ch.MODES},
        "agreement": hits / total,
        "pieces": total,
        "p_value_vs_chance": float(binomtest(hits, total, 0.5, alternative="greater").pvalue),
    }
    return result, examples


def roll_png(roll: np.ndarray, path: str | Path, *, title: str) -> Path:
    """A piano-roll figure: time across, keys up."""
    from ..training.plots import plt, save_figure

    used = np.flatnonzero(roll.any(0))
    lo, hi = (used.min(), used.max()) if used.size else (30, 60)
    fig, ax = plt.subplots(figsize=(max(6, len(roll) / 8), 4))
    low, high = ch.LOWEST_MIDI + lo - 0.5, ch.LOWEST_MIDI + hi + 0.5
    ax.imshow(roll[:, lo : hi + 1].T, origin="lower", aspect="auto", cmap="Greys",
              extent=(0, len(roll), low, high))  # fmt: skip
    ax.set(xlabel="frame", ylabel="MIDI pitch", title=title)
    return save_figure(fig, path)


def write_piece(roll: np.ndarray, stem: Path, *, step: float, title: str) -> list[Path]:
    """``stem``.mid, .musicxml and .png of one piece."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    return [
        ch.write_midi(roll, stem.with_suffix(".mid"), step),
        ch.write_musicxml(roll, stem.with_suffix(".musicxml"), step),
        roll_png(roll, stem.with_suffix(".png"), title=title),
    ]


class ChoralesTask(Task):
    name = "chorales"
    config_class = ChoralesConfig
    module_class = ChoraleModule
    derived_keys = ("model.num_keys", "model.num_labels")

    def load_data(self, config: ChoralesConfig) -> dict[str, ch.Chorales]:
        d = config.data
        return {s: ch.load_chorales(s, step=d.step, limit=d.limit) for s in ch.SPLITS}

    def build_model(self, config: ChoralesConfig, data: dict[str, ch.Chorales]) -> PianoRollModel:
        return PianoRollModel(config.model)

    def vocab(self, data: dict[str, ch.Chorales]) -> dict[str, Any]:
        return {"modes": list(ch.MODES), "lowest_midi": ch.LOWEST_MIDI}

    def train_loader(self, config: ChoralesConfig, data: dict, rank: int, world: int):
        train = data["train"]
        plan = shuffled_batches(len(train.rolls), config.trainer.batch_size,
                                seed=config.trainer.seed)  # fmt: skip
        return ResumableLoader(plan, lambda idx: _batch(train, idx), rank=rank, world_size=world)

    def val_loader(self, config: ChoralesConfig, data: dict, rank: int, world: int):
        valid = data["valid"]
        plan = shuffled_batches(len(valid.rolls), 32, seed=0, shuffle=False, drop_last=False)
        return BatchLoader(plan, lambda idx: _batch(valid, idx))

    def evaluate(
        self, model: PianoRollModel, config: ChoralesConfig, data: dict, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        test = data["test"]
        total, count = 0.0, 0
        for lo in range(0, len(test.rolls), 32):
            batch = _batch(test, list(range(lo, min(lo + 32, len(test.rolls)))))
            nll = model.frame_nll(batch.frames, batch.lengths, labels=batch.labels)
            total += float(nll[:, 1:].sum())  # frames 2..T, as Bai et al.
            count += int((batch.lengths - 1).sum())
        d = config.data
        agreement, examples = mode_agreement(
            model, per_mode=d.generate, num_frames=d.generate_frames,
            temperature=d.temperature, seed=config.trainer.seed, step=d.step,
        )  # fmt: skip
        analyser = np.mean([ch.key_of(r, d.step).mode == ch.MODES[m]
                            for r, m in zip(test.rolls, test.modes)])  # fmt: skip
        for mode, roll in examples.items():
            write_piece(roll, run_dir / "samples" / f"chorale-{mode}", step=d.step,
                        title=f"sampled chorale, asked for {mode}")  # fmt: skip
        return {
            "split": "test",
            "chorales": len(test.rolls),
            "frames": count,
            "nll_per_frame": total / count,
            "baseline_independent_keys_nll": independent_keys_nll(data["train"].rolls, test.rolls),
            "bai_2018_jsb_nll": {"lstm": 8.45, "gru": 8.43, "tcn": 8.10},
            "generation": agreement,
            "analyser_on_test_chorales_rolls": float(analyser),
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        g = metrics["generation"]
        return [
            f"test NLL per frame {metrics['nll_per_frame']:.3f} nats on {metrics['chorales']} "
            f"chorales (independent keys: {metrics['baseline_independent_keys_nll']:.3f}; "
            "Bai et al. 2018 on JSB: LSTM 8.45, GRU 8.43, TCN 8.10)",
            f"sampled pieces whose analysed mode is the one asked for: {g['agreement']:.0%} of "
            f"{g['pieces']} (major {g['asked_major_analysed_major']:.0%}, minor "
            f"{g['asked_minor_analysed_minor']:.0%}; chance 50%, p = {g['p_value_vs_chance']:.2g})",
        ]


# -- rnnkit compose --------------------------------------------------------------------------------
def compose_main(argv: Sequence[str]) -> int:
    """``rnnkit compose RUN``: sample chorales from a trained run into MIDI, MusicXML, PNG."""
    parser = argparse.ArgumentParser(
        prog="rnnkit compose",
        description="Sample new chorales from a trained `rnnkit train chorales` run; each is "
        "written as MIDI, MusicXML and a piano-roll PNG, and its key analysed by music21.",
    )
    parser.add_argument("run", metavar="RUN", help="run folder of a chorales run")
    parser.add_argument("--mode", choices=(*ch.MODES, "both"), default="both",
                        help="the mode to ask for (both)")  # fmt: skip
    parser.add_argument("--count", type=int, default=2, help="pieces per mode (2)")
    parser.add_argument("--frames", type=int, default=48, help="frames per piece (48)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN/compose)")
    args = parser.parse_args(list(argv))
    from ..training.run import RunError, load_run, read_run

    try:
        if read_run(args.run)["task"] != "chorales":
            raise RunError(f"`rnnkit compose` needs a chorales run; {args.run} is not one")
        if args.count < 1 or args.frames < 1 or args.temperature <= 0:
            raise RunError("--count and --frames must be >= 1 and --temperature > 0")
        _, config, model, run = load_run(args.run)
    except RunError as e:
        print(f"rnnkit compose: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else run.root / "compose"
    modes = ch.MODES if args.mode == "both" else (args.mode,)
    step = config.data.step
    for mode in modes:
        label = ch.MODES.index(mode)
        labels = torch.full((args.count,), label)
        rolls = model.sample(args.frames, labels=labels, temperature=args.temperature,
                             seed=args.seed + 1000 * label)  # fmt: skip
        for i, roll in enumerate(rolls.numpy().astype(bool)):
            stem = out / f"chorale-{mode}-{i}"
            write_piece(roll, stem, step=step, title=f"asked for {mode}")
            key = ch.key_of(roll, step) if roll.any() else "silence"
            print(f"{stem}.mid (.musicxml, .png): asked for {mode}, analysed key {key}")
    return 0
