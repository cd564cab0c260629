r"""Compile a cell program (:mod:`rnnkit.search.dsl`) into an rnnkit cell.

The program's leaves become rows of two packed matrices, numbered in the order they appear in
the text:

* ``weight_ih`` (n_x·H, I) and ``bias_ih`` (n_x·H): the k-th ``Wx`` is rows k·H..(k+1)·H;
  :meth:`ExpressionCell.project_input` computes all of them in one product;
* ``weight_hh`` (n_h·H, H) and ``bias_hh`` (n_h·H): the k-th ``Uh`` or ``U(...)``.

These are torch's names and, for programs whose leaves follow a built-in cell's gate order,
its layout too: ``LSTMCell``'s state dict loads into the LSTM program unchanged (see
:mod:`rnnkit.search.programs`). Parameter count: n_x·H·(I + 1) + n_h·H·(H + 1) with biases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from ..cells.base import RecurrentCell, State, linear
from .dsl import Apply, Const, Expr, Leaf, Name, Program, Project, parse

_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "identity": lambda a: a,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "sin": torch.sin,
    "neg": lambda a: -a,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "max": lambda a, b: _maximum(a, b),
}


def _maximum(a: Tensor | float, b: Tensor | float) -> Tensor:
    if not isinstance(a, Tensor):  # the parser guarantees one side is a tensor
        a, b = b, a
    return torch.clamp(a, min=b) if not isinstance(b, Tensor) else torch.maximum(a, b)


@dataclass(frozen=True)
class _Instr:
    """``slots[out] = op(*args)``; an argument is a slot index (int) or a constant (float).
    The op "U" projects its one argument with ``weight_hh[rows]``."""

    op: str
    args: tuple[int | float, ...]
    rows: tuple[int, int] = (0, 0)


class _Compiler:
    """Turns the tree into straight-line code over numbered slots.

    Slots: h_prev, [c_prev], the n_x ``Wx`` leaves, the ``Uh`` leaves, then one per
    instruction. The k-th ``Uh``/``U(...)`` in pre-order (a ``U`` before the leaves of its
    argument) owns rows k·H..(k+1)·H of ``weight_hh``. ``Uh`` leaves read only h_{t-1}, so the
    step computes them all before the rest.
    """

    def __init__(self, program: Program, hidden_size: int) -> None:
        self.H = hidden_size
        self.names: dict[str, int | float] = {"h_prev": 0}
        first_x = 1
        if program.has_memory:
            self.names["c_prev"] = 1
            first_x = 2
        self.first_x = first_x
        self.first_uh = first_x + program.num_input_projections
        # the weight_hh block of each Uh leaf, in the order of their slots
        self.uh_blocks = [
            k
            for k, e in enumerate(e for s in program.statements for e in _u_nodes(s.expr))
            if isinstance(e, Leaf)
        ]
        self.n_slots = self.first_uh + len(self.uh_blocks)
        self.seen_x = self.seen_uh = self.seen_u = 0
        self.code: list[_Instr] = []
        for s in program.statements:
            self.names[s.target] = self.emit(s.expr)
        self.h_slot = int(self.names["h"])
        self.c_slot = int(self.names["c"]) if program.has_memory else -1

    def emit(self, e: Expr) -> int | float:
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Name):
            return self.names[e.name]
        if isinstance(e, Leaf):
            if e.kind == "Wx":
                self.seen_x += 1
                return self.first_x + self.seen_x - 1
            self.seen_u += 1
            self.seen_uh += 1
            return self.first_uh + self.seen_uh - 1
        if isinstance(e, Project):
            k = self.seen_u
            self.seen_u += 1
            arg = self.emit(e.arg)
            return self.push(_Instr("U", (arg,), (k * self.H, (k + 1) * self.H)))
        if not isinstance(e, Apply):
            raise TypeError(f"program node must be an Expr, got {type(e).__name__}")
        return self.push(_Instr(e.op, tuple(self.emit(a) for a in e.args)))

    def push(self, instr: _Instr) -> int:
        self.code.append(instr)
        self.n_slots += 1
        return self.n_slots - 1


def _u_nodes(e: Expr):
    """The ``Uh`` leaves and ``U(...)`` nodes of ``e`` in pre-order (left to right)."""
    if isinstance(e, Project):
        yield e
        yield from _u_nodes(e.arg)
    elif isinstance(e, Leaf) and e.kind == "Uh":
        yield e
    elif isinstance(e, Apply):
        for a in e.args:
            yield from _u_nodes(a)


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Consecutive block indices grouped into (first, last + 1) runs: one product per run."""
    runs: list[tuple[int, int]] = []
    for k in blocks:
        if runs and runs[-1][1] == k:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((k, k + 1))
    return runs


class ExpressionCell(RecurrentCell):
    r"""A recurrent cell whose step is a program of :mod:`rnnkit.search.dsl`.

    ``project_input`` computes every ``Wx`` leaf in one product, ``x @ weight_ih.T + bias_ih``
    ((..., I) -> (..., n_x·H)); ``step`` computes the ``Uh`` leaves with one product per run of
    consecutive blocks of ``weight_hh``, then evaluates the program's statements in order.

    State: ``(h,)``, or ``(h, c)`` when the program defines ``c``; all (B, H).
    Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), as torch's cells.
    """

    def __init__(
        self, input_size: int, hidden_size: int, program: str | Program, bias: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.program = parse(program)
        self.bias = bool(bias)
        H = hidden_size
        compiled = _Compiler(self.program, H)
        self._code, self._h_slot, self._c_slot = compiled.code, compiled.h_slot, compiled.c_slot
        self._uh_runs = [(a * H, b * H) for a, b in _runs(compiled.uh_blocks)]
        n_x = self.program.num_input_projections
        n_h = self.program.num_state_projections
        self.weight_ih = nn.Parameter(torch.empty(n_x * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(n_h * H, H))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(n_x * H))
            self.bias_hh = nn.Parameter(torch.empty(n_h * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        if self.program.has_memory:
            return (self.hidden_size, self.hidden_size)
        return (self.hidden_size,)

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., n_x·H)

    def _rows(self, a: int, b: int) -> tuple[Tensor, Tensor | None]:
        bias = None if self.bias_hh is None else self.bias_hh[a:b]
        return self.weight_hh[a:b], bias

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        H = self.hidden_size
        slots: list[Tensor | float] = list(state)  # h_prev, [c_prev]
        slots.extend(gx.split(H, dim=1))  # the Wx leaves, each (B, H)
        h_prev = state[0]
        for a, b in self._uh_runs:
            slots.extend(linear(h_prev, *self._rows(a, b)).split(H, dim=1))  # Uh leaves
        for instr in self._code:
            args = [slots[a] if isinstance(a, int) else a for a in instr.args]
            if instr.op == "U":
                slots.append(linear(args[0], *self._rows(*instr.rows)))
            else:
                slots.append(_FUNCTIONS[instr.op](*args))
        h = slots[self._h_slot]
        if self._c_slot < 0:
            return h, (h,)
        return h, (h, slots[self._c_slot])

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, "
            f"Wx={self.program.num_input_projections}, U={self.program.num_state_projections}, "
            f"memory={self.program.has_memory}"
        )


def expression_cell(
    program: str | Program, bias: bool = True
) -> Callable[[int, int], ExpressionCell]:
    """A cell factory for :class:`rnnkit.Recurrent`: ``Recurrent(expression_cell(p), I, H)``.
    The program is parsed (and checked) once, here."""
    return partial(ExpressionCell, program=parse(program), bias=bias)


def count_parameters(
    program: str | Program, input_size: int, hidden_size: int, bias: bool = True
) -> int:
    """Parameters of the compiled cell: n_x·H·I + n_h·H·H, plus n_x·H + n_h·H with biases."""
    p = parse(program)
    n_x, n_h = p.num_input_projections, p.num_state_projections
    H = hidden_size
    return n_x * H * input_size + n_h * H * H + (n_x + n_h) * H * int(bool(bias))
