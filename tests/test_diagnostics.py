"""rnnkit.diagnostics.gradient_flow against independent oracles: the closed form of a linear
Elman cell, a plain loop over the cells with retain_grad, torch.autograd.functional.jacobian,
and numpy's eigenvalues."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells import RecurrentCell
from rnnkit.diagnostics import gradient_flow, recurrent_spectrum

TOL = 1e-10


class LinearElman(RecurrentCell):
    """a^<t> = W_ax x^<t> + W_aa a^<t-1>: the lecture's cell with g the identity."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size))
        self.weight_hh = nn.Parameter(0.9 * torch.randn(hidden_size, hidden_size) / 2.0)

    def project_input(self, x):
        return x @ self.weight_ih.T

    def step(self, gx, state):
        h = gx + state[0] @ self.weight_hh.T
        return h, (h,)


def _close(a, b, tol=TOL):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return torch.allclose(a, b, rtol=tol, atol=tol * 1e-3)


def test_linear_elman_gradient_equals_closed_form():
    # ℓ = Σ_b v · a_b^<T>, so ∂ℓ/∂a_b^<t> = v^T W_aa^(T-t) for every sequence b.
    T, B, I, H = 12, 3, 2, 4
    layer = rnnkit.Recurrent(LinearElman, I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    v = torch.randn(H, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda out: (out[0][-1] @ v).sum())
    W = layer.cells[0].weight_hh.detach()
    for t in range(1, T + 1):
        g = v @ torch.linalg.matrix_power(W, T - t)  # (H,)
        expected = math.sqrt(B) * g.norm()
        assert _close(flow.grad_norm[0, t - 1], expected)
    by_lag = flow.by_lag(flow.grad_norm[0])
    assert _close(by_lag[5], math.sqrt(B) * (v @ torch.linalg.matrix_power(W, 5)).norm())
    # every one-step Jacobian is W_aa; their product over k lags is W_aa^k
    sigma = torch.linalg.matrix_norm(W, ord=2)
    assert _close(flow.jacobian_norm[0], sigma.expand(B, T))
    for t in range(1, T + 1):
        expected = torch.linalg.matrix_norm(torch.linalg.matrix_power(W, T - t), ord=2)
        assert _close(flow.jacobian_product_norm[0, :, t - 1], expected.expand(B))


def _loop_states(cells, x, reverse_second=False):
    """Run cells as a plain loop; returns per-cell lists of step states with retain_grad.

    Each step's state is cloned before it is handed on, so that the gradient kept is that of
    the state as the next step (and, for h, the output) reads it: the state-space derivative,
    whose chain rule is the product of one-step Jacobians."""
    all_states, outs = [], []
    inp = x
    for k, cell in enumerate(cells):
        seq = inp.flip(0) if (reverse_second and k == 1) else inp
        state = cell.init_state(x.shape[1])
        steps, ys = [], []
        for x_t in seq.unbind(0):
            _, state = cell(x_t, state)
            state = tuple(s.clone() for s in state)
            h = state[0]
            for s in state:
                s.retain_grad()
            steps.append(state)
            ys.append(h)
        all_states.append(steps)
        outs.append(torch.stack(ys))
        if not reverse_second:
            inp = outs[-1]
    return all_states, outs


def test_gradient_norms_equal_a_plain_loop_with_retain_grad():
    T, B, I, H = 7, 2, 3, 4
    layer = rnnkit.LSTM(I, H, num_layers=2).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    v = torch.randn(H, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda out: (out[0][-1] @ v).sum())

    states, outs = _loop_states([layer.cell_at(0), layer.cell_at(1)], x)
    (outs[-1][-1] @ v).sum().backward()
    assert flow.names == ["l0", "l1"]
    for k in range(2):
        for t, (h, c) in enumerate(states[k]):
            g_c = torch.zeros_like(c) if c.grad is None else c.grad  # c^<T> is never read
            assert _close(flow.state_grad_norm[k, 0, t], h.grad.norm())
            assert _close(flow.state_grad_norm[k, 1, t], g_c.norm())
            assert _close(flow.grad_norm[k, t], torch.cat([h.grad, g_c], 1).norm())
    assert flow.state_grad_norm[1, 1, -1] == 0.0


def test_bidirectional_steps_count_in_each_cells_own_order():
    T, B, I, H = 6, 2, 3, 3
    layer = rnnkit.GRU(I, H, bidirectional=True).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    v = torch.randn(2 * H, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda out: (out[0][-1] @ v).sum())

    states, outs = _loop_states([layer.cell_at(0, 0), layer.cell_at(0, 1)], x, True)
    y_last = torch.cat([outs[0][-1], outs[1][0]], dim=1)  # time T: forward step T, backward 1
    (y_last @ v).sum().backward()
    assert flow.names == ["l0", "l0_reverse"]
    for k in range(2):
        for t, (h,) in enumerate(states[k]):
            assert _close(flow.grad_norm[k, t], h.grad.norm())


@pytest.mark.parametrize(
    "make", [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.NASCell], ids=["lstm", "gru", "nas"]
)
def test_jacobian_norms_equal_autograd_functional_jacobian(make):
    T, B, I, H = 5, 2, 2, 3
    layer = rnnkit.Recurrent(make, I, H).double()
    cell = layer.cells[0]
    x = torch.randn(T, B, I, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda out: out[0][-1].sum())

    sizes = [s[0] for s in cell.state_shapes()]

    def one_step(t):
        def f(s):  # flat state of one sequence (N,) -> next flat state (N,)
            parts = tuple(p.unsqueeze(0) for p in s.split(sizes))
            _, new = cell(x[t, b : b + 1], parts)
            return torch.cat(new, dim=1)[0]

        return f

    for b in range(B):
        s = torch.zeros(sum(sizes), dtype=torch.float64)
        traj = [s]
        with torch.no_grad():
            for t in range(T):
                s = one_step(t)(s)
                traj.append(s)
        for t in range(1, T + 1):  # J^<t> at s^<t-1>
            J = torch.autograd.functional.jacobian(one_step(t - 1), traj[t - 1])
            assert _close(flow.jacobian_norm[0, b, t - 1], torch.linalg.svdvals(J)[0])

            def unrolled(s, t=t):  # s^<t> -> s^<T>
                for u in range(t, T):
                    s = one_step(u)(s)
                return s

            P = torch.autograd.functional.jacobian(unrolled, traj[t])
            assert _close(flow.jacobian_product_norm[0, b, t - 1], torch.linalg.svdvals(P)[0])


def test_elman_spectrum_equals_numpy():
    layer = rnnkit.RNN(3, 5, num_layers=2).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    flow = gradient_flow(layer, x, lambda out: out[0][-1].sum(), jacobians=False)
    for k, name in enumerate(["l0", "l1"]):
        W = layer.cell_at(k).weight_hh.detach().numpy()
        eig = np.linalg.eigvals(W)
        spec = flow.spectra[name]
        assert np.allclose(sorted(np.abs(eig)), sorted(spec.eigenvalues.abs().numpy()), atol=1e-12)
        assert spec.spectral_radius == pytest.approx(np.abs(eig).max(), abs=1e-12)
        assert spec.largest_singular_value == pytest.approx(np.linalg.norm(W, 2), abs=1e-12)
    assert flow.jacobian_norm is None


def test_measuring_leaves_the_model_as_it_was():
    layer = rnnkit.LSTM(3, 4).double()
    cells = list(layer.cells)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    before, _ = layer(x)
    gradient_flow(layer, x, lambda out: out[0].sum())
    after, _ = layer(x)
    assert all(a is b for a, b in zip(layer.cells, cells))
    assert torch.equal(before, after)
    assert all(p.grad is None for p in layer.parameters())


def test_model_containing_a_layer_and_its_loss():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnnkit.GRU(2, 3)
            self.head = nn.Linear(3, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][-1])

    model = Model().double()
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    flow = gradient_flow(model, x, lambda y: y.sum())
    # ℓ = w · h^<T> + b per sequence: at the last step ∂ℓ/∂h^<T> = w for both sequences
    w = model.head.weight.detach()[0]
    assert _close(flow.grad_norm[0, -1], math.sqrt(2) * w.norm())


def test_bad_input():
    with pytest.raises(TypeError, match="model must be an rnnkit Recurrent layer or contain one"):
        gradient_flow(nn.Linear(2, 2), torch.zeros(1, 2), lambda y: y.sum())
    layer = rnnkit.GRU(2, 3)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor, got \(4, 2, 3\)"):
        gradient_flow(layer, torch.zeros(4, 2, 2), lambda out: out[0])
    with pytest.raises(TypeError, match=r"one \(H, H\) recurrent matrix W_aa .*got GRUCell"):
        recurrent_spectrum(rnnkit.GRUCell(2, 3))
