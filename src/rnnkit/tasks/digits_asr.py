"""``digits_asr``: recognise spoken digit strings ("three one four one five") with CTC.

The lecture's speech-recognition slide, scaled to what can be synthesised:
:func:`rnnkit.datasets.speech.load_digit_strings` (2-5 digit words by espeak-ng voices, test
voices never heard in training; log-mel features, 30-ms steps, standardised with the training
mean and deviation).

Model: a bidirectional GRU with one softmax per step over 11 symbols, the CTC blank (0) and
the ten digits (1 + digit) (:class:`rnnkit.models.SequenceTagger`), trained with
``torch.nn.functional.ctc_loss`` (Graves et al. 2006): the transcript needs no alignment.
Decoding (:mod:`rnnkit.ctc`): greedy (arg max path) and prefix beam search (symbols under
probability 10^-3 at a step skipped, as in Hannun et al.'s implementation).

Metric: word error rate on the test utterances.

Baseline (``--data.objective=frames``): the same network trained as a frame classifier on the
exact alignments the synthesis gives (0 where no digit is spoken), decoded by merging runs of
equal labels and dropping 0s, the CTC greedy rule. Two equal digits said with no pause between
them become one run, which a frame classifier cannot split and CTC can (a blank between them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..ctc import beam_decode, greedy_decode, word_error_rate
from ..datasets.speech import DIGITS, DigitStrings, load_digit_strings
from ..models import RecurrentEncoderConfig, SequenceTagger, TaggerConfig
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader, shuffled_batches
from ..training.modules import LabelledBatch, RnnkitModule
from .base import Task

BLANK = 0
N_MELS = 40
BEAM_PRUNE = 1e-3  # symbols below this probability at a step do not extend the beam


class CTCBatch(NamedTuple):
    """x (B, T, I) features, lengths (B,); targets (B, U) 1 + digit padded with 0,
    target_lengths (B,)."""

    x: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor


def ctc_loss(model: SequenceTagger, batch: CTCBatch) -> Tensor:
    """Mean over the batch of -log P(transcript | x) / transcript length."""
    logits = model(batch.x, batch.lengths)  # (B, T, C)
    log_probs = F.log_softmax(logits, dim=2).transpose(0, 1)  # (T, B, C)
    return F.ctc_loss(log_probs, batch.targets, batch.lengths, batch.target_lengths,
                      blank=BLANK, reduction="mean", zero_infinity=True)  # fmt: skip


class ASRModule(RnnkitModule):
    """CTC loss for :class:`CTCBatch`, the tagger's per-step cross-entropy for
    :class:`LabelledBatch` (the frame-classifier baseline)."""

    def loss(self, batch: CTCBatch | LabelledBatch) -> tuple[Tensor, int]:
        if isinstance(batch, CTCBatch):
            return ctc_loss(self.model, batch), batch.x.shape[0]
        return self.model.loss(batch.x, batch.y, batch.lengths), int(batch.lengths.sum())


@dataclass
class DigitsASRData:
    n_train: int = 3000
    n_valid: int = 200
    n_test: int = 500
    seed: int = 0  # the utterances' seed (data generation), not the training seed
    objective: Literal["ctc", "frames"] = "ctc"
    beam_size: int = 8


@dataclass
class DigitsASRConfig:
    data: DigitsASRData = field(default_factory=DigitsASRData)
    model: TaggerConfig = field(
        default_factory=lambda: TaggerConfig(
            num_classes=1 + len(DIGITS),
            input_size=120,  # set from the data: mel bands x stacked frames
            encoder=RecurrentEncoderConfig(
                cell="gru", hidden_size=64, num_layers=2, bidirectional=True
            ),
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=1500, batch_size=32, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class DigitsASRData_:
    utterances: dict[str, DigitStrings]
    x: dict[str, Tensor]  # split -> (N, T, I) standardised, zero past each length
    mean: np.ndarray
    std: np.ndarray


def _batches(config: DigitsASRConfig, data: DigitsASRData_, split: str, index: list[int]):
    u, x = data.utterances[split], data.x[split]
    i = torch.as_tensor(index, dtype=torch.int64)
    lengths = torch.from_numpy(u.lengths[index])
    T = int(lengths.max())
    if config.data.objective == "frames":
        y = torch.from_numpy(u.frame_labels[index][:, :T])
        return LabelledBatch(x[i, :T], lengths, y)
    said = [u.digits[k] for k in index]
    targets = torch.zeros(len(index), max(len(s) for s in said), dtype=torch.int64)
    for b, s in enumerate(said):
        targets[b, : len(s)] = torch.tensor(s) + 1
    return CTCBatch(x[i, :T], lengths, targets, torch.tensor([len(s) for s in said]))


class DigitsASRTask(Task):
    name = "digits_asr"
    config_class = DigitsASRConfig
    module_class = ASRModule
    derived_keys = ("model.num_classes", "model.input_size", "model.vocab_size")

    def load_data(self, config: DigitsASRConfig) -> DigitsASRData_:
        d = config.data
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        utts = {s: load_digit_strings(s, n, seed=d.seed, n_mels=N_MELS) for s, n in sizes.items()}
        train = utts["train"]
        valid = np.arange(train.features.shape[1]) < train.lengths[:, None]  # (N, T)
        frames = train.features[valid]  # (steps, I)
        mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6
        x = {}
        for s, u in utts.items():
            mask = (np.arange(u.features.shape[1]) < u.lengths[:, None])[..., None]
            x[s] = torch.from_numpy(((u.features - mean) / std * mask).astype(np.float32))
        return DigitsASRData_(utts, x, mean, std)

    def derive(self, config: DigitsASRConfig, data: DigitsASRData_) -> DigitsASRConfig:
        model = replace(config.model, num_classes=1 + len(DIGITS),
                        input_size=data.x["train"].shape[2], vocab_size=0)  # fmt: skip
        return replace(config, model=model)

    def build_model(self, config: DigitsASRConfig, data: DigitsASRData_) -> SequenceTagger:
        return SequenceTagger(config.model)

    def vocab(self, data: DigitsASRData_) -> dict[str, Any]:
        return {"symbols": ["<blank>", *DIGITS], "feature_mean": data.mean.tolist(),
                "feature_std": data.std.tolist()}  # fmt: skip

    def train_loader(self, config: DigitsASRConfig, data: DigitsASRData_, rank: int, world: int):
        plan = shuffled_batches(len(data.x["train"]), config.trainer.batch_size,
                                seed=config.trainer.seed)  # fmt: skip
        collate = lambda idx: _batches(config, data, "train", idx)  # noqa: E731
        return ResumableLoader(plan, collate, rank=rank, world_size=world)

    def val_loader(self, config: DigitsASRConfig, data: DigitsASRData_, rank: int, world: int):
        plan = shuffled_batches(len(data.x["valid"]), 100, seed=0, shuffle=False, drop_last=False)
        return BatchLoader(plan, lambda idx: _batches(config, data, "valid", idx))

    def evaluate(
        self, model: SequenceTagger, config: DigitsASRConfig, data: DigitsASRData_, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        u, x = data.utterances["test"], data.x["test"]
        ctc = config.data.objective == "ctc"
        greedy, beam = [], []
        log_probs = []
        for lo in range(0, len(x), 100):
            n = torch.from_numpy(u.lengths[lo : lo + 100])
            lp = F.log_softmax(model(x[lo : lo + 100, : int(n.max())], n), dim=2)
            greedy += greedy_decode(lp, n, blank=BLANK)
            if ctc:  # a frame classifier's outputs are not CTC path probabilities
                beam += beam_decode(lp, n, beam_size=config.data.beam_size, blank=BLANK,
                                    prune=BEAM_PRUNE)  # fmt: skip
            log_probs += [lp[b, : n[b]].numpy() for b in range(len(n))]
        refs = [[d + 1 for d in said] for said in u.digits]
        words = lambda ids: [DIGITS[i - 1] for i in ids]  # noqa: E731
        _posteriors_png(u.features[0, : u.lengths[0]], log_probs[0], u.step_ms,
                        " ".join(words(refs[0])), run_dir / "posteriors.png")  # fmt: skip
        return {
            "split": "test",
            "objective": config.data.objective,
            "utterances": len(refs),
            "words": int(sum(len(r) for r in refs)),
            "voices": sorted(set(u.speakers.tolist())),
            "wer_greedy": word_error_rate(refs, greedy),
            "wer_beam": word_error_rate(refs, beam) if ctc else None,
            "beam_size": config.data.beam_size if ctc else None,
            "sentence_accuracy_greedy": float(np.mean([r == h for r, h in zip(refs, greedy)])),
            "examples": [
                {"said": " ".join(words(r)), "heard": " ".join(words(h))}
                for r, h in zip(refs[:8], greedy[:8])
            ],  # fmt: skip
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        beam = metrics["wer_beam"]
        beam = "" if beam is None else f", beam {metrics['beam_size']} {beam:.2%}"
        return [
            f"test WER ({metrics['objective']} model, unseen voices): greedy "
            f"{metrics['wer_greedy']:.2%}{beam} on {metrics['words']} words in "
            f"{metrics['utterances']} utterances; whole strings right "
            f"{metrics['sentence_accuracy_greedy']:.2%}"
        ]


def _posteriors_png(
    features: np.ndarray, log_probs: np.ndarray, step_ms: float, said: str, path: Path
) -> Path:
    from ..training.plots import plt, save_figure

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    end = len(log_probs) * step_ms / 1000
    frames = features.reshape(len(features), -1, N_MELS)[:, -1]
    axes[0].imshow(
        frames.T, origin="lower", aspect="auto", cmap="magma", extent=(0, end, 0, N_MELS)
    )
    axes[0].set(ylabel="mel band", title=f'test utterance: "{said}"')
    seconds = np.arange(len(log_probs)) * step_ms / 1000
    probs = np.exp(log_probs)
    axes[1].plot(seconds, probs[:, BLANK], color="lightgray", lw=1, label="blank")
    for k, name in enumerate(DIGITS, start=1):
        if probs[:, k].max() > 0.3:
            axes[1].plot(seconds, probs[:, k], lw=1.2, label=name)
    axes[1].set(xlabel="seconds", ylabel="P(symbol)", ylim=(-0.05, 1.05))
    axes[1].legend(loc="upper right", fontsize=8, ncol=4)
    return save_figure(fig, path)
