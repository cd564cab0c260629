"""One time step (T = 1): the path "auto" takes on the CPU when a layer of a cell with torch.nn's
math is called one step at a time on a small batch, as in streaming and in generation.

A sequence path pays fixed costs that only pay off over many steps: the compiled loop's
geometry, buffers and ctypes call; oneDNN's set-up of an LSTM call (one step at B = 1, H = 64
takes 113 µs in ``torch._VF.lstm`` against 30 µs in ``torch.lstm_cell``). One step needs none
of them: it is the cell's step, run as torch ops and differentiated by autograd.

* A cell with torch.nn's math (a plain :class:`~rnnkit.cells.LSTMCell` without projection, a
  :class:`~rnnkit.cells.GRUCell` with ``reset_after=True``, an
  :class:`~rnnkit.cells.ElmanCell`) runs torch's one-step op (``torch.lstm_cell``,
  ``torch.gru_cell``, ``torch.rnn_tanh_cell``, ``torch.rnn_relu_cell``: the step's two matrix
  products and its pointwise math in one call from Python, as ``torch.nn.LSTMCell`` runs it)
  with the cell's own weights.
* Any other cell runs ``cell.step(cell.project_input(x_t), state)``, its own equations. "auto"
  does not take this for them (:func:`single_step_runs`): their steps are several torch ops,
  which cost more than the compiled loop's one pass over the pointwise math.

The results are the reference's up to rounding: torch's op adds the products and the biases in
its own order, which can move the last bit (a float64 GRU step at H = 64 differs from the
reference by at most 1.1e-16).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from .fused import SINGLE_STEP_MAX, fused_weights, one_step_kind, single_step_runs

__all__ = ["SINGLE_STEP_MAX", "run_single_step", "single_step_runs"]

_STEP_OPS = {
    "gru": torch.gru_cell,
    "rnn_tanh": torch.rnn_tanh_cell,
    "rnn_relu": torch.rnn_relu_cell,
}


def run_single_step(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, State]:
    """``x`` (1, B, ...) and ``state`` (tuple of (B, ·)) -> (outputs (1, B, O), final state).

    ``lengths`` (validated, so all 1) and ``reverse`` change nothing for one step; they are
    taken so that this runs wherever a sequence path does.
    """
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one time step (1, B, ...), got shape {tuple(x.shape)}")
    x_t = x[0]
    kind = one_step_kind(cell)
    if kind is None:
        h, new = cell.step(cell.project_input(x_t), state)
        return h.unsqueeze(0), new
    weights = fused_weights(cell)  # (two without biases: the ops default theirs to None)
    if kind == "lstm":
        h, c = torch.lstm_cell(x_t, state, *weights)
        return h.unsqueeze(0), (h, c)
    h = _STEP_OPS[kind](x_t, state[0], *weights)
    return h.unsqueeze(0), (h,)
