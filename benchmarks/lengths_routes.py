"""How a cell with torch.nn's math runs a batch with lengths: every route, timed in one run.

For the LSTM, GRU and Elman cells (the ones with a fused torch op) and a batch whose lengths
are spread evenly over [T/2, T], the training step (forward, then the gradients with respect to
the input and every parameter) through each route of ``rnnkit.engine.fused`` that the device
offers, over the same layer's step on the batch at full length, next to ``torch.nn``'s layer on
a ``PackedSequence`` over its own padded step. The routes (forced by replacing the route
choice; "auto" is what the engine picks):

* GPU: "packed" (one call of cuDNN's variable-length mode), "masked" (one padded call, masked;
  GRU and Elman only), "segments" (one call per run of equal active rows);
* CPU: "packed" (torch's own CPU kernel for it), "segments", "head" (the first run fused, the
  rest in the compiled loop) and, for the LSTM, "native" (the compiled loop, the layer's
  ``engine="native"``; the GRU's and Elman's "auto").

Every ratio is over the default layer's (engine "auto") step at full length; torch.nn's
``PackedSequence`` over its own padded step.

    python benchmarks/lengths_routes.py                  # CPU, 2 threads
    python benchmarks/lengths_routes.py --device cuda    # against cuDNN
"""

from __future__ import annotations

import argparse
import datetime
import platform
from collections.abc import Callable

import torch
from machine import cpu_name
from rnn_speed import interleaved
from rnn_targets import table
from torch import nn

import rnnkit
from rnnkit.engine import fused

KINDS = {
    "LSTM": (rnnkit.LSTM, nn.LSTM),
    "GRU": (rnnkit.GRU, nn.GRU),
    "Elman": (rnnkit.RNN, nn.RNN),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(model: nn.Module, x: torch.Tensor, lengths, device) -> Callable[[], None]:
    """One training step of ``model`` on ``x`` (T, B, H) (a PackedSequence when ``model`` is
    torch's and lengths are given), against a fixed dense output gradient."""
    params = list(model.parameters())
    packed = isinstance(model, nn.RNNBase) and lengths is not None

    def forward():
        if packed:
            seq = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            return model(seq)[0].data
        return model(x, lengths=lengths)[0] if lengths is not None else model(x)[0]

    with torch.no_grad():
        dout = torch.randn_like(forward())

    def step() -> None:
        torch.autograd.grad(forward(), [x, *params], dout)
        _sync(device)

    return step


def routed(step: Callable[[], None], route: str | None) -> Callable[[], None]:
    """``step`` with the fused path's route choice forced to ``route`` (None: the engine's)."""
    if route is None:
        return step
    chosen = fused._route

    def run() -> None:
        fused._route = lambda cell, x, plan: route if plan.packed else "whole"
        try:
            step()
        finally:
            fused._route = chosen

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--T", type=int, default=100)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    torch.set_num_threads(args.threads)
    gpu = device.type != "cpu"
    shapes = [(32, 256), (128, 256), (128, 512)] if gpu else [(32, 256), (128, 256)]

    print("## Routes of the fused cells with lengths\n")
    print(f"- CPU: {cpu_name()}, {args.threads} threads")
    if device.type == "cuda":
        print(f"- device: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}")
    print(f"- date: {datetime.date.today().isoformat()}")
    print(f"- T = {args.T}, lengths spread evenly over [T/2, T], float32, I = H")
    print(f"- {args.repeats} interleaved repeats (more for short calls, as rnn_speed.py), median\n")

    rows: dict[str, list[str]] = {}
    for B, H in shapes:
        torch.manual_seed(0)
        T = args.T
        x = torch.randn(T, B, H, device=device, requires_grad=True)
        lengths = torch.linspace(T // 2, T, B).round().long()[torch.randperm(B)]
        fns: dict[str, Callable[[], None]] = {}
        for kind, (ours_cls, theirs_cls) in KINDS.items():
            ours = ours_cls(H, H).to(device)  # engine "auto"
            fns[f"{kind}|full"] = training_step(ours, x, None, device)
            fns[f"{kind}|auto"] = training_step(ours, x, lengths, device)
            forced = ours
            if kind != "LSTM" and not gpu:  # "auto" takes the compiled loop there
                forced = ours_cls(H, H)
                forced.load_state_dict(ours.state_dict())
                forced.engine = "fused"
            routes = ["packed", "segments"] if gpu else ["packed", "segments", "head"]
            if gpu and kind != "LSTM":
                routes.insert(0, "masked")
            for route in routes:
                fns[f"{kind}|{route}"] = routed(training_step(forced, x, lengths, device), route)
            if kind == "LSTM" and not gpu:
                native = ours_cls(H, H)
                native.load_state_dict(ours.state_dict())
                native.engine = "native"
                fns[f"{kind}|native"] = training_step(native, x, lengths, device)
            theirs = theirs_cls(H, H).to(device)
            fns[f"{kind}|torch full"] = training_step(theirs, x, None, device)
            fns[f"{kind}|torch packed"] = training_step(theirs, x, lengths, device)
        t = interleaved(fns, args.repeats)
        for name, seconds in t.items():
            kind, what = name.split("|")
            if what in ("full", "torch full"):
                continue
            base = t[f"{kind}|torch full"] if what == "torch packed" else t[f"{kind}|full"]
            label = f"{kind}, torch.nn on a PackedSequence" if what == "torch packed" else name
            rows.setdefault(label.replace("|", ", route "), []).append(
                f"{seconds / base:.2f} ({seconds * 1e3:.1f} ms)"
            )
        print(f"  B={B} H={H}: done", flush=True)
    print()
    print(
        table(
            "Training step with lengths / the default layer's step at full length (ms)",
            ["model, route", *(f"B={B} H={H}" for B, H in shapes)],
            [[name, *cells] for name, cells in rows.items()],
        )
    )


if __name__ == "__main__":
    main()
