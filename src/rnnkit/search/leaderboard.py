"""A search's results from its log: the leaderboard (JSON, Markdown) and its plot (PNG)."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from .driver import top_candidates


def _rescore(records: list[dict], spec: str) -> dict | None:
    runs = sorted(
        (r["seed"], r["score"]) for r in records if r["kind"] == "rescore" and r["spec"] == spec
    )
    if not runs:
        return None
    scores = [s for _, s in runs]
    finite = [s for s in scores if s is not None]
    return {
        "seeds": [seed for seed, _ in runs],
        "scores": scores,
        "mean": statistics.fmean(finite) if len(finite) == len(scores) else None,
        "std": statistics.stdev(finite) if len(finite) == len(scores) > 1 else None,
    }


def best_so_far(records: list[dict]) -> list[float | None]:
    """After each candidate (in log order), the lowest score seen so far."""
    out: list[float | None] = []
    best = math.inf
    for r in records:
        if r["kind"] == "candidate":
            if r["score"] is not None:
                best = min(best, r["score"])
            out.append(None if best == math.inf else best)
    return out


def leaderboard(records: list[dict], top: int = 10) -> dict:
    """The leaderboard of a search log as a JSON-ready dict: its config, the baselines, the
    ``top`` best distinct cells (each with its re-training from fresh seeds, if logged) and the
    best score after each candidate."""
    if not records or records[0].get("kind") != "config":
        raise ValueError("records must start with the search's config record")
    candidates = [r for r in records if r["kind"] == "candidate"]
    baselines = [
        {k: r[k] for k in ("name", "score", "params", "hidden_size")}
        | {"rescore": _rescore(records, r["name"])}
        for r in records
        if r["kind"] == "baseline"
    ]
    best = [
        {"rank": i + 1}
        | {k: r[k] for k in ("id", "score", "params", "hidden_size", "program")}
        | {"rescore": _rescore(records, r["program"])}
        for i, r in enumerate(top_candidates(records, top))
    ]
    return {
        "config": records[0]["config"],
        "candidates": len(candidates),
        "trained": sum(not r["cached"] for r in candidates),
        "search_seconds": max((r["elapsed"] for r in candidates), default=0.0),
        "baselines": baselines,
        "top": best,
        "best_so_far": best_so_far(records),
    }


def _fmt(x: float | None) -> str:
    return "diverged" if x is None else f"{x:.4g}"


def _fmt_rescore(r: dict | None) -> str:
    if r is None:
        return "-"
    if r["mean"] is None:
        return "diverged on a seed"
    std = "" if r["std"] is None else f" ± {r['std']:.2g}"
    return f"{r['mean']:.4g}{std} (n={len(r['scores'])})"


def format_table(board: dict) -> str:
    """The leaderboard as a Markdown table (baselines first, then the best cells)."""
    rows = [
        "| cell | params | H | score (search seed) | score (fresh seeds) |",
        "|---|---|---|---|---|",
    ]
    for b in board["baselines"]:
        rows.append(
            f"| {b['name']} | {b['params']} | {b['hidden_size']} | {_fmt(b['score'])} | "
            f"{_fmt_rescore(b['rescore'])} |"
        )
    for c in board["top"]:
        rows.append(
            f"| #{c['rank']}: candidate {c['id']} | {c['params']} | {c['hidden_size']} | "
            f"{_fmt(c['score'])} | {_fmt_rescore(c['rescore'])} |"
        )
    return "\n".join(rows)


def plot(records: list[dict], path: str | os.PathLike) -> Path:
    """PNG: every candidate's score and the best so far against candidates evaluated, with the
    baselines as horizontal lines (log scale: the scores are losses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidates = [r for r in records if r["kind"] == "candidate"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs = [i + 1 for i, r in enumerate(candidates) if r["score"] is not None]
    ys = [r["score"] for r in candidates if r["score"] is not None]
    ax.scatter(xs, ys, s=8, color="0.6", label="candidate")
    best = best_so_far(records)
    ax.step(
        range(1, len(best) + 1),
        [math.nan if b is None else b for b in best],
        where="post",
        color="C0",
        label="best so far",
    )
    for k, r in enumerate(r for r in records if r["kind"] == "baseline"):
        if r["score"] is not None:
            ax.axhline(r["score"], color=f"C{k + 1}", linestyle="--", label=r["name"])
    if ys:
        ax.set_yscale("log")
    config = records[0]["config"]
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel(f"validation loss ({config['task']}, T={config['seq_len']})")
    ax.set_title(f"cell search: {config['strategy']}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_leaderboard(records: list[dict], out_dir: str | os.PathLike, top: int = 10) -> dict:
    """Write ``leaderboard.json``, ``leaderboard.md`` and ``search.png`` into ``out_dir``;
    returns the leaderboard."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    board = leaderboard(records, top)
    (out / "leaderboard.json").write_text(json.dumps(board, indent=2) + "\n")
    lines = [format_table(board), ""]
    for c in board["top"]:
        lines += [f"candidate {c['id']} (rank {c['rank']}):", "", "```", c["program"], "```", ""]
    (out / "leaderboard.md").write_text("\n".join(lines))
    plot(records, out / "search.png")
    return board
