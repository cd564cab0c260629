"""Fixed cost of one call of a recurrent layer: streaming one step at a time (T=1, B=1, no
gradient) and a small training step (T=100, B=1, H=64), rnnkit against torch.nn in the same
process, taking turns.

At these sizes the arithmetic is a few microseconds; what is measured is the Python and
dispatch work around it (argument checks, the choice of a path, the plan, the autograd node).

``--short`` measures instead what "auto" decides for a plain LSTM over a short sequence: the
compiled loop against torch's fused kernel (oneDNN prepares its weights on every call), for
T in {1, 2, ..., 64}, B in {1, 32}, H in {64, 256, 512}, forward without gradient and
training step.

``--single-step`` measures what "auto" does with one time step on the CPU (T=1, the state
passed in, as streaming and generation call a layer): the cell's step in torch ops, against the
compiled loop that ran such calls before, and against torch.nn's layer; forward without
gradient and training step, for B in {1, 32, 128} and H in {64, 256, 512}.

``--stack`` measures a stacked plain LSTM (T=100, training step) run as one call of torch's op
over all its layers and directions, against the same layer run layer by layer (the single call
switched off) and against ``torch.nn.LSTM``.

    python benchmarks/call_overhead.py            # about a minute
    python benchmarks/call_overhead.py --H 256
    python benchmarks/call_overhead.py --short --threads 2     # about 3 minutes
    python benchmarks/call_overhead.py --stack --threads 2     # about 2 minutes
    python benchmarks/call_overhead.py --single-step --threads 2     # about 3 minutes
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

import rnnkit
from rnnkit import Recurrent, recurrent
from rnnkit.cells import LSTMCell, MUT1Cell, NASCell


def best_of(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Microseconds per call: the best of ``rounds`` rounds of ``calls`` calls, every function
    taking its turn within each round."""
    for f in fns.values():
        for _ in range(max(calls // 10, 10)):
            f()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return {name: 1e6 * s for name, s in best.items()}


def short_sequences(rounds: int) -> None:
    """Plain LSTM: the compiled loop's time over the fused kernel's, same weights."""
    print("| H | B | " + " | ".join(f"T={T} forward / training" for T in SHORT_T) + " |")
    print("|---|---|" + "---|" * len(SHORT_T))
    for H in (64, 256, 512):
        for B in (1, 32):
            fused = rnnkit.LSTM(H, H)
            loop = rnnkit.LSTM(H, H)
            loop.load_state_dict(fused.state_dict())
            fused.engine, loop.engine = "fused", "native"
            cells = []
            for T in SHORT_T:
                x = torch.randn(T, B, H, requires_grad=True)
                calls = max(5, min(1000, int(3e6 / (T * max(B, 8) * H))))
                fwd, train = _loop_over_fused(fused, loop, x, calls, rounds)
                cells.append(f"{fwd:.2f} / {train:.2f}")
            print(f"| {H} | {B} | " + " | ".join(cells) + " |", flush=True)


SHORT_T = (1, 2, 4, 8, 16, 32, 64)


def _loop_over_fused(
    fused: nn.Module, loop: nn.Module, x: torch.Tensor, calls: int, rounds: int
) -> tuple[float, float]:
    """(forward without gradient, training step): the loop's time / the fused kernel's."""
    dy = torch.randn_like(x)
    with torch.no_grad():
        fwd = best_of({"fused": lambda: fused(x), "loop": lambda: loop(x)}, calls, rounds)
    pf, pl = list(fused.parameters()), list(loop.parameters())
    trains = {
        "fused": lambda: torch.autograd.grad(fused(x)[0], [x, *pf], dy),
        "loop": lambda: torch.autograd.grad(loop(x)[0], [x, *pl], dy),
    }
    train = best_of(trains, max(calls // 3, 3), rounds)
    return fwd["loop"] / fwd["fused"], train["loop"] / train["fused"]


SINGLE_STEP_SIZES = ((1, 64), (1, 256), (32, 256), (128, 512))


def single_steps(rounds: int) -> None:
    """One step with the state passed in: "auto" (the cell's step) against the compiled loop
    and torch.nn, forward without gradient and training step."""
    print("| model | B, H | forward µs | / loop | / torch.nn | training µs | / loop | / torch.nn |")
    print("|---|---|---|---|---|---|---|---|")
    for B, H in SINGLE_STEP_SIZES:
        for name, make, torch_layer in _single_step_models(H):
            ours = make()
            loop = make()
            loop.load_state_dict(ours.state_dict())
            loop.engine = "native"
            layers = {"auto": ours, "loop": loop}
            if torch_layer is not None:
                theirs = torch_layer()
                theirs.load_state_dict(ours.state_dict())
                layers["torch"] = theirs
            calls = max(20, min(2000, int(2e7 / (B * H * H))))
            fwd, train = _single_step_times(layers, B, H, calls, rounds)
            cells = []
            for t in (fwd, train):
                vs_torch = f"{t['auto'] / t['torch']:.2f}" if "torch" in t else "-"
                cells += [f"{t['auto']:.0f}", f"{t['auto'] / t['loop']:.2f}", vs_torch]
            print(f"| {name} | {B}, {H} | " + " | ".join(cells) + " |", flush=True)


def _single_step_models(H: int) -> list[tuple[str, Callable[[], nn.Module], object]]:
    """(name, rnnkit layer maker, torch.nn layer maker or None)."""
    return [
        ("Elman", lambda: rnnkit.RNN(H, H), lambda: nn.RNN(H, H)),
        ("GRU", lambda: rnnkit.GRU(H, H), lambda: nn.GRU(H, H)),
        ("LSTM", lambda: rnnkit.LSTM(H, H), lambda: nn.LSTM(H, H)),
        ("GRU reset before", lambda: rnnkit.GRU(H, H, reset_after=False), None),
        ("LSTM peephole", lambda: Recurrent(partial(LSTMCell, peephole=True), H, H), None),
        ("MUT1", lambda: Recurrent(MUT1Cell, H, H), None),
        ("NAS", lambda: Recurrent(NASCell, H, H), None),
    ]


def _single_step_times(
    layers: dict[str, nn.Module], B: int, H: int, calls: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """µs per call of each layer on one step from a given state: without gradient, and a
    training step (gradients of the input, the state and the parameters)."""
    x = torch.randn(1, B, H, requires_grad=True)
    dy = torch.randn(1, B, H)
    with torch.no_grad():
        states = {name: m(x)[1] for name, m in layers.items()}
    fwd = {name: (lambda m=m, s=states[name]: m(x, s)) for name, m in layers.items()}
    with torch.no_grad():
        forward = best_of(fwd, calls, rounds)

    def train(m: nn.Module, s) -> Callable[[], object]:
        params = list(m.parameters())
        s = tuple(t.clone().requires_grad_() for t in (s if isinstance(s, tuple) else (s,)))
        h_0 = s if len(s) > 1 else s[0]
        return lambda: torch.autograd.grad(m(x, h_0)[0], [x, *s, *params], dy)

    trains = {name: train(m, states[name]) for name, m in layers.items()}
    return forward, best_of(trains, max(calls // 3, 10), rounds)


STACKS = ((3, True, 1, 64), (2, False, 32, 256), (2, True, 32, 256), (2, True, 128, 256))


def stacks(rounds: int) -> None:
    """Stacked plain LSTMs: one call of torch's op, layer by layer, and torch.nn.LSTM."""
    print("| layers, directions, B, H | one call / torch.nn.LSTM", end="")
    print(" | layer by layer / torch.nn.LSTM |")
    print("|---|---|---|")
    for L, bi, B, H in STACKS:
        t = best_of(_stack_steps(L, bi, B, H), max(1, int(2e5 / (B * H * L))), rounds)
        print(
            f"| {L}, {'both' if bi else 'one'}, {B}, {H} | {t['one'] / t['torch']:.2f} | "
            f"{t['layers'] / t['torch']:.2f} |",
            flush=True,
        )


def _stack_steps(L: int, bi: bool, B: int, H: int) -> dict[str, Callable[[], object]]:
    """Training steps of one stacked LSTM: in one call, layer by layer, and torch.nn.LSTM's."""
    ours = rnnkit.LSTM(H, H, L, bidirectional=bi)
    theirs = nn.LSTM(H, H, L, bidirectional=bi)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(100, B, H, requires_grad=True)
    dy = torch.randn(100, B, H * (2 if bi else 1))
    po, pt = list(ours.parameters()), list(theirs.parameters())
    one_call = recurrent.stack_supported

    def ours_step(single: bool) -> object:
        recurrent.stack_supported = one_call if single else lambda *args: False
        try:
            return torch.autograd.grad(ours(x)[0], [x, *po], dy)
        finally:
            recurrent.stack_supported = one_call

    return {
        "one": lambda: ours_step(True),
        "layers": lambda: ours_step(False),
        "torch": lambda: torch.autograd.grad(theirs(x)[0], [x, *pt], dy),
    }


def _header(args: argparse.Namespace, sizes: str, measure: str) -> None:
    print(f"- CPU: {platform.processor() or platform.machine()}, {args.threads} thread(s)")
    print(f"- torch {torch.__version__}, rnnkit {rnnkit.__version__}, {sizes}")
    print(f"- best of {args.rounds} rounds, {measure}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--H", type=int, default=64, help="hidden size (= input size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (T=1)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--short", action="store_true", help="plain LSTM on short sequences: loop / fused kernel"
    )
    parser.add_argument(
        "--single-step", action="store_true", help="one step from a given state: auto / loop"
    )
    parser.add_argument(
        "--stack", action="store_true", help="stacked plain LSTM: one call / layer by layer"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.short:
        _header(args, "I = H", "compiled loop time / fused kernel time")
        short_sequences(args.rounds)
        return
    if args.single_step:
        _header(args, "I = H, T = 1, the state passed in", "every model taking its turn in each")
        single_steps(args.rounds)
        return
    if args.stack:
        _header(args, "I = H, T = 100, training step", "every model taking its turn in each")
        stacks(args.rounds)
        return
    H = args.H
    pairs = {
        "Elman": (rnnkit.RNN(H, H), nn.RNN(H, H)),
        "GRU": (rnnkit.GRU(H, H), nn.GRU(H, H)),
        "LSTM": (rnnkit.LSTM(H, H), nn.LSTM(H, H)),
        "NAS": (Recurrent(NASCell, H, H), None),
    }
    _header(args, f"H = I = {H}", "every model taking its turn in each")

    x1 = torch.randn(1, 1, H)
    steps: dict[str, Callable[[], object]] = {}
    for name, (ours, theirs) in pairs.items():
        steps[f"rnnkit {name}"] = lambda m=ours: m(x1)
        if theirs is not None:
            steps[f"torch {name}"] = lambda m=theirs: m(x1)
    with torch.no_grad():
        one = best_of(steps, args.calls, args.rounds)

    x = torch.randn(100, 1, H, requires_grad=True)
    dy = torch.randn(100, 1, H)

    def train(m: nn.Module) -> Callable[[], object]:
        params = list(m.parameters())

        def step() -> object:
            return torch.autograd.grad(m(x)[0], [x, *params], dy)

        return step

    trains = {}
    for name, (ours, theirs) in pairs.items():
        trains[f"rnnkit {name}"] = train(ours)
        if theirs is not None:
            trains[f"torch {name}"] = train(theirs)
    full = best_of(trains, max(args.calls // 20, 20), args.rounds)

    print("| model | T=1 B=1 no grad, µs | / torch.nn | T=100 B=1 training, µs | / torch.nn |")
    print("|---|---|---|---|---|")
    for name, (_, theirs) in pairs.items():
        a, b = one[f"rnnkit {name}"], full[f"rnnkit {name}"]
        ra = f"{a / one[f'torch {name}']:.2f}" if theirs is not None else "-"
        rb = f"{b / full[f'torch {name}']:.2f}" if theirs is not None else "-"
        print(f"| rnnkit {name} | {a:.0f} | {ra} | {b:.0f} | {rb} |")
        if theirs is not None:
            c, d = one[f"torch {name}"], full[f"torch {name}"]
            print(f"| torch {name} | {c:.0f} | 1 | {d:.0f} | 1 |")


if __name__ == "__main__":
    main()
