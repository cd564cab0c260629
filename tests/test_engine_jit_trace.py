"""Layers under ``torch.jit.trace``: a trace records torch ops only, so the engine runs torch
ops alone there (the fused ops, the autograd loop, with lengths the masked loop). The traced
module, run on another input (and other lengths), gives the eager module's outputs and input
gradient; torch's own trace check (``check_trace``, on by default) passes; the compiled loops
refuse to be traced, by name."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import rnnkit
from rnnkit import Recurrent
from rnnkit.cells import LSTMCell, MGUCell, NASCell

I, H, T = 4, 5, 9

LAYERS = {
    "gru": lambda: rnnkit.GRU(I, H),
    "lstm_2_layers": lambda: rnnkit.LSTM(I, H, num_layers=2),
    "elman": lambda: rnnkit.RNN(I, H),
    "mgu_bidirectional": lambda: Recurrent(MGUCell, I, H, bidirectional=True),
    "peephole_lstm": lambda: Recurrent(partial(LSTMCell, peephole=True), I, H),
    "nas": lambda: Recurrent(NASCell, I, H),
}


class _WithLengths(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.layer(x, lengths=lengths)[0]


class _Outputs(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)[0]


def _out_and_grad(fn, *args):
    x = args[0].clone().requires_grad_(True)
    out = fn(x, *args[1:])
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view_as(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    return out, grad


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_traced_layer_equals_eager_on_another_input(name, with_lengths):
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    x = torch.randn(T, 3, I, dtype=torch.float64)
    other = torch.randn(T, 3, I, dtype=torch.float64)
    if with_lengths:
        model = _WithLengths(layer)
        traced = torch.jit.trace(model, (x, torch.tensor([T, 4, 6])))
        # the masks are ops on the lengths: other lengths run through the same trace
        for lengths in (torch.tensor([T, 4, 6]), torch.tensor([3, T, 1])):
            got = _out_and_grad(traced, other, lengths)
            want = _out_and_grad(model, other, lengths)
            assert all((a - b).abs().max().item() <= 1e-12 for a, b in zip(got, want))
    else:
        model = _Outputs(layer)
        traced = torch.jit.trace(model, (x,))
        got, want = _out_and_grad(traced, other), _out_and_grad(model, other)
        assert all((a - b).abs().max().item() <= 1e-12 for a, b in zip(got, want))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:DeprecationWarning")
def test_the_compiled_loops_refuse_a_trace():
    layer = rnnkit.GRU(I, H)
    layer.engine = "native"
    with pytest.raises(ValueError, match="engine 'native' cannot run under torch.jit.trace"):
        torch.jit.trace(_Outputs(layer), (torch.randn(T, 3, I),))
