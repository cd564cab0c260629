"""The figures runs leave behind, drawn with matplotlib (Agg, no display needed).

Every function takes plain arrays, writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402 (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from ..datasets._cache import atomic_write_bytes  # noqa: E402


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` (atomically) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def loss_curve(
    history: Mapping[str, Mapping[int, float]],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "loss",
    baseline: tuple[str, float] | None = None,
) -> Path:
    """Training loss per step (thin) with its running mean, validation loss (dots).

    ``history`` is ``{"train": {step: loss}, "valid": {step: loss}}``; ``baseline`` an
    optional ``(label, value)`` drawn as a horizontal line.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    train = sorted(history.get("train", {}).items())
    if train:
        steps, losses = np.array(train).T
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8)
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, color="tab:blue", lw=1.5, label="train")
    valid = sorted(history.get("valid", {}).items())
    if valid:
        steps, losses = np.array(valid).T
        ax.plot(steps, losses, "o-", color="tab:orange", ms=3, label="validation")
    if baseline is not None:
        ax.axhline(baseline[1], color="gray", ls="--", lw=1, label=baseline[0])
    ax.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def forecast_plot(
    x: Sequence[float] | np.ndarray,
    series: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Several curves over the same x (truth first, then forecasts)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (label, y) in enumerate(series.items()):
        ax.plot(x, y, lw=1.6 if i == 0 else 1.0, color="black" if i == 0 else None, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def attention_maps(
    maps: Sequence[tuple[np.ndarray, Sequence[str], Sequence[str]]],
    path: str | Path,
    *,
    title: str,
) -> Path:
    """One heat map per ``(weights (T_out, T_in), input tokens, output tokens)``."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.6), squeeze=False)
    for ax, (w, src, tgt) in zip(axes[0], maps):
        ax.imshow(w, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(w.max()), 1e-9))
        ax.set_xticks(range(len(src)), [repr(s)[1:-1] for s in src], fontsize=7, rotation=90)
        ax.set_yticks(range(len(tgt)), list(tgt), fontsize=7)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    fig.suptitle(title)
    return save_figure(fig, path)


def signal_with_peaks(
    signal: np.ndarray,
    sampling_rate: int,
    marks: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    title: str,
    probability: np.ndarray | None = None,
) -> Path:
    """A signal with sets of sample indices marked on it (truth, detectors...), and an
    optional per-sample probability below."""
    rows = 2 if probability is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.6 * rows), sharex=True, squeeze=False)
    t = np.arange(len(signal)) / sampling_rate
    ax = axes[0, 0]
    ax.plot(t, signal, color="black", lw=0.7)
    symbols = ["v", "^", "x", "o"]
    for (label, idx), m in zip(marks.items(), symbols):
        idx = np.asarray(idx, dtype=np.int64)
        ax.plot(t[idx], signal[idx], m, ms=6, label=label, alpha=0.8)
    ax.set(ylabel="mV", title=title)
    ax.legend(loc="upper right", fontsize=8)
    if probability is not None:
        axes[1, 0].plot(t, probability, color="tab:purple", lw=0.8)
        axes[1, 0].set(ylabel="P(R peak)", ylim=(-0.05, 1.05))
    axes[-1, 0].set_xlabel("seconds")
    return save_figure(fig, path)
