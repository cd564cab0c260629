"""Log-mel features against torch's STFT, the filterbank's formula and a pure tone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.audio import (
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
    stack_frames,
)


def test_mel_scale_is_htk_and_invertible():
    assert hz_to_mel(700.0) == pytest.approx(2595.0 * np.log10(2.0))
    assert hz_to_mel(0.0) == 0.0
    f = np.array([20.0, 440.0, 1000.0, 7999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12)


def test_power_spectrogram_equals_torch_stft():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000)
    # 25 ms at 16 kHz = 400 samples, hop 160; with n_fft = 400 torch does not pad the window
    ours = power_spectrogram(x, 16000, win_ms=25, hop_ms=10, n_fft=400)
    spec = torch.stft(
        torch.from_numpy(x),
        n_fft=400,
        hop_length=160,
        window=torch.hann_window(400, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    )  # (K, T)
    expected = spec.abs().pow(2).T.numpy()
    assert ours.shape == expected.shape == (1 + (4000 - 400) // 160, 201)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)


def test_filterbank_matches_its_formula_bin_by_bin():
    n_mels, n_fft, sr, fmin, fmax = 4, 64, 8000, 100.0, 3500.0
    bank = mel_filterbank(n_mels, n_fft, sr, fmin=fmin, fmax=fmax)
    lo, hi = 2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700)
    edges = [700 * (10 ** ((lo + (hi - lo) * i / (n_mels + 1)) / 2595) - 1) for i in range(6)]
    for j in range(n_mels):
        left, centre, right = edges[j], edges[j + 1], edges[j + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left <= f <= centre:
                want = (f - left) / (centre - left)
            elif centre < f <= right:
                want = (right - f) / (right - centre)
            else:
                want = 0.0
            assert bank[j, k] == pytest.approx(want, abs=1e-12)
    # between the first and the last centre, neighbouring triangles add up to 1
    f = np.arange(n_fft // 2 + 1) * sr / n_fft
    inside = (f >= edges[1]) & (f <= edges[n_mels])
    np.testing.assert_allclose(bank[:, inside].sum(axis=0), 1.0, atol=1e-12)


def test_a_pure_tone_lights_the_band_centred_nearest_to_it():
    sr, n_mels = 16000, 40
    t = np.arange(sr) / sr
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(sr / 2), n_mels + 2))
    for tone in (300.0, 1000.0, 3000.0):
        features = log_mel(np.sin(2 * np.pi * tone * t), sr, n_mels=n_mels)
        assert features.dtype == np.float32
        expected = int(np.argmin(np.abs(edges[1:-1] - tone)))
        assert set(features.argmax(axis=1).tolist()) == {expected}


def test_stack_frames_exact():
    x = np.arange(14.0).reshape(7, 2)
    np.testing.assert_array_equal(stack_frames(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    np.testing.assert_array_equal(stack_frames(x, 1), x)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="signal must be a 1-D float array"):
        log_mel(np.zeros((2, 100)), 16000)
    with pytest.raises(TypeError, match="signal must be a NumPy array"):
        log_mel([0.0] * 1000, 16000)
    with pytest.raises(ValueError, match="hop_ms must be a positive number"):
        power_spectrogram(np.zeros(1000), 16000, hop_ms=0)
    with pytest.raises(ValueError, match="n_fft must be >= the window of 400"):
        power_spectrogram(np.zeros(1000), 16000, n_fft=256)
    with pytest.raises(ValueError, match="need 0 <= fmin < fmax"):
        mel_filterbank(40, 512, 16000, fmin=9000.0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        stack_frames(np.zeros((4, 2)), 0)
