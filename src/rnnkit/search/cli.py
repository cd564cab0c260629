"""``rnnkit search``: run or resume a cell search and write its leaderboard.

    rnnkit search --task adding --budget 1h --log runs/search/log.jsonl

Re-running a command on the same ``--log`` resumes it; flags left out are taken from the log.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import fields
from pathlib import Path

from .driver import STRATEGIES, SearchConfig, read_log, run_search
from .evaluate import TASKS
from .leaderboard import best_so_far, format_table, write_leaderboard

_DURATION = re.compile(r"(\d+(?:\.\d*)?)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"1h"`` or ``"1h30m"``."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"h": 3600.0, "m": 60.0, "s": 1.0}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(
            f"budget must be a duration such as 90s, 15m, 1h or 1h30m, got {text!r}"
        )
    return total


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnkit search",
        description=(
            "Search for a recurrent cell (Zoph & Le 2017's tree space) by regularised evolution "
            "or REINFORCE; every cell is trained briefly on a task at the parameter count of "
            "an LSTM. Resumable: run the same command again on the same --log."
        ),
    )
    run = p.add_argument_group("run (may change when resuming)")
    run.add_argument("--budget", type=parse_duration, help="search time, e.g. 15m or 1h")
    run.add_argument("--candidates", type=int, help="stop after this many cells in total")
    run.add_argument("--workers", type=int, default=2, help="training processes (0: inline)")
    run.add_argument(
        "--log",
        type=Path,
        default=None,
        help="JSON-lines log (default: runs/search/<task>-<strategy>/log.jsonl)",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="leaderboard folder (default: the log's)"
    )
    run.add_argument(
        "--final-seeds",
        type=int,
        default=3,
        help="re-train the best cells and the baselines from this many fresh seeds",
    )
    run.add_argument("--top", type=int, default=3, help="how many best cells to re-train")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    s = p.add_argument_group("search (fixed for a log; defaults from the log when resuming)")
    s.add_argument("--strategy", choices=STRATEGIES)
    s.add_argument("--task", choices=sorted(TASKS))
    s.add_argument("--seq-len", type=int, help="T of the training sequences (default 50)")
    s.add_argument(
        "--hidden-size",
        type=int,
        help="H of the LSTM whose parameter count every cell gets (default 16)",
    )
    s.add_argument("--steps", type=int, help="Adam steps per cell (default 300)")
    s.add_argument("--batch-size", type=int, help="default 64")
    s.add_argument("--lr", type=float, help="Adam learning rate (default 0.01)")
    s.add_argument("--val-size", type=int, help="validation sequences (default 1000)")
    s.add_argument("--leaves", type=int, choices=(2, 4, 8, 16), help="tree leaves (default 8)")
    s.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, help="with a memory cell c (default yes)"
    )
    s.add_argument("--population", type=int, help="evolution: population P (default 20)")
    s.add_argument("--sample", type=int, help="evolution: tournament size S (default 5)")
    s.add_argument("--controller-lr", type=float, help="reinforce: Adam lr (default 0.005)")
    s.add_argument("--controller-batch", type=int, help="reinforce: cells per update (default 4)")
    s.add_argument("--seed", type=int, help="default 0")
    return p


def _config(args: argparse.Namespace, logged: dict | None) -> SearchConfig:
    values = dict(logged) if logged is not None else SearchConfig().to_dict()
    for f in fields(SearchConfig):
        given = getattr(args, f.name)
        if given is not None:
            values[f.name] = given
    return SearchConfig.from_dict(values)


class _Reporter:
    """Progress: a rich bar on a terminal, else one line per record."""

    def __init__(self, total: int | None, quiet: bool, records: list[dict]) -> None:
        self.quiet = quiet
        self.best: float | None = None
        self.lstm: float | None = None
        self.count = 0
        self.total = total
        self.progress = None
        for r in records:  # a resumed search starts from what its log holds
            self.note(r)
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self.task = self.progress.add_task("search", total=total, completed=self.count)
            self.progress.start()

    def note(self, record: dict) -> None:
        if record["kind"] == "baseline" and record["name"] == "lstm":
            self.lstm = record["score"]
        if record["kind"] == "candidate":
            self.count += 1
            if record["score"] is not None and (self.best is None or record["score"] < self.best):
                self.best = record["score"]

    def __call__(self, record: dict) -> None:
        self.note(record)
        text = f"best {_num(self.best)} | lstm {_num(self.lstm)}"
        if self.progress is not None:
            self.progress.update(self.task, completed=self.count, description=text)
        elif not self.quiet:
            what = record.get("name") or f"candidate {record.get('id')}"
            print(
                f"[{record['elapsed']:8.1f}s] {record['kind']:9} {what:15} "
                f"score {_num(record['score'])}  ({text})",
                flush=True,
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def search_main(argv: list[str] | None = None) -> int:
    """Entry point of ``rnnkit search``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.budget is None and args.candidates is None:
        parser.error("give --budget (e.g. 15m) or --candidates (or both)")
    if args.log is None:
        task = args.task or "adding"
        strategy = args.strategy or "evolution"
        args.log = Path("runs") / "search" / f"{task}-{strategy}" / "log.jsonl"
    records = read_log(args.log)
    logged = records[0]["config"] if records and records[0].get("kind") == "config" else None
    try:
        config = _config(args, logged)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    done = sum(r["kind"] == "candidate" for r in records)
    if done and not args.quiet:
        print(f"resuming {args.log}: {done} candidates already evaluated", flush=True)
    reporter = _Reporter(args.candidates, args.quiet, records)
    try:
        result = run_search(
            config,
            args.log,
            candidates=args.candidates,
            budget_seconds=args.budget,
            workers=args.workers,
            final_seeds=args.final_seeds,
            top=args.top,
            on_record=reporter,
        )
    except KeyboardInterrupt:
        reporter.close()
        print(f"\ninterrupted; run the same command again to resume from {args.log}")
        return 130
    reporter.close()
    out = args.out or args.log.parent
    board = write_leaderboard(result.records, out)
    if not args.quiet:
        best = best_so_far(result.records)
        print(
            f"stopped ({result.stopped}) after {len(best)} candidates; "
            f"{result.evaluated} trainings in this run"
        )
        print(format_table(board))
        if board["top"]:
            print(f"\nbest cell (candidate {board['top'][0]['id']}):\n{board['top'][0]['program']}")
        print(f"\nwrote {out / 'leaderboard.json'}, {out / 'leaderboard.md'}, {out / 'search.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(search_main())
