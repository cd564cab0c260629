"""adding and copy end to end with a tiny budget and short sequences: each metric recomputed
from the saved model on test data generated again, the baselines from their formulas, and the
trained model clearly past them; the TCN reach check against gradients; bad settings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cli_checks import fails
from rnnkit.cli import main
from rnnkit.models import load_model
from rnnkit.tasks.long_range import check_reach
from rnnkit.tasks.synthetic import adding_problem, copy_memory
from rnnkit.tcn import TCNEncoder, TCNEncoderConfig
from rnnkit.training.config import ConfigError
from rnnkit.training.run import train

SIZES = {"data.train_size": "2000", "data.valid_size": "200", "data.test_size": "300",
         "trainer.progress_bar": "false", "trainer.accelerator": "cpu"}  # fmt: skip


def run_task(task: str, tmp_path, steps: int, **overrides: str) -> dict:
    run = tmp_path / "run"
    every = str(steps // 2)
    settings = {**SIZES, "trainer.max_steps": str(steps), "trainer.val_every_n_steps": every,
                "trainer.checkpoint_every_n_steps": every, **overrides}  # fmt: skip
    result = train(task, settings, run_dir=run, argv=["rnnkit"], echo=False)
    assert json.loads((run / "metrics.json").read_text()) == result
    return result["metrics"]


@pytest.mark.parametrize(
    "encoder",
    [
        # a TCN of kernel 8 whose 2 blocks see 43 steps, and a GRU chosen by cell name
        {"model.encoder.num_layers": "2", "model.encoder.hidden_size": "16", "optim.lr": "5e-3"},
        {"model.encoder.type": "recurrent", "model.encoder.cell": "gru",
         "model.encoder.hidden_size": "24", "optim.lr": "1e-2"},
    ],
    ids=["tcn", "gru"],
)  # fmt: skip
def test_adding_learns_below_predicting_one(tmp_path, encoder):
    T, seed = 20, 4
    steps = 400 if "model.encoder.type" not in encoder else 300
    m = run_task("adding", tmp_path, steps, **{"data.seq_len": str(T), "data.seed": str(seed)},
                 **encoder)  # fmt: skip

    x, y = adding_problem(300, T, seed=seed + 2)  # the test split
    model = load_model(tmp_path / "run" / "model")
    with torch.no_grad():
        pred = model(x)[:, 0, 0]
    assert math.isclose(m["mse"], float(torch.mean((pred - y) ** 2)), rel_tol=1e-5)
    assert m["baseline_predict_one_mse"] == 2 / 12  # Var(u1 + u2), u ~ U(0, 1)
    assert math.isclose(m["baseline_predict_one_mse_test"], float(torch.mean((y - 1) ** 2)),
                        rel_tol=1e-6)  # fmt: skip
    assert m["mse"] < m["baseline_predict_one_mse"] / 4


def test_copy_tcn_recalls_the_digits(tmp_path):
    T, seed = 10, 0
    m = run_task("copy", tmp_path, 200, **{"data.seq_len": str(T), "data.seed": str(seed),
                 "model.encoder.num_layers": "2", "model.encoder.hidden_size": "16",
                 "optim.lr": "5e-3"})  # fmt: skip

    x, y = copy_memory(300, T, seed=seed + 2)
    model = load_model(tmp_path / "run" / "model")
    with torch.no_grad():
        log_p = torch.log_softmax(model(x).double(), dim=-1)  # (N, T + 20, 10)
    nll = -log_p.gather(2, y.unsqueeze(2)).squeeze(2)  # (N, T + 20)
    assert math.isclose(m["cross_entropy"], float(nll.mean()), rel_tol=1e-5)
    recall = (log_p[:, -10:].argmax(-1) == y[:, -10:]).double().mean()
    assert m["recall_accuracy"] == pytest.approx(float(recall), abs=1e-12)
    # no memory: sure of the blank for T + 10 steps, 1/8 on each of the 10 digits
    assert m["baseline_memoryless_cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20))
    assert m["baseline_chance_recall_accuracy"] == 1 / 8
    assert m["cross_entropy"] < m["baseline_memoryless_cross_entropy"] / 2
    assert m["recall_accuracy"] > 4 * m["baseline_chance_recall_accuracy"]


def gradient_reach(config: TCNEncoderConfig, T: int) -> int:
    """How many steps back from the last output the input still changes it (by autograd)."""
    torch.manual_seed(0)
    encoder = TCNEncoder(config, 2)
    x = torch.randn(1, T, 2, requires_grad=True)
    encoder(x)[0, -1].sum().backward()
    seen = torch.nonzero(x.grad[0].abs().sum(1)).flatten()
    return T - 1 - int(seen.min())


@pytest.mark.parametrize(
    "kernel_size, num_layers, causal", [(2, 2, True), (3, 3, True), (8, 2, True), (3, 3, False)]
)
def test_tcn_reach_check_matches_the_gradient(kernel_size, num_layers, causal):
    # tanh: no unit is dead, so every input inside the receptive field has a gradient
    config = TCNEncoderConfig(hidden_size=4, num_layers=num_layers, kernel_size=kernel_size,
                              causal=causal, activation="tanh")  # fmt: skip
    reach = gradient_reach(config, 200)
    check_reach(config, reach)
    with pytest.raises(ConfigError, match="raise model.encoder.num_layers"):
        check_reach(config, reach + 1)


@pytest.mark.parametrize(
    "task, setting, message",
    [
        ("adding", "--data.seq_len=1", "data.seq_len must be >= 2 (two steps are marked), got 1"),
        ("copy", "--data.seq_len=0", "data.seq_len must be >= 1, got 0"),
        ("copy", "--data.train_size=0", "data.train_size must be >= 1, got 0"),
        ("copy", "--model.encoder.cell=lstm", "unknown config key 'model.encoder.cell'"),
    ],
)
def test_bad_settings_name_the_key(capsys, tmp_path, task, setting, message):
    fails(capsys, ["train", task, setting, "--run", str(tmp_path / "r")], message)


def test_paper_length_needs_a_deeper_tcn(capsys, tmp_path):
    fails(capsys, ["train", "copy", "--data.seq_len=1000", "--run", str(tmp_path / "r")],
          "model.encoder: the TCN's receptive field (883 steps: kernel 8, 6 blocks) does not "
          "reach back the 1010 steps data.seq_len needs")  # fmt: skip


def test_help_lists_the_tasks(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("adding", "copy", "next_frame"):
        assert f"\n  {name} " in out, out
