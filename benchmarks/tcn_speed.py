"""rnnkit's TCN vs the ``pytorch-tcn`` package on the same architecture: training step time
and streaming latency per step, at batch sizes 1 and 32.

Both networks are built with the same widths, kernel, dilations, weight normalisation and ReLU;
before timing, the weights of the pytorch-tcn network are copied into rnnkit's and the outputs
are checked equal (full sequence and streamed), so both compute the same function.

* training step: forward over (B, T, I), MSE against a random target, backward, Adam step.
* streaming step: one new time step for the whole batch, from the per-layer buffers, no grad.
  pytorch-tcn streams a batch of one only; for B=32 its row shows the fallback, recomputing
  the last receptive-field window of the sequence for every new step.
* streaming against recomputing: at B=32 and T in {256, 1024, 4096} steps seen so far, the
  cost of the next output by one streaming step against a forward pass over all T + 1 steps
  (what a model without buffers does for every new step), both rnnkit, no grad.

    pip install pytorch-tcn==1.2.3     # optional: without it only rnnkit's rows are measured
    python benchmarks/tcn_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import torch
from machine import cpu_name
from torch import nn
from torch.nn.utils import parametrize

import rnnkit
from rnnkit.tcn import TCN

try:
    import pytorch_tcn
except ImportError:  # benchmark-time optional
    pytorch_tcn = None


def timeit(fns: list[Callable[[], object]], repeats: int, numbers: list[int]) -> list[float]:
    """For each function, the median over ``repeats`` of the mean seconds of ``number`` calls.

    The functions take turns within every repeat, so that load from other processes on a shared
    machine falls on all of them alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, number, ts in zip(fns, numbers, times):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            ts.append((time.perf_counter() - start) / number)
    return [statistics.median(ts) for ts in times]


def build(args) -> tuple[TCN, nn.Module | None]:
    channels = [args.channels] * args.blocks
    ours = TCN(args.inputs, channels, args.kernel, dropout=0.0, norm="weight", activation="relu")
    if pytorch_tcn is None:
        return ours, None
    ref = pytorch_tcn.TCN(
        args.inputs,
        channels,
        kernel_size=args.kernel,
        dropout=0.0,
        causal=True,
        use_norm="weight_norm",
        activation="relu",
        input_shape="NLC",
    )
    state = {k.replace("network.", "blocks."): v for k, v in ref.state_dict().items()}
    ours.load_state_dict({k: v for k, v in state.items() if not k.endswith("padder.buffer")})
    return ours, ref


@torch.no_grad()
def check_same_function(ours: TCN, ref: nn.Module, inputs: int) -> float:
    ours.eval(), ref.eval()
    x = torch.randn(1, 64, inputs)
    full, _ = ours(x)
    err = (full - ref(x)).abs().max().item()
    ref.reset_buffers()
    state = None
    for t in range(64):
        y, state = ours(x[:, t : t + 1], state)
        err = max(err, (y - full[:, t : t + 1]).abs().max().item())
        err = max(err, (ref.inference(x[:, t : t + 1]) - full[:, t : t + 1]).abs().max().item())
    return err


def train_step_fn(model: nn.Module, x: torch.Tensor, rnnkit_api: bool) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.randn(x.shape[0], x.shape[1], 1)

    def step() -> None:
        out = model(x)[0] if rnnkit_api else model(x)
        loss = ((out[..., :1] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours, ref = build(args)
    R = ours.receptive_field
    ref_version = "not installed" if ref is None else metadata.version("pytorch-tcn")
    versions = f"torch {torch.__version__}; rnnkit {rnnkit.__version__}; pytorch-tcn {ref_version}"
    print(f"CPU: {cpu_name()}; threads {torch.get_num_threads()}; {versions}")
    arch = f"{args.blocks} blocks x {args.channels} channels, k={args.kernel}"
    print(f"TCN: I={args.inputs}, {arch}, dilations {ours.dilations}, weight norm, ReLU")
    print(f"receptive field {R}; training sequences of T={args.seq_len}")
    if ref is not None:
        err = check_same_function(ours, ref, args.inputs)
        print(f"max |rnnkit - pytorch-tcn| (full and streamed outputs, float32): {err:.2e}")

    rows = []
    for B in (1, 32):
        x = torch.randn(B, args.seq_len, args.inputs)
        n = 10 if B == 1 else 3
        fns = [train_step_fn(ours, x, True)] + ([train_step_fn(ref, x, False)] if ref else [])
        t = timeit(fns, args.repeats, [n] * len(fns))
        rows.append(("training step", B, t[0], t[1] if ref else None))

        ours.eval()
        if ref is not None:
            ref.eval()
            ref.reset_buffers()
        steps = torch.randn(B, 1, args.inputs)
        window = torch.randn(B, R, args.inputs)
        with torch.no_grad():
            _, state = ours(torch.randn(B, 2 * R, args.inputs))  # a warm stream
            box = [state]

            def ours_step(steps=steps, box=box) -> None:
                _, box[0] = ours(steps, box[0])

            def ours_step_cached() -> None:
                with parametrize.cached():  # weight norm's g·v/||v|| once per block of steps
                    for _ in range(50):
                        ours_step()

            def ref_step(steps=steps) -> None:
                ref.inference(steps)  # pytorch-tcn's streaming: batch size 1 only

            def ref_window(window=window) -> None:
                ref(window)[:, -1:]  # without streaming: recompute the receptive field

            fns, numbers = [ours_step, ours_step_cached], [200, 4]
            if ref is not None:
                fns.append(ref_step if B == 1 else ref_window)
                numbers.append(200 if B == 1 else 20)
            t = timeit(fns, args.repeats, numbers)
        t_ref = t[2] if ref is not None else None
        what = "streaming step" if B == 1 else "streaming step (pytorch-tcn: recompute window)"
        rows.append((what, B, t[0], t_ref))
        rows.append(("streaming step, rnnkit in `parametrize.cached()`", B, t[1] / 50, t_ref))

    stream_rows = streaming_vs_recompute(ours, args)

    print("\n| measurement | B | rnnkit ms | pytorch-tcn ms | pytorch-tcn / rnnkit |")
    print("|---|---|---|---|---|")
    for what, B, a, b in rows:
        ref_ms = "-" if b is None else f"{1e3 * b:.3f}"
        ratio = "-" if b is None else f"{b / a:.2f}"
        print(f"| {what} | {B} | {1e3 * a:.3f} | {ref_ms} | {ratio} |")

    print("\n| T seen | B | recompute T + 1 steps, ms | streaming step, ms | recompute / stream |")
    print("|---|---|---|---|---|")
    for T, B, full, step in stream_rows:
        print(f"| {T} | {B} | {1e3 * full:.2f} | {1e3 * step:.3f} | {full / step:.1f} |")


@torch.no_grad()
def streaming_vs_recompute(ours: TCN, args, B: int = 32) -> list[tuple[int, int, float, float]]:
    """Per T: (T, B, seconds of a forward over T + 1 steps, seconds of one streaming step)."""
    ours.eval()
    rows = []
    for T in (256, 1024, 4096):
        history = torch.randn(B, T + 1, args.inputs)
        _, state = ours(history[:, :T])  # the buffers after T steps
        box = [state]
        new = history[:, T:]

        def recompute(history=history) -> None:
            ours(history)[0][:, -1:]

        def stream(new=new, box=box, state=state) -> None:
            y, _ = ours(new, box[0])

        assert torch.allclose(ours(history)[0][:, -1:], ours(new, state)[0], atol=1e-5)
        full, step = timeit([recompute, stream], args.repeats, [max(1, 2048 // T), 100])
        rows.append((T, B, full, step))
    return rows


if __name__ == "__main__":
    main()
