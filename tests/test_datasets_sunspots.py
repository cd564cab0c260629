"""Monthly sunspots from statsmodels' table; the parser on a hand-written table; missing
statsmodels named with what to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rnnkit.datasets._deps import MissingDependencyError
from rnnkit.datasets.sunspots import load_sunspots, month_name, parse_monthly, split_bounds

TABLE = """                    MONTHLY MEAN SUNSPOT NUMBERS
Year    Jan   Feb   Mar   Apr   May   Jun   Jul   Aug   Sep   Oct   Nov   Dec
1749    58.0  62.6  70.0  55.7  85.0  83.5  94.8  66.3  75.9  75.5 158.6  85.2

1750    73.3  75.9  89.2  88.3  90.0 100.0  85.4 103.0  91.2  65.7  63.3  75.4
1751    70.0  43.5
Note:  Data are preliminary after Dec 08.
"""


def test_parser_reads_a_table_row_by_row():
    values = parse_monthly(TABLE)
    assert values.tolist()[:3] == [58.0, 62.6, 70.0]
    assert values.tolist()[12:14] == [73.3, 75.9]
    assert values.tolist()[-2:] == [70.0, 43.5] and values.shape == (26,)
    with pytest.raises(ValueError, match="year 1752 follows 1750"):
        parse_monthly("1750 1.0\n1752 2.0\n")


def test_series_is_the_3126_months_from_1749_to_mid_2009():
    s = load_sunspots()
    assert s.shape == (3126,) and s.dtype == np.float64
    assert s[:3].tolist() == [58.0, 62.6, 70.0]  # January to March 1749
    assert s[-6:].tolist() == [1.5, 1.4, 0.7, 1.2, 2.9, 2.6]  # January to June 2009
    assert month_name(0) == "1749-01" and month_name(3125) == "2009-06"
    assert split_bounds() == {"train": (0, 2188), "valid": (2188, 2657), "test": (2657, 3126)}


def test_missing_statsmodels_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # import statsmodels -> ImportError
    with pytest.raises(MissingDependencyError, match=r"the sunspots dataset needs the package "
                       r"'statsmodels'.*pip install statsmodels"):  # fmt: skip
        load_sunspots()
