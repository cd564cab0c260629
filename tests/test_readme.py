"""The README's Python tours run as written, and what their comments claim holds."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_two_tours():
    assert len(python_blocks()) == 2


def test_first_tour_runs_and_its_claims_hold():
    scope: dict = {}
    exec(compile(python_blocks()[0], "README tour 1", "exec"), scope)  # noqa: S102
    x, lengths, lstm = scope["x"], scope["lengths"], scope["lstm"]
    # "out (T, B, 2·32), zero past each length", and each sequence as if run alone
    out, _ = lstm(x, lengths=lengths)
    assert out.shape == (50, 8, 64)
    for b, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(out[n:, b]) == 0
        alone, _ = lstm(x[:n, b : b + 1])
        torch.testing.assert_close(out[:n, b : b + 1], alone, rtol=1e-5, atol=1e-6)
    # "torch weights load unchanged": the loaded GRU equals torch's on the same input
    gru, ref = scope["rnnkit"].GRU(16, 32), torch.nn.GRU(16, 32)
    gru.load_state_dict(ref.state_dict())
    torch.testing.assert_close(gru(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)
    # "carry the state on: cat(first, second) == uni(x) exactly"
    full, _ = scope["uni"](x)
    both = torch.cat([scope["first"], scope["second"]])
    torch.testing.assert_close(both, full, rtol=0, atol=0)


def test_second_tour_runs_and_its_claims_hold():
    scope: dict = {"torch": torch}
    exec(compile(python_blocks()[1], "README tour 2", "exec"), scope)  # noqa: S102
    clf, vocab = scope["clf"], scope["vocab"]
    digits, labels, n = scope["digits"], scope["labels"], scope["n"]
    # "padding never counts": the batch loss equals the mean of each sequence's own loss
    alone = torch.stack(
        [clf.loss(digits[b : b + 1, : n[b]], labels[b : b + 1]) for b in range(len(n))]
    )
    torch.testing.assert_close(scope["loss"], alone.mean(), rtol=1e-5, atol=1e-6)
    # the vocabulary round-trips the text it encoded
    assert vocab.decode(scope["ids"]) == list("to be")
