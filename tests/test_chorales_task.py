"""The chorales task: the piano-roll model against its formula and its own step-by-step
generation, the conditioning label's effect, an end-to-end run and `rnnkit compose`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("music21", reason="the chorales need music21 (pip install 'rnnkit[apps]')")
pytest.importorskip("lightning", reason="training needs lightning (pip install 'rnnkit[train]')")

from rnnkit.datasets import chorales as ch  # noqa: E402
from rnnkit.models import RecurrentEncoderConfig, load_model  # noqa: E402
from rnnkit.tasks.chorales import (  # noqa: E402
    PianoRollConfig,
    PianoRollModel,
    compose_main,
    independent_keys_nll,
)


def _model(cell: str = "gru", hidden: int = 16) -> PianoRollModel:
    return PianoRollModel(
        PianoRollConfig(encoder=RecurrentEncoderConfig(cell=cell, hidden_size=hidden))
    ).double()


@torch.no_grad()
def test_frame_nll_is_the_bernoulli_nll_of_each_frame_given_the_ones_before():
    torch.manual_seed(0)
    model = _model("lstm")
    frames = (torch.rand(2, 6, 88, dtype=torch.float64) < 0.1).double()
    labels = torch.tensor([0, 1])
    nll = model.frame_nll(frames, torch.tensor([6, 4]), labels=labels)
    for b in range(2):
        n = 6 if b == 0 else 4
        state = None
        previous = torch.zeros(1, 1, 88, dtype=torch.float64)  # x^<0> = 0
        for t in range(n):  # one step at a time, carrying the state
            logits, state = model(previous, labels=labels[b : b + 1], state=state)
            p = torch.sigmoid(logits[0, 0])
            x = frames[b, t]
            want = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum()
            assert float(nll[b, t]) == pytest.approx(float(want), rel=1e-9)
            previous = frames[b : b + 1, t : t + 1]
        assert torch.all(nll[b, n:] == 0)
    loss = model.loss(frames, torch.tensor([6, 4]), labels=labels)
    assert float(loss) == pytest.approx(float(nll.sum()) / 10, rel=1e-12)


def test_sampling_is_seeded_per_piece_and_follows_the_model():
    torch.manual_seed(0)
    model = _model()
    labels = torch.tensor([0, 1, 1])
    batch = model.sample(5, labels=labels, seed=7)
    alone = model.sample(5, labels=labels[2:], seed=9)  # piece 2 of the batch drew seed 7 + 2
    torch.testing.assert_close(batch[2:], alone, rtol=0, atol=0)
    # at temperature -> 0 a draw is the arg max: keys with p > 1/2 on, the rest off
    cold = model.sample(4, labels=labels, temperature=1e-6, seed=0)
    previous = F.pad(cold[:, :-1], (0, 0, 1, 0))
    logits, _ = model(previous, labels=labels)
    torch.testing.assert_close(cold, (logits > 0).double(), rtol=0, atol=0)


def test_independent_keys_baseline_exact():
    train = [np.zeros((3, 88), bool), np.zeros((1, 88), bool)]
    train[0][:, 0] = True  # key 0 on in 3 of 4 frames: p = (3 + 1) / (4 + 2)
    test = [np.zeros((3, 88), bool)]
    test[0][1:, 0] = [True, False]  # frames 2..3 are scored: key 0 on once, off once
    p0, p_other = 4 / 6, 1 / 6
    want = (-math.log(p0) - math.log(1 - p0) - 2 * 87 * math.log(1 - p_other)) / 2
    assert independent_keys_nll(train, test) == pytest.approx(want, rel=1e-12)


def _progression(chords: list[list[int]]) -> np.ndarray:
    roll = np.zeros((2 * len(chords), 88), dtype=bool)
    for i, c in enumerate(chords):
        roll[2 * i : 2 * i + 2, [m - ch.LOWEST_MIDI for m in c]] = True
    return roll


def test_the_mode_label_steers_what_is_generated():
    # a major and a minor progression learnt by heart: only the label says which to play, and
    # music21's analysis of what comes out must name the mode asked for (chance: 1 in 2^6)
    C, F_, G = [48, 64, 67, 72], [53, 65, 69, 72], [55, 62, 67, 71]
    Am, Dm, E = [45, 64, 69, 72], [50, 65, 69, 74], [52, 64, 68, 71]
    major = _progression([C, F_, G, C, Am, F_, G, C])
    minor = _progression([Am, Dm, E, Am, F_, Dm, E, Am])
    assert [ch.key_of(major).mode, ch.key_of(minor).mode] == ["major", "minor"]
    torch.manual_seed(0)
    frames = torch.from_numpy(np.stack([major, minor]).astype(np.float32))
    labels = torch.tensor([0, 1])
    model = PianoRollModel(
        PianoRollConfig(encoder=RecurrentEncoderConfig(cell="gru", hidden_size=32))
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        opt.zero_grad()
        model.loss(frames, labels=labels).backward()
        opt.step()
    for label, mode in enumerate(ch.MODES):
        for roll in model.sample(16, labels=torch.full((3,), label), seed=label).numpy():
            assert ch.key_of(roll.astype(bool)).mode == mode


def test_end_to_end_run_evaluate_and_compose(tmp_path, monkeypatch, capsys):
    from rnnkit.training.run import evaluate, train

    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    overrides = {
        "data.limit": "3", "data.generate": "1", "data.generate_frames": "6",
        "trainer.max_steps": "6", "trainer.batch_size": "3", "trainer.val_every_n_steps": "3",
        "trainer.checkpoint_every_n_steps": "3", "trainer.progress_bar": "false",
        "trainer.logger": "none", "model.encoder.hidden_size": "8",
    }  # fmt: skip
    result = train("chorales", overrides, run_dir=run, argv=["rnnkit"], echo=False)
    metrics = result["metrics"]
    data = {s: ch.load_chorales(s, limit=3) for s in ch.SPLITS}
    assert metrics["baseline_independent_keys_nll"] == pytest.approx(
        independent_keys_nll(data["train"].rolls, data["test"].rolls), rel=1e-12
    )
    assert metrics["frames"] == sum(len(r) - 1 for r in data["test"].rolls)
    # the saved model reproduces the test NLL; the figures and pieces are there
    assert evaluate(run, echo=False)["metrics"]["nll_per_frame"] == pytest.approx(
        metrics["nll_per_frame"], rel=1e-6
    )
    assert json.loads((run / "metrics.json").read_text())["metrics"]["chorales"] == 3
    for mode in ch.MODES:
        for suffix in (".mid", ".musicxml", ".png"):
            assert (run / "samples" / f"chorale-{mode}{suffix}").is_file()

    out = tmp_path / "composed"
    assert compose_main([str(run), "--mode", "minor", "--count", "2", "--frames", "6",
                         "--seed", "3", "--out", str(out)]) == 0  # fmt: skip
    model = load_model(run / "model")
    expected = model.sample(6, labels=torch.ones(2, dtype=torch.int64), seed=3 + 1000)
    for i in range(2):  # valid MIDI: music21 reads back exactly the sampled roll
        roll = expected[i].numpy().astype(bool)
        sounding = np.flatnonzero(roll.any(axis=1))
        back = ch.read_roll(out / f"chorale-minor-{i}.mid")
        np.testing.assert_array_equal(back, roll[: sounding[-1] + 1 if sounding.size else 0])
    assert "analysed key" in capsys.readouterr().out
    assert compose_main([str(tmp_path / "missing")]) == 2
