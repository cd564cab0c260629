"""ecg: peak decoding and matching by hand, then the task end to end with a tiny budget,
its F1 recomputed from the counts and neurokit2's detector rescored independently."""

from __future__ import annotations

import numpy as np

from rnnkit.datasets.ecg import load_ecg
from rnnkit.tasks.ecg import detect_peaks, f1_score, match_peaks, neurokit_peaks
from rnnkit.training.run import train


def test_detect_peaks_takes_each_runs_most_probable_sample():
    p = np.zeros(200)
    p[10:14] = [0.6, 0.9, 0.7, 0.55]  # run 10..13, top at 11
    p[40:42] = [0.8, 0.95]  # 29 samples later: inside 250 ms at 250 Hz, the higher wins
    p[150] = 0.51
    assert detect_peaks(p, 0.5, 250).tolist() == [41, 150]
    assert detect_peaks(p, 0.5, 100).tolist() == [11, 41, 150]  # 29 samples = 290 ms


def test_matching_pairs_nearest_first_each_peak_once():
    assert match_peaks(np.array([100, 200]), np.array([98, 104, 330]), 5) == (1, 2, 1)
    assert match_peaks(np.array([100, 108]), np.array([104]), 5) == (1, 0, 1)
    assert match_peaks(np.array([]), np.array([]), 5) == (0, 0, 0)
    assert f1_score(8, 1, 1) == 16 / 18


def brute_force_tp(true: np.ndarray, found: np.ndarray, tol: float) -> int:
    """Maximum matching by trying every assignment (tiny inputs only)."""
    import itertools

    best = 0
    for perm in itertools.permutations(range(len(true)), min(len(true), len(found))):
        best = max(best, sum(abs(found[i] - true[j]) <= tol for i, j in enumerate(perm)))
    return best


def test_greedy_matching_is_maximal_on_sparse_peaks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        true = np.sort(rng.choice(np.arange(0, 400, 50), size=4, replace=False))
        found = true + rng.integers(-20, 21, size=4)
        assert match_peaks(true, found, 12.5)[0] == brute_force_tp(true, found, 12.5)


def test_ecg_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    m = train(
        "ecg",
        {"data.n_train": "8", "data.n_valid": "2", "data.n_test": "3", "data.duration_s": "6",
         "data.crop_s": "2", "trainer.max_steps": "10", "trainer.val_every_n_steps": "5",
         "trainer.checkpoint_every_n_steps": "5", "trainer.batch_size": "8",
         "model.encoder.hidden_size": "8", "model.encoder.num_layers": "1",
         "trainer.progress_bar": "false", "trainer.accelerator": "cpu"},
        run_dir=run, argv=["rnnkit"], echo=False,
    )["metrics"]  # fmt: skip
    assert m["f1"] == f1_score(*m["tp_fp_fn"])
    rec = load_ecg("test", 3, duration_s=6.0)
    assert m["true_peaks"] == sum(len(p) for p in rec.peaks)
    counts = np.zeros(3, dtype=int)
    for signal, true in zip(rec.signals, rec.peaks):
        found = neurokit_peaks(signal, 250)
        tp = brute_force_tp(true, found, 12.5) if len(found) <= 8 else match_peaks(
            true, found, 12.5)[0]  # fmt: skip
        counts += (tp, len(found) - tp, len(true) - tp)
    assert m["baseline_neurokit_tp_fp_fn"] == counts.tolist()
    assert (run / "ecg.png").read_bytes()[:4] == b"\x89PNG"
