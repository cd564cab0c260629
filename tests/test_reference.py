"""The NumPy BPTT reference against independent oracles.

* every cell's backward equals central finite differences of its forward;
* every cell's forward and backward equal torch autograd through the rnnkit torch cell
  (float64, a plain Python loop over time, parameters copied over);
* the losses equal their formulas and torch's, and their gradients equal finite differences;
* the whole lecture chain (cell -> output layer -> loss) equals finite differences;
* importing the reference does not import torch;
* the example in docs/reference.md runs and passes its own check.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.reference import (
    binary_cross_entropy_with_logits,
    check_gradients,
    elman,
    gru,
    lstm,
    output,
    softmax_cross_entropy,
)

T, B, I, H, K = 5, 3, 4, 6, 7  # time, batch, input, hidden, output classes
FD_TOLERANCE = 1e-6  # relative error of the backward against finite differences
TORCH_TOLERANCE = 1e-10  # max abs difference from torch autograd in float64


@dataclass(frozen=True)
class Case:
    """One reference cell/form and the rnnkit torch cell it must equal."""

    name: str
    module: ModuleType
    gates: int
    make_cell: Callable[[bool], torch.nn.Module]  # bias -> cell
    options: dict[str, Any] = field(default_factory=dict)  # extra forward() arguments
    peephole: bool = False

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h0", "c0") if self.module is lstm else ("h0",)


CASES = [
    Case(
        "elman-tanh",
        elman,
        gates=1,
        make_cell=lambda bias: ElmanCell(I, H, nonlinearity="tanh", bias=bias),
        options={"nonlinearity": "tanh"},
    ),
    Case(
        "elman-relu",
        elman,
        gates=1,
        make_cell=lambda bias: ElmanCell(I, H, nonlinearity="relu", bias=bias),
        options={"nonlinearity": "relu"},
    ),
    Case(
        "lstm",
        lstm,
        gates=4,
        make_cell=lambda bias: LSTMCell(I, H, bias=bias, forget_bias=0.0),
    ),
    Case(
        "lstm-peephole",
        lstm,
        gates=4,
        make_cell=lambda bias: LSTMCell(I, H, bias=bias, peephole=True, forget_bias=0.0),
        peephole=True,
    ),
    Case(
        "gru-reset-after",
        gru,
        gates=3,
        make_cell=lambda bias: GRUCell(I, H, bias=bias, reset_after=True),
        options={"reset_after": True},
    ),
    Case(
        "gru-reset-before",
        gru,
        gates=3,
        make_cell=lambda bias: GRUCell(I, H, bias=bias, reset_after=False),
        options={"reset_after": False},
    ),
]
case_params = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
bias_params = pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])


def random_params(case: Case, rng: np.random.Generator, bias: bool) -> dict[str, np.ndarray]:
    """Parameters of the case's shapes, U(-0.7, 0.7): large enough to push gates off 0.5."""
    G = case.gates * H
    shapes = {"weight_ih": (G, I), "weight_hh": (G, H)}
    if bias:
        shapes |= {"bias_ih": (G,), "bias_hh": (G,)}
    if case.peephole:
        shapes |= {"weight_ci": (H,), "weight_cf": (H,), "weight_co": (H,)}
    return {name: rng.uniform(-0.7, 0.7, size=shape) for name, shape in shapes.items()}


def run(case: Case, params: dict, xs: np.ndarray, states: dict[str, np.ndarray]):
    """The case's forward; returns (ys, cache, final state as a tuple)."""
    if case.module is lstm:
        ys, cache = lstm.forward(params, xs, (states["h0"], states["c0"]))
        return ys, cache, (ys[-1], cache["c"][-1])
    ys, cache = case.module.forward(params, xs, states["h0"], **case.options)
    return ys, cache, (ys[-1],)


def backprop(case: Case, params: dict, cache: dict, dys: np.ndarray, dfinal: tuple) -> dict:
    """The case's backward, with dfinal the gradient on the final state as a tuple."""
    dstate_T = dfinal if case.module is lstm else dfinal[0]
    return case.module.backward(params, cache, dys, dstate_T)


def random_inputs(case: Case, rng: np.random.Generator):
    """xs, initial states, and weights w (on every output) and v (on the final state)."""
    xs = rng.normal(size=(T, B, I))
    states = {name: rng.uniform(-0.8, 0.8, size=(B, H)) for name in case.state_names}
    w = rng.normal(size=(T, B, H))
    v = tuple(rng.normal(size=(B, H)) for _ in case.state_names)
    return xs, states, w, v


# -- 1. backward == finite differences --------------------------------------------------------


@case_params
@bias_params
def test_backward_equals_finite_differences(case: Case, bias: bool):
    rng = np.random.default_rng(1)
    params = random_params(case, rng, bias)
    xs, states, w, v = random_inputs(case, rng)

    def loss() -> float:
        # every output step, and the final state (so dstate_T is checked too)
        ys, _, final = run(case, params, xs, states)
        return float(np.sum(w * ys) + sum(np.sum(vi * si) for vi, si in zip(v, final)))

    _, cache, _ = run(case, params, xs, states)
    grads = backprop(case, params, cache, w, v)
    arrays = {**params, "xs": xs, **states}
    assert set(grads) == set(arrays)
    errors = check_gradients(loss, arrays, grads)
    assert max(errors.values()) <= FD_TOLERANCE, errors


# -- 2. forward and backward == torch autograd through the rnnkit cell ------------------------


@case_params
@bias_params
def test_matches_torch_autograd(case: Case, bias: bool):
    cell = case.make_cell(bias).double()
    params = {k: p.detach().double().numpy().copy() for k, p in cell.named_parameters()}
    xs, states, w, v = random_inputs(case, np.random.default_rng(2))

    ys, cache, _ = run(case, params, xs, states)
    grads = backprop(case, params, cache, w, v)

    xs_t = torch.tensor(xs, requires_grad=True)
    states_t = {name: torch.tensor(s, requires_grad=True) for name, s in states.items()}
    state = tuple(states_t.values())
    outs = []
    for t in range(T):
        y_t, state = cell(xs_t[t], state)
        outs.append(y_t)
    ys_t = torch.stack(outs)  # (T, B, H)
    loss = (torch.tensor(w) * ys_t).sum()
    loss = loss + sum((torch.tensor(vi) * si).sum() for vi, si in zip(v, state))
    loss.backward()
    expected = {k: p.grad for k, p in cell.named_parameters()}
    expected |= {"xs": xs_t.grad} | {name: s.grad for name, s in states_t.items()}

    assert np.abs(ys - ys_t.detach().numpy()).max() <= TORCH_TOLERANCE
    assert set(grads) == set(expected)
    for name, grad in expected.items():
        diff = np.abs(grads[name] - grad.numpy()).max()
        assert diff <= TORCH_TOLERANCE, f"{name}: max abs diff {diff:.3g}"


# -- 3. losses ----------------------------------------------------------------------------------


def test_binary_cross_entropy_formula_torch_and_gradient():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(T, B, 2))
    targets = rng.integers(0, 2, size=(T, B, 2)).astype(float)
    targets[0] = rng.uniform(size=(B, 2))  # soft targets are allowed
    loss, dlogits = binary_cross_entropy_with_logits(logits, targets)

    # the lecture's formula, summed over t (and labels), averaged over the batch
    y_hat = 1.0 / (1.0 + np.exp(-logits))
    formula = np.sum(-targets * np.log(y_hat) - (1 - targets) * np.log(1 - y_hat)) / B
    assert loss == pytest.approx(formula, rel=1e-12)
    torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits), torch.tensor(targets), reduction="sum"
    )
    assert loss == pytest.approx(torch_loss.item() / B, rel=1e-12)

    errors = check_gradients(
        lambda: binary_cross_entropy_with_logits(logits, targets)[0],
        {"logits": logits},
        {"logits": dlogits},
    )
    assert errors["logits"] <= FD_TOLERANCE


def test_softmax_cross_entropy_formula_torch_and_gradient():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3.0, size=(T, B, K))
    targets = rng.integers(0, K, size=(T, B))
    loss, dlogits = softmax_cross_entropy(logits, targets)

    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    picked = np.take_along_axis(probs, targets[..., None], axis=2)
    assert loss == pytest.approx(-np.log(picked).sum() / B, rel=1e-12)
    torch_loss = torch.nn.functional.cross_entropy(
        torch.tensor(logits).reshape(T * B, K),
        torch.tensor(targets).reshape(T * B),
        reduction="sum",
    )
    assert loss == pytest.approx(torch_loss.item() / B, rel=1e-12)

    errors = check_gradients(
        lambda: softmax_cross_entropy(logits, targets)[0], {"logits": logits}, {"logits": dlogits}
    )
    assert errors["logits"] <= FD_TOLERANCE


def test_losses_stay_exact_for_saturated_logits():
    # log(1 + e^1000) would overflow if computed naively (and warnings are errors here)
    logits = np.array([[[1000.0, -1000.0]]])  # (T=1, B=1, 2)
    loss, dlogits = binary_cross_entropy_with_logits(logits, np.array([[[0.0, 0.0]]]))
    assert loss == 1000.0
    np.testing.assert_array_equal(dlogits, [[[1.0, 0.0]]])

    loss, dlogits = softmax_cross_entropy(logits, np.array([[1]]))
    assert loss == 2000.0
    np.testing.assert_array_equal(dlogits, [[[1.0, -1.0]]])


# -- the lecture's whole chain: cell -> W_ya a + b_y -> g_y and loss ----------------------------


@case_params
@pytest.mark.parametrize("loss_name", ["binary", "softmax"])
def test_cell_output_layer_and_loss_equal_finite_differences(case: Case, loss_name: str):
    rng = np.random.default_rng(5)
    params = random_params(case, rng, bias=True)
    head = {"weight": rng.normal(scale=0.5, size=(K, H)), "bias": rng.normal(size=K)}
    xs, states, _, _ = random_inputs(case, rng)
    if loss_name == "binary":
        targets = rng.integers(0, 2, size=(T, B, K)).astype(float)
        loss_fn = binary_cross_entropy_with_logits
    else:
        targets = rng.integers(0, K, size=(T, B))
        loss_fn = softmax_cross_entropy

    def loss() -> float:
        ys, _, _ = run(case, params, xs, states)
        return loss_fn(output.forward(head, ys)[0], targets)[0]

    ys, cache, _ = run(case, params, xs, states)
    logits, head_cache = output.forward(head, ys)
    _, dlogits = loss_fn(logits, targets)
    head_grads = output.backward(head, head_cache, dlogits)
    grads = case.module.backward(params, cache, head_grads["a"])  # no loss on the final state
    grads |= {"head." + k: g for k, g in head_grads.items() if k != "a"}

    arrays = {**params, "xs": xs, **states} | {"head." + k: a for k, a in head.items()}
    errors = check_gradients(loss, arrays, grads)
    assert max(errors.values()) <= FD_TOLERANCE, errors


# -- 4. no torch in the reference -------------------------------------------------------------


def test_reference_does_not_import_torch():
    code = "import rnnkit.reference, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_docs_example_runs():
    # the hand check in docs/reference.md asserts its own result
    doc = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
    (example,) = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    exec(compile(example, str(doc), "exec"), {"__name__": "docs_example"})


# -- input validation ---------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    params = random_params(CASES[0], rng, bias=True)
    xs, h0 = rng.normal(size=(T, B, I)), np.zeros((B, H))
    with pytest.raises(ValueError, match=r"xs must have shape \(T, B, I=4\), got \(5, 3\)"):
        elman.forward(params, xs[:, :, 0], h0)
    with pytest.raises(ValueError, match=r"h0 must have shape \(B=3, H=6\), got \(2, 6\)"):
        elman.forward(params, xs, h0[:2])
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        elman.forward(params, xs, h0, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"unexpected parameter\(s\) \['weight_hr'\]"):
        lstm.forward({"weight_hr": np.zeros((2, H))}, xs, (h0, h0))
    with pytest.raises(ValueError, match="come together or not at all"):
        elman.forward({k: p for k, p in params.items() if k != "bias_hh"}, xs, h0)
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(3H, H\)"):
        gru.forward(params, xs, h0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, V=7\)"):
        softmax_cross_entropy(np.zeros((T, B, K)), np.full((T, B), K))
