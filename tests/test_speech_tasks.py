"""The trigger-word and digit-recognition tasks: event scoring and the energy baseline on
hand-made inputs, the CTC loss against exact labelling probabilities, end-to-end runs."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("lightning", reason="training needs lightning (pip install 'rnnkit[train]')")
pytest.importorskip("scipy", reason="the speech data needs scipy (pip install 'rnnkit[apps]')")

from rnnkit.ctc import collapse  # noqa: E402
from rnnkit.datasets import speech  # noqa: E402
from rnnkit.models import RecurrentEncoderConfig, SequenceTagger, TaggerConfig  # noqa: E402
from rnnkit.tasks.digits_asr import CTCBatch, ctc_loss  # noqa: E402
from rnnkit.tasks.trigger_word import (  # noqa: E402
    detect,
    energy_detect,
    event_scores,
    runs,
    true_events,
    tune_energy_detector,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng); the speech data needs it",
)


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory):
    """One cache folder for the module: the tiny splits are synthesised once."""
    return tmp_path_factory.mktemp("speech-cache")


TINY = {
    "trainer.max_steps": "4", "trainer.batch_size": "8", "trainer.val_every_n_steps": "2",
    "trainer.checkpoint_every_n_steps": "2", "trainer.progress_bar": "false",
    "trainer.logger": "none", "model.encoder.hidden_size": "8",
}  # fmt: skip


def test_runs_and_detections_exact():
    active = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert runs(active) == [(1, 3), (5, 6), (7, 10)]
    assert runs(active, bridge=1) == [(1, 3), (5, 10)]  # a one-step gap is bridged
    prob = np.where(active, 0.9, 0.1)
    np.testing.assert_array_equal(detect(prob, 0.5, 1), [1, 5])
    np.testing.assert_array_equal(true_events(np.array([4, -1])), [5])


def test_event_scores_match_each_trigger_once():
    found = [np.array([10, 12, 40]), np.array([], dtype=np.int64), np.array([7])]
    truth = [np.array([11]), np.array([30]), np.array([], dtype=np.int64)]
    # clip 0: 10 or 12 matches 11 (one of them only) and 40 is false; clip 1 misses 30;
    # clip 2 has a false alarm -> tp 1, fp 3, fn 1
    s = event_scores(found, truth, tolerance=2)
    assert s["tp_fp_fn"] == [1, 3, 1]
    assert s["precision"] == pytest.approx(0.25) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 * 1 / (2 * 1 + 3 + 1))


def test_energy_detector_finds_long_loud_runs_and_tuning_recovers_them():
    rng = np.random.default_rng(0)
    clips, truth = [], []
    for _ in range(6):
        e = rng.normal(0.0, 0.1, size=120)
        e[10:20] += 5.0  # a short word (10 steps)
        e[50:80] += 5.0  # the trigger (30 steps)
        clips.append(e)
        truth.append(np.array([80]))
    np.testing.assert_array_equal(energy_detect(clips[0], 2.0, 25, 40, 2), [80])
    np.testing.assert_array_equal(energy_detect(clips[0], 2.0, 5, 40, 2), [20, 80])
    best = tune_energy_detector(np.stack(clips), truth, tolerance=2, bridge=2)
    assert best["f1"] == 1.0 and best["d_min"] > 10 and best["d_max"] >= 30
    found = [energy_detect(e, best["delta"], best["d_min"], best["d_max"], 2) for e in clips]
    assert event_scores(found, truth, 2)["f1"] == 1.0


def _labelling_logp(log_probs: np.ndarray, label: list[int]) -> float:
    """log P(label | x) summed over every path of (T, V) log-probabilities."""
    T, V = log_probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        if collapse(path) == label:
            total += math.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
    return math.log(total)


@torch.no_grad()
def test_ctc_loss_is_the_mean_per_token_nll_over_all_alignments():
    torch.manual_seed(0)
    model = SequenceTagger(
        TaggerConfig(num_classes=3, input_size=2,
                     encoder=RecurrentEncoderConfig(cell="gru", hidden_size=4, bidirectional=True))
    ).double()  # fmt: skip
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    lengths = torch.tensor([5, 4])
    targets, target_lengths = torch.tensor([[1, 2, 2], [2, 0, 0]]), torch.tensor([3, 1])
    loss = ctc_loss(model, CTCBatch(x, lengths, targets, target_lengths))
    want = 0.0
    for b, label in enumerate(([1, 2, 2], [2])):
        n = int(lengths[b])
        lp = torch.log_softmax(model(x[b : b + 1, :n]), dim=2)[0].numpy()
        want += -_labelling_logp(lp, label) / len(label) / 2
    assert float(loss) == pytest.approx(want, rel=1e-9)


@needs_espeak
def test_trigger_word_end_to_end(tmp_path, monkeypatch, speech_cache):
    from rnnkit.training.run import evaluate, train

    monkeypatch.setenv("RNNKIT_CACHE", str(speech_cache))
    overrides = {**TINY, "data.n_train": "16", "data.n_valid": "8", "data.n_test": "8"}
    run = tmp_path / "run"
    metrics = train("trigger_word", overrides, run_dir=run, argv=["rnnkit"], echo=False)["metrics"]
    clips = speech.load_trigger_clips("test", 8)
    assert metrics["triggers"] == int((clips.events >= 0).sum())
    assert set(metrics["voices"]) <= {s.voice for s in speech.speakers("test")}
    b = metrics["baseline_energy"]
    assert b["tp_fp_fn"][0] + b["tp_fp_fn"][2] == metrics["triggers"]
    assert (run / "trigger.png").is_file()
    again = evaluate(run, echo=False)["metrics"]  # the saved model gives the same detections
    assert again["tp_fp_fn"] == metrics["tp_fp_fn"] and again["baseline_energy"] == b


@needs_espeak
@pytest.mark.parametrize("objective", ["ctc", "frames"])
def test_digits_asr_end_to_end(tmp_path, monkeypatch, speech_cache, objective):
    from rnnkit.training.run import evaluate, train

    monkeypatch.setenv("RNNKIT_CACHE", str(speech_cache))
    overrides = {**TINY, "data.n_train": "16", "data.n_valid": "8", "data.n_test": "8",
                 "data.objective": objective, "data.beam_size": "2"}  # fmt: skip
    run = tmp_path / "run"
    metrics = train("digits_asr", overrides, run_dir=run, argv=["rnnkit"], echo=False)["metrics"]
    utts = speech.load_digit_strings("test", 8)
    assert metrics["words"] == sum(len(d) for d in utts.digits)
    assert set(metrics["voices"]) <= {s.voice for s in speech.speakers("test")}
    assert metrics["objective"] == objective and (run / "posteriors.png").is_file()
    assert (metrics["wer_beam"] is None) == (objective == "frames")
    again = evaluate(run, echo=False)["metrics"]
    assert (again["wer_greedy"], again["wer_beam"]) == (metrics["wer_greedy"], metrics["wer_beam"])
