"""The target table of ``rnn_speed.py``: every target of the engine, met or not."""

from __future__ import annotations

TORCH_MODELS = ("torch LSTM", "torch GRU", "torch RNN", "torch LSTMCell loop")


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_targets(times, flops, shapes, rnnkit_models, len_ratio, memory) -> None:
    def worst(names, select, per_flop=False, against="torch LSTM"):
        best = (0.0, "", (0, 0))
        for s in shapes:
            if not select(s):
                continue
            t = times[s]["training"]
            for n in names:
                r = t[n] / t[against]
                if per_flop:
                    r *= flops[s][against] / flops[s][n]
                if r > best[0]:
                    best = (r, n, s)
        return best

    def verdict(value, limit):
        return "met" if value <= limit else "not met"

    rows = []
    r, _, s = worst(["LSTM"], lambda s: True)
    rows.append(
        [
            "plain LSTM through rnnkit, training, everywhere",
            "≤ 1.02",
            f"{r:.2f} at B={s[0]} H={s[1]}",
            verdict(r, 1.02),
        ]
    )
    others = [m for m in rnnkit_models if m not in ("LSTM", "LSTM [native loop]")]
    big = lambda s: s[0] >= 32 and s[1] >= 256  # noqa: E731
    r, n, s = worst(others, big)
    rows.append(
        [
            "other cells, B ≥ 32, H ≥ 256 (time)",
            "≤ 1.25",
            f"{r:.2f} ({n}, B={s[0]} H={s[1]})",
            verdict(r, 1.25),
        ]
    )
    r, n, s = worst(others, big, per_flop=True)
    rows.append(
        [
            "other cells, B ≥ 32, H ≥ 256 (per FLOP)",
            "≤ 1.25",
            f"{r:.2f} ({n}, B={s[0]} H={s[1]})",
            verdict(r, 1.25),
        ]
    )
    r, n, s = worst(rnnkit_models, lambda s: s[0] == 1)
    rows.append(["B = 1, every rnnkit model", "≤ 2", f"{r:.2f} ({n}, H={s[1]})", verdict(r, 2.0)])
    r, n, s = worst(rnnkit_models, lambda s: s[0] == 1, per_flop=True)
    rows.append(["B = 1 (per FLOP)", "≤ 2", f"{r:.2f} ({n}, H={s[1]})", verdict(r, 2.0)])
    r, _, s = worst(["GRU"], lambda s: True, against="torch GRU")
    rows.append(
        [
            "GRU vs torch.nn.GRU, training",
            "< 1",
            f"{r:.2f} at worst (B={s[0]} H={s[1]})",
            verdict(r, 0.999),
        ]
    )
    r, _, s = worst(["Elman"], lambda s: True, against="torch RNN")
    rows.append(
        [
            "Elman vs torch.nn.RNN, training",
            "< 1",
            f"{r:.2f} at worst (B={s[0]} H={s[1]})",
            verdict(r, 0.999),
        ]
    )
    for name in ("LSTM", "LSTM [native loop]", "GRU"):
        if name in memory:
            m = memory[name] / memory["torch LSTM"]
            rows.append(
                [f"peak memory {name}, T=500 B=128 H=512", "≤ 0.75", f"{m:.2f}", verdict(m, 0.75)]
            )
    for name in memory:
        if "[checkpoint" in name:
            m = memory[name] / memory["torch LSTM"]
            rows.append(
                [f"peak memory {name}, T=500 B=128 H=512", "≤ 0.75", f"{m:.2f}", verdict(m, 0.75)]
            )
    others_mem = [
        n
        for n in memory
        if n not in TORCH_MODELS
        and n not in ("LSTM", "LSTM [native loop]", "GRU")
        and "[checkpoint" not in n
    ]
    if others_mem:
        m, n = max((memory[n] / memory["torch LSTM"], n) for n in others_mem)
        rows.append(
            ["peak memory, other cells (worst)", "≤ 0.75", f"{m:.2f} ({n})", verdict(m, 0.75)]
        )
    for shape, ratios in len_ratio.items():
        mine = {k: v for k, v in ratios.items() if not k.startswith("torch")}
        r, n = max((v, k) for k, v in mine.items())
        within = sum(v <= 0.8 for v in mine.values())
        rows.append(
            [
                f"lengths U[T/2, T], B={shape[0]} H={shape[1]} (worst model)",
                "≤ 0.8",
                f"{r:.2f} ({n}); {within} of {len(mine)} models within",
                verdict(r, 0.8),
            ]
        )
    print(table("Targets", ["target", "limit", "measured", "verdict"], rows))
