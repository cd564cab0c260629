"""chunk_stream: exact windows, reconstruction, next-step targets, carried state (TBPTT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.data import StreamWindow, chunk_stream, concat_windows, detach_state


def test_hand_written_windows():
    windows = list(chunk_stream(list(range(23)), batch_size=3, steps=4))
    # L = (23 - 1) // 3 = 7 steps per stream; rows start at 0, 7, 14
    assert len(windows) == 2
    assert torch.equal(
        windows[0].inputs, torch.tensor([[0, 1, 2, 3], [7, 8, 9, 10], [14, 15, 16, 17]])
    )
    assert torch.equal(
        windows[0].targets, torch.tensor([[1, 2, 3, 4], [8, 9, 10, 11], [15, 16, 17, 18]])
    )
    assert torch.equal(windows[1].inputs, torch.tensor([[4, 5, 6], [11, 12, 13], [18, 19, 20]]))
    assert torch.equal(windows[1].targets, torch.tensor([[5, 6, 7], [12, 13, 14], [19, 20, 21]]))


def test_drop_last_and_len():
    chunks = chunk_stream(np.arange(23), batch_size=3, steps=4, drop_last=True)
    assert len(chunks) == 1
    assert [w.inputs.shape for w in chunks] == [torch.Size([3, 4])]
    assert len(chunk_stream(np.arange(25), 3, 4)) == 2  # L = 8: exactly two windows


@pytest.mark.parametrize(("N", "B", "k"), [(23, 3, 4), (100, 4, 5), (57, 1, 10), (9, 8, 3)])
def test_concatenation_restores_the_stream(N, B, k):
    stream = torch.randperm(N)
    chunks = chunk_stream(stream, B, k)
    joined = concat_windows(list(chunks))
    L = (N - 1) // B
    assert torch.equal(joined.inputs.reshape(-1), stream[: B * L])
    assert torch.equal(joined.targets.reshape(-1), stream[1 : B * L + 1])
    # targets are the inputs shifted by one step within each row
    assert torch.equal(joined.targets[:, :-1], joined.inputs[:, 1:])
    # and iterating again gives the same windows
    again = concat_windows(list(chunks))
    assert torch.equal(again.inputs, joined.inputs)


def test_time_first_layout_and_features():
    stream = torch.arange(22.0).view(11, 2)  # (N, I) with I = 2
    windows = list(chunk_stream(stream, batch_size=2, steps=3, batch_first=False))
    assert windows[0].inputs.shape == (3, 2, 2)  # (k, B, I)
    assert torch.equal(windows[0].inputs[:, 1], stream[5:8])  # stream b=1 starts at step L=5
    assert torch.equal(windows[0].targets[:, 0], stream[1:4])
    joined = concat_windows(windows, batch_first=False)
    assert torch.equal(joined.inputs.transpose(0, 1).reshape(10, 2), stream[:10])


def test_carried_state_equals_one_long_run():
    """A stateful RNN run window by window with its (detached) state carried over gives the
    same outputs as one run over each whole stream: the windows continue each other."""
    torch.manual_seed(0)
    rnn = torch.nn.GRU(input_size=1, hidden_size=4, batch_first=True).double()
    stream = torch.randn(61, 1, dtype=torch.float64)
    chunks = chunk_stream(stream, batch_size=3, steps=7)
    full, _ = rnn(chunks.inputs)  # (B, L, H)
    state = None
    outputs = []
    for window in chunks:
        out, state = rnn(window.inputs, state)
        state = detach_state(state)
        outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, rtol=0, atol=1e-12)


def test_detach_state_keeps_values_and_structure():
    a = torch.ones(2, requires_grad=True) * 3
    b = torch.zeros(1, requires_grad=True) + 1
    state = {"h": (a, [b, None]), "window": StreamWindow(a, b)}
    out = detach_state(state)
    assert torch.equal(out["h"][0], a) and not out["h"][0].requires_grad
    assert isinstance(out["h"][1], list) and out["h"][1][1] is None
    assert isinstance(out["window"], StreamWindow) and not out["window"].targets.requires_grad
    assert a.requires_grad  # the original is untouched
    with pytest.raises(TypeError, match="state must be a tensor or a tuple/list/dict of tensors"):
        detach_state("h")


def test_errors():
    with pytest.raises(ValueError, match=r"at least batch_size \+ 1 = 5 steps .* got 4"):
        chunk_stream([1, 2, 3, 4], batch_size=4, steps=2)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        chunk_stream([1, 2, 3], batch_size=1, steps=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        chunk_stream([1, 2, 3], batch_size=1.0, steps=1)
