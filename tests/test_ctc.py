"""CTC decoding and WER against exact hand-worked values, brute force over all paths and
torch's CTC loss."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rnnkit.ctc import (
    beam_decode,
    collapse,
    edit_distance,
    greedy_decode,
    prefix_beam_search,
    word_error_rate,
)


def _labelling_probs(probs: np.ndarray, blank: int = 0) -> dict[tuple[int, ...], float]:
    """P(ℓ | x) of every labelling, summed over all V^T paths."""
    T, V = probs.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        label = tuple(collapse(path, blank))
        out[label] = out.get(label, 0.0) + float(np.prod(probs[np.arange(T), path]))
    return out


def test_collapse_merges_runs_then_drops_blanks():
    assert collapse([1, 1, 0, 1, 2, 0]) == [1, 1, 2]
    assert collapse([0, 0, 0]) == []
    assert collapse([3, 3, 3, 2, 2], blank=2) == [3]


def test_greedy_decode_exact_and_respects_lengths():
    # arg max paths [1, 1, 0, 1, 2] -> [1, 1, 2] and [2, 2, 1, 1, 1] -> [2, 1]; cut at 2 steps
    # the second is [2, 2] -> [2]
    paths = [[1, 1, 0, 1, 2], [2, 2, 1, 1, 1]]
    lp = np.full((2, 5, 3), -5.0)
    for b, path in enumerate(paths):
        lp[b, np.arange(5), path] = -0.1
    assert greedy_decode(lp, [5, 2]) == [[1, 1, 2], [2]]
    assert greedy_decode(torch.from_numpy(lp)) == [[1, 1, 2], [2, 1]]


def test_beam_beats_greedy_where_many_paths_share_a_labelling():
    # each step: blank 0.6, "a" 0.4. Greedy path "--" gives "" (P = 0.36), but
    # P("a") = 0.4·0.4 + 0.6·0.4 + 0.4·0.6 = 0.64
    lp = np.log(np.array([[[0.6, 0.4], [0.6, 0.4]]]))
    assert greedy_decode(lp) == [[]]
    assert beam_decode(lp, beam_size=2) == [[1]]
    (best, score), (second, score2) = prefix_beam_search(lp[0], beam_size=2)
    assert best == (1,) and second == ()
    assert score == pytest.approx(math.log(0.64), abs=1e-12)
    assert score2 == pytest.approx(math.log(0.36), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unpruned_beam_gives_exact_labelling_probabilities(seed):
    rng = np.random.default_rng(seed)
    T, V = 5, 3
    probs = rng.dirichlet(np.ones(V), size=T)  # (T, V)
    exact = _labelling_probs(probs)
    beams = prefix_beam_search(np.log(probs), beam_size=10_000)
    # labellings too long for T steps (repeats need a blank between them) have P = 0 and are
    # left out: the beam holds exactly the possible ones
    assert {label for label, _ in beams} == set(exact)
    lp = torch.from_numpy(np.log(probs)).unsqueeze(1)  # (T, 1, V)
    for label, score in beams:
        assert math.exp(score) == pytest.approx(exact[label], rel=1e-10)
        if label:  # torch's CTC loss is -log P(ℓ | x)
            nll = F.ctc_loss(lp, torch.tensor([label]), [T], [len(label)], reduction="sum")
            assert score == pytest.approx(-float(nll), abs=1e-9)
    best = max(exact, key=exact.get)
    assert beams[0][0] == best


def test_pruning_unlikely_symbols_keeps_the_best_labelling_of_peaked_outputs():
    rng = np.random.default_rng(0)
    # peaked per-step distributions, as a trained model's: pruning symbols below 1e-3 drops
    # only paths too unlikely to change the ranking
    lp = np.log(rng.dirichlet(np.full(6, 0.1), size=(10, 30)) + 1e-12)
    assert beam_decode(lp, beam_size=4, prune=1e-3) == beam_decode(lp, beam_size=4)
    with pytest.raises(ValueError, match="prune must be a probability in"):
        prefix_beam_search(lp[0], prune=1.0)


def test_edit_distance_and_wer_exact():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    refs = [["one", "two", "three", "four"], ["five", "six"]]
    hyps = [["one", "nine", "three"], ["five", "six", "six"]]
    # first: one substitution and one deletion; second: one insertion -> 3 / 6
    assert word_error_rate(refs, hyps) == pytest.approx(0.5)
    assert word_error_rate(refs, refs) == 0.0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="log_probs must have shape"):
        greedy_decode(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="log_probs must be a NumPy array"):
        greedy_decode([[[0.0]]])
    with pytest.raises(ValueError, match="blank must be an int in"):
        greedy_decode(np.zeros((1, 2, 3)), blank=3)
    with pytest.raises(ValueError, match="beam_size must be a positive int"):
        prefix_beam_search(np.zeros((2, 3)), beam_size=0)
    with pytest.raises(ValueError, match="lengths must be 1 ints"):
        greedy_decode(np.zeros((1, 2, 3)), [3])
    with pytest.raises(ValueError, match="references and hypotheses must pair up"):
        word_error_rate([["a"]], [])
    with pytest.raises(ValueError, match="references hold no words"):
        word_error_rate([[]], [["a"]])
