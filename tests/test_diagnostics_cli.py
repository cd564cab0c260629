"""``rnnkit gradflow`` on a tiny size: its table, JSON and PNG hold the numbers that
gradient_flow gives for the same models and input; a checkpoint comes back with its weights."""

from __future__ import annotations

import json
import re

import matplotlib.image
import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.diagnostics import gradient_flow, load_recurrent
from rnnkit.diagnostics.cli import gradflow_main

T, B, I, H, SEED = 6, 2, 2, 3, 5


def _direct(layer):
    """The command's documented input and loss, rebuilt here."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    v = torch.randn(layer.output_size, generator=g, dtype=torch.float64)
    v = v / v.norm()
    return gradient_flow(layer, x, lambda out: (out[0][-1] @ v).mean())


def _table_numbers(md: str) -> dict[str, list[float]]:
    rows = {}
    for line in md.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = [float(c) if re.match(r"^-?\d", c) else None for c in cells[2:]]
    return rows


def test_gradflow_png_table_and_json_hold_the_measurements(tmp_path):
    argv = [
        "--cells",
        "rnn,lstm,rnn@1.5",
        "--T",
        str(T),
        "--hidden-size",
        str(H),
        "--input-size",
        str(I),
        "--batch-size",
        str(B),
        "--seed",
        str(SEED),
        "--lags",
        "0,2,5",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert gradflow_main(argv) == 0

    expected = {}
    for spec, cell in [("rnn", rnnkit.ElmanCell), ("lstm", rnnkit.LSTMCell)]:
        torch.manual_seed(SEED)
        expected[spec] = _direct(rnnkit.Recurrent(cell, I, H).double())
    torch.manual_seed(SEED)
    scaled = rnnkit.Recurrent(rnnkit.ElmanCell, I, H).double()
    with torch.no_grad():  # W_aa rescaled to spectral radius 1.5
        W = scaled.cells[0].weight_hh
        W *= 1.5 / np.abs(np.linalg.eigvals(W.numpy())).max()
    expected["rnn@1.5"] = _direct(scaled)

    data = json.loads((tmp_path / "gradflow.json").read_text())
    for spec in ("rnn", "lstm", "rnn@1.5"):
        flow = expected[spec]
        assert torch.allclose(
            torch.tensor(data[spec]["grad_norm"], dtype=torch.float64), flow.grad_norm, rtol=1e-12
        )
        assert torch.allclose(
            torch.tensor(data[spec]["jacobian_product_norm_mean"], dtype=torch.float64),
            flow.jacobian_product_norm.mean(1),
            rtol=1e-12,
        )
    assert data["rnn@1.5"]["spectra"]["l0"]["spectral_radius"] == pytest.approx(1.5, abs=1e-12)
    assert data["rnn"]["spectra"]["l0"]["spectral_radius"] == pytest.approx(
        expected["rnn"].spectra["l0"].spectral_radius, abs=1e-12
    )

    rows = _table_numbers((tmp_path / "gradflow.md").read_text())
    for spec in ("rnn", "lstm"):
        by_lag = expected[spec].by_lag(expected[spec].grad_norm[0])
        lag0, lag2, lag5, ratio, mean_j, rho = rows[spec]
        assert [lag0, lag2, lag5] == pytest.approx(
            [float(by_lag[0]), float(by_lag[2]), float(by_lag[5])], rel=1e-3
        )
        assert ratio == pytest.approx(float(by_lag[5] / by_lag[0]), rel=1e-3)
        assert mean_j == pytest.approx(float(expected[spec].jacobian_norm.mean()), rel=1e-3)
    assert rows["rnn"][-1] == pytest.approx(expected["rnn"].spectra["l0"].spectral_radius, 1e-3)
    assert rows["lstm"][-1] is None

    png = matplotlib.image.imread(tmp_path / "gradflow.png")
    assert png.shape[:2] == (400, 1100)  # figsize (11, 4) at dpi 100: two panels
    assert png[..., :3].std() > 0.01  # something was drawn


def test_checkpoint_comes_back_and_is_measured(tmp_path):
    model = torch.nn.Module()
    model.rnn = rnnkit.LSTM(I, H, num_layers=2)
    model.head = torch.nn.Linear(H, 1)
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)

    layer = load_recurrent(path)
    assert isinstance(layer.cells[0], rnnkit.LSTMCell) and layer.num_layers == 2
    for k, v in model.rnn.state_dict().items():
        assert torch.equal(layer.state_dict()[k], v)

    out = tmp_path / "out"
    argv = [
        "--checkpoint",
        str(path),
        "--T",
        str(T),
        "--batch-size",
        str(B),
        "--seed",
        str(SEED),
        "--out",
        str(out),
        "--quiet",
    ]
    assert gradflow_main(argv) == 0
    data = json.loads((out / "gradflow.json").read_text())
    flow = _direct(model.rnn.double())
    assert data["trained"]["names"] == ["l0", "l1"]
    assert torch.allclose(
        torch.tensor(data["trained"]["grad_norm"], dtype=torch.float64), flow.grad_norm, rtol=1e-12
    )


def test_checkpoint_with_two_layers_needs_a_prefix(tmp_path):
    state = {f"enc.{k}": v for k, v in rnnkit.GRU(2, 3).state_dict().items()}
    state |= {f"dec.{k}": v for k, v in rnnkit.RNN(3, 4).state_dict().items()}
    path = tmp_path / "s2s.pt"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"several recurrent layers, prefixes \['dec\.', 'enc\.'\]"
    ):
        load_recurrent(path)
    dec = load_recurrent(path, prefix="dec.")
    assert isinstance(dec.cells[0], rnnkit.ElmanCell)
    assert torch.equal(dec.state_dict()["weight_hh_l0"], state["dec.weight_hh_l0"])


def test_bad_cell_name(capsys):
    with pytest.raises(SystemExit):
        gradflow_main(["--cells", "rnn,lstmm", "--T", "4"])
    assert "cell must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gradflow_main(["--cells", "gru@0.9", "--T", "4"])
    assert "applies to rnn, rnn-relu, linear only" in capsys.readouterr().err
