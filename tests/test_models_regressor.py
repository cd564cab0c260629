"""SequenceRegressor: recursive multi-step forecasts against a hand-written feedback loop
over each sequence alone; the many-to-many loss ignores padding and is the mean squared error."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import RecurrentEncoderConfig, RegressorConfig, SequenceRegressor


def _model(mode, horizon, cell="lstm"):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=6)
    cfg = RegressorConfig(input_size=2, output_size=2, encoder=enc, mode=mode, horizon=horizon)
    return SequenceRegressor(cfg).double().eval()


@pytest.mark.parametrize("mode", ["many_to_one", "many_to_many"])
@pytest.mark.parametrize("horizon", [1, 2])
def test_forecast_feeds_predictions_back(mode, horizon):
    model = _model(mode, horizon)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    steps = 5
    got = model.forecast(x, steps, lengths)  # (3, 5, 2)
    for b, n in enumerate(lengths.tolist()):
        seq = x[b : b + 1, :n]
        preds = []
        while len(preds) < steps:  # oracle: the loop written out for one sequence
            with torch.no_grad():
                y = model(seq)
            y = y[0] if mode == "many_to_one" else y[0, -1]  # (h, 2) after the last step
            new = [y[k] for k in range(min(horizon, steps - len(preds)))]
            preds += new
            seq = torch.cat([seq, torch.stack(new).unsqueeze(0)], dim=1)
        torch.testing.assert_close(got[b], torch.stack(preds), rtol=1e-10, atol=1e-12)


def test_many_to_many_loss_is_the_mse_over_valid_steps():
    model = _model("many_to_many", 2, cell="gru").train()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    y = torch.randn(2, 5, 2, 2, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    pred = model(x, lengths)
    expected = torch.cat([(pred[0] - y[0]).flatten(), (pred[1, :3] - y[1, :3]).flatten()])
    torch.testing.assert_close(model.loss(x, y, lengths), (expected**2).mean())
    # padding of a different length, holding other values, changes nothing
    x_long = torch.cat([x, torch.full((2, 3, 2), 9.0, dtype=torch.float64)], dim=1)
    y_long = torch.cat([y, torch.full((2, 3, 2, 2), -9.0, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(model.loss(x_long, y_long, lengths), model.loss(x, y, lengths))


def test_forecast_needs_output_size_equal_to_input_size():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    model = SequenceRegressor(RegressorConfig(input_size=2, output_size=1, encoder=enc))
    with pytest.raises(ValueError, match="output_size=1 must equal input_size=2"):
        model.forecast(torch.randn(1, 4, 2), 3)


def test_autoregressive_term_is_the_linear_model_of_the_last_p_steps():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    cfg = RegressorConfig(input_size=2, output_size=1, encoder=enc, horizon=3, autoregressive=4)
    model = SequenceRegressor(cfg).double().eval()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 5, 2])  # the third is shorter than p = 4
    with torch.no_grad():
        got = model(x, lengths)  # (3, 3, 1)
        A, a = model.linear_ar.weight, model.linear_ar.bias  # (3, 8), (3,)
        for b, n in enumerate(lengths.tolist()):
            seq = x[b : b + 1, :n]
            network = model.head(model.pooling(model.encoder(seq, None), None))[0]  # (3,)
            window = torch.zeros(4, 2, dtype=torch.float64)  # oldest first, zeros before start
            for j in range(4):
                t = n - 4 + j
                if t >= 0:
                    window[j] = x[b, t]
            expected = network + A @ window.flatten() + a
            torch.testing.assert_close(got[b, :, 0], expected, rtol=1e-10, atol=1e-12)
            # padding past the length changes nothing: the sequence alone gives the same
            torch.testing.assert_close(model(seq)[0], got[b], rtol=1e-10, atol=1e-12)


def test_autoregressive_needs_many_to_one_and_a_non_negative_order():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    with pytest.raises(ValueError, match="autoregressive=2 needs mode='many_to_one'"):
        RegressorConfig(input_size=1, encoder=enc, mode="many_to_many", autoregressive=2)
    with pytest.raises(ValueError, match="autoregressive"):
        RegressorConfig(input_size=1, encoder=enc, autoregressive=-1)
