"""The search driver: propose cells, train them in worker processes, log every result.

Everything a search learns goes to one JSON-lines log, one record a line, flushed as soon as it
is known:

* ``{"kind": "config", "config": {...}}``: the :class:`SearchConfig`, first line;
* ``{"kind": "baseline", "name": "lstm", ...}``: the built-in cells at the same budget;
* ``{"kind": "candidate", "id": 7, "genome": [...], "program": "...", "score": ..., ...}``;
* ``{"kind": "rescore", "name": ..., "seed": ..., "score": ...}``: the final re-training of the
  best cells and the baselines from fresh seeds.

Running the same search on an existing log *resumes* it: the records are read back, the
strategy is rebuilt by telling it every finished candidate in log order (both strategies are
deterministic functions of that history), and only what is missing is evaluated. A last line
cut short by an interruption is dropped. Stopping criteria (``candidates``, ``budget``) and
``workers`` may change between runs; the search itself (:class:`SearchConfig`) may not.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import torch

from ..cells.base import check_choice, check_positive_int
from .evaluate import BASELINES, TrainConfig, evaluate, get_task, lstm_budget
from .evolution import RegularizedEvolution
from .reinforce import Reinforce
from .space import Genome, TreeSpace

STRATEGIES = ("evolution", "reinforce")
MAX_CACHED_IN_A_ROW = 1000  # a strategy that only proposes known cells has converged


class Strategy(Protocol):
    def propose(self, candidate_id: int) -> Genome: ...

    def tell(self, genome: Genome, score: float | None) -> None: ...


@dataclass(frozen=True)
class SearchConfig:
    """What defines a search (a resumed search must use the same)."""

    strategy: str = "evolution"
    task: str = "adding"
    seq_len: int = 50
    hidden_size: int = 16  # of the LSTM baseline, whose parameter count is every cell's budget
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    val_size: int = 1000
    leaves: int = 8
    memory: bool = True
    population: int = 20  # evolution: P
    sample: int = 5  # evolution: tournament size S
    controller_lr: float = 5e-3  # reinforce
    controller_batch: int = 4  # reinforce: cells per policy-gradient step
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_positive_int("hidden_size", self.hidden_size)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        self.space()  # validates leaves and memory
        self.train_config()  # validates the training options

    def space(self) -> TreeSpace:
        return TreeSpace(self.leaves, self.memory)

    def train_config(self) -> TrainConfig:
        task = get_task(self.task)
        return TrainConfig(
            task=self.task,
            seq_len=self.seq_len,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            val_size=self.val_size,
            param_budget=lstm_budget(task.input_size, self.hidden_size),
        )

    def make_strategy(self) -> Strategy:
        if self.strategy == "evolution":
            return RegularizedEvolution(
                self.space(), population=self.population, sample=self.sample, seed=self.seed
            )
        return Reinforce(
            self.space(), lr=self.controller_lr, batch=self.controller_batch, seed=self.seed
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"search config: unknown keys {sorted(unknown)}")
        return cls(**d)


# -- the log -------------------------------------------------------------------------------------
def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a search log (``[]`` if there is none). A last line without its newline,
    as an interruption leaves it, is ignored; any other unreadable line is an error."""
    path = Path(path)
    if not path.exists():
        return []
    *complete, _partial = path.read_text().split("\n")  # _partial is "" after a final newline
    records = []
    for n, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"search log {path}: line {n} is not JSON ({e.msg})") from None
    return records


class _LogWriter:
    """Appends records to the log, each one line, flushed and synced as it is written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # cut a partial last line, so the next record starts a line
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep != len(data):
                with path.open("r+b") as f:
                    f.truncate(keep)
        self.file = path.open("a")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


# -- evaluation in workers -----------------------------------------------------------------------
def _init_worker() -> None:
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


class _InlineExecutor(Executor):
    """Runs each job at once in this process (``workers=0``): for tests and debugging."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(e, KeyboardInterrupt):
                raise
            future.set_exception(e)
        return future


def _executor(workers: int) -> Executor:
    if workers == 0:
        return _InlineExecutor()
    # A fork server: one clean process imports torch (and the optimiser's lazy imports) once,
    # and each worker is forked from it. Forking this process instead could copy a busy
    # OpenMP pool; spawning would import torch again in every worker.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rnnkit.search.evaluate", "torch._dynamo"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)


# -- the search ----------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """All records of the log after this run, and how many trainings this run did."""

    records: list[dict]
    evaluated: int
    stopped: str


def _score_key(score: float | None) -> float:
    return math.inf if score is None else score


def top_candidates(records: list[dict], k: int) -> list[dict]:
    """The ``k`` best distinct programs among the candidates (lowest score; first on ties)."""
    best: dict[str, dict] = {}
    for r in records:
        if r["kind"] == "candidate" and r["score"] is not None and r["program"] not in best:
            best[r["program"]] = r
    return sorted(best.values(), key=lambda r: (_score_key(r["score"]), r["id"]))[:k]


def run_search(
    config: SearchConfig,
    log_path: str | os.PathLike,
    *,
    candidates: int | None = None,
    budget_seconds: float | None = None,
    workers: int = 2,
    final_seeds: int = 0,
    top: int = 3,
    on_record: Callable[[dict], None] | None = None,
) -> SearchResult:
    """Run (or resume) a search until ``candidates`` cells have been evaluated in total or
    ``budget_seconds`` of search time have passed in total (at least one must be given), then
    re-train the ``top`` best cells and the baselines from ``final_seeds`` fresh seeds.

    Candidates train in ``workers`` processes (0: in this process). ``on_record`` is called
    with each record as it is logged (a progress display). Returns a :class:`SearchResult`.
    """
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    if candidates is None and budget_seconds is None:
        raise ValueError("give candidates or budget_seconds (or both): when should it stop?")
    if candidates is not None and (isinstance(candidates, bool) or candidates < 0):
        raise ValueError(f"candidates must be an int >= 0, got {candidates!r}")
    if budget_seconds is not None and not budget_seconds >= 0:
        raise ValueError(f"budget_seconds must be >= 0, got {budget_seconds!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    path = Path(log_path)
    records = read_log(path)
    if records:
        _check_config(path, records[0], config)
    writer = _LogWriter(path)
    if not records:
        records.append({"kind": "config", "config": config.to_dict()})
        writer.write(records[-1])
    start = time.monotonic()
    before = max((r.get("elapsed", 0.0) for r in records), default=0.0)
    run = _Run(config, records, writer, _executor(workers), on_record, before, start)
    try:
        run.baselines()
        stopped = run.candidates(candidates, budget_seconds, max(workers, 1))
        run.rescore(final_seeds, top)
    finally:
        run.executor.shutdown(wait=False, cancel_futures=True)
        writer.close()
    return SearchResult(records, run.evaluated, stopped)


def _check_config(path: Path, first: dict, config: SearchConfig) -> None:
    if first.get("kind") != "config":
        raise ValueError(f"search log {path}: the first record must be the config, got {first}")
    logged = first["config"]
    now = config.to_dict()
    diff = {k: (logged.get(k), now.get(k)) for k in set(logged) | set(now)}
    diff = {k: v for k, v in diff.items() if v[0] != v[1]}
    if diff:
        detail = ", ".join(f"{k}: log has {a!r}, got {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f"search log {path} was written by another search ({detail}); resume it with the "
            f"same settings or write to a new log"
        )


class _Run:
    """One run of the driver over a log: the state shared by its three phases."""

    def __init__(self, config, records, writer, executor, on_record, before, start) -> None:
        self.config: SearchConfig = config
        self.train = config.train_config()
        self.space = config.space()
        self.records: list[dict] = records
        self.writer: _LogWriter = writer
        self.executor: Executor = executor
        self.on_record = on_record
        self.before, self.start = before, start
        self.evaluated = 0

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.start

    def log(self, record: dict) -> None:
        record["elapsed"] = round(self.elapsed(), 3)
        self.records.append(record)
        self.writer.write(record)
        if self.on_record is not None:
            self.on_record(record)

    def _gather(self, jobs: list[tuple[dict, str, int]]) -> None:
        """Evaluate (record head, spec, seed) jobs in parallel; log each as it finishes."""
        futures = {
            self.executor.submit(evaluate, spec, self.train, seed): head
            for head, spec, seed in jobs
        }
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                head = futures.pop(fut)
                self.evaluated += 1
                self.log({**head, **fut.result()})

    def baselines(self) -> None:
        done = {r["name"] for r in self.records if r["kind"] == "baseline"}
        seed = self.config.seed
        self._gather(
            [({"kind": "baseline", "name": n}, n, seed) for n in BASELINES if n not in done]
        )

    def candidates(self, limit: int | None, budget: float | None, in_flight_max: int) -> str:
        strategy = self.config.make_strategy()
        cache: dict[str, dict] = {}
        finished = [r for r in self.records if r["kind"] == "candidate"]
        for r in finished:
            strategy.tell(tuple(r["genome"]), r["score"])
            cache.setdefault(r["program"], r)
        count = len(finished)
        next_id = max((r["id"] for r in finished), default=-1) + 1
        in_flight: dict[Future, tuple[int, Genome, str]] = {}
        cached_in_a_row = 0
        stopped = "candidates"

        def room() -> bool:
            nonlocal stopped
            if limit is not None and count + len(in_flight) >= limit:
                stopped = "candidates"
                return False
            if budget is not None and self.elapsed() >= budget:
                stopped = "budget"
                return False
            if cached_in_a_row >= MAX_CACHED_IN_A_ROW:
                stopped = "converged"
                return False
            return True

        while True:
            while len(in_flight) < in_flight_max and room():
                cid, next_id = next_id, next_id + 1
                genome = strategy.propose(cid)
                program = self.space.to_source(genome)
                if program in cache:  # the same cell again: its score, without training
                    known = cache[program]
                    self.log(self._candidate(cid, genome, program, known, cached=True))
                    strategy.tell(genome, known["score"])
                    count += 1
                    cached_in_a_row += 1
                    continue
                cached_in_a_row = 0
                fut = self.executor.submit(evaluate, program, self.train, self.config.seed)
                in_flight[fut] = (cid, genome, program)
            if not in_flight:
                return stopped
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: in_flight[f][0]):
                cid, genome, program = in_flight.pop(fut)
                record = self._candidate(cid, genome, program, fut.result(), cached=False)
                self.evaluated += 1
                count += 1
                self.log(record)
                strategy.tell(genome, record["score"])
                cache.setdefault(program, record)

    @staticmethod
    def _candidate(cid: int, genome: Genome, program: str, result: dict, cached: bool) -> dict:
        return {
            "kind": "candidate",
            "id": cid,
            "genome": list(genome),
            "program": program,
            "score": result["score"],
            "params": result["params"],
            "hidden_size": result["hidden_size"],
            "seconds": 0.0 if cached else result["seconds"],
            "cached": cached,
        }

    def rescore(self, final_seeds: int, top: int) -> None:
        if final_seeds == 0:
            return
        check_positive_int("final_seeds", final_seeds)
        done = {(r["spec"], r["seed"]) for r in self.records if r["kind"] == "rescore"}
        entries = [(name, name, None) for name in BASELINES]
        entries += [
            (f"candidate {r['id']}", r["program"], r["id"])
            for r in top_candidates(self.records, top)
        ]
        seeds = range(self.config.seed + 1, self.config.seed + 1 + final_seeds)
        jobs = [
            ({"kind": "rescore", "name": name, "id": cid, "spec": spec, "seed": s}, spec, s)
            for name, spec, cid in entries
            for s in seeds
            if (spec, s) not in done
        ]
        self._gather(jobs)
