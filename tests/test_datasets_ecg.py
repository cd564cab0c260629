"""Simulated ECG: R peaks at the clean signal's maxima, exact label windows, cache."""

from __future__ import annotations

import numpy as np

from rnnkit.datasets.ecg import load_ecg, peak_windows


def test_label_windows_by_hand():
    labels = peak_windows(np.array([1, 7]), 10, 2)
    assert labels.tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1]


def test_records_peaks_labels_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    rec = load_ecg("test", 2, duration_s=4.0)
    assert rec.signals.shape == rec.clean.shape == rec.labels.shape == (2, 1000)
    for clean, labels, peaks in zip(rec.clean, rec.labels, rec.peaks):
        assert len(peaks) >= 3  # 50-110 bpm over 4 s
        for p in peaks:  # each peak is the clean signal's highest sample within 25 ms
            lo, hi = max(0, p - 6), min(len(clean), p + 7)
            assert clean[p] == clean[lo:hi].max()
        np.testing.assert_array_equal(labels, peak_windows(peaks, 1000, 5))  # 20 ms at 250 Hz
    assert not np.array_equal(rec.signals, rec.clean)  # the noise is there
    again = load_ecg("test", 2, duration_s=4.0)  # from the cache this time
    assert list(tmp_path.joinpath("ecg").glob("*.npz"))
    np.testing.assert_array_equal(again.signals, rec.signals)
    other = load_ecg("train", 1, duration_s=4.0)
    assert not np.array_equal(other.signals[0], rec.signals[0])  # splits never share a record
