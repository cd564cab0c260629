"""The search driver: an interrupted search resumes from its log without re-training what is
done and ends as the uninterrupted one; workers score as in-process training; the strategies
and the leaderboard do what they say. Tiny sizes: a few Adam steps per cell."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from rnnkit.search import RegularizedEvolution, Reinforce, SearchConfig, TreeSpace, run_search
from rnnkit.search.cli import parse_duration, search_main
from rnnkit.search.driver import read_log
from rnnkit.search.evaluate import evaluate, fit_hidden_size, model_parameters

TINY = dict(
    seq_len=5,
    hidden_size=2,
    steps=2,
    batch_size=4,
    val_size=8,
    leaves=2,
    population=2,
    sample=2,
    controller_batch=2,
)


def _candidates(records):
    return [
        (r["id"], r["genome"], r["program"], r["score"])
        for r in records
        if r["kind"] == "candidate"
    ]


class _Interrupt:
    """on_record hook that stops the search (as Ctrl-C would) after n candidates."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def __call__(self, record):
        if record["kind"] == "candidate":
            self.seen += 1
            if self.seen == self.n:
                raise KeyboardInterrupt


@pytest.mark.parametrize("strategy", ["evolution", "reinforce"])
def test_interrupted_search_resumes_without_retraining(tmp_path, strategy):
    config = SearchConfig(strategy=strategy, **TINY)
    full = run_search(config, tmp_path / "full.jsonl", candidates=4, workers=0)
    assert full.evaluated == 2 + 4  # two baselines, four cells

    log = tmp_path / "cut.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_search(config, log, candidates=4, workers=0, on_record=_Interrupt(2))
    head = log.read_text()
    assert len(_candidates(read_log(log))) == 2
    with log.open("a") as f:  # a record cut short mid-write
        f.write('{"kind": "candidate", "id": 2, "gen')
    resumed = run_search(config, log, candidates=4, workers=0)

    assert resumed.evaluated == 2  # only the two missing cells were trained
    assert log.read_text().startswith(head)  # the finished records are kept as they were
    assert _candidates(resumed.records) == _candidates(full.records)
    assert [json.loads(line) for line in log.read_text().splitlines()][-1]["id"] == 3


def test_workers_score_like_in_process_training(tmp_path):
    config = SearchConfig(**TINY)
    result = run_search(
        config, tmp_path / "log.jsonl", candidates=3, workers=2, final_seeds=1, top=1
    )
    train = config.train_config()
    cands = [r for r in result.records if r["kind"] == "candidate"]
    assert len(cands) == 3
    for r in cands:
        again = evaluate(r["program"], train, config.seed)
        assert r["score"] == again["score"] and r["params"] == again["params"]
    lstm = next(r for r in result.records if r["kind"] == "baseline" and r["name"] == "lstm")
    assert lstm["score"] == evaluate("lstm", train, config.seed)["score"]
    rescored = [r for r in result.records if r["kind"] == "rescore"]
    assert {r["name"] for r in rescored} == {"lstm", "gru", f"candidate {_best(cands)['id']}"}
    for r in rescored:
        assert r["seed"] == config.seed + 1
        assert r["score"] == evaluate(r["spec"], train, r["seed"])["score"]


def _best(cands):
    return min(cands, key=lambda r: (math.inf if r["score"] is None else r["score"], r["id"]))


def test_search_command_writes_the_leaderboard(tmp_path, capsys):
    log = tmp_path / "run" / "log.jsonl"
    argv = [
        "--candidates",
        "3",
        "--workers",
        "0",
        "--log",
        str(log),
        "--final-seeds",
        "0",
        "--seq-len",
        "5",
        "--hidden-size",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--val-size",
        "8",
        "--leaves",
        "2",
        "--population",
        "2",
        "--sample",
        "2",
    ]
    assert search_main(argv) == 0
    records = read_log(log)
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    cands = [r for r in records if r["kind"] == "candidate"]
    best = _best(cands)
    assert board["top"][0]["id"] == best["id"] and board["top"][0]["score"] == best["score"]
    running = [min(r["score"] for r in cands[: k + 1]) for k in range(len(cands))]
    assert board["best_so_far"] == running
    assert {b["name"]: b["score"] for b in board["baselines"]} == {
        r["name"]: r["score"] for r in records if r["kind"] == "baseline"
    }
    assert (tmp_path / "run" / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert best["program"] in (tmp_path / "run" / "leaderboard.md").read_text()
    # resuming with only the log and a larger count takes the settings from the log
    capsys.readouterr()
    assert (
        search_main(
            ["--candidates", "4", "--workers", "0", "--log", str(log), "--final-seeds", "0"]
        )
        == 0
    )
    assert f"resuming {log}: 3 candidates already evaluated" in capsys.readouterr().out
    assert [r["id"] for r in read_log(log) if r["kind"] == "candidate"] == [0, 1, 2, 3]


def test_resuming_with_other_settings_is_refused(tmp_path):
    log = tmp_path / "log.jsonl"
    run_search(SearchConfig(**TINY), log, candidates=1, workers=0)
    other = SearchConfig(**{**TINY, "steps": 3})
    with pytest.raises(ValueError, match=r"another search \(steps: log has 2, got 3\)"):
        run_search(other, log, candidates=2, workers=0)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"line 2 is not JSON"):
        run_search(SearchConfig(**TINY), log, candidates=2, workers=0)


def test_regularized_evolution_mutates_the_tournament_winner_and_ages():
    space = TreeSpace(leaves=2)
    rng = np.random.default_rng(0)
    evo = RegularizedEvolution(space, population=4, sample=4, seed=1)
    genomes = [space.random(rng) for _ in range(5)]
    scores = [0.3, 0.1, None, 0.2, 0.5]
    for g, s in zip(genomes[:4], scores[:4]):
        evo.tell(g, s)
    # S = P: the tournament is the whole population, so the parent is the best (0.1)
    for cid in range(20):
        child = evo.propose(cid)
        assert sum(a != b for a, b in zip(child, genomes[1])) == 1
    evo.tell(genomes[4], scores[4])  # the oldest (0.3) leaves; 0.1 is still the best
    assert [g for g, _ in evo.population] == genomes[1:5]
    before = RegularizedEvolution(space, population=4, sample=4, seed=1)
    assert before.propose(0) == space.random(np.random.default_rng([1, 0]))  # random at first


def test_reinforce_step_moves_probability_towards_rewarded_cells():
    space = TreeSpace(leaves=2)
    agent = Reinforce(space, lr=0.05, batch=2, seed=0)
    good, bad, cid = agent.propose(0), agent.propose(1), 2
    while bad == good:
        bad, cid = agent.propose(cid), cid + 1
    with torch.no_grad():
        lp_good = agent.controller(good)[1].item()
        lp_bad = agent.controller(bad)[1].item()
    # the log-probability the controller reports is the sum of its choices' log-softmax
    state = agent.controller.cell.init_state(1)
    token = torch.zeros(1, dtype=torch.long)
    total = 0.0
    with torch.no_grad():
        for k, head in enumerate(agent.controller.heads):
            h, state = agent.controller.cell(agent.controller.embed(token), state)
            logp = torch.log_softmax(head(h)[0], 0)
            total += logp[good[k]].item()
            token = torch.tensor([agent.controller.offsets[k] + good[k]])
    assert total == pytest.approx(lp_good, abs=1e-6)
    agent.tell(good, 1e-3)  # reward 3
    agent.tell(bad, 1.0)  # reward 0
    assert agent.updates == 1
    with torch.no_grad():
        assert agent.controller(good)[1].item() > lp_good
        assert agent.controller(bad)[1].item() < lp_bad


def test_parameter_budget_and_durations():
    for spec in ("lstm", "gru", "h = tanh(Wx + Uh)"):
        H = fit_hidden_size(spec, 2, 500)
        assert model_parameters(spec, 2, H) <= 500 < model_parameters(spec, 2, H + 1)
    # an LSTM with H = 2 on 2 inputs: 4·2·(2 + 2) + 2·4·2 biases + a 2 -> 1 read-out
    assert model_parameters("lstm", 2, 2) == 4 * 2 * 4 + 16 + 3
    assert [parse_duration(s) for s in ("90", "90s", "15m", "1h", "1h30m")] == [
        90.0,
        90.0,
        900.0,
        3600.0,
        5400.0,
    ]
    with pytest.raises(argparse.ArgumentTypeError, match="budget must be a duration"):
        parse_duration("10 minutes")
    with pytest.raises(ValueError, match="give candidates or budget_seconds"):
        run_search(SearchConfig(**TINY), "unused.jsonl")
    with pytest.raises(ValueError, match="strategy must be one of 'evolution', 'reinforce'"):
        SearchConfig(strategy="random")
