r"""How far back the gradient reaches: ∂ℓ/∂a^<t> for every step, and the one-step Jacobians.

The lecture's argument, for the state s^<t> of a recurrent cell (a^<t> for an Elman cell,
(h_t, c_t) for an LSTM):

.. math::
    \frac{\partial \ell}{\partial s^{<t>}} = \frac{\partial \ell}{\partial s^{<T>}}
        \prod_{u=t+1}^{T} J^{<u>}, \qquad J^{<u>} = \frac{\partial s^{<u>}}{\partial s^{<u-1>}}

(plus whatever ℓ reads from s^<t> directly), and for an Elman cell
J^<u> = diag(g'(·)) W_aa, so ‖∂ℓ/∂s^<t>‖ shrinks or grows like the powers of W_aa: spectral
radius < 1 vanishing, > 1 exploding, in the linear regime of g.

:func:`gradient_flow` measures all of it on a real model and input:

* the gradient norms ‖∂ℓ/∂s^<t>‖ for every step t and every cell (layer and direction), by
  adding a zero "probe" to each step's state and differentiating ℓ with respect to it;
* the largest singular value of each one-step Jacobian J^<t>, and of their products
  ∂s^<T>/∂s^<t> (the "product over lags");
* the eigenvalues and spectral radius of W_aa for every Elman cell (:func:`recurrent_spectrum`;
  also for a cell program with a single ``Uh``, such as the linear ``h = Wx + Uh``).

∂ℓ/∂s^<t> is the gradient with respect to the state as step t hands it on (to step t+1 and, for
h_t, to the output): the state-space derivative that the product of Jacobians propagates. For
an LSTM the c_t part therefore leaves out the path c_t -> h_t inside step t, which the h_t
part carries.

Steps are counted in the order each cell runs: for a backward direction, step 1 reads the last
input. The lag of step t is T - t.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..cells import RecurrentCell, State
from ..recurrent import Recurrent


@dataclass
class Spectrum:
    """The recurrent matrix W_aa (``weight_hh``) of an Elman cell, as the lecture reads it."""

    eigenvalues: Tensor  # (H,) complex, by decreasing modulus
    spectral_radius: float  # max |λ|: < 1 vanishing, > 1 exploding (linear regime)
    largest_singular_value: float  # ‖W_aa‖₂ >= spectral radius; = it for a normal matrix


def has_single_recurrent_matrix(cell: RecurrentCell) -> bool:
    """Whether the cell's recurrence is one (H, H) matrix W_aa (``weight_hh``): an Elman cell,
    or a cell program with a single ``Uh``."""
    W = getattr(cell, "weight_hh", None)
    return isinstance(W, Tensor) and tuple(W.shape) == (cell.hidden_size, cell.hidden_size)


def recurrent_spectrum(cell: RecurrentCell) -> Spectrum:
    """Eigenvalues, spectral radius and largest singular value of an Elman cell's W_aa (any
    cell whose ``weight_hh`` is one (H, H) matrix)."""
    if not has_single_recurrent_matrix(cell):
        raise TypeError(
            f"cell must have one (H, H) recurrent matrix W_aa (an ElmanCell), "
            f"got {type(cell).__name__}"
        )
    W = cell.weight_hh.detach().double()  # (H, H)
    eig = torch.linalg.eigvals(W)
    eig = eig[eig.abs().argsort(descending=True)]
    return Spectrum(
        eigenvalues=eig,
        spectral_radius=float(eig.abs().max()),
        largest_singular_value=float(torch.linalg.matrix_norm(W, ord=2)),
    )


@dataclass
class GradientFlow:
    """What :func:`gradient_flow` measured, for K = L·D cells over T steps and B sequences.

    Attributes:
        names: K cell names, torch's suffixes: ``"l0"``, ``"l0_reverse"``, ``"l1"``...
        loss: ℓ.
        grad_norm: (K, T) ‖∂ℓ/∂s^<t>‖ over the whole state (all its tensors, all B sequences).
        state_grad_norm: (K, S, T) the same for each of the S state tensors (h, then c).
        jacobian_norm: (K, B, T) σ_max(∂s^<t>/∂s^<t-1>) per sequence, t = 1..T
            (None when not computed).
        jacobian_product_norm: (K, B, T) σ_max(∂s^<T>/∂s^<t>) per sequence, t = 1..T; 1 at
            t = T (None when not computed).
        spectra: name -> :class:`Spectrum` for every cell with one (H, H) matrix W_aa (Elman).
    """

    names: list[str]
    loss: float
    grad_norm: Tensor
    state_grad_norm: Tensor
    jacobian_norm: Tensor | None = None
    jacobian_product_norm: Tensor | None = None
    spectra: dict[str, Spectrum] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.grad_norm.shape[1]

    def by_lag(self, values: Tensor) -> Tensor:
        """``values`` (..., T) indexed by lag k = T - t instead of t: (..., T), k = 0..T-1."""
        return values.flip(-1)


class _Probe(RecurrentCell):
    """Wraps a cell for one measurement: each step's new state gets a zero probe added (whose
    gradient is ∂ℓ/∂s^<t>) and the step's inputs are kept (to rebuild its Jacobian)."""

    def __init__(self, inner: RecurrentCell) -> None:
        nn.Module.__init__(self)
        self.inner = inner
        self.input_size = inner.input_size
        self.hidden_size = inner.hidden_size
        self.probes: list[tuple[Tensor, ...]] = []
        self.inputs: list[tuple[Tensor, State]] = []

    @property
    def output_size(self) -> int:
        return self.inner.output_size

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        return self.inner.state_sizes

    def init_state(self, batch_size, device=None, dtype=None) -> State:
        return self.inner.init_state(batch_size, device, dtype)

    def project_input(self, x: Tensor) -> Tensor:
        return self.inner.project_input(x)

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        self.inputs.append((gx.detach(), tuple(s.detach() for s in state)))
        _, new = self.inner.step(gx, state)
        probes = tuple(torch.zeros_like(s, requires_grad=True) for s in new)
        self.probes.append(probes)
        new = tuple(s + p for s, p in zip(new, probes))
        return new[0], new  # state[0] is the output h_t (the cell contract)


def _recurrent_layers(model: nn.Module) -> list[tuple[str, Recurrent]]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Recurrent)]
    if not found:
        raise TypeError(
            f"model must be an rnnkit Recurrent layer or contain one, got {type(model).__name__}"
        )
    return found


@contextmanager
def _probed(layers: list[tuple[str, Recurrent]]):
    saved = []
    try:
        for _, layer in layers:
            for k, cell in enumerate(layer.cells):
                probe = _Probe(cell)
                saved.append((layer, k, cell, probe))
                layer.cells[k] = probe
        yield [(layer, k, probe) for layer, k, _, probe in saved]
    finally:
        for layer, k, cell, _ in saved:
            layer.cells[k] = cell


def _name(prefix: str, layer: Recurrent, k: int, several: bool) -> str:
    lay, d = divmod(k, layer.num_directions)
    name = f"l{lay}{'_reverse' if d else ''}"
    return f"{prefix}.{name}" if several and prefix else name


def gradient_flow(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[..., Tensor],
    *,
    jacobians: bool = True,
) -> GradientFlow:
    r"""Measure the gradient flow of ``model`` on ``x`` under the loss ``loss_fn(model(x))``.

    Args:
        model: an :class:`rnnkit.Recurrent` layer (``rnnkit.LSTM``...) or any module that
            contains such layers (every one of their cells is measured, in ``named_modules``
            order). Its mode (train/eval) is left as it is.
        x: the input, as ``model`` takes it.
        loss_fn: maps what ``model(x)`` returns to a scalar ℓ. For the lecture's ℓ^<T>, read
            the last step only, e.g. ``lambda out: (out[0][-1] * v).sum()`` for a Recurrent.
        jacobians: also compute the one-step Jacobians (S backward passes per cell, S the
            state size; turn off for very wide states).

    Returns:
        A :class:`GradientFlow`. A step whose state ℓ does not depend on has gradient 0.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (model output -> scalar), got {loss_fn!r}")
    layers = _recurrent_layers(model)
    with _probed(layers) as probed:
        loss = loss_fn(model(x))
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor, got {shape}")
        probes = [p for _, _, probe in probed for step in probe.probes for p in step]
        if not probes:
            raise ValueError("model(x) ran no recurrent step: nothing to measure")
        grads = torch.autograd.grad(loss, probes, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(probes, grads)]

    several = len(layers) > 1
    names, per_cell, jac, jac_prod, spectra = [], [], [], [], {}
    it = iter(grads)
    lengths = {len(probe.probes) for _, _, probe in probed}
    if len(lengths) != 1:
        raise ValueError(f"every cell must run the same number of steps, got {sorted(lengths)}")
    prefix = {id(layer): n for n, layer in layers}
    for layer, k, probe in probed:
        name = _name(prefix[id(layer)], layer, k, several)
        names.append(name)
        S = len(probe.state_sizes)
        norms = torch.stack(
            [
                torch.stack([next(it).detach().double().norm() for _ in range(S)])
                for _ in probe.probes
            ]
        )  # (T, S)
        per_cell.append(norms.T)  # (S, T)
        if jacobians:
            J = step_jacobians(probe.inner, probe.inputs)  # (T, B, N, N)
            jac.append(torch.linalg.matrix_norm(J, ord=2).T)  # (B, T)
            jac_prod.append(_product_norms(J).T)  # (B, T)
        if has_single_recurrent_matrix(probe.inner):
            spectra[name] = recurrent_spectrum(probe.inner)
    state_norm = torch.stack(per_cell)  # (K, S, T)
    return GradientFlow(
        names=names,
        loss=float(loss.detach()),
        grad_norm=state_norm.pow(2).sum(1).sqrt(),
        state_grad_norm=state_norm,
        jacobian_norm=torch.stack(jac) if jacobians else None,
        jacobian_product_norm=torch.stack(jac_prod) if jacobians else None,
        spectra=spectra,
    )


def _flat(state: State) -> Tensor:
    """A state tuple as one (B, N) tensor, N = the sum of its tensors' per-sample sizes."""
    return torch.cat([s.reshape(s.shape[0], -1) for s in state], dim=1)


def _unflat(flat: Tensor, like: State) -> State:
    sizes = [s[0].numel() for s in like]
    return tuple(p.reshape(s.shape) for p, s in zip(flat.split(sizes, dim=1), like))


def step_jacobians(cell: RecurrentCell, inputs: list[tuple[Tensor, State]]) -> Tensor:
    """J^<t> = ∂s^<t>/∂s^<t-1> at each recorded step (gx_t, s^<t-1>): (T, B, N, N), the state
    flattened to N = the sum of its tensors' sizes (h then c). All steps are evaluated as one
    batch; row i of every J comes from one backward pass (the step treats samples
    independently)."""
    T = len(inputs)
    B = inputs[0][0].shape[0]
    gx = torch.cat([g for g, _ in inputs])  # (T·B, G)
    states = tuple(torch.cat([s[i] for _, s in inputs]) for i in range(len(inputs[0][1])))
    flat = _flat(states).detach().requires_grad_(True)  # (T·B, N)
    with torch.enable_grad():
        _, new = cell.step(gx, _unflat(flat, states))
        out = _flat(new)  # (T·B, N)
        N = out.shape[1]
        rows = [
            torch.autograd.grad(out[:, i].sum(), flat, retain_graph=i < N - 1)[0] for i in range(N)
        ]
    J = torch.stack(rows, dim=1)  # (T·B, N, N): J[b, i, j] = ∂out_i/∂state_j
    return J.detach().reshape(T, B, N, N)


def _product_norms(J: Tensor) -> Tensor:
    """σ_max(∂s^<T>/∂s^<t>) = σ_max(J^<T> ··· J^<t+1>) for t = 1..T: (T, B)."""
    T, B, N, _ = J.shape
    P = torch.eye(N, dtype=J.dtype).expand(B, N, N)
    out = []
    for t in range(T - 1, -1, -1):  # J[t] is J^<t+1>; here P = ∂s^<T>/∂s^<t+1>
        out.append(torch.linalg.matrix_norm(P, ord=2))
        P = P @ J[t]
    return torch.stack(out[::-1])  # (T, B), step 1 first
