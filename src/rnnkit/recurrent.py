"""One runner for every cell: layers, directions, lengths, streaming (the plain time loop
and its checks are in :mod:`rnnkit.loop`, the torch.nn state_dict names in
:mod:`rnnkit.torch_names`, the rules for which path a whole layer takes in
:mod:`rnnkit.layer_routes`).

Shapes use the glossary of :mod:`rnnkit.cells.base` (B batch, T time, I input, H hidden,
D directions, L layers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import engine as _engine
from . import layer_routes as routes
from .cells.base import (
    RecurrentCell,
    State,
    cast_state,
    check_choice,
    check_positive_int,
    under_cpu_autocast,
)
from .engine.fused_stack import flatten_for_cudnn, run_fused_stack
from .engine.packed_stack import run_bidirectional_layer, run_packed_stack
from .loop import checked_lengths, step_input_shape
from .torch_names import from_torch_keys, to_torch_keys

MERGE_MODES = ("concat", "sum", "mul", "ave")

StateArg = Tensor | tuple[Tensor, ...] | None

CellFactory = Callable[[int, int], RecurrentCell]

_ZERO_STATE = RecurrentCell.init_state  # a cell that keeps it starts from zeros


class Recurrent(nn.Module):
    """A multi-layer, optionally bidirectional recurrent layer over any rnnkit cell.

    Args:
        cell: a factory ``cell(input_size, hidden_size) -> RecurrentCell`` called once per layer
            and direction: a cell class (``rnnkit.GRUCell``) or a ``functools.partial`` that
            fixes its options (``partial(rnnkit.LSTMCell, peephole=True)``).
        input_size: I, features of the input.
        hidden_size: H, features of each cell's state.
        num_layers: L, stacked layers; layer l > 0 reads layer l-1's (merged) output.
        bidirectional: add a second cell per layer that reads each sequence backwards
            (only its valid part: padding stays at the end).
        merge_mode: how the two directions' outputs are combined: "concat" (torch's and the
            lecture's [a->; a<-]), "sum" (the lecture's a-> + a<-), "mul" or "ave" (as Keras).
        dropout: probability of dropping each output of every layer but the last (training only).
        residual: add each layer's input to its output wherever their sizes agree (the
            lecture's skip connections against vanishing gradients); with lengths, the outputs
            past each length stay zero.
        batch_first: inputs and outputs are (B, T, ·) instead of (T, B, ·).

    Call ``output, h_n = layer(x, h_0=None, *, lengths=None)``:

    * ``x``: (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched, or a
      ``PackedSequence`` (then ``output`` is one too).
    * ``h_0``: the initial state. One tensor (D·L, B, S) for single-state cells, a tuple of
      tensors for cells with several (``(h_0, c_0)`` for LSTMs). ``None`` means zeros.
    * ``lengths``: (B,) integers in [1, T], any device, any order. Outputs past a sequence's
      length are zero and ``h_n`` holds the state at its last valid step.
    * ``output``: (T, B, D·O) for "concat", else (T, B, O); ``h_n`` as ``h_0``.

    Passing ``h_n`` back as ``h_0`` continues the sequences exactly (streaming). The
    ``state_dict`` uses torch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``...).

    Each layer-direction runs through :func:`rnnkit.engine.run` (a stack that would run on
    torch's fused op whole, a plain LSTM say, runs as one call of it, as torch.nn's layers
    do: see docs/engine.md, "A whole stack in one call"; with lengths, a unidirectional stack
    on the compiled loops hands its packed rows from layer to layer, and a bidirectional
    layer's two directions gather their input once: :mod:`rnnkit.engine.packed_stack`); set
    ``layer.engine`` to one of
    ``rnnkit.engine.ENGINES`` ("reference" is the plain loop :func:`rnnkit.loop.run_cell`) to
    pick a path for this layer, or leave it None for the engine's default ("auto"). Set
    ``layer.checkpoint = K`` (steps) to train with less memory: each layer-direction then runs
    in segments of K steps whose activations are recomputed in the backward pass
    (:mod:`rnnkit.engine.checkpoint`; the same results, one more forward pass of compute).
    """

    engine: str | None = None
    checkpoint: int | None = None

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        merge_mode: str = "concat",
        dropout: float = 0.0,
        residual: bool = False,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if not callable(cell):
            raise TypeError(
                f"cell must be a callable (input_size, hidden_size) -> RecurrentCell, "
                f"got {type(cell).__name__}"
            )
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.merge_mode = check_choice("merge_mode", merge_mode, MERGE_MODES)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1), got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.residual = bool(residual)
        self.batch_first = bool(batch_first)
        self.num_directions = 2 if self.bidirectional else 1

        cells = []
        layer_in = input_size
        for _ in range(num_layers):
            for _ in range(self.num_directions):
                c = cell(layer_in, hidden_size)
                if not isinstance(c, RecurrentCell):
                    raise TypeError(
                        f"cell(...) must return an rnnkit RecurrentCell, got {type(c).__name__}"
                    )
                cells.append(c)
            layer_in = self._merged_size(cells[-1].output_size)
        self.cells = nn.ModuleList(cells)
        self.output_size = layer_in
        self.state_shapes = cells[0].state_shapes()
        self.input_shape = step_input_shape(cells[0])
        self._register_state_dict_hook(to_torch_keys)
        self._register_load_state_dict_pre_hook(from_torch_keys, with_module=True)
        self.flatten_parameters()  # cells made on the GPU (torch.set_default_device)

    # -- sizes -------------------------------------------------------------------------------
    def _merged_size(self, out: int) -> int:
        return out * self.num_directions if self.merge_mode == "concat" else out

    def cell_at(self, layer: int, direction: int = 0) -> RecurrentCell:
        """The cell of ``layer`` and ``direction`` (0 forward, 1 backward)."""
        return self.cells[layer * self.num_directions + direction]  # type: ignore[return-value]

    def flatten_parameters(self) -> None:
        """On the GPU, keep the weights of cells with torch.nn's math (plain LSTM, GRU with the
        reset gate after, Elman) in one buffer in cuDNN's layout, as ``torch.nn.RNNBase``
        does, so that cuDNN does not copy them at every call. Runs by itself after ``.to()``,
        ``.cuda()`` and the like; a no-op elsewhere (``engine.fused_stack.flatten_for_cudnn``)."""
        cells = tuple(self._modules["cells"]._modules.values())
        flatten_for_cudnn(cells, self.input_size, self.bidirectional)  # type: ignore[arg-type]

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    # -- call --------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor | PackedSequence,
        h_0: StateArg = None,
        *,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, ...]]:
        data = x.data if isinstance(x, PackedSequence) else x
        if isinstance(data, Tensor) and under_cpu_autocast(data):
            # the recurrence runs in the parameters' dtype (docs/engine.md, "Mixed
            # precision"); cast once here, so both directions' input gradients meet in it
            dtype = next(self.parameters()).dtype
            with torch.autocast("cpu", enabled=False):
                h_0 = cast_state(h_0, dtype)  # type: ignore[assignment]
                return self.forward(x.to(dtype), h_0, lengths=lengths)
        packed = isinstance(x, PackedSequence)
        unbatched = False
        sorted_idx = unsorted_idx = None
        if packed:
            if lengths is not None:
                raise ValueError("lengths must be None when x is a PackedSequence (it has them)")
            sorted_idx, unsorted_idx = x.sorted_indices, x.unsorted_indices
            x, lengths = pad_packed_sequence(x, batch_first=False)  # (T, B, I), original order
        else:
            if not isinstance(x, Tensor):
                raise TypeError(f"x must be a Tensor or PackedSequence, got {type(x).__name__}")
            n_step = len(self.input_shape)  # 1 for vector cells
            if x.dim() == 2 and n_step == 1:
                unbatched = True
                x = x.unsqueeze(1)
            elif x.dim() != 2 + n_step:
                if n_step > 1:
                    raise ValueError(
                        f"x must be {2 + n_step}-D (T, B, *{self.input_shape}) (or batch first), "
                        f"got {x.dim()}-D shape {tuple(x.shape)}"
                    )
                layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
                raise ValueError(
                    f"x must be 3-D {layout} or 2-D (T, I) unbatched, got {x.dim()}-D "
                    f"shape {tuple(x.shape)}"
                )
            elif self.batch_first:
                x = x.transpose(0, 1)
        if len(self.input_shape) > 1 and tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"x must have per-step shape {self.input_shape} after (T, B), "
                f"got {tuple(x.shape[2:])}"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have input_size={self.input_size} features in its last dimension, "
                f"got {x.shape[-1]}"
            )
        T, B = x.shape[0], x.shape[1]
        if lengths is None:
            output, h_n = self._run(x, h_0, None, unbatched)
            return self._finish(output, h_n, unbatched, packed)
        lengths, shortest, longest = checked_lengths(lengths, B, T, x.device)
        if shortest == longest and routes.drops_lengths(self, x, shortest):
            # one length for the whole batch: the batch without lengths over its first steps,
            # exactly what the sorted path would compute, without its layout work
            output, h_n = self._run(x[:shortest], h_0, None, unbatched)
            if shortest < T:  # zero past the length (cat: one pass; its backward takes views)
                tail = output.new_zeros(T - shortest, *output.shape[1:])
                output = torch.cat([output, tail])
        else:
            output, h_n = self._run(x, h_0, lengths, unbatched)
        return self._finish(output, h_n, unbatched, packed, lengths, sorted_idx, unsorted_idx)

    def _run(
        self, x: Tensor, h_0: StateArg, lengths: Tensor | None, unbatched: bool
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The layers over ``x`` (T, B, I) with ``lengths`` (checked) -> (output (T, B, ·),
        h_n (D·L, B, ·) each)."""
        B = x.shape[1]
        # (indexing a ModuleList, even reading self.cells, costs microseconds a call)
        cells = tuple(self._modules["cells"]._modules.values())
        if routes.one_call(self, cells, x, lengths):
            hx = self._stacked_states(h_0, B, x, unbatched)
            L, bi = self.num_layers, self.bidirectional
            return run_fused_stack(cells, x, hx, L, bi, lengths)
        states = self._initial_states(h_0, B, x, unbatched)
        if lengths is not None and routes.packed_stack(self, cells, x, lengths):
            p = self.dropout if self.training else 0.0
            output, finals = run_packed_stack(cells, x, states, lengths, p, self.residual)
            h_n = tuple(torch.stack([f[i] for f in finals]) for i in range(len(self.state_shapes)))
            return output, h_n

        finals: list[State] = []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            pair = cells[2 * layer : 2 * layer + 2] if self.num_directions == 2 else ()
            if (
                pair
                and lengths is not None
                and routes.shared_gather(self, pair, layer_input, lengths)
            ):
                outs, found = run_bidirectional_layer(
                    pair,  # type: ignore[arg-type]
                    layer_input,
                    states[2 * layer : 2 * layer + 2],
                    lengths,
                )
                finals.extend(found)
            for d in range(self.num_directions if not outs else 0):
                k = layer * self.num_directions + d
                cell = cells[k]
                out, final = _engine.run(
                    cell,
                    layer_input,
                    states[k],
                    lengths,
                    reverse=d == 1,
                    engine=self.engine,
                    checkpoint=self.checkpoint,
                )
                outs.append(out)
                finals.append(final)
            out = self._merge(outs)
            if self.residual and out.shape[2:] == layer_input.shape[2:]:
                out = out + layer_input
                if lengths is not None:  # the input's padding must not reach the outputs
                    out = _zero_past(out, lengths)
            if self.dropout and self.training and layer < self.num_layers - 1:
                out = F.dropout(out, self.dropout, training=True)
            layer_input = out
        output = layer_input  # (T, B, D*O) or (T, B, O)

        if len(finals) == 1:  # one layer, one direction: a view, no copy
            h_n = tuple(f.unsqueeze(0) for f in finals[0])
        else:
            h_n = tuple(torch.stack([f[i] for f in finals]) for i in range(len(self.state_shapes)))
        return output, h_n

    def _finish(
        self,
        output: Tensor,
        h_n: tuple[Tensor, ...],
        unbatched: bool,
        packed: bool,
        lengths: Tensor | None = None,
        sorted_idx: Tensor | None = None,
        unsorted_idx: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, ...]]:
        """``output`` (T, B, ·) and ``h_n`` (D·L, B, ·) each, in the caller's layout."""
        if unbatched:
            output = output.squeeze(1)
            h_n = tuple(h.squeeze(1) for h in h_n)
        if packed:
            assert lengths is not None
            if sorted_idx is not None:
                output = output.index_select(1, sorted_idx)
                lengths = lengths.index_select(0, sorted_idx)
            p = pack_padded_sequence(output, lengths.cpu(), enforce_sorted=True)
            output = PackedSequence(p.data, p.batch_sizes, sorted_idx, unsorted_idx)
        elif self.batch_first and not unbatched:
            output = output.transpose(0, 1)
        return output, (h_n[0] if len(h_n) == 1 else h_n)

    def _merge(self, outs: list[Tensor]) -> Tensor:
        if len(outs) == 1:
            return outs[0]
        a, b = outs
        if self.merge_mode == "concat":
            return torch.cat([a, b], dim=2)
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "mul":
            return a * b
        return 0.5 * (a + b)

    def _initial_states(self, h_0: StateArg, B: int, x: Tensor, unbatched: bool) -> list[State]:
        """One state (tuple of (B, ·)) per layer-direction."""
        if h_0 is None:
            cells = self._modules["cells"]._modules.values()
            if any(type(c).init_state is not _ZERO_STATE for c in cells):
                return [c.init_state(B, x.device, x.dtype) for c in cells]  # type: ignore[union-attr]
            # the zeros of RecurrentCell.init_state, less its checks (microseconds a call)
            dtype, device, shapes = x.dtype, x.device, self.state_shapes
            return [
                tuple(torch.zeros(B, *s, dtype=dtype, device=device) for s in shapes) for _ in cells
            ]
        out = self._checked_h0(h_0, B, unbatched)
        return [tuple(p[k] for p in out) for k in range(self.num_layers * self.num_directions)]

    def _stacked_states(self, h_0: StateArg, B: int, x: Tensor, unbatched: bool) -> State:
        """The initial states as torch's ops take them: a tuple of (D·L, B, ·)."""
        if h_0 is not None:
            return tuple(self._checked_h0(h_0, B, unbatched))
        n, shapes = self.num_layers * self.num_directions, self.state_shapes
        if len(shapes) == 2 and shapes[0] == shapes[1]:  # (h, c): torch's ops only read them
            zero = torch.zeros(n, B, *shapes[0], dtype=x.dtype, device=x.device)
            return zero, zero
        return tuple(torch.zeros(n, B, *s, dtype=x.dtype, device=x.device) for s in shapes)

    def _checked_h0(self, h_0: StateArg, B: int, unbatched: bool) -> list[Tensor]:
        """``h_0`` validated, each part as (D·L, B, ·)."""
        n = self.num_layers * self.num_directions
        parts = (h_0,) if isinstance(h_0, Tensor) else tuple(h_0)
        if len(parts) != len(self.state_shapes):
            names = "one" if len(self.state_shapes) == 1 else f"a tuple of {len(self.state_shapes)}"
            raise ValueError(f"h_0 must be {names} tensor(s) for this cell, got {len(parts)}")
        out = []
        for i, (p, shape) in enumerate(zip(parts, self.state_shapes)):
            if not isinstance(p, Tensor):
                raise TypeError(f"h_0[{i}] must be a Tensor, got {type(p).__name__}")
            want = (n, *shape) if unbatched else (n, B, *shape)
            if tuple(p.shape) != want:
                raise ValueError(
                    f"h_0[{i}] must have shape {want} (D*L, B, ...), got {tuple(p.shape)}"
                )
            out.append(p.unsqueeze(1) if unbatched else p)
        return out

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += f", bidirectional=True, merge_mode={self.merge_mode!r}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.residual:
            s += ", residual=True"
        if self.batch_first:
            s += ", batch_first=True"
        return s


def _zero_past(out: Tensor, lengths: Tensor) -> Tensor:
    """``out`` (T, B, ...) with the steps past each sequence's length set to zero."""
    T = out.shape[0]
    past = torch.arange(T, device=out.device)[:, None] >= lengths[None, :]  # (T, B)
    return out.masked_fill(past.view(*past.shape, *(1,) * (out.dim() - 2)), 0.0)
