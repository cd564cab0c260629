"""``ecg``: find the R peaks of noisy ECG, one decision per sample.

The lecture's many-to-many tagging on an ECG (:mod:`rnnkit.datasets.ecg`: neurokit2's ECGSYN
at 250 Hz, R peaks from the clean signal, then noise and baseline wander). A bidirectional GRU
tags every sample with P(within 20 ms of an R peak) (:class:`rnnkit.models.SequenceTagger`),
trained on random 4-s crops; whole 10-s records are tagged at test time.

Detection: the runs of samples with P > ``threshold``, each giving one peak at its most
probable sample; peaks closer than 250 ms keep the more probable one.

Metric: F1 of the detected peaks against the true ones, a detection counting when it lies
within +-50 ms of an unmatched true peak (each true peak matched once, nearest first), pooled
over the test records. Baseline: neurokit2's classical detector (``ecg_peaks``, its default
method) on the same noisy signals. ``ecg.png`` shows a test record with both detections.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets._deps import require
from ..datasets.ecg import ECGRecords, load_ecg
from ..models import RecurrentEncoderConfig, SequenceTagger, TaggerConfig
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader
from ..training.modules import LabelledBatch, SupervisedModule
from ..training.plots import signal_with_peaks
from ._common import array_loaders, predict_in_batches
from .base import Task

TOLERANCE_S = 0.050
REFRACTORY_S = 0.250


@dataclass
class ECGData:
    n_train: int = 400
    n_valid: int = 40
    n_test: int = 100
    duration_s: float = 10.0
    crop_s: float = 4.0  # training crops
    threshold: float = 0.5


@dataclass
class ECGConfig:
    data: ECGData = field(default_factory=ECGData)
    model: TaggerConfig = field(
        default_factory=lambda: TaggerConfig(
            num_classes=1,
            input_size=1,
            encoder=RecurrentEncoderConfig(
                cell="gru", hidden_size=32, num_layers=2, bidirectional=True
            ),
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=1500, batch_size=16, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class ECGData_:
    records: dict[str, ECGRecords]
    x: dict[str, torch.Tensor]  # split -> (N, T, 1) standardised signals
    y: dict[str, torch.Tensor]  # split -> (N, T) 0/1 labels


def standardise(signals: np.ndarray) -> np.ndarray:
    """Each record minus its median, over its standard deviation: (N, T) -> (N, T, 1)."""
    centred = signals - np.median(signals, axis=1, keepdims=True)
    return (centred / (centred.std(axis=1, keepdims=True) + 1e-6))[..., None].astype(np.float32)


def detect_peaks(prob: np.ndarray, threshold: float, sampling_rate: int) -> np.ndarray:
    """Peak sample indices from one record's per-sample probabilities (module docstring)."""
    above = np.concatenate([[False], prob > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, stops = edges[::2], edges[1::2]
    peaks = [s + int(np.argmax(prob[s:e])) for s, e in zip(starts, stops)]
    kept: list[int] = []
    gap = REFRACTORY_S * sampling_rate
    for p in peaks:
        if kept and p - kept[-1] < gap:
            if prob[p] > prob[kept[-1]]:
                kept[-1] = p
            continue
        kept.append(p)
    return np.asarray(kept, dtype=np.int64)


def match_peaks(true: np.ndarray, found: np.ndarray, tolerance: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives): each detection matches the nearest
    unmatched true peak within ``tolerance`` samples, closest pairs first."""
    pairs = sorted(
        (abs(int(f) - int(t)), i, j)
        for i, f in enumerate(found)
        for j, t in enumerate(true)
        if abs(int(f) - int(t)) <= tolerance
    )
    used_found, used_true = set(), set()
    for _, i, j in pairs:
        if i not in used_found and j not in used_true:
            used_found.add(i)
            used_true.add(j)
    tp = len(used_found)
    return tp, len(found) - tp, len(true) - tp


def f1_score(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def neurokit_peaks(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """neurokit2's classical R-peak detector (``ecg_peaks``, default method) on one signal."""
    nk = require("neurokit2", package="neurokit2", needed_for="the ECG task's baseline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns on some noisy records; the result stands
        try:
            _, info = nk.ecg_peaks(signal, sampling_rate=sampling_rate)
        except (ValueError, IndexError):  # a record it cannot process: no detections
            return np.zeros(0, dtype=np.int64)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


class ECGTask(Task):
    name = "ecg"
    config_class = ECGConfig
    module_class = SupervisedModule
    derived_keys = ("model.num_classes", "model.input_size", "model.vocab_size")

    def load_data(self, config: ECGConfig) -> ECGData_:
        d = config.data
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        records = {s: load_ecg(s, n, duration_s=d.duration_s) for s, n in sizes.items()}
        x = {s: torch.from_numpy(standardise(r.signals)) for s, r in records.items()}
        y = {s: torch.from_numpy(r.labels.astype(np.float32)) for s, r in records.items()}
        return ECGData_(records, x, y)

    def build_model(self, config: ECGConfig, data: ECGData_) -> SequenceTagger:
        return SequenceTagger(config.model)

    def train_loader(self, config: ECGConfig, data: ECGData_, rank: int, world: int):
        x, y = data.x["train"], data.y["train"]
        N, T = y.shape
        crop = round(config.data.crop_s * data.records["train"].sampling_rate)
        if not 1 <= crop <= T:
            raise ValueError(f"data.crop_s must give 1 to {T} samples, got {crop}")
        B, seed = config.trainer.batch_size, config.trainer.seed
        per_epoch = max(1, N * (T // crop) // B)  # batches: about one pass over the samples

        def plan(epoch: int) -> list[list[tuple[int, int]]]:
            rng = np.random.default_rng([seed, epoch])
            rec = rng.integers(0, N, size=(per_epoch, B))
            start = rng.integers(0, T - crop + 1, size=(per_epoch, B))
            return [list(zip(r.tolist(), s.tolist())) for r, s in zip(rec, start)]

        def collate(items: list[tuple[int, int]]) -> LabelledBatch:
            r = torch.as_tensor([i for i, _ in items])
            index = torch.as_tensor([s for _, s in items]).unsqueeze(1) + torch.arange(crop)
            rows = r.unsqueeze(1)  # (B, 1) against index (B, crop)
            return LabelledBatch(x[rows, index], None, y[rows, index])

        return ResumableLoader(plan, collate, rank=rank, world_size=world)

    def val_loader(self, config: ECGConfig, data: ECGData_, rank: int, world: int) -> BatchLoader:
        return array_loaders(data.x["valid"], data.y["valid"], batch_size=20, seed=0, rank=0,
                             world_size=1, train=False)  # fmt: skip

    def evaluate(
        self, model: SequenceTagger, config: ECGConfig, data: ECGData_, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        rec = data.records["test"]
        fs = rec.sampling_rate
        tol = TOLERANCE_S * fs
        prob = predict_in_batches(model.predict_proba, data.x["test"], batch_size=20).numpy()
        ours, classical = np.zeros(3, np.int64), np.zeros(3, np.int64)
        found_ours, found_nk = [], []
        for i, true in enumerate(rec.peaks):
            a = detect_peaks(prob[i], config.data.threshold, fs)
            b = neurokit_peaks(rec.signals[i], fs)
            ours += match_peaks(true, a, tol)
            classical += match_peaks(true, b, tol)
            found_ours.append(a)
            found_nk.append(b)
        k = int(np.argmax([len(p) for p in rec.peaks]))  # a fast heart: many peaks to show
        signal_with_peaks(
            rec.signals[k], fs,
            {"true R peaks": rec.peaks[k], "GRU tagger": found_ours[k],
             "neurokit2 detector": found_nk[k]},
            run_dir / "ecg.png", title=f"test record {k}", probability=prob[k],
        )  # fmt: skip
        return {
            "split": "test",
            "records": len(rec.peaks),
            "true_peaks": int(sum(len(p) for p in rec.peaks)),
            "tolerance_ms": TOLERANCE_S * 1000,
            "f1": f1_score(*ours),
            "tp_fp_fn": ours.tolist(),
            "baseline_neurokit_f1": f1_score(*classical),
            "baseline_neurokit_tp_fp_fn": classical.tolist(),
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test R-peak F1 (+-{metrics['tolerance_ms']:.0f} ms) {metrics['f1']:.4f} on "
            f"{metrics['records']} records ({metrics['true_peaks']} peaks); neurokit2's "
            f"classical detector {metrics['baseline_neurokit_f1']:.4f}"
        ]
