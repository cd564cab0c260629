"""``trigger_word``: hear "activate" in 4-s clips of speech and noise (the lecture's
many-to-many example, same length).

Data: :func:`rnnkit.datasets.speech.load_trigger_clips` (espeak-ng voices; test voices never
heard in training), log-mel features standardised with the training mean and deviation. A GRU
tags every 20-ms step with P(the trigger word ended within the last 250 ms)
(:class:`rnnkit.models.SequenceTagger`, one sigmoid per step); unidirectional by default, so
it could run on a live stream.

Detection: each run of steps with P > ``threshold`` (runs less than ``label_ms`` apart merged)
is one detection, at the run's first step. It matches a true trigger when it lies within
``label_ms`` of the step after the word ends (each trigger matched once, nearest first; the
matching of :func:`rnnkit.tasks.ecg.match_peaks`). Metric: event-level precision, recall and
F1 on the test clips.

Baseline: an energy-threshold detector. A step is loud when its log mel energy exceeds the
clip's 20th percentile by ``delta``; loud runs (gaps under 100 ms bridged) are words; a word
lasting between ``d_min`` and ``d_max`` steps is called the trigger, detected at its end.
``delta``, ``d_min`` and ``d_max`` are tuned for F1 on the training clips.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.speech import TriggerClips, load_trigger_clips
from ..models import RecurrentEncoderConfig, SequenceTagger, TaggerConfig
from ..training.config import OptimConfig, TrainerConfig
from ..training.modules import SupervisedModule
from ._common import array_loaders, predict_in_batches
from .base import Task
from .ecg import f1_score, match_peaks

N_MELS = 40


@dataclass
class TriggerData:
    n_train: int = 2000
    n_valid: int = 200
    n_test: int = 400
    seed: int = 0  # the clips' seed (data generation), not the training seed
    label_ms: float = 250.0
    threshold: float = 0.5


@dataclass
class TriggerConfig:
    data: TriggerData = field(default_factory=TriggerData)
    model: TaggerConfig = field(
        default_factory=lambda: TaggerConfig(
            num_classes=1,
            input_size=80,  # set from the data: mel bands x stacked frames
            encoder=RecurrentEncoderConfig(cell="gru", hidden_size=64, num_layers=2),
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=1500, batch_size=32, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class TriggerData_:
    clips: dict[str, TriggerClips]
    x: dict[str, torch.Tensor]  # split -> (N, T, I) standardised features
    y: dict[str, torch.Tensor]  # split -> (N, T) 0/1
    mean: np.ndarray  # (I,)
    std: np.ndarray  # (I,)


# -- events ----------------------------------------------------------------------------------------
def runs(active: np.ndarray, bridge: int = 0) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in ``active`` (T,), runs less than ``bridge`` + 1
    steps apart merged."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    out: list[tuple[int, int]] = []
    for start, stop in zip(edges[::2], edges[1::2]):
        if out and start - out[-1][1] <= bridge:
            out[-1] = (out[-1][0], int(stop))
        else:
            out.append((int(start), int(stop)))
    return out


def true_events(events: np.ndarray) -> np.ndarray:
    """The step after each trigger word ends (where its label starts), from (2,) ends."""
    return events[events >= 0] + 1


def detect(prob: np.ndarray, threshold: float, gap: int) -> np.ndarray:
    """Detections (first steps of the runs of P > ``threshold``) in one clip's (T,) P."""
    return np.array([s for s, _ in runs(prob > threshold, gap)], dtype=np.int64)


def event_scores(
    found: list[np.ndarray], truth: list[np.ndarray], tolerance: int
) -> dict[str, Any]:
    """Event-level precision, recall and F1 pooled over clips."""
    tp, fp, fn = np.sum([match_peaks(t, f, tolerance) for f, t in zip(found, truth)], axis=0)
    tp, fp, fn = int(tp), int(fp), int(fn)
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": f1_score(tp, fp, fn),
        "tp_fp_fn": [tp, fp, fn],
    }


# -- the energy baseline ---------------------------------------------------------------------------
def log_energy(features: np.ndarray, n_mels: int) -> np.ndarray:
    """(N, T, n_mels·k) stacked log-mel features -> (N, T) log of the total mel energy."""
    N, T, I = features.shape
    per_frame = features.reshape(N, T, I // n_mels, n_mels)
    return np.logaddexp.reduce(per_frame, axis=(2, 3))


def energy_detect(
    energy: np.ndarray, delta: float, d_min: int, d_max: int, bridge: int
) -> np.ndarray:
    """Ends (+1) of the loud runs lasting d_min..d_max steps in one clip's (T,) energy."""
    loud = energy > np.percentile(energy, 20) + delta
    words = runs(loud, bridge)
    return np.array([e for s, e in words if d_min <= e - s <= d_max], dtype=np.int64)


def tune_energy_detector(
    energy: np.ndarray, truth: list[np.ndarray], tolerance: int, bridge: int
) -> dict[str, Any]:
    """(delta, d_min, d_max) of the best F1 over a grid, on clips ``energy`` (N, T).

    For speed each word is matched once to the nearest true trigger within ``tolerance`` of
    its end, and a trigger that two words match counts once: the one-to-one matching of
    :func:`event_scores` up to how ties between two such words are broken.
    """
    n_true = sum(len(t) for t in truth)
    offsets = np.cumsum([0] + [len(t) for t in truth])
    best: dict[str, Any] = {"f1": -1.0}
    for delta in np.arange(0.5, 8.01, 0.5):
        durations, matched = [], []
        for i, e in enumerate(energy):
            for start, stop in runs(e > np.percentile(e, 20) + delta, bridge):
                durations.append(stop - start)
                gaps = np.abs(truth[i] - stop)
                hit = gaps.size and gaps.min() <= tolerance
                matched.append(offsets[i] + int(np.argmin(gaps)) if hit else -1)
        dur, trig = np.array(durations), np.array(matched)
        for d_min, d_max in itertools.combinations(range(4, 80, 4), 2):
            chosen = (dur >= d_min) & (dur <= d_max)
            tp = len(np.unique(trig[chosen & (trig >= 0)]))
            fp, fn = int(chosen.sum()) - tp, n_true - tp
            if f1_score(tp, fp, fn) > best["f1"]:
                best = {"f1": f1_score(tp, fp, fn), "delta": float(delta), "d_min": d_min,
                        "d_max": d_max}  # fmt: skip
    return best


# -- the task --------------------------------------------------------------------------------------
class TriggerWordTask(Task):
    name = "trigger_word"
    config_class = TriggerConfig
    module_class = SupervisedModule
    derived_keys = ("model.num_classes", "model.input_size", "model.vocab_size")

    def load_data(self, config: TriggerConfig) -> TriggerData_:
        d = config.data
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        clips = {s: load_trigger_clips(s, n, seed=d.seed, label_ms=d.label_ms, n_mels=N_MELS)
                 for s, n in sizes.items()}  # fmt: skip
        train = clips["train"].features
        mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1)) + 1e-6
        x = {s: torch.from_numpy((c.features - mean) / std).float() for s, c in clips.items()}
        y = {s: torch.from_numpy(c.labels.astype(np.float32)) for s, c in clips.items()}
        return TriggerData_(clips, x, y, mean, std)

    def derive(self, config: TriggerConfig, data: TriggerData_) -> TriggerConfig:
        model = replace(config.model, num_classes=1, input_size=data.x["train"].shape[2],
                        vocab_size=0)  # fmt: skip
        return replace(config, model=model)

    def build_model(self, config: TriggerConfig, data: TriggerData_) -> SequenceTagger:
        return SequenceTagger(config.model)

    def vocab(self, data: TriggerData_) -> dict[str, Any]:
        return {"feature_mean": data.mean.tolist(), "feature_std": data.std.tolist(),
                "step_ms": data.clips["train"].step_ms}  # fmt: skip

    def train_loader(self, config: TriggerConfig, data: TriggerData_, rank: int, world: int):
        tc = config.trainer
        return array_loaders(data.x["train"], data.y["train"], batch_size=tc.batch_size,
                             seed=tc.seed, rank=rank, world_size=world, train=True)  # fmt: skip

    def val_loader(self, config: TriggerConfig, data: TriggerData_, rank: int, world: int):
        return array_loaders(data.x["valid"], data.y["valid"], batch_size=100, seed=0, rank=0,
                             world_size=1, train=False)  # fmt: skip

    def evaluate(
        self, model: SequenceTagger, config: TriggerConfig, data: TriggerData_, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        d = config.data
        step_ms = data.clips["test"].step_ms
        tol = max(1, round(d.label_ms / step_ms))
        bridge = max(1, round(100 / step_ms))
        prob = predict_in_batches(model.predict_proba, data.x["test"], batch_size=100).numpy()
        truth = [true_events(e) for e in data.clips["test"].events]
        found = [detect(p, d.threshold, tol) for p in prob]
        tuned = tune_energy_detector(
            log_energy(data.clips["train"].features, N_MELS),
            [true_events(e) for e in data.clips["train"].events], tol, bridge,
        )  # fmt: skip
        energy = log_energy(data.clips["test"].features, N_MELS)
        baseline = event_scores(
            [energy_detect(e, tuned["delta"], tuned["d_min"], tuned["d_max"], bridge)
             for e in energy], truth, tol,
        )  # fmt: skip
        k = int(np.argmax([len(t) for t in truth]))
        _clip_png(data.clips["test"].features[k], prob[k], truth[k], found[k], step_ms,
                  run_dir / "trigger.png")  # fmt: skip
        return {
            "split": "test",
            "clips": len(truth),
            "triggers": int(sum(len(t) for t in truth)),
            "voices": sorted(set(data.clips["test"].speakers.tolist())),
            "tolerance_ms": tol * step_ms,
            **event_scores(found, truth, tol),
            "baseline_energy": {
                **baseline,
                "delta": tuned["delta"],
                "d_min": tuned["d_min"],
                "d_max": tuned["d_max"],
                "train_f1": tuned["f1"],
            },  # fmt: skip
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        b = metrics["baseline_energy"]
        return [
            f"test trigger-word events (unseen voices): precision {metrics['precision']:.3f}, "
            f"recall {metrics['recall']:.3f}, F1 {metrics['f1']:.3f} on {metrics['triggers']} "
            f"triggers in {metrics['clips']} clips",
            f"energy-threshold detector (tuned on the training clips): precision "
            f"{b['precision']:.3f}, recall {b['recall']:.3f}, F1 {b['f1']:.3f}",
        ]


def _clip_png(
    features: np.ndarray, prob: np.ndarray, truth: np.ndarray, found: np.ndarray,
    step_ms: float, path: Path,
) -> Path:  # fmt: skip
    from ..training.plots import plt, save_figure

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    seconds = np.arange(len(prob)) * step_ms / 1000
    frames = features.reshape(len(features), -1, N_MELS)[:, -1]  # last frame of each step
    axes[0].imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, seconds[-1] + step_ms / 1000, 0, N_MELS))  # fmt: skip
    axes[0].set(ylabel="mel band", title="test clip: log-mel spectrogram")
    axes[1].plot(seconds, prob, color="tab:purple", lw=1, label="P(trigger just ended)")
    for i, t in enumerate(truth):
        axes[1].axvline(t * step_ms / 1000, color="black", ls="--", lw=1,
                        label="trigger ends" if i == 0 else None)  # fmt: skip
    for i, f in enumerate(found):
        axes[1].plot(f * step_ms / 1000, 1.02, "v", color="tab:green",
                     label="detection" if i == 0 else None)  # fmt: skip
    axes[1].set(xlabel="seconds", ylabel="P", ylim=(-0.05, 1.1))
    axes[1].legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)
