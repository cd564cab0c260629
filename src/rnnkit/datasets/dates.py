"""Dates written the way people write them, in many languages, paired with ISO 8601.

Babel formats each date with the Unicode CLDR patterns of 16 locales in four styles
(``short`` "04.03.21", ``medium`` "4 mar 2021", ``long`` "4. März 2021", ``full``
"jeudi 4 mars 2021"); the target is always ``YYYY-MM-DD``. Dates lie in 1950-2049, so the
two-digit years of the short styles are unambiguous (50-99 are 19xx, 00-49 are 20xx).

Every source string must name one date only. Across these locales and styles just one pair
collides: en_US ``short`` ("3/4/21", month first) against es_ES ``short`` ("3/4/21", day
first), so en_US ``short`` is left out (:func:`check_unambiguous` proves the rest).

Splits are by date, so no test date is ever seen in training: the day number ``n`` (days since
1950-01-01) goes to ``"test"`` when ``n % 10 == 9``, to ``"valid"`` when ``n % 10 == 8`` and
to ``"train"`` otherwise. A sample draws a day of its split, a locale and a style uniformly.
Nothing is downloaded, so nothing is cached.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ._deps import require

LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL",
    "sv_SE", "pl_PL", "ru_RU", "tr_TR", "fi_FI", "da_DK", "cs_CZ", "id_ID",
)  # fmt: skip
STYLES = ("short", "medium", "long", "full")
EXCLUDED = (("en_US", "short"),)
FIRST_DAY = dt.date(1950, 1, 1)
N_DAYS = (dt.date(2050, 1, 1) - FIRST_DAY).days  # 36,525
SPLITS = ("train", "valid", "test")
_SPLIT_OF_REMAINDER = {8: "valid", 9: "test"}


@dataclass(frozen=True)
class DatePair:
    """One sample: the formatted ``source``, the ISO ``target``, and how it was written."""

    source: str
    target: str
    locale: str
    style: str


def formats() -> list[tuple[str, str]]:
    """Every (locale, style) used, in a fixed order."""
    return [(loc, s) for loc in LOCALES for s in STYLES if (loc, s) not in EXCLUDED]


def days_of(split: str) -> np.ndarray:
    """Day numbers (days since 1950-01-01) that belong to ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = np.arange(N_DAYS)
    r = n % 10
    if split == "train":
        return n[r < 8]
    return n[r == (8 if split == "valid" else 9)]


def format_day(day: int, locale: str, style: str) -> DatePair:
    """The pair for day number ``day`` written in ``locale`` and ``style``."""
    babel_dates = require("babel.dates", package="babel", needed_for="the dates dataset")
    date = FIRST_DAY + dt.timedelta(days=int(day))
    source = babel_dates.format_date(date, format=style, locale=locale)
    return DatePair(source, date.isoformat(), locale, style)


def load_dates(split: str, n: int, *, seed: int = 0) -> list[DatePair]:
    """``n`` pairs from ``split``; the same ``(split, n, seed)`` always gives the same list."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    days = days_of(split)
    fmts = formats()
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    day_idx = rng.integers(0, len(days), size=n)
    fmt_idx = rng.integers(0, len(fmts), size=n)
    return [format_day(days[d], *fmts[f]) for d, f in zip(day_idx, fmt_idx)]


def check_unambiguous(step: int = 1) -> dict[str, str]:
    """Format every ``step``-th day in every (locale, style); return ``{source: target}``.

    Raises ``ValueError`` when one source string stands for two different dates.
    """
    seen: dict[str, str] = {}
    for day in range(0, N_DAYS, step):
        for loc, style in formats():
            p = format_day(day, loc, style)
            if seen.setdefault(p.source, p.target) != p.target:
                raise ValueError(
                    f"{p.source!r} ({loc}, {style}) means {p.target} and {seen[p.source]}"
                )
    return seen
