"""Interim demo: a small LSTM learns the yearly sunspot numbers that statsmodels ships.

Prints the training loss going down and the held-out error against persistence.
"""

from __future__ import annotations

import torch

import rnnkit


def main() -> None:
    from statsmodels.datasets import sunspots

    series = torch.tensor(
        sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(), dtype=torch.float32
    )
    split = int(0.8 * len(series))
    mean, std = series[:split].mean(), series[:split].std()
    z = (series - mean) / std  # (N,)

    torch.manual_seed(0)
    lstm = rnnkit.LSTM(1, 32, num_layers=1, batch_first=True)
    head = torch.nn.Linear(32, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)

    x = z[: split - 1].view(1, -1, 1)  # (B=1, T, I=1): predict next year from the past
    y = z[1:split].view(1, -1, 1)
    print(f"yearly sunspots 1700-2008: {len(series)} years, training on {split}")
    for epoch in range(301):
        out, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(head(out), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if epoch % 50 == 0:
            print(f"epoch {epoch:3d}  train MSE (standardised) {loss.item():.4f}")

    with torch.no_grad():
        out, _ = lstm(z[:-1].view(1, -1, 1))
        pred = head(out).view(-1) * std + mean  # one-step-ahead forecasts of years 1..N-1
    truth = series[1:]
    test = slice(split - 1, None)
    rmse = ((pred[test] - truth[test]) ** 2).mean().sqrt().item()
    persist = ((series[:-1][test] - truth[test]) ** 2).mean().sqrt().item()
    print(f"held-out one-year-ahead RMSE: LSTM {rmse:.1f}  vs persistence {persist:.1f}")


if __name__ == "__main__":
    main()
