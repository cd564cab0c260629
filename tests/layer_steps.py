"""A training step through a layer for tests that compare routes: its values and gradients."""

from __future__ import annotations

import torch

from rnnkit import Recurrent


def training_step(layer: Recurrent, x, h0, lengths):
    """Outputs, final states, and the gradients of x, h_0 and every parameter of a loss that
    weighs every output and final state with fixed random weights, returned last as
    (dout, dh) for a reference to use."""
    out, h_n = layer(x, h0 if len(h0) > 1 else h0[0], lengths=lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    g = torch.Generator().manual_seed(2)
    dout = torch.randn(out.shape, dtype=out.dtype, generator=g)
    dh = [torch.randn(h.shape, dtype=h.dtype, generator=g) for h in h_n]
    loss = (out * dout).sum() + sum((h * d).sum() for h, d in zip(h_n, dh))
    grads = torch.autograd.grad(loss, [x, *h0, *layer.parameters()])
    return out.detach(), [h.detach() for h in h_n], grads, (dout, dh)
