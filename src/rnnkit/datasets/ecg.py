"""Simulated ECG records with exact R-peak positions, for per-sample R-peak tagging.

Each record is made in three steps:

1. ``neurokit2.ecg_simulate(method="ecgsyn")`` draws a clean ECG (McSharry et al. 2003) at a
   heart rate drawn uniformly from 50-110 bpm;
2. the R peaks are found on the *clean* signal (``neurokit2.ecg_peaks``, each then moved to
   the highest sample within +-25 ms), so they are the truth, not a detector's guess; the
   clean signal is simulated 1 s longer at either end and cut after the peaks are found, so
   that beats at the record's ends are found too;
3. noise is added: ``neurokit2.signal_distort`` (Laplace noise at 5, 10 and 100 Hz with an
   amplitude drawn from ``noise``, 50 Hz powerline, muscle-like artifacts) plus a baseline
   wander of three slow sinusoids (0.05-0.5 Hz).

The label of sample t is 1 when t lies within ``window_ms`` of an R peak, else 0.

Record i of a split is seeded by ``numpy.random.SeedSequence([split number, i])``, so train,
validation and test never share a record. Simulation takes about 0.1 s per 10-s record, so
each (split, settings) set is cached once as ``<cache>/ecg/<key>.npz`` next to its sha256,
which is checked on every load.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

import numpy as np

from ._cache import atomic_write_bytes, cache_dir, sha256_file, verify_sha256
from ._deps import require

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ECGRecords:
    """N records of T samples: ``signals`` (N, T) float32 noisy ECG in mV, ``clean`` (N, T)
    float32, ``labels`` (N, T) uint8 R-peak windows, ``peaks`` N arrays of R-peak sample
    indices, and the ``sampling_rate`` in Hz."""

    signals: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    peaks: list[np.ndarray]
    sampling_rate: int


def _nk():
    return require("neurokit2", package="neurokit2", needed_for="the ECG dataset")


def true_r_peaks(clean: np.ndarray, sampling_rate: int) -> np.ndarray:
    """R-peak sample indices of a clean ECG: neurokit2's detector, each peak then moved to
    the signal's maximum within +-25 ms (the detector may sit a sample or two off the top)."""
    nk = _nk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns about short signals; they are fine
        _, info = nk.ecg_peaks(clean, sampling_rate=sampling_rate, correct_artifacts=False)
    half = max(1, round(0.025 * sampling_rate))
    out = []
    for p in np.asarray(info["ECG_R_Peaks"], dtype=np.int64):
        lo, hi = max(0, p - half), min(len(clean), p + half + 1)
        out.append(lo + int(np.argmax(clean[lo:hi])))
    return np.unique(np.asarray(out, dtype=np.int64))


def peak_windows(peaks: np.ndarray, length: int, half_width: int) -> np.ndarray:
    """(length,) uint8: 1 within ``half_width`` samples of any peak, else 0."""
    labels = np.zeros(length, dtype=np.uint8)
    for p in peaks:
        labels[max(0, p - half_width) : min(length, p + half_width + 1)] = 1
    return labels


def simulate_record(
    seed: np.random.SeedSequence,
    *,
    duration_s: float,
    sampling_rate: int,
    noise: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One record ``(noisy, clean, r_peaks)`` (see the module docstring)."""
    nk = _nk()
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=2)
    n, margin = round(duration_s * sampling_rate), sampling_rate  # 1 s on either side
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        longer = nk.ecg_simulate(
            duration=duration_s + 2.0,
            sampling_rate=sampling_rate,
            noise=0.0,
            heart_rate=float(rng.uniform(50.0, 110.0)),
            heart_rate_std=3.0,
            method="ecgsyn",
            random_state=int(seeds[0]),
        )
    # peaks are found on the longer signal, so a beat at either end of the record is not
    # missed for lack of context, then both are cut to the record
    peaks = true_r_peaks(longer, sampling_rate) - margin
    peaks = peaks[(peaks >= 0) & (peaks < n)]
    clean = np.asarray(longer[margin : margin + n])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        amplitude = float(rng.uniform(*noise))
        noisy = nk.signal_distort(
            clean,
            sampling_rate=sampling_rate,
            noise_shape="laplace",
            noise_amplitude=amplitude,
            noise_frequency=[5, 10, 100],
            powerline_amplitude=float(rng.uniform(0.0, 0.2)),
            artifacts_amplitude=amplitude,
            artifacts_number=5,
            random_state=int(seeds[1]),
            silent=True,
        )
    t = np.arange(len(clean)) / sampling_rate
    wander = sum(
        rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 7))
        for _ in range(3)
    )
    return np.asarray(noisy + wander, np.float32), np.asarray(clean, np.float32), peaks


def load_ecg(
    split: str,
    n_records: int,
    *,
    duration_s: float = 10.0,
    sampling_rate: int = 250,
    noise: tuple[float, float] = (0.25, 3.0),
    window_ms: float = 20.0,
) -> ECGRecords:
    """The first ``n_records`` records of ``split`` (simulated once, then read from the cache)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n_records, bool) or not isinstance(n_records, int) or n_records < 1:
        raise ValueError(f"n_records must be a positive int, got {n_records!r}")
    settings = {
        "format": FORMAT_VERSION,
        "split": split,
        "n": n_records,
        "duration_s": float(duration_s),
        "sampling_rate": int(sampling_rate),
        "noise": [float(noise[0]), float(noise[1])],
    }
    key = (
        f"{split}-n{n_records}-{duration_s:g}s-{sampling_rate}hz-noise{noise[0]:g}-{noise[1]:g}"
        f"-v{FORMAT_VERSION}"
    )
    path = cache_dir("ecg") / f"{key}.npz"
    digest_path = path.with_suffix(".sha256")
    if path.exists() and digest_path.exists():
        verify_sha256(path, digest_path.read_text().strip())
        with np.load(path) as z:
            signals, clean = z["signals"], z["clean"]
            peaks = [z[f"peaks_{i}"] for i in range(n_records)]
    else:
        _nk()
        records = [
            simulate_record(
                np.random.SeedSequence([SPLITS.index(split), i]),
                duration_s=duration_s,
                sampling_rate=sampling_rate,
                noise=noise,
            )
            for i in range(n_records)
        ]
        signals = np.stack([r[0] for r in records])
        clean = np.stack([r[1] for r in records])
        peaks = [r[2] for r in records]
        buffer = io.BytesIO()
        arrays = {f"peaks_{i}": p for i, p in enumerate(peaks)}
        np.savez(buffer, signals=signals, clean=clean, settings=json.dumps(settings), **arrays)
        atomic_write_bytes(path, buffer.getvalue())
        atomic_write_bytes(digest_path, sha256_file(path).encode())
    half = round(window_ms / 1000 * sampling_rate)
    labels = np.stack([peak_windows(p, signals.shape[1], half) for p in peaks])
    return ECGRecords(signals, clean, labels, peaks, int(sampling_rate))
