"""Monthly mean sunspot numbers, January 1749 to June 2009 (3,126 months).

statsmodels ships the monthly table as ``statsmodels/datasets/sunspots/src/sunspots_monthly.dat``
(its ``sunspots.load()`` only returns the yearly series). The file is read in place from the
installed package (nothing is downloaded, so nothing is cached) and its sha256 checked first.

The split is chronological: the first 70 % of months train (Jan 1749 - Apr 1931, 2,188), the
next 15 % validate (May 1931 - May 1970, 469) and the last 15 % test (Jun 1970 - Jun 2009,
469), so that
every forecast is scored on months later than any it learnt from.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ._cache import verify_sha256
from ._deps import require

RELATIVE_PATH = os.path.join("datasets", "sunspots", "src", "sunspots_monthly.dat")
SHA256 = "cc303d26340b6d599bc2878899f8c50c12323dc04b52a26ad047965ea2b9d2a3"
FIRST_YEAR = 1749
N_MONTHS = 3126
SPLITS = ("train", "valid", "test")
_ROW = re.compile(r"^(\d{4})((?:\s+\d+\.\d+)+)\s*$")


def data_path() -> str:
    """Where the installed statsmodels keeps ``sunspots_monthly.dat``."""
    statsmodels = require("statsmodels", package="statsmodels", needed_for="the sunspots dataset")
    return os.path.join(os.path.dirname(statsmodels.__file__), RELATIVE_PATH)


def parse_monthly(text: str) -> np.ndarray:
    """The numbers of a ``sunspots_monthly.dat`` table in time order, (N,) float64.

    Rows are ``YEAR v_jan v_feb ...``; a year must follow the previous one and every year but
    the last must have 12 values.
    """
    values: list[float] = []
    year = None
    for line in text.splitlines():
        m = _ROW.match(line)
        if m is None:
            continue
        y, months = int(m[1]), [float(v) for v in m[2].split()]
        if year is not None and y != year + 1:
            raise ValueError(f"sunspots table: year {y} follows {year}")
        if values and len(values) % 12:
            raise ValueError(f"sunspots table: year {year} has fewer than 12 months")
        year = y
        values.extend(months)
    return np.asarray(values, dtype=np.float64)


def load_sunspots() -> np.ndarray:
    """All 3,126 monthly values from January 1749, (N,) float64."""
    path = data_path()
    verify_sha256(path, SHA256)
    with open(path, encoding="ascii") as f:
        series = parse_monthly(f.read())
    if series.shape != (N_MONTHS,):
        raise ValueError(f"expected {N_MONTHS} months in {path}, got {series.shape[0]}")
    return series


def split_bounds(n: int = N_MONTHS) -> dict[str, tuple[int, int]]:
    """``{split: (first month index, one past the last)}`` (see the module docstring)."""
    a, b = int(0.70 * n), int(0.85 * n)
    return {"train": (0, a), "valid": (a, b), "test": (b, n)}


def month_name(index: int) -> str:
    """``"YYYY-MM"`` of month ``index`` (0 is 1749-01)."""
    year, month = divmod(index, 12)
    return f"{FIRST_YEAR + year}-{month + 1:02d}"
