"""Kernels of the two widest cells: NAS (eight branches) and the layer-normalised LSTM.

See :mod:`rnnkit.engine.kernel_base` for what a kernel owns.
"""

from __future__ import annotations

import torch

from ..cells import LayerNormLSTMCell
from ..cells.nas import NASCell
from . import native
from .kernel_base import (
    Kernel,
    Params,
    _grad_buffer,
    _or,
    geometry,
    grad_rows,
    padded_rows,
    saved_buffer,
)
from .weight_grad import PreviousOutputs, recurrent_weight_grad


class NASKernel(Kernel):
    name, n_states = "nas", 2
    # b_ih is added to gx in every branch, branch 3's inside its product x_3·m_3: the loop takes
    # it as a vector of its own (docs/engine.md, "The input bias in the loops")
    folds_input_bias = True

    def params(self, cell: NASCell) -> Params:
        return (cell.weight_hh, cell.bias_hh)

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0, c0), (W, b, *extra) = states, params
        H = W.shape[1]
        S = plan.saved_rows(full)
        # branches: l_0..l_7 with x_3 in slot 3 (branch 3 multiplies x_3 by m_3)
        y, branches = gx.new_empty(plan.rows, H), saved_buffer(gx, full, S)
        cs, m3 = gx.new_empty(S, H), gx.new_empty(S, H)
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full),
            [
                gx,
                W.contiguous(),
                _or(b, gx, 8 * H),
                h0,
                c0,
                y,
                branches,
                cs,
                m3,
                gx.new_empty(plan.B, 8 * H),
                _or(extra[0] if extra else None, gx, 8 * H),
            ],
            rows=padded_rows(plan, out),
        )
        finals = (y.index_select(0, plan.last), cs.index_select(0, plan.last_saved(full)))
        return y, finals, [W, h0, c0, y, branches, cs, m3]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, h0, c0, y, branches, cs, m3 = saved
        H = W.shape[1]
        dh, dc = _grad_buffer(dfinal[0]), _grad_buffer(dfinal[1])
        dgx, dm3 = branches, m3  # written over the saved buffers, row by row
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True),
            [
                W.contiguous(),
                h0,
                c0,
                y,
                branches,
                cs,
                m3,
                dy,
                dh,
                dc,
                dgx,
                dm3,
                y.new_empty(plan.B, 8 * H),
            ],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        # branch 3 multiplies x_3 by m_3, so its product's gradient (dm3) differs from dgx's
        prev = PreviousOutputs(h0, y, plan)
        dW = W.new_empty(8 * H, H)
        prev.weight_grad(dgx[:, : 3 * H], out=dW[: 3 * H])
        prev.weight_grad(dm3, out=dW[3 * H : 4 * H])
        prev.weight_grad(dgx[:, 4 * H :], out=dW[4 * H :])
        # Σ dgx is b_ih's gradient, and b_hh's but for branch 3 (Σ dm3): one sum
        fold = len(present) > 2
        sums = dgx.sum(0) if present[1] or fold else None
        db = None
        if present[1]:
            db = torch.cat([sums[: 3 * H], dm3.sum(0), sums[4 * H :]])
        return dgx, (dh, dc), (dW, db, *((sums,) if fold else ()))


class LayerNormLSTMKernel(Kernel):
    name, n_states = "lnlstm", 2
    # B = 4 at H = 64 (NAS: never; its rows cost the most). At B = 8 the masked step took
    # 0.98-1.01 of the sorted one even with the products on the running rows.
    masked_max = 2**16
    masked_max_bidirectional = 2**15  # B = 2 at H = 64: 0.999, even

    def params(self, cell: LayerNormLSTMCell) -> Params:
        return (
            cell.weight_hh,
            cell.ln_gates_weight,
            cell.ln_gates_bias,
            cell.ln_cell_weight,
            cell.ln_cell_bias,
        )

    def scalars(self, cell: LayerNormLSTMCell) -> tuple[float, ...]:
        return (cell.eps,)

    def forward(self, cfg, plan, gx, states, params, full, out=None):
        (h0, c0), (W, gam, bet, gamc, betc) = states, params
        H = W.shape[1]
        S = plan.saved_rows(full)
        # the gates are recomputed in the backward pass: act is scratch for two steps
        y, act, xhat = (
            gx.new_empty(plan.rows, H),
            gx.new_empty(2 * plan.B, 4 * H),
            saved_buffer(gx, full, S),
        )
        rstd, cs, chat = gx.new_empty(S, 5), gx.new_empty(S, H), gx.new_empty(S, H)
        ln = [t.contiguous() for t in (gam, bet, gamc, betc)]
        native.call(
            self.name,
            "forward",
            geometry(plan, H, full),
            [
                gx,
                W.contiguous(),
                *ln,
                h0,
                c0,
                y,
                act,
                xhat,
                rstd,
                cs,
                chat,
                gx.new_empty(plan.B, 4 * H),
            ],
            scalars=cfg,
            rows=padded_rows(plan, out),
        )
        finals = (y.index_select(0, plan.last), cs.index_select(0, plan.last_saved(full)))
        return y, finals, [W, *ln, h0, c0, y, xhat, rstd, cs, chat]

    def backward(self, cfg, plan, saved, dy, dfinal, present):
        W, gam, bet, gamc, betc, h0, c0, y, xhat, rstd, cs, chat = saved
        H = W.shape[1]
        dh, dc = _grad_buffer(dfinal[0]), _grad_buffer(dfinal[1])
        dgx = xhat  # written over x̂, row by row
        threads = torch.get_num_threads()
        acc = y.new_zeros(threads, 10 * H)
        native.call(
            self.name,
            "backward",
            geometry(plan, H, True),
            [
                W.contiguous(),
                gam,
                gamc,
                betc,
                c0,
                bet,
                xhat,
                rstd,
                cs,
                chat,
                dy,
                dh,
                dc,
                dgx,
                acc,
                y.new_empty(threads, 10 * H),
            ],
            rows=grad_rows(plan, dy),
            strided=dy,
        )
        dW = recurrent_weight_grad(dgx, h0, y, plan)
        dgam, dbet, dgamc, dbetc = acc.sum(0).split([4 * H, 4 * H, H, H])
        return dgx, (dh, dc), (dW, dgam, dbet, dgamc, dbetc)
