"""Kernels of the Elman, LSTM and GRU families, and the choice of a kernel per cell.

See :mod:`rnnkit.engine.kernel_base` for what a kernel owns.
"""

from __future__ import annotations

import torch

from ..cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell, MGUCell
from ..cells.base import RecurrentCell
from ..cells.mut import MUT1Cell, MUT2Cell, MUT3Cell
from ..cells.nas import NASCell
from . import native
from .kernel_base import (
    Kernel,
    Params,
    _grad_buffer,
    _or,
    bias_grads,
    folded,
    geometry,
    grad_rows,
    padded_rows,
    saved_buffer,
)
from .kernels_nas_ln import LayerNormLSTMKernel, NASKernel
from .weight_grad import PreviousOutputs, recurrent_weight_grad

__all__ = ["Kernel", "kernel_for"]


class ElmanKernel(Kernel):
    name, n_states = "elman", 1
    in_place = False  # it saves only its outputs, which the backward pass reads as they are
    masked_max = 2**17  # B = 32 at H = 64, B = 8 at H = 128
    # B = 16 at H = 64: 0.95 of the shared gather's step at B = 8, 0.965-0.976 at B = 16, 1.05
    # at B = 32
    masked_max_bidirectional = 2**16
    folds_input_bias = True

    def params(self, cell: ElmanCell) -> Params:
        return (cell.weight_hh, cell.bias_hh)

    def variant(self, cell: ElmanCell) -> tuple[int, ...]:
        return (int(cell.nonlinearity == "relu"),)

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0,), (W, b, *extra) = states, params
        b = folded(b, extra)
        H = W.shape[1]
        y = gx.new_empty(plan.rows, H)
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full, cfg),
            [gx, W.contiguous(), _or(b, gx, H), h0, y, gx.new_empty(plan.B, H)],
            rows=padded_rows(plan, out),
        )
        return y, (y.index_select(0, plan.last),), [W, h0, y]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, h0, y = saved
        H = W.shape[1]
        dh, dgx = _grad_buffer(dfinal[0]), torch.empty_like(y)
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True, cfg),
            [W.contiguous(), h0, y, dy, dh, dgx],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        dW = recurrent_weight_grad(dgx, h0, y, plan)
        return dgx, (dh,), (dW, *bias_grads(dgx, present, 2))


class LSTMKernel(Kernel):
    """LSTM with or without peepholes (no projection)."""

    name, n_states = "lstm", 2
    masked_max = 2**16  # B = 4 at H = 64
    masked_max_bidirectional = 2**15  # B = 2 at H = 64: 0.966-0.978 (peephole 0.989)
    folds_input_bias = True

    def params(self, cell: LSTMCell) -> Params:
        return (cell.weight_hh, cell.bias_hh, cell.weight_ci, cell.weight_cf, cell.weight_co)

    def variant(self, cell: LSTMCell) -> tuple[int, ...]:
        return (int(cell.peephole),)

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0, c0), (W, b, wci, wcf, wco, *extra) = states, params
        b = folded(b, extra)
        H = W.shape[1]
        S = plan.saved_rows(full)
        y, act, cs = gx.new_empty(plan.rows, H), saved_buffer(gx, full, S), gx.new_empty(S, H)
        peep = [_or(w, gx, H) for w in (wci, wcf, wco)]
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full, cfg),
            [
                gx,
                W.contiguous(),
                _or(b, gx, 4 * H),
                *peep,
                h0,
                c0,
                y,
                act,
                cs,
                gx.new_empty(plan.B, 4 * H),
            ],
            rows=padded_rows(plan, out),
        )
        finals = (y.index_select(0, plan.last), cs.index_select(0, plan.last_saved(full)))
        return y, finals, [W, *peep, h0, c0, y, act, cs]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, wci, wcf, wco, h0, c0, y, act, cs = saved
        H = W.shape[1]
        dh, dc = _grad_buffer(dfinal[0]), _grad_buffer(dfinal[1])
        dgx = act  # written over the gates, row by row (see Kernel.in_place)
        acc = y.new_zeros(torch.get_num_threads(), 3 * H)
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True, cfg),
            [W.contiguous(), wci, wcf, wco, h0, c0, y, act, cs, dy, dh, dc, dgx, acc],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        dW = recurrent_weight_grad(dgx, h0, y, plan)
        db, *db_ih = bias_grads(dgx, present, 5)
        peep = acc.sum(0).split(H) if cfg[0] else (None, None, None)
        return dgx, (dh, dc), (dW, db, *peep, *db_ih)


class GRUKernel(Kernel):
    """GRU with the reset gate applied after the product (torch's form)."""

    name, n_states = "gru", 1
    masked_max = 2**16  # B = 5 at H = 64
    masked_max_bidirectional = 2**15  # B = 2 at H = 64: 0.96-0.97; B = 4: 1.01
    # b_ih is not b_hh's neighbour in every gate (b_hn sits inside r·(·)), so the loop takes it
    # as a vector of its own, added to gx (docs/engine.md, "The input bias in the loops")
    folds_input_bias = True

    def params(self, cell: GRUCell) -> Params:
        return (cell.weight_hh, cell.bias_hh)

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0,), (W, b, *extra) = states, params
        H = W.shape[1]
        S = plan.saved_rows(full)
        y, act, hn = gx.new_empty(plan.rows, H), saved_buffer(gx, full, S), gx.new_empty(S, H)
        b_ih = extra[0] if extra else None
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full),
            [
                gx,
                W.contiguous(),
                _or(b, gx, 3 * H),
                h0,
                y,
                act,
                hn,
                gx.new_empty(plan.B, 3 * H),
                _or(b_ih, gx, 3 * H),
            ],
            rows=padded_rows(plan, out),
        )
        return y, (y.index_select(0, plan.last),), [W, h0, y, act, hn]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, h0, y, act, hn = saved
        H = W.shape[1]
        dh, dgx, dzn = _grad_buffer(dfinal[0]), act, hn  # over the saved buffers
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True),
            [W.contiguous(), h0, y, act, hn, dy, dh, dgx, dzn, y.new_empty(plan.B, 3 * H)],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        prev = PreviousOutputs(h0, y, plan)
        dW = W.new_empty(3 * H, H)  # rows r, u from dgx; n from dzn (r multiplies W_hn·h)
        prev.weight_grad(dgx[:, : 2 * H], out=dW[: 2 * H])
        prev.weight_grad(dzn, out=dW[2 * H :])
        # Σ dgx is b_ih's gradient, and its r and u blocks b_hh's (b_hn's is Σ dzn): one sum
        fold = len(present) > 2
        sums = dgx.sum(0) if present[1] or fold else None
        db = torch.cat([sums[: 2 * H], dzn.sum(0)]) if present[1] else None
        return dgx, (dh,), (dW, db, *((sums,) if fold else ()))


class ResetBeforeKernel(Kernel):
    """GRU(reset_after=False), MGU and MUT1-3: the reset gate multiplies h_prev before the
    candidate's product. ``cfg`` = (cu, cr, wu, wr, wn | src_u << 32 | fresh << 34) describes
    where each gate sits (see ``_loops.cpp``)."""

    name, n_states = "rb", 1
    # MGU, MUT1: B = 16 at H = 64; GRU, MUT2, MUT3: B = 10. With the products on the running
    # rows the masked step took 0.94-0.95 of the sorted one for MGU at B = 16, 0.98-1.00 for
    # the GRU at B = 10, 0.97-1.04 for MUT1 at B = 16 (paired; benchmarks.md, run 25).
    masked_max = 2**17
    # MGU: B = 4 at H = 64 (0.96-0.98; B = 8: 0.99); GRU, MUT2, MUT3: B = 2 (MUT3 0.96; at B = 4
    # MUT3 and the GRU 1.00-1.02, MUT1 at B = 8 1.03)
    masked_max_bidirectional = 2**15
    folds_input_bias = True

    def params(self, cell: RecurrentCell) -> Params:
        bias = getattr(cell, "bias_hh", None)
        return (cell.weight_hh, bias)

    def variant(self, cell: RecurrentCell) -> tuple[int, ...]:
        H = cell.hidden_size
        # (cu, cr, wu, wr, wn, src_u, fresh): columns of gx, rows of W_hh, u's recurrent input
        if isinstance(cell, GRUCell):
            cu, cr, wu, wr, wn, src, fresh = H, 0, H, 0, 2 * H, 1, 0
        elif isinstance(cell, MGUCell):
            cu, cr, wu, wr, wn, src, fresh = 0, 0, 0, -1, H, 1, 1
        elif isinstance(cell, MUT1Cell):
            cu, cr, wu, wr, wn, src, fresh = 0, H, -1, 0, H, 0, 1
        elif isinstance(cell, MUT2Cell):
            cu, cr, wu, wr, wn, src, fresh = 0, H, 0, H, 2 * H, 1, 1
        elif isinstance(cell, MUT3Cell):
            cu, cr, wu, wr, wn, src, fresh = 0, H, 0, H, 2 * H, 2, 1
        else:
            raise TypeError(f"no reset-before layout for {type(cell).__name__}")
        return (cu, cr, wu, wr, wn | src << 32 | fresh << 34)

    @staticmethod
    def _layout(cfg: tuple, H: int) -> tuple[int, int, int, int, int, int, int]:
        cu, cr, wu, wr, packed = cfg
        wn, src = packed & 0xFFFFFFFF, (packed >> 32) & 3
        cn = H if cu == cr else 2 * H
        return cu, cr, cn, wu, wr, wn, src

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0,), (W, b, *extra) = states, params
        b = folded(b, extra)
        H = W.shape[1]
        G = gx.shape[1]
        src = self._layout(cfg, H)[6]
        S = plan.saved_rows(full)
        y, act, rh = gx.new_empty(plan.rows, H), saved_buffer(gx, full, S), gx.new_empty(S, H)
        th = gx.new_empty(S, H) if src == 2 else gx.new_empty(1)
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full, cfg),
            [gx, W.contiguous(), _or(b, gx, G), h0, y, act, rh, th, gx.new_empty(plan.B, G)],
            rows=padded_rows(plan, out),
        )
        return y, (y.index_select(0, plan.last),), [W, h0, y, act, rh, th]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, h0, y, act, rh, th = saved
        H = W.shape[1]
        cu, cr, cn, wu, wr, wn, src = self._layout(cfg, H)
        dh, dgx = _grad_buffer(dfinal[0]), act  # dgx over the saved gates
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True, cfg),
            [
                W.contiguous(),
                h0,
                y,
                act,
                rh,
                th,
                dy,
                dh,
                dgx,
                y.new_empty(plan.B, H),
                y.new_empty(plan.B, H),
            ],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        dW = torch.zeros_like(W)
        torch.mm(dgx[:, cn : cn + H].t(), rh, out=dW[wn : wn + H])
        prev = PreviousOutputs(h0, y, plan) if cr != cu or src == 1 else None
        if prev is not None and cr != cu:
            prev.weight_grad(dgx[:, cr : cr + H], out=dW[wr : wr + H])
        if prev is not None and src == 1:
            prev.weight_grad(dgx[:, cu : cu + H], out=dW[wu : wu + H])
        elif src == 2:
            torch.mm(dgx[:, cu : cu + H].t(), th, out=dW[wu : wu + H])
        return dgx, (dh,), (dW, *bias_grads(dgx, present, 2))


def kernel_for(cell: RecurrentCell) -> tuple[Kernel, tuple] | None:
    """The kernel and its configuration for ``cell``, or None for cells without one.

    Exact class checks: a subclass may change the math, so it takes the generic path.
    """
    kind = type(cell)
    if kind is ElmanCell:
        k: Kernel = ElmanKernel()
    elif kind is LSTMCell and not cell.proj_size:
        k = LSTMKernel()
    elif kind is GRUCell and cell.reset_after:
        k = GRUKernel()
    elif kind in (GRUCell, MGUCell, MUT1Cell, MUT2Cell, MUT3Cell):
        k = ResetBeforeKernel()
    elif kind is NASCell:
        k = NASKernel()
    elif kind is LayerNormLSTMCell:
        k = LayerNormLSTMKernel()
    else:
        return None
    cfg = k.scalars(cell) if isinstance(k, LayerNormLSTMKernel) else k.variant(cell)
    return k, cfg
