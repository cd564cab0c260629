"""The compiled loops called from several Python threads at once.

ctypes releases the GIL for the length of a foreign call, so two threads that train or run
models at the same time (an inference server, a data-parallel loop over models) run the loops
concurrently. Their state is per call or per thread: the geometry each call passes, the
thread's own count of threads and its packed copies of W_hh (each OpenMP team is its own). So
a result computed while other threads run loops must be the one computed alone, bit for bit:
the same thread count splits every product the same way.
"""

from __future__ import annotations

import threading

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.engine import kernels, native

pytestmark = pytest.mark.skipif(not native.available(), reason="no compiled loops here")

I, H, T, B = 7, 128, 10, 24  # products large enough to split over the threads
NAMES = ["elman_tanh", "gru", "lstm", "nas", "mgu", "layernorm_lstm"]


def _layer(name: str, seed: int) -> Recurrent:
    torch.manual_seed(seed)
    layer = Recurrent(CELLS[name], I, H)
    layer.engine = "native"
    return layer


def _run(layer: Recurrent, seed: int, train: bool) -> list[torch.Tensor]:
    """Outputs, final states and (when ``train``) every gradient of one call with lengths."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=gen, requires_grad=train)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    out, final = layer(x, lengths=lengths)
    results = [out.detach(), *(f.detach() for f in final)]
    if train:
        w = torch.randn(out.shape, generator=gen)
        grads = torch.autograd.grad((out * w).sum(), [x, *layer.parameters()])
        results += list(grads)
    return results


def _concurrently(jobs: list) -> None:
    """Run each job on a thread of its own, all released at once (2 torch threads each), and
    raise the first error any of them met."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(job) -> None:
        try:
            torch.set_num_threads(2)
            start.wait()
            job()
        except BaseException as err:  # reported by the calling thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_the_cells_under_test_have_compiled_loops():
    for name in NAMES:
        assert kernels.kernel_for(CELLS[name](I, H)) is not None, name


@pytest.mark.parametrize("train", [True, False], ids=["training", "inference"])
def test_concurrent_calls_give_the_results_of_calls_alone(train):
    """Six threads, each with its own cell, call the loops eight times while the others do;
    every result equals the same call made alone beforehand."""
    layers = {name: _layer(name, seed) for seed, name in enumerate(NAMES)}
    rounds = 8
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = {
            (name, k): _run(layer, 100 + k, train)
            for name, layer in layers.items()
            for k in range(rounds)
        }
        together: dict = {}

        def job(name: str):
            def run() -> None:
                for k in range(rounds):
                    together[name, k] = _run(layers[name], 100 + k, train)

            return run

        _concurrently([job(name) for name in layers])
    finally:
        torch.set_num_threads(kept)
    assert together.keys() == alone.keys()
    for key, expected in alone.items():
        got = together[key]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert torch.equal(a, b), key


def test_one_layer_shared_by_threads_gives_its_results_alone():
    """Four threads run the same layer (the same W_hh, packed by each thread's own team) on
    different batches at once."""
    layer = _layer("gru", 7)
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = {k: _run(layer, 200 + k, True) for k in range(4)}
        together: dict = {}

        def job(k: int):
            def run() -> None:
                for _ in range(5):
                    together[k] = _run(layer, 200 + k, True)

            return run

        _concurrently([job(k) for k in range(4)])
    finally:
        torch.set_num_threads(kept)
    for k, expected in alone.items():
        assert all(torch.equal(a, b) for a, b in zip(together[k], expected)), k
