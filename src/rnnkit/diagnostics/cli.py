"""``rnnkit gradflow``: the gradient-flow curves of several cells on the same input.

    rnnkit gradflow --cells rnn,lstm,gru --T 200 --out runs/gradflow

For each cell, a fresh model ``Recurrent(cell, I, H, L)`` in float64, built right after
``torch.manual_seed(seed)``, reads the same input and is measured under the lecture's loss at
the end, ℓ^<T> = mean over the batch of v · y^<T> (y the top layer's output, v a unit vector).
The input and v come from ``torch.Generator().manual_seed(seed)``, in that order:
x = input_scale · randn(T, B, I), then v = randn(O) / ‖·‖. With ``--checkpoint`` the model is
the layer stored there instead (its weights as trained; the input is the same kind of noise).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from ..cells import (
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    NASCell,
    RecurrentCell,
)
from ..recurrent import Recurrent
from ..search.compile import ExpressionCell
from .checkpoint import load_recurrent
from .flow import GradientFlow, gradient_flow
from .report import default_lags, write_report

CELLS: dict[str, Callable[[int, int], RecurrentCell]] = {
    "rnn": ElmanCell,
    "rnn-relu": partial(ElmanCell, nonlinearity="relu"),
    "lstm": LSTMCell,  # forget-gate bias 1 (rnnkit's default)
    "lstm-fb0": partial(LSTMCell, forget_bias=0.0),  # torch's initialisation
    "lnlstm": LayerNormLSTMCell,
    "gru": GRUCell,
    "mgu": MGUCell,
    "nas": NASCell,
    # the lecture's Elman cell with g the identity: its gradient is exactly W_aa^k applied
    "linear": partial(ExpressionCell, program="h = Wx + Uh"),
}
"""Cells by name. ``rnn@R`` (also ``rnn-relu@R``, ``linear@R``) is an Elman cell whose W_aa is
rescaled to spectral radius R."""


_ELMAN_LIKE = ("rnn", "rnn-relu", "linear")


def parse_cell(spec: str) -> tuple[Callable[[int, int], RecurrentCell], float | None]:
    """``"lstm"`` -> (factory, None); ``"rnn@0.9"`` -> (ElmanCell, 0.9)."""
    name, _, radius = spec.partition("@")
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)} (or rnn@R), got {spec!r}")
    if not radius:
        return CELLS[name], None
    if name not in _ELMAN_LIKE:
        raise ValueError(
            f"@R (a spectral radius) applies to {', '.join(_ELMAN_LIKE)} only, got {spec!r}"
        )
    try:
        r = float(radius)
    except ValueError:
        raise ValueError(f"the radius in {spec!r} must be a number, got {radius!r}") from None
    if not r > 0:
        raise ValueError(f"the radius in {spec!r} must be > 0, got {r}")
    return CELLS[name], r


def set_spectral_radius(layer: Recurrent, radius: float) -> None:
    """Scale every cell's W_aa so that its spectral radius is ``radius``."""
    with torch.no_grad():
        for cell in layer.cells:
            W = cell.weight_hh
            W.mul_(radius / torch.linalg.eigvals(W.double()).abs().max().item())


def inputs(
    T: int, batch_size: int, input_size: int, output_size: int, seed: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input x (T, B, I) and the read-out direction v (O,), float64 (see the module)."""
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(T, batch_size, input_size, generator=g, dtype=torch.float64)
    v = torch.randn(output_size, generator=g, dtype=torch.float64)
    return x, v / v.norm()


def measure(
    layer: Recurrent, T: int, batch_size: int, seed: int, scale: float, jacobians: bool
) -> GradientFlow:
    """:func:`gradient_flow` of ``layer`` under the module's loss ℓ^<T>."""
    x, v = inputs(T, batch_size, layer.input_size, layer.output_size, seed, scale)
    return gradient_flow(layer, x, lambda out: (out[0][-1] @ v).mean(), jacobians=jacobians)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnkit gradflow",
        description=(
            "How much the loss at the last step still feels each earlier step: "
            "||dl/ds<T-k>|| against lag k for several cells on the same input, the one-step "
            "Jacobian norms, and the spectral radius of W_aa for Elman cells. Writes "
            "gradflow.png (log scale), gradflow.md (table) and gradflow.json."
        ),
    )
    p.add_argument(
        "--cells",
        default="rnn,lstm,gru",
        help=f"comma-separated, from {', '.join(CELLS)}; rnn@R rescales W_aa to "
        "spectral radius R (also rnn-relu@R, linear@R; default rnn,lstm,gru)",
    )
    p.add_argument("--T", type=int, default=200, help="sequence length (default 200)")
    p.add_argument("--hidden-size", type=int, default=32, help="H (default 32)")
    p.add_argument("--input-size", type=int, default=8, help="I (default 8)")
    p.add_argument("--batch-size", type=int, default=4, help="B (default 4)")
    p.add_argument("--layers", type=int, default=1, help="L (default 1)")
    p.add_argument(
        "--residual",
        action="store_true",
        help="residual connections between layers (where sizes agree)",
    )
    p.add_argument("--input-scale", type=float, default=1.0, help="std of the input (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lags", default=None, help="comma-separated lags for the table (default 0,10,50,100,T-1)"
    )
    p.add_argument("--no-jacobians", action="store_true", help="skip the one-step Jacobians")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="measure the recurrent layer stored in this checkpoint instead",
    )
    p.add_argument(
        "--prefix",
        default=None,
        help="with --checkpoint: which layer, by key prefix (e.g. 'encoder.')",
    )
    p.add_argument(
        "--cell",
        default=None,
        choices=sorted(CELLS),
        help="with --checkpoint: the cell kind, when it cannot be inferred",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/gradflow"),
        help="output folder (default runs/gradflow)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    return p


def gradflow_main(argv: list[str] | None = None) -> int:
    """Entry point of ``rnnkit gradflow``; returns the exit status."""
    parser = build_parser()
    a = parser.parse_args(argv)
    for name in ("T", "hidden_size", "input_size", "batch_size", "layers"):
        if getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.T < 2:
        parser.error(f"--T must be >= 2 (a lag needs two steps), got {a.T}")
    lags = default_lags(a.T)
    if a.lags:
        try:
            lags = sorted({int(k) for k in a.lags.split(",")})
        except ValueError:
            parser.error(f"--lags must be comma-separated integers, got {a.lags!r}")
        if lags[0] < 0 or lags[-1] >= a.T:
            parser.error(f"--lags must lie in [0, T-1={a.T - 1}], got {a.lags}")
    jac = not a.no_jacobians
    results: dict[str, GradientFlow] = {}
    if a.checkpoint is not None:
        try:
            layer = load_recurrent(
                a.checkpoint,
                prefix=a.prefix,
                cell=CELLS[a.cell] if a.cell else None,
                residual=a.residual,
            )
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
        layer = layer.double()
        label = a.checkpoint.stem
        results[label] = measure(layer, a.T, a.batch_size, a.seed, a.input_scale, jac)
        title = f"{a.checkpoint.name}, T={a.T}"
    else:
        for spec in [s.strip() for s in a.cells.split(",") if s.strip()]:
            try:
                factory, radius = parse_cell(spec)
            except ValueError as e:
                parser.error(str(e))
            torch.manual_seed(a.seed)
            layer = Recurrent(
                factory, a.input_size, a.hidden_size, a.layers, residual=a.residual
            ).double()
            if radius is not None:
                set_spectral_radius(layer, radius)
            results[spec] = measure(layer, a.T, a.batch_size, a.seed, a.input_scale, jac)
        title = f"T={a.T}, H={a.hidden_size}, L={a.layers}" + (", residual" if a.residual else "")
    table = write_report(results, a.out, lags, title)
    if not a.quiet:
        print(table)
        print(
            f"\nwrote {a.out / 'gradflow.png'}, {a.out / 'gradflow.md'}, {a.out / 'gradflow.json'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(gradflow_main())
