"""Plain LSTMs on torch's fused kernel: oneDNN on the CPU, cuDNN on the GPU.

An :class:`~rnnkit.cells.LSTMCell` without peepholes has exactly ``torch.nn.LSTM``'s math and
parameter layout, so its weights go to ``torch._VF.lstm`` (the op behind ``nn.LSTM``) unchanged,
projection (``weight_hr``) included.

With lengths, torch's own answer (a ``PackedSequence``) runs on a slower generic kernel on the
CPU: oneDNN has no variable-length mode. Here the sequences are sorted by length once and the
fused kernel is called once per run of steps with the same active rows ("segment"), on the
rows still running; each call is a view into the packed input, and finished rows leave the
batch. With many distinct lengths the per-call cost grows, so :func:`segment_count` lets the
dispatcher pick the compiled loop instead (see :mod:`rnnkit.engine`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LSTMCell
from ..cells.base import RecurrentCell, State
from .packing import make_plan, pack, sort_rows, unpack, unsort_rows


def fused_supports(cell: RecurrentCell, x: Tensor) -> bool:
    """True for a plain LSTM cell (no peepholes) and a floating-point input."""
    return type(cell) is LSTMCell and not cell.peephole and x.dtype.is_floating_point


def _weights(cell: LSTMCell) -> list[Tensor]:
    """torch.nn.LSTM's flat weight list for one layer and direction."""
    weights = [cell.weight_ih, cell.weight_hh]
    if cell.bias:
        weights += [cell.bias_ih, cell.bias_hh]
    if cell.proj_size:
        weights.append(cell.weight_hr)
    return weights


def run_fused(
    cell: LSTMCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """``x`` (T, B, I), ``state`` (h (B, P or H), c (B, H)) -> ((T, B, P or H), (h_n, c_n))."""
    weights = _weights(cell)
    train = torch.is_grad_enabled()
    h0, c0 = state
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    if not plan.packed:
        seq = x.flip(0) if reverse else x
        out, h, c = torch._VF.lstm(
            seq,
            (h0.unsqueeze(0), c0.unsqueeze(0)),
            weights,
            cell.bias,
            1,
            0.0,
            train,
            False,
            False,
        )
        return (out.flip(0) if reverse else out), (h[0], c[0])

    segments = plan.segments()
    xs = pack(x, plan).split([(s1 - s0) * n for s0, s1, n in segments])  # (N, I) by segment
    h = sort_rows(h0, plan).unsqueeze(0)  # (1, B, P or H)
    c = sort_rows(c0, plan).unsqueeze(0)  # (1, B, H)
    outputs, done = [], []
    for (s0, s1, n), x_seg in zip(segments, xs):
        if n < h.shape[1]:  # rows n.. have ended: their state is final
            done.append((h[0, n:], c[0, n:]))
            h, c = h[:, :n], c[:, :n]
        x_seg = x_seg.view(s1 - s0, n, x.shape[-1])  # (steps, n, I)
        out, h, c = torch._VF.lstm(x_seg, (h, c), weights, cell.bias, 1, 0.0, train, False, False)
        outputs.append(out.reshape((s1 - s0) * n, out.shape[-1]))
    done.append((h[0], c[0]))
    h_n = torch.cat([d[0] for d in reversed(done)])
    c_n = torch.cat([d[1] for d in reversed(done)])
    y = torch.cat(outputs)  # (N, P or H) packed
    return unpack(y, plan), (unsort_rows(h_n, plan), unsort_rows(c_n, plan))


def segment_count(lengths: Tensor | None) -> int:
    """How many fused calls :func:`run_fused` makes for these lengths."""
    return 1 if lengths is None else int(torch.unique(lengths).numel())
