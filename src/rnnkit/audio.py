r"""Log-mel spectrograms in NumPy: the speech tasks' features.

For a signal x sampled at ``sample_rate`` Hz:

1. frames: x cut into frames of N_w = ``win_ms`` ms every N_h = ``hop_ms`` ms (the last
   partial frame dropped), each multiplied by a periodic Hann window w;
2. power spectrum: P_t(k) = |Σ_n w(n) x_t(n) e^{-2πi kn / N}|² for k = 0..N/2 (N = ``n_fft``
   >= N_w, the frame zero-padded);
3. mel filterbank: M triangular filters with centres equally spaced on the mel scale
   m(f) = 2595 log10(1 + f / 700) (the HTK formula) between ``fmin`` and ``fmax``; filter j
   rises linearly from 0 at centre j-1 to 1 at centre j and falls back to 0 at centre j+1
   (in Hz, as HTK), so between two centres the two filters sum to 1;
4. log: L_t(j) = ln(Σ_k F_j(k) P_t(k) + ε).

Shapes: a signal is (S,) samples; a spectrogram (T, N/2+1); log-mel features (T, M).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-10


def _check_signal(signal: object) -> np.ndarray:
    if not isinstance(signal, np.ndarray):
        raise TypeError(f"signal must be a NumPy array, got {type(signal).__name__}")
    if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.floating):
        raise ValueError(
            f"signal must be a 1-D float array (S,), got dtype {signal.dtype} and shape "
            f"{signal.shape}"
        )
    return signal.astype(np.float64, copy=False)


def _samples(name: str, ms: float, sample_rate: int) -> int:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0:
        raise ValueError(f"{name} must be a positive number of milliseconds, got {ms!r}")
    n = round(ms * sample_rate / 1000)
    if n < 1:
        raise ValueError(f"{name}={ms} ms is shorter than one sample at {sample_rate} Hz")
    return n


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """m(f) = 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`: f = 700 (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, *, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """(M, N/2+1) triangular filters F_j(k) over the FFT bins' frequencies k·sr/N."""
    for name, value in (("n_mels", n_mels), ("n_fft", n_fft), ("sample_rate", sample_rate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= fmin < fmax <= sample_rate/2 = {sample_rate / 2}, got fmin={fmin}, "
            f"fmax={fmax}"
        )
    # M + 2 edges: the centres of filters 1..M and the two outer feet
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (M+2,)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (K,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))  # (M, K)


def power_spectrogram(
    signal: np.ndarray,
    sample_rate: int,
    *,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
) -> np.ndarray:
    """(T, N/2+1) power spectrum P_t(k) of Hann-windowed frames (module docstring)."""
    x = _check_signal(signal)
    win = _samples("win_ms", win_ms, sample_rate)
    hop = _samples("hop_ms", hop_ms, sample_rate)
    if n_fft < win:
        raise ValueError(f"n_fft must be >= the window of {win} samples, got {n_fft}")
    T = 0 if x.shape[0] < win else 1 + (x.shape[0] - win) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann (N_w,)
    starts = np.arange(T) * hop
    frames = x[starts[:, None] + np.arange(win)] * window  # (T, N_w)
    return np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2  # (T, K)


def log_mel(
    signal: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int = 512,
    fmin: float = 20.0,
    fmax: float | None = None,
) -> np.ndarray:
    """(T, M) float32 log-mel energies L_t(j) (module docstring)."""
    power = power_spectrogram(signal, sample_rate, win_ms=win_ms, hop_ms=hop_ms, n_fft=n_fft)
    bank = mel_filterbank(n_mels, n_fft, sample_rate, fmin=fmin, fmax=fmax)  # (M, K)
    return np.log(power @ bank.T + EPS).astype(np.float32)  # (T, M)


def stack_frames(features: np.ndarray, k: int) -> np.ndarray:
    """(T, M) -> (T // k, k·M): k consecutive frames side by side (a lower frame rate, as
    low-frame-rate acoustic models do); trailing frames that do not fill a group are dropped."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (T, M), got {features!r:.60}")
    T = features.shape[0] // k
    return features[: T * k].reshape(T, k * features.shape[1])
