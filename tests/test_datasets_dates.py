"""CLDR date pairs: exact formatted strings, disjoint splits, no ambiguous source string."""

from __future__ import annotations

import datetime as dt

from rnnkit.datasets.dates import (
    LOCALES,
    N_DAYS,
    check_unambiguous,
    days_of,
    format_day,
    formats,
    load_dates,
)


def test_pairs_are_babel_strings_and_iso_targets():
    day = (dt.date(2021, 3, 4) - dt.date(1950, 1, 1)).days
    assert format_day(day, "de_DE", "long").source == "4. März 2021"
    assert format_day(day, "fr_FR", "full").source == "jeudi 4 mars 2021"
    assert format_day(day, "en_US", "medium").source == "Mar 4, 2021"
    assert format_day(day, "es_ES", "short").source == "4/3/21"
    assert format_day(day, "sv_SE", "short").target == "2021-03-04"
    assert format_day(0, "en_GB", "long").source == "1 January 1950"


def test_splits_are_disjoint_and_cover_every_day():
    parts = [set(days_of(s).tolist()) for s in ("train", "valid", "test")]
    assert sum(len(p) for p in parts) == N_DAYS == 36_525
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    test_days = {
        (dt.date.fromisoformat(p.target) - dt.date(1950, 1, 1)).days
        for p in load_dates("test", 300)
    }
    assert test_days <= parts[2]


def test_samples_are_seeded_and_span_at_least_ten_locales():
    a, b = load_dates("train", 500, seed=3), load_dates("train", 500, seed=3)
    assert a == b and a != load_dates("train", 500, seed=4)
    assert len({p.locale for p in a}) >= 10 and len(LOCALES) == 16
    assert len(formats()) == 63  # 16 locales x 4 styles, en_US short left out


def test_no_source_string_names_two_dates():
    # every 97th day in all 63 formats (the full check over all days passes too, in 90 s)
    assert len(check_unambiguous(step=97)) > 10_000
