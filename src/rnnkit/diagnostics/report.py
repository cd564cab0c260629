"""Gradient-flow measurements of several cells as a table (Markdown), a JSON file and a PNG."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .flow import GradientFlow


def default_lags(T: int) -> list[int]:
    """Lags shown in the table: 0, 10, 50, 100 and T - 1, those below T."""
    return sorted({k for k in (0, 10, 50, 100, T - 1) if 0 <= k < T})


def summary_rows(results: dict[str, GradientFlow], lags: list[int]) -> list[dict]:
    """One row per cell (layer, direction) of each measured model."""
    rows = []
    for label, flow in results.items():
        by_lag = flow.by_lag(flow.grad_norm)  # (K, T)
        for k, name in enumerate(flow.names):
            g = by_lag[k]
            row = {
                "model": label,
                "cell": name,
                "grad_norm": {lag: float(g[lag]) for lag in lags},
                "ratio": float(g[max(lags)] / g[0]) if float(g[0]) > 0 else math.nan,
                "mean_jacobian_norm": None,
                "spectral_radius": None,
            }
            if flow.jacobian_norm is not None:
                row["mean_jacobian_norm"] = float(flow.jacobian_norm[k].mean())
            if name in flow.spectra:
                row["spectral_radius"] = flow.spectra[name].spectral_radius
            rows.append(row)
    return rows


def _num(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3e}"


def format_table(rows: list[dict], lags: list[int]) -> str:
    """Markdown: ‖∂ℓ/∂s^<T-k>‖ at each lag k, its ratio to lag 0, the mean one-step Jacobian
    norm and the spectral radius of W_aa (Elman cells)."""
    head = ["model", "cell"] + [f"lag {k}" for k in lags]
    head += [f"lag {max(lags)} / lag 0", "mean σ_max(J)", "ρ(W_aa)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["cell"]] + [_num(r["grad_norm"][k]) for k in lags]
        cells += [_num(r["ratio"]), _num(r["mean_jacobian_norm"]), _num(r["spectral_radius"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(results: dict[str, GradientFlow]) -> dict:
    """Every curve, as lists: per model, per cell, the gradient norm by step (t = 1..T) and
    the Jacobian norms averaged over the batch."""
    out = {}
    for label, flow in results.items():
        entry = {
            "names": flow.names,
            "loss": flow.loss,
            "grad_norm": flow.grad_norm.tolist(),
            "state_grad_norm": flow.state_grad_norm.tolist(),
        }
        if flow.jacobian_norm is not None:
            entry["jacobian_norm_mean"] = flow.jacobian_norm.mean(1).tolist()
            entry["jacobian_product_norm_mean"] = flow.jacobian_product_norm.mean(1).tolist()
        entry["spectra"] = {
            name: {
                "spectral_radius": s.spectral_radius,
                "largest_singular_value": s.largest_singular_value,
                "eigenvalues": [[z.real, z.imag] for z in s.eigenvalues.tolist()],
            }
            for name, s in flow.spectra.items()
        }
        out[label] = entry
    return out


def plot(results: dict[str, GradientFlow], path: str | os.PathLike, title: str = "") -> Path:
    """PNG, log scale: ‖∂ℓ/∂s^<T-k>‖ against lag k (left) and σ_max(∂s^<T>/∂s^<T-k>), the
    norm of the product of k one-step Jacobians averaged over the batch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_jac = all(f.jacobian_product_norm is not None for f in results.values())
    fig, axes = plt.subplots(1, 2 if with_jac else 1, figsize=(11 if with_jac else 6, 4), dpi=100)
    axes = list(axes) if with_jac else [axes]
    styles = ["-", "--", ":", "-."]
    for i, (label, flow) in enumerate(results.items()):
        lags = range(flow.steps)
        for k, name in enumerate(flow.names):
            style = dict(color=f"C{i % 10}", linestyle=styles[k % len(styles)])
            tag = label if len(flow.names) == 1 else f"{label} {name}"
            g = [v if v > 0 else math.nan for v in flow.by_lag(flow.grad_norm[k]).tolist()]
            axes[0].plot(lags, g, label=tag, **style)
            if with_jac:
                p = flow.by_lag(flow.jacobian_product_norm[k].mean(0)).tolist()
                axes[1].plot(lags, [v if v > 0 else math.nan for v in p], label=tag, **style)
    axes[0].set_ylabel("‖∂ℓ/∂s<T−k>‖")
    if with_jac:
        axes[1].set_ylabel("σ_max(∂s<T>/∂s<T−k>), batch mean")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("lag k")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    results: dict[str, GradientFlow], out_dir: str | os.PathLike, lags: list[int], title: str = ""
) -> str:
    """Write ``gradflow.png``, ``gradflow.json`` and ``gradflow.md`` into ``out_dir``; returns
    the Markdown table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(summary_rows(results, lags), lags)
    (out / "gradflow.md").write_text(table + "\n")
    (out / "gradflow.json").write_text(json.dumps(to_json(results)) + "\n")
    plot(results, out / "gradflow.png", title)
    return table
