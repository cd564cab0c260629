"""The cell contract, written once.

Shape glossary used by every docstring in rnnkit:

    B batch, T time, I input features, H hidden features, P projection size,
    D directions (1 or 2), L layers, V vocabulary, E embedding size.

A *cell* computes exactly one time step. It owns its parameters and its math, and nothing else:
looping over time, padding, reversing, stacking layers and streaming live in
:class:`rnnkit.Recurrent`.

Every cell implements

* ``forward(x_t, state) -> (h_t, new_state)`` with ``x_t`` of shape (B, I), ``state`` a tuple of
  tensors (one per entry of ``state_sizes``, each (B, size)) and ``h_t`` of shape
  (B, output_size);
* ``init_state(batch_size, device=None, dtype=None)``: the all-zero state a^<0> = 0;
* ``input_size``, ``hidden_size``, ``output_size`` and ``state_sizes``.

The step is split in two so that a sequence engine can batch the input half over all time steps
with a single matrix product:

* ``project_input(x)``: everything that depends on the input alone, for any leading shape
  (..., I) -> (..., G);
* ``step(gx_t, state) -> (h_t, new_state)``: the recurrent half, given one step of the projection.

``forward(x_t, state)`` is exactly ``step(project_input(x_t), state)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive ``int``; raise a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; raise a clear error otherwise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


class RecurrentCell(nn.Module):
    """Base class of every rnnkit cell (see the module docstring for the contract)."""

    input_size: int
    hidden_size: int

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Features of h_t, the step's output (P for a projected LSTM, else H)."""
        return self.hidden_size

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        """Per-sample shape of each state tensor (an int for a vector); ``state[0]`` is the
        output h_t. Convolutional cells give tuples such as (C, H, W)."""
        return (self.hidden_size,)

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """``state_sizes`` with every entry as a tuple."""
        return tuple((n,) if isinstance(n, int) else tuple(n) for n in self.state_sizes)

    # -- state -------------------------------------------------------------------------------
    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The zero state a^<0> = 0 (and c^<0> = 0 where the cell has a memory cell)."""
        check_positive_int("batch_size", batch_size)
        if device is None or dtype is None:  # (a layer passes both: no parameter lookup)
            ref = self._reference_parameter()
            device = ref.device if device is None else device
            dtype = ref.dtype if dtype is None else dtype
        return tuple(
            torch.zeros(batch_size, *shape, device=device, dtype=dtype)
            for shape in self.state_shapes()
        )

    def _reference_parameter(self) -> Tensor:
        return next(self.parameters())

    # -- math --------------------------------------------------------------------------------
    def project_input(self, x: Tensor) -> Tensor:
        """(..., I) -> (..., G): the part of the step that depends on the input alone."""
        raise NotImplementedError

    def input_affine(self) -> tuple[Tensor, Tensor | None] | None:
        """(weight (G, I), bias (G,) or None) when :meth:`project_input` is the affine map
        x·weightᵀ + bias, else None. The engine may then form the projection of different row
        blocks of the input as products of their own, written into one buffer."""
        return None

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        """One recurrent step from a projected input ``gx`` (B, G) and ``state``."""
        raise NotImplementedError

    def forward(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step: ``x_t`` (B, I), ``state`` (tuple of (B, ·)) -> (h_t (B, ·), new state).

        Under CPU autocast the step runs in the parameters' dtype with autocast off, as the
        engine runs whole sequences (see ``docs/engine.md``, "Mixed precision").
        """
        if isinstance(x_t, Tensor) and under_cpu_autocast(x_t):
            dtype = self._reference_parameter().dtype
            with torch.autocast("cpu", enabled=False):
                return self.forward(x_t.to(dtype), cast_state(state, dtype))  # type: ignore[arg-type]
        self.check_input(x_t)
        if state is None:
            state = self.init_state(x_t.shape[0], x_t.device, x_t.dtype)
        else:
            state = self.check_state(state, x_t.shape[0])
        return self.step(self.project_input(x_t), state)

    def check_input(self, x_t: Tensor) -> None:
        """Raise a clear error unless ``x_t`` is one step (B, I) of this cell's input."""
        if x_t.dim() != 2:
            raise ValueError(
                f"x_t must be 2-D (B, I={self.input_size}), got shape {tuple(x_t.shape)}"
            )
        if x_t.shape[1] != self.input_size:
            raise ValueError(
                f"x_t must have input_size={self.input_size} features, got {x_t.shape[1]}"
            )

    def check_state(self, state: State | Tensor, batch_size: int) -> State:
        """Validate a per-step state and return it as a tuple."""
        if isinstance(state, Tensor):
            state = (state,)
        state = tuple(state)
        if len(state) != len(self.state_sizes):
            raise ValueError(
                f"state must hold {len(self.state_sizes)} tensor(s) for {type(self).__name__}, "
                f"got {len(state)}"
            )
        for k, (s, shape) in enumerate(zip(state, self.state_shapes())):
            if tuple(s.shape) != (batch_size, *shape):
                raise ValueError(
                    f"state[{k}] must have shape {(batch_size, *shape)}, got {tuple(s.shape)}"
                )
        return state

    # -- initialisation ----------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """torch's default: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def under_cpu_autocast(x: Tensor) -> bool:
    """Whether ``x`` is a CPU tensor and CPU autocast is on. There the recurrences run in their
    parameters' dtype with autocast off (docs/engine.md, "Mixed precision")."""
    return torch.is_autocast_enabled("cpu") and x.is_cpu  # (cheapest first: a call's cost)


def cast_state(state: object, dtype: torch.dtype) -> object:
    """``state`` (a tensor, or a tuple or list of them) in ``dtype``; anything else is left as
    it is, for the state checks to report."""
    if isinstance(state, Tensor):
        return state.to(dtype)
    if isinstance(state, (tuple, list)):
        return tuple(s.to(dtype) if isinstance(s, Tensor) else s for s in state)
    return state


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x @ weight.T + bias for any leading shape of x."""
    return torch.nn.functional.linear(x, weight, bias)
