"""A NumPy float64 reference for backprop through time, written as in the lecture.

No torch here: the reference is the independent oracle that rnnkit's torch cells and engines
are tested against, and it is itself tested against finite differences and torch autograd.

Each cell module offers two pure functions (shapes: T time, B batch, I input, H hidden):

* ``forward(params, xs, h0) -> (ys, cache)`` with ``xs`` (T, B, I), ``h0`` (B, H) (for the
  LSTM a pair ``(h0, c0)``) and ``ys`` (T, B, H);
* ``backward(params, cache, dys, dstate_T=None) -> grads``, ``grads`` holding the gradient of
  every parameter plus ``"xs"`` and ``"h0"`` (LSTM: ``"h0"`` and ``"c0"``).

``params`` is a dict with the names and layouts of the rnnkit cell (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``, ``weight_ci``/``cf``/``co``), so a torch cell's
parameters copy over with ``{k: p.detach().double().numpy() for k, p in
cell.named_parameters()}``.

Modules: :mod:`.elman` (tanh, relu), :mod:`.lstm` (with or without peepholes), :mod:`.gru`
(``reset_after`` True or False), :mod:`.output` (the output layer W_ya a + b_y),
:mod:`.losses` (binary and softmax cross-entropy) and :mod:`.gradcheck` (finite differences).
"""

from . import elman, gradcheck, gru, losses, lstm, output
from .gradcheck import check_gradients, numerical_gradient, relative_error
from .losses import binary_cross_entropy_with_logits, softmax_cross_entropy

__all__ = [
    "elman",
    "lstm",
    "gru",
    "output",
    "losses",
    "gradcheck",
    "binary_cross_entropy_with_logits",
    "softmax_cross_entropy",
    "numerical_gradient",
    "check_gradients",
    "relative_error",
]
