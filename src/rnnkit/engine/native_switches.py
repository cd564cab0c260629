"""Switches and counters of the compiled loops, for measurements and tests: where the loops'
recurrent products split their columns over the threads or take the loops' own kernel, where a
step's pointwise pass splits its rows, the on/off switches of the kernel's variants (each on by
default: :data:`native.SWITCHES`), and how many products each path computed.
Every setter checks its argument and raises when the compiled loops are unavailable.
"""

from __future__ import annotations

from .native import OWN_MAX_ROWS, ROWS_SPLIT, load, loaded


def set_split_rows(rows: int) -> None:
    """Up to how many rows a recurrent product splits W_hh's columns over the threads itself
    (default :data:`native.SPLIT_ROWS`; 0 leaves every product to the BLAS's own threading). For
    measurements."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be an int >= 0, got {rows!r}")
    lib = loaded()
    lib.rnnkit_set_split_rows(rows)


def set_own_min_rows(rows: int) -> None:
    """From how many steps times batch rows a call computes its recurrent products with the
    loops' own kernel instead of the BLAS (default :data:`native.OWN_MIN_ROWS`; -1: never). For
    measurements and tests."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < -1:
        raise ValueError(f"rows must be an int >= -1, got {rows!r}")
    lib = loaded()
    lib.rnnkit_set_own_min_rows(rows)


def set_own_max_rows(rows: int | None) -> None:
    """The most rows a recurrent product may have to take the loops' own kernel (None: the
    default for this build's vector width, :data:`native.OWN_MAX_ROWS`). For measurements and
    tests."""
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        raise ValueError(f"rows must be an int >= 0 or None, got {rows!r}")
    lib = loaded()
    if rows is None:
        rows = OWN_MAX_ROWS.get(lib.rnnkit_own_vector_bits(), 0)
    lib.rnnkit_set_own_max_rows(rows)


def set_rows_split(values: int | None, elman: int | None = None) -> None:
    """From how many values (rows times width) a step's pointwise pass splits its rows over the
    threads: ``values`` for the gated cells, ``elman`` for Elman (None: the defaults,
    :data:`native.ROWS_SPLIT`; 0: every step of two rows or more). For measurements and tests."""
    for name, given in (("values", values), ("elman", elman)):
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int) or given < 0
        ):
            raise ValueError(f"{name} must be an int >= 0 or None, got {given!r}")
    lib = loaded()
    gated = ROWS_SPLIT[0] if values is None else values
    lib.rnnkit_set_rows_split(gated, ROWS_SPLIT[1] if elman is None else elman)


def rows_split() -> tuple[int, int] | None:
    """The current :func:`set_rows_split` values, (gated cells, Elman); None without compiled
    loops."""
    lib = load()
    if lib is None:
        return None
    return int(lib.rnnkit_rows_split(0)), int(lib.rnnkit_rows_split(1))


def _set_switch(name: str, on: bool) -> None:
    """Set the compiled loops' switch ``name`` (``rnnkit_set_<name>``) to ``on``."""
    if not isinstance(on, bool):
        raise ValueError(f"on must be a bool, got {on!r}")
    lib = loaded()
    getattr(lib, f"rnnkit_set_{name}")(int(on))


def _switch(name: str) -> bool:
    """The compiled loops' switch ``name`` (``rnnkit_<name>``); False without them."""
    lib = load()
    return lib is not None and bool(getattr(lib, f"rnnkit_{name}")())


def set_split_by_call(on: bool) -> None:
    """Whether the own kernel decides to split a product's columns over the threads by the
    call's batch (True, the default: every step of a call on the same split) or by the
    product's own rows (False, as before; with lengths the late steps then ran on one core).
    For measurements and tests."""
    _set_switch("split_by_call", on)


def split_by_call() -> bool:
    """The current :func:`set_split_by_call` setting (False without compiled loops)."""
    return _switch("split_by_call")


def set_live_rows(on: bool) -> None:
    """Whether a masked call's recurrent products run on the rows that are not frozen at the
    step (True, the default: gathered into scratch, multiplied, put back, where that saves a
    block of the own kernel's rows) or on every row of the batch (False: a frozen row's rows of
    the product are wasted work). For measurements and tests."""
    _set_switch("live_rows", on)


def live_rows() -> bool:
    """The current :func:`set_live_rows` setting (False without compiled loops)."""
    return _switch("live_rows")


def set_turn_back(on: bool) -> None:
    """Whether every other step's recurrent products on the loops' own kernel read their packed
    W_hh from the far end (True, the default: they start on the lines the step before read
    last, still in the core's L2 cache, where a slice of W_hh larger than the L2 would otherwise
    stream from L3 at every step) or every step's from the start (False). The order changes no
    value. For measurements and tests."""
    _set_switch("turn_back", on)


def turn_back() -> bool:
    """The current :func:`set_turn_back` setting (False without compiled loops)."""
    return _switch("turn_back")


def set_one_row(on: bool) -> None:
    """Whether a call of one row (B = 1) computes its recurrent products with the loops' own
    kernel (True, the default; its columns split over the threads from 2^16 multiply-adds) or
    with the BLAS's matrix-vector product (False, as before). For measurements and tests."""
    _set_switch("one_row", on)


def one_row() -> bool:
    """The current :func:`set_one_row` setting (False without compiled loops)."""
    return _switch("one_row")


def set_few_rows(on: bool) -> None:
    """Whether the own kernel's products of 1 to 3 rows run several panels of W_hh at a time
    (True, the default: 4 on one row, 2 on two or three, so that more chains of multiply-adds
    overlap) or one at a time (False, as before). The same bits either way. For measurements and
    tests."""
    _set_switch("few_rows", on)


def few_rows() -> bool:
    """The current :func:`set_few_rows` setting (False without compiled loops)."""
    return _switch("few_rows")


def set_units(on: bool) -> None:
    """Whether a call whose recurrent products split over the threads splits them by hidden
    units, one parallel region for the whole call (True, the default: each thread's product
    computes its units' columns of every gate block and its pointwise pass the same units of
    every row, one barrier a step, two or three for the reset-before family), or by columns and
    rows, two parallel regions a step or four (False, as before). The same bits either way
    (the peephole LSTM's weight gradients to rounding). For measurements and tests."""
    _set_switch("units", on)


def units() -> bool:
    """The current :func:`set_units` setting (False without compiled loops)."""
    return _switch("units")


def units_count() -> int:
    """How many calls of the compiled loops have run split by hidden units in this process (0
    without compiled loops). For tests."""
    lib = load()
    return 0 if lib is None else int(lib.rnnkit_units_count())


def live_product_count() -> int:
    """How many recurrent products of masked calls have run on their running rows alone in
    this process (0 without compiled loops; for tests)."""
    lib = load()
    return 0 if lib is None else int(lib.rnnkit_live_product_count())


def own_vector_bits() -> int:
    """The own kernel's vector width in bits: 512 (AVX-512), 256 (AVX2 and FMA), 0 (no own
    kernel, or no compiled loops)."""
    lib = load()
    return 0 if lib is None else int(lib.rnnkit_own_vector_bits())


def own_products() -> bool:
    """Whether the compiled loops carry their own kernel for the recurrent products (built
    with AVX2 and FMA, or AVX-512); False without compiled loops."""
    lib = load()
    return lib is not None and bool(lib.rnnkit_own_products())


def own_product_count() -> int:
    """How many recurrent products the loops' own kernel has computed in this process (0
    without compiled loops). For tests."""
    lib = load()
    return 0 if lib is None else int(lib.rnnkit_own_product_count())
