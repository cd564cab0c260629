"""The tasks ``rnnkit train`` knows, by name, imported only when used.

A task module registers itself here with ``register_task(name, "module:Class")``; listing the
tasks imports none of them (so ``rnnkit --help`` stays fast and a missing optional
dependency only matters to the task that needs it).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

_TASKS: dict[str, tuple[str, str]] = {
    "charlm": (
        "rnnkit.tasks.charlm:CharLMTask",
        "character language model on Shakespeare's works; nats and bits per character",
    ),
    "sentiment": (
        "rnnkit.tasks.sentiment:SentimentTask",
        "movie-review sentences (VADER's data), positive or negative; accuracy",
    ),
    "sunspots": (
        "rnnkit.tasks.sunspots:SunspotsTask",
        "monthly sunspot numbers 1749-2009; RMSE 1 and 12 months ahead",
    ),
    "dates": (
        "rnnkit.tasks.dates:DatesTask",
        "dates in 16 languages and 4 styles -> ISO 8601, seq2seq with attention; exact match",
    ),
    "digits": (
        "rnnkit.tasks.digits:DigitsTask",
        "8x8 handwritten digits read row by row (scikit-learn); accuracy",
    ),
    "ecg": (
        "rnnkit.tasks.ecg:ECGTask",
        "R-peak detection in noisy simulated ECG (neurokit2); F1 at +-50 ms",
    ),
    "chorales": (
        "rnnkit.tasks.chorales:ChoralesTask",
        "Bach chorales (music21) as piano rolls, next frame given the mode; NLL per frame",
    ),
    "trigger_word": (
        "rnnkit.tasks.trigger_word:TriggerWordTask",
        "hear 'activate' in espeak-ng speech over noise, unseen voices; event F1",
    ),
    "digits_asr": (
        "rnnkit.tasks.digits_asr:DigitsASRTask",
        "spoken digit strings (espeak-ng, unseen voices), bidirectional GRU + CTC; WER",
    ),
    "captioning": (
        "rnnkit.tasks.captioning:CaptioningTask",
        "caption images of 8x8 digits, CNN encoder + attentive GRU decoder; exact match, BLEU",
    ),
    "adding": (
        "rnnkit.tasks.long_range:AddingTask",
        "adding problem (Bai et al. 2018), TCN or RNN; test MSE against predicting 1 (1/6)",
    ),
    "copy": (
        "rnnkit.tasks.long_range:CopyTask",
        "copy memory (Bai et al. 2018), TCN or RNN; cross-entropy per step, recall accuracy",
    ),
    "next_frame": (
        "rnnkit.tasks.next_frame:NextFrameTask",
        "next frame of moving 8x8 digits, ConvLSTM or FC-LSTM; BCE and MSE per frame",
    ),
}


class UnknownTaskError(ValueError):
    """A task name ``rnnkit`` does not know."""


def register_task(name: str, target: str, summary: str) -> None:
    """Make ``rnnkit train name`` run the task class ``target`` (``"package.module:Class"``);
    ``summary`` is its line in ``rnnkit train --help``."""
    if ":" not in target:
        raise ValueError(f"target must be 'module:Class', got {target!r}")
    _TASKS[name] = (target, summary)


def task_names() -> list[str]:
    """The registered task names, in registration order."""
    return list(_TASKS)


def task_summaries() -> dict[str, str]:
    """``{name: one-line summary}`` without importing any task."""
    return {name: summary for name, (_, summary) in _TASKS.items()}


def get_task(name: str) -> Any:
    """A fresh instance of the task registered as ``name``."""
    if name not in _TASKS:
        hint = difflib.get_close_matches(name, list(_TASKS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UnknownTaskError(f"unknown task {name!r}{extra}; known tasks: {', '.join(_TASKS)}")
    module_name, _, class_name = _TASKS[name][0].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
