"""Export to ONNX for deployment, with variable batch size B and sequence length T.

rnnkit's runner is a Python loop over time; tracing it would unroll it to the example's T.
Two routes keep T variable:

* ``"fused"``: every recurrent layer whose cells compute exactly what a torch.nn layer
  computes ("rnn", "rnn_relu", "lstm", "gru") is swapped for torch.nn.RNN/LSTM/GRU with the same
  weights, one per layer and direction, and exported with torch's TorchScript exporter to
  ONNX's own RNN/LSTM/GRU operators. Fast to export and to run.
* ``"scan"``: any cell whose step torch.export can capture: the time loop becomes torch's
  ``scan`` control-flow operator (``torch._higher_order_ops.scan``), exported by torch's
  dynamo exporter to an ONNX ``Scan`` loop over the cell's step. Slower to export (seconds).

``route="auto"`` takes "fused" when every cell allows it, else "scan". Both keep the runner's
semantics: lengths, reversal of the valid part for the backward direction, merge modes,
residual connections, zero outputs past each length.

Exported graphs (inputs -> outputs, all with a dynamic batch B and time T):

* SequenceClassifier / SequenceTagger / SequenceRegressor: ``x`` (B, T, I) float or (B, T)
  int64 token ids, ``lengths`` (B,) int64 -> ``output`` (the model's forward output).
* LanguageModel (unconditional): ``tokens`` (B, T) int64 and the initial state ``h_0``
  (``c_0`` too for LSTM-like cells), each (L, B, S) -> ``logits`` (B, T, V) and ``h_n``
  (``c_n``): feed them back for step-by-step generation.

Seq2Seq decoding (a data-dependent loop with beam bookkeeping) is not exported.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from ..loop import reverse_padded
from ..recurrent import Recurrent
from .checks import check_choice
from .classifier import SequenceClassifier
from .language_model import LanguageModel
from .regressor import SequenceRegressor
from .tagger import SequenceTagger

ROUTES = ("auto", "fused", "scan")


def fused_twin(cell: RecurrentCell) -> nn.RNNBase | None:
    """A one-layer torch.nn.RNN/LSTM/GRU computing exactly ``cell``'s step, or None."""
    kind = type(cell)
    if kind is LSTMCell and not cell.peephole and not cell.proj_size:
        twin: nn.RNNBase = nn.LSTM(cell.input_size, cell.hidden_size, bias=cell.bias)
    elif kind is GRUCell and cell.reset_after:
        twin = nn.GRU(cell.input_size, cell.hidden_size, bias=cell.bias)
    elif kind is ElmanCell:
        twin = nn.RNN(
            cell.input_size, cell.hidden_size, nonlinearity=cell.nonlinearity, bias=cell.bias
        )
    else:
        return None
    twin = twin.to(cell.weight_ih.dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            source = getattr(cell, name)
            if source is not None:
                getattr(twin, f"{name}_l0").copy_(source)
    return twin


class ExportRecurrent(nn.Module):
    """A :class:`rnnkit.Recurrent` rebuilt for export: same call, same outputs (eval mode).

    With the fused route and ``lengths``, ``h_n`` is None: the torch.nn layers run over the
    padding, and their final state is not the state at each sequence's last valid step.
    """

    def __init__(self, layer: Recurrent, route: str) -> None:
        super().__init__()
        self.route = check_choice("route", route, ROUTES[1:])
        self.num_layers = layer.num_layers
        self.num_directions = layer.num_directions
        self.merge_mode = layer.merge_mode
        self.residual = layer.residual
        self.batch_first = layer.batch_first
        self.num_states = len(layer.state_shapes)
        self.state_shapes = [c.state_shapes() for c in layer.cells]
        if route == "fused":
            twins = [fused_twin(c) for c in layer.cells]
            if any(t is None for t in twins):
                raise ValueError(f"route='fused' needs rnn, lstm or gru cells; got {layer}")
            self.runs = nn.ModuleList(twins)
        else:
            self.runs = layer.cells

    def forward(
        self,
        x: Tensor,
        h_0: Tensor | tuple[Tensor, ...] | None = None,
        *,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | tuple[Tensor, ...] | None]:
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        T, B = x.shape[0], x.shape[1]
        if h_0 is None:
            states = [tuple(x.new_zeros(B, *shape) for shape in s) for s in self.state_shapes]
        else:
            parts = (h_0,) if isinstance(h_0, Tensor) else tuple(h_0)
            states = [tuple(p[k] for p in parts) for k in range(len(self.runs))]
        mask = None
        if lengths is not None:
            mask = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
        finals: list[tuple[Tensor, ...] | None] = []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                inp = layer_input if d == 0 else reverse_padded(layer_input, lengths)
                out, final = self._run(k, inp, states[k], mask, lengths)
                outs.append(out if d == 0 else reverse_padded(out, lengths))
                finals.append(final)
            out = _merge(outs, self.merge_mode)
            if self.residual and out.shape[-1] == layer_input.shape[-1]:
                out = out + layer_input
            layer_input = out
        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        if any(f is None for f in finals):
            return output, None
        h_n = tuple(torch.stack([f[i] for f in finals]) for i in range(self.num_states))  # type: ignore[index]
        return output, (h_n[0] if self.num_states == 1 else h_n)

    def _run(
        self,
        k: int,
        x: Tensor,
        state: tuple[Tensor, ...],
        mask: Tensor | None,
        lengths: Tensor | None,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """One layer and direction over (T, B, I) -> (outputs (T, B, O), final state)."""
        run = self.runs[k]
        if self.route == "fused":
            h0 = tuple(s.unsqueeze(0) for s in state)  # (1, B, S) each
            out, hn = run(x, h0 if len(h0) > 1 else h0[0])
            if mask is None:
                hn = (hn,) if isinstance(hn, Tensor) else hn
                return out, tuple(h.squeeze(0) for h in hn)
            return out * mask.unsqueeze(2).to(out.dtype), None
        return _scan_cell(run, x, state, mask)


def _scan_cell(
    cell: RecurrentCell, x: Tensor, state: tuple[Tensor, ...], mask: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The runner's masked time loop as one ``scan``: (T, B, I) -> ((T, B, O), final state)."""
    from torch._higher_order_ops import scan

    gx = cell.project_input(x)  # (T, B, G)
    if mask is None:
        mask = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
    valid = mask.unsqueeze(2)  # (T, B, 1)

    def step(carry: tuple[Tensor, ...], xs: tuple[Tensor, Tensor]) -> tuple:
        gx_t, m = xs
        h, new = cell.step(gx_t, carry)
        new = tuple(torch.where(m, s, s_old) for s, s_old in zip(new, carry))
        return new, torch.where(m, h, torch.zeros_like(h))

    final, out = scan(step, tuple(state), (gx, valid))
    return out, tuple(final)


def _merge(outs: list[Tensor], mode: str) -> Tensor:
    if len(outs) == 1:
        return outs[0]
    a, b = outs
    if mode == "concat":
        return torch.cat([a, b], dim=-1)
    if mode == "sum":
        return a + b
    if mode == "mul":
        return a * b
    return 0.5 * (a + b)


def _swap_recurrent(model: nn.Module, route: str) -> nn.Module:
    """A deep copy of ``model`` in which every Recurrent is an ExportRecurrent."""
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, Recurrent):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, ExportRecurrent(module, route))
    return model


def choose_route(model: nn.Module, route: str = "auto") -> str:
    """The route ``route="auto"`` takes for ``model`` (see the module docstring)."""
    check_choice("route", route, ROUTES)
    if route != "auto":
        return route
    cells = [c for m in model.modules() if isinstance(m, Recurrent) for c in m.cells]
    return "fused" if all(fused_twin(c) is not None for c in cells) else "scan"


class _SequenceGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.model(x, lengths)


class _LanguageModelGraph(nn.Module):
    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, h_n = self.model(tokens, state[0] if len(state) == 1 else state)
        return (logits, h_n) if isinstance(h_n, Tensor) else (logits, *h_n)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, route: str = "auto") -> Path:
    """Write ``model`` to the ONNX file ``path`` with dynamic B and T; returns the path.

    ``model`` is a SequenceClassifier, SequenceTagger, SequenceRegressor or an unconditional
    LanguageModel; the graph's inputs and outputs are listed in the module docstring. The
    model itself is not changed (a copy is exported, in eval mode).
    """
    route = choose_route(model, route)
    path = Path(path)
    B, T = 2, 5  # example sizes; the graph accepts any
    p = next(model.parameters())
    if isinstance(model, (SequenceClassifier, SequenceTagger, SequenceRegressor)):
        graph: nn.Module = _SequenceGraph(_swap_recurrent(model, route))
        inputs_layer = getattr(model, "inputs", None)
        if inputs_layer is not None and inputs_layer.tokens:
            x = torch.zeros(B, T, dtype=torch.long)
        else:
            x = torch.zeros(B, T, model.config.input_size, dtype=p.dtype)
        args: tuple[Tensor, ...] = (x, torch.tensor([T, T - 2]))
        names_in, names_out = ["x", "lengths"], ["output"]
        axes = {"x": {0: "B", 1: "T"}, "lengths": {0: "B"}, "output": {0: "B"}}
        if not isinstance(model, SequenceClassifier) and not (
            isinstance(model, SequenceRegressor) and model.config.mode == "many_to_one"
        ):
            axes["output"][1] = "T"
    elif isinstance(model, LanguageModel):
        if model.config.condition_size:
            raise ValueError("export_onnx supports unconditional language models only")
        graph = _LanguageModelGraph(_swap_recurrent(model, route))
        state = model.encoder.state_from_vector(torch.zeros(B, model.encoder.flat_state_size))
        state = (state,) if isinstance(state, Tensor) else state
        args = (torch.zeros(B, T, dtype=torch.long), *(s.to(p.dtype) for s in state))
        n = len(state)
        names_in = ["tokens", *["h_0", "c_0"][:n]] if n <= 2 else ["tokens", *_names("s_0", n)]
        names_out = ["logits", *["h_n", "c_n"][:n]] if n <= 2 else ["logits", *_names("s_n", n)]
        axes = {"tokens": {0: "B", 1: "T"}, "logits": {0: "B", 1: "T"}}
        axes.update({name: {1: "B"} for name in names_in[1:] + names_out[1:]})
    else:
        raise TypeError(
            "export_onnx exports SequenceClassifier, SequenceTagger, SequenceRegressor and "
            f"LanguageModel, got {type(model).__name__}"
        )
    graph.eval()
    with warnings.catch_warnings():
        # the exporters warn about their own internals (deprecations, tracer notes)
        warnings.simplefilter("ignore")
        if route == "fused":
            torch.onnx.export(
                graph,
                args,
                path,
                dynamo=False,
                input_names=names_in,
                output_names=names_out,
                dynamic_axes=axes,
                opset_version=17,
            )
        else:
            dims = {"B": torch.export.Dim("B"), "T": torch.export.Dim("T", min=2)}
            specs = [{ax: dims[d] for ax, d in axes[n].items()} for n in names_in]
            # the language model's states arrive as one *state argument: one nested tuple
            shapes = tuple(specs) if len(args) == 2 and names_in[1] == "lengths" else None
            if shapes is None:
                shapes = (specs[0], tuple(specs[1:]))
            torch.onnx.export(
                graph,
                args,
                path,
                dynamo=True,
                input_names=names_in,
                output_names=names_out,
                dynamic_shapes=shapes,
                verbose=False,
            )
    return path


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}_{i}" for i in range(n)]
