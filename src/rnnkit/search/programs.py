"""rnnkit's built-in cells written in the cell language.

Each program lists its leaves in the gate packing order of the built-in cell, so the cell's
``state_dict`` loads into :class:`~rnnkit.search.compile.ExpressionCell` unchanged and both
compute the same numbers (``tests/test_search_dsl.py`` checks they are bit-for-bit equal).
"""

from __future__ import annotations

ELMAN = "h = tanh(Wx + Uh)"
""":class:`rnnkit.ElmanCell` (tanh): a^<t> = tanh(W_ax x + b_ih + W_aa a^<t-1> + b_hh)."""

LSTM = """\
i = sigmoid(Wx + Uh)
f = sigmoid(Wx + Uh)
g = tanh(Wx + Uh)
o = sigmoid(Wx + Uh)
c = f * c_prev + i * g
h = o * tanh(c)
"""
""":class:`rnnkit.LSTMCell` (no peepholes, no projection); gate order i, f, g, o."""

GRU = """\
r = sigmoid(Wx + Uh)
z = sigmoid(Wx + Uh)
n = tanh(Wx + r * Uh)
h = (1 - z) * n + z * h_prev
"""
""":class:`rnnkit.GRUCell` with ``reset_after=True`` (torch's form); gate order r, z, n."""

GRU_RESET_BEFORE = """\
r = sigmoid(Wx + Uh)
z = sigmoid(Wx + Uh)
n = tanh(Wx + U(r * h_prev))
h = (1 - z) * n + z * h_prev
"""
""":class:`rnnkit.GRUCell` with ``reset_after=False`` (Cho et al., the lecture's form)."""

NAS = """\
l0 = sigmoid(Wx + Uh)
l1 = relu(Wx + Uh)
l2 = sigmoid(Wx + Uh)
l3 = relu(Wx * Uh)
l4 = tanh(Wx + Uh)
l5 = sigmoid(Wx + Uh)
l6 = tanh(Wx + Uh)
l7 = sigmoid(Wx + Uh)
c = tanh(tanh(l0 * l1) + c_prev) * tanh(l2 + l3)
h = tanh(c * tanh(tanh(l4 * l5) + sigmoid(l6 + l7)))
"""
""":class:`rnnkit.NASCell`, Zoph & Le 2017's cell; branches 0..7 in order."""

PROGRAMS = {
    "elman": ELMAN,
    "lstm": LSTM,
    "gru": GRU,
    "gru_reset_before": GRU_RESET_BEFORE,
    "nas": NAS,
}
