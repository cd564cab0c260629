"""The compiled loops' own kernel for the recurrent products (``_loops.cpp``, AVX2 + FMA or
AVX-512 builds): every cell's outputs, final states and gradients through it equal the reference
runner's (float64), the float32 results equal the BLAS path's to rounding, weights changed in
place between calls are read again (the packed copy lives for one call), and products of more
rows than ``native.OWN_MAX_ROWS`` allows go to the BLAS."""

from __future__ import annotations

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.engine import kernels, native, native_switches

pytestmark = pytest.mark.skipif(
    not native.available() or not native_switches.own_products(),
    reason="no compiled loops with their own product kernel here (needs AVX2 + FMA)",
)

# sizes that leave remainders everywhere, for both vector widths: B = 13 rows is two blocks of 6
# and one row (AVX2), or one of 12 and one row (AVX-512); H = 36 output columns are full panels
# and one of 4 columns (panels of 16 float32 or 8 float64 columns with AVX2, 32 or 16 with
# AVX-512)
I, H, B, T = 3, 36, 13, 9
LOOP_CELLS = sorted(
    name for name, make in CELLS.items() if kernels.kernel_for(make(I, H)) is not None
)


@pytest.fixture
def own_kernel():
    """Every call takes the own kernel; yields a function that says how many products it
    computed since the fixture started."""
    native_switches.set_own_min_rows(0)
    native_switches.set_own_max_rows(1 << 30)
    start = native_switches.own_product_count()
    try:
        yield lambda: native_switches.own_product_count() - start
    finally:
        native_switches.set_own_min_rows(native.OWN_MIN_ROWS)
        native_switches.set_own_max_rows(None)


def _grads(layer, x, h0, lengths):
    out, h_n = layer(x, h0, lengths=lengths)
    finals = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(11)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, *finals)
    )
    h0_parts = h0 if isinstance(h0, tuple) else (h0,)
    grads = torch.autograd.grad(loss, [x, *h0_parts, *layer.parameters()])
    return [out, *finals, *grads]


def _inputs(layer, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=gen, dtype=dtype, requires_grad=True)
    n = layer.num_layers * (2 if layer.bidirectional else 1)
    parts = tuple(
        torch.randn(n, B, *s, generator=gen, dtype=dtype, requires_grad=True)
        for s in layer.state_shapes
    )
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    return x, (parts if len(parts) > 1 else parts[0]), lengths


@pytest.mark.parametrize("name", LOOP_CELLS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_every_cell_equals_the_reference(name, with_lengths, own_kernel):
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True).double()
    ref = Recurrent(CELLS[name], I, H, 2, bidirectional=True).double()
    ref.load_state_dict(layer.state_dict())
    layer.engine, ref.engine = "native", "reference"
    x, h0, lengths = _inputs(layer, torch.float64)
    lengths = lengths if with_lengths else None
    got = _grads(layer, x, h0, lengths)
    assert own_kernel() > 0
    want = _grads(ref, x, h0, lengths)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["lstm", "gru_reset_before", "nas", "layernorm_lstm"])
def test_float32_equals_the_blas_path_to_rounding(name, own_kernel):
    layer = Recurrent(CELLS[name], I, H, 1, bidirectional=True)
    layer.engine = "native"
    x, h0, lengths = _inputs(layer, torch.float32, seed=1)
    got = _grads(layer, x, h0, lengths)
    assert own_kernel() > 0
    native_switches.set_own_min_rows(-1)
    before = own_kernel()
    want = _grads(layer, x, h0, lengths)
    assert own_kernel() == before  # the BLAS this time
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_weights_changed_in_place_are_read_again(own_kernel):
    """The packed copy of W_hh is made once per call: an optimizer step between two calls
    (in place, same memory) must show in the second."""
    layer = Recurrent(CELLS["gru"], I, H).double()
    ref = Recurrent(CELLS["gru"], I, H).double()
    layer.engine, ref.engine = "native", "reference"
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
        layer.cells[0].weight_hh.mul_(-0.5)  # same storage, new values
        ref.load_state_dict(layer.state_dict())
        out, h = layer(x)
        out_ref, h_ref = ref(x)
    assert own_kernel() > 0
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)


def test_a_row_does_not_depend_on_the_other_rows(own_kernel):
    """Each output of the product is the sum over k in order: the first rows of a batch give the
    same bits alone as with more rows after them (float32, no lengths, one thread's columns or
    two)."""
    layer = Recurrent(CELLS["mut1"], H, H)
    layer.engine = "native"
    x = torch.randn(T, B, H)
    with torch.no_grad():
        gx = layer.cells[0].project_input(x)  # the input projection is the BLAS's, on all rows
        few = layer.cells[0].project_input(x[:, :7])
    assert own_kernel() == 0
    if not torch.equal(gx[:, :7], few):
        pytest.skip("the BLAS's input projection depends on the number of rows here")
    with torch.no_grad():
        out_all, _ = layer(x)
        out_few, _ = layer(x[:, :7])
    assert own_kernel() > 0
    assert torch.equal(out_all[:, :7], out_few)


def test_products_over_the_row_limit_take_the_blas(own_kernel):
    layer = Recurrent(CELLS["gru"], I, H)
    layer.engine = "native"
    x = torch.randn(T, B, I)
    with torch.no_grad():
        native_switches.set_own_max_rows(B - 1)  # every step has B rows: all to the BLAS
        blas, _ = layer(x)
        assert own_kernel() == 0
        native_switches.set_own_max_rows(B)
        own, _ = layer(x)
        assert own_kernel() == T
    torch.testing.assert_close(own, blas, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [-1, 1.5, True])
def test_the_row_limit_must_be_a_count(rows):
    with pytest.raises(ValueError, match=r"rows must be an int >= 0 or None, got"):
        native_switches.set_own_max_rows(rows)


def test_the_default_row_limit_follows_the_vector_width(own_kernel):
    native_switches.set_own_max_rows(None)
    limit = native.OWN_MAX_ROWS[native_switches.own_vector_bits()]
    layer = Recurrent(CELLS["gru"], I, H)
    layer.engine = "native"
    with torch.no_grad():
        layer(torch.randn(2, limit + 1, I))
        assert own_kernel() == 0
        layer(torch.randn(2, limit, I))
        assert own_kernel() == 2


@pytest.mark.parametrize("name", ["elman_tanh", "mgu", "gru"])
def test_the_split_by_call_keeps_every_value(name, own_kernel):
    """With lengths the batch shrinks step by step; the own kernel splits a product's columns
    over the threads by the call's batch, so that every step keeps the same split. The values
    are those of the split by each product's rows, bit for bit (a column's sum does not depend
    on the split), and in float64 those of the reference runner. The sizes make the call's
    batch split and the late steps' few rows not."""
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    B_wide, H_wide, T_long = 32, 128, 12
    try:
        results = {}
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(3)
            layer = Recurrent(CELLS[name], H_wide, H_wide).to(dtype)
            gen = torch.Generator().manual_seed(4)
            x = torch.randn(T_long, B_wide, H_wide, generator=gen, dtype=dtype)
            x.requires_grad_()
            h0 = torch.randn(1, B_wide, H_wide, generator=gen, dtype=dtype, requires_grad=True)
            lengths = torch.randint(1, T_long + 1, (B_wide,), generator=gen)
            for engine, by_call in (("native", True), ("native", False), ("reference", True)):
                layer.engine = engine
                native_switches.set_split_by_call(by_call)
                results[dtype, engine, by_call] = _grads(layer, x, h0, lengths)
        assert own_kernel() > 0
    finally:
        native_switches.set_split_by_call(True)
        torch.set_num_threads(kept)
    for a, b in zip(
        results[torch.float32, "native", True], results[torch.float32, "native", False]
    ):
        assert torch.equal(a, b)
    for a, b in zip(
        results[torch.float64, "native", True], results[torch.float64, "reference", True]
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# native.set_<name> and native.<name>, each on by default
SWITCHES = ("split_by_call", "live_rows", "turn_back", "one_row", "few_rows", "units")


@pytest.mark.parametrize("name", SWITCHES)
@pytest.mark.parametrize("on", [1, None, "yes"])
def test_the_loops_switches_take_a_bool(name, on):
    with pytest.raises(ValueError, match="on must be a bool, got"):
        getattr(native_switches, f"set_{name}")(on)


@pytest.mark.parametrize("name", SWITCHES)
def test_the_loops_switches_read_back(name):
    put, get = getattr(native_switches, f"set_{name}"), getattr(native_switches, name)
    assert get() is True
    try:
        put(False)
        assert get() is False
        put(True)
        assert get() is True
    finally:
        put(True)


# -- sweeps that turn back, and calls of one row ---------------------------------------------


@pytest.mark.parametrize("name", LOOP_CELLS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_turning_back_changes_no_value(name, with_lengths, own_kernel):
    """Every other step reads its panels of W_hh from the last to the first: each output column
    is the same sum either way, so the results equal those of the sweeps that always start at
    the first panel bit for bit (float32; H = 36 gives several panels per product, and T = 9
    steps both parities), and in float64 the reference runner's."""
    results = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(5)
        layer = Recurrent(CELLS[name], I, H, 1, bidirectional=True).to(dtype)
        layer.engine = "native"
        x, h0, lengths = _inputs(layer, dtype, seed=2)
        lengths = lengths if with_lengths else None
        try:
            for on in (True, False):
                native_switches.set_turn_back(on)
                results[dtype, on] = _grads(layer, x, h0, lengths)
        finally:
            native_switches.set_turn_back(True)
        layer.engine = "reference"
        results[dtype, "reference"] = _grads(layer, x, h0, lengths)
    assert own_kernel() > 0
    for a, b in zip(results[torch.float32, True], results[torch.float32, False]):
        assert torch.equal(a, b)
    for a, b in zip(results[torch.float64, True], results[torch.float64, "reference"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["lstm", "nas", "gru_reset_before", "elman_tanh"])
def test_a_call_of_one_row_takes_the_own_kernel(name, own_kernel):
    """A batch of one sequence takes the own kernel (``native_switches.set_one_row(False)`` gives
    it the BLAS): both give the reference runner's values in float64, and each other's to
    rounding in float32."""
    got = {}
    try:
        for dtype in (torch.float64, torch.float32):
            torch.manual_seed(6)
            layer = Recurrent(CELLS[name], I, H, 1, bidirectional=True).to(dtype)
            layer.engine = "native"
            gen = torch.Generator().manual_seed(7)
            x = torch.randn(T, 1, I, generator=gen, dtype=dtype, requires_grad=True)
            parts = tuple(
                torch.randn(2, 1, *s, generator=gen, dtype=dtype, requires_grad=True)
                for s in layer.state_shapes
            )
            h0 = parts if len(parts) > 1 else parts[0]
            for on in (True, False):
                native_switches.set_one_row(on)
                before = own_kernel()
                got[dtype, on] = _grads(layer, x, h0, None)
                assert (own_kernel() > before) == on
            layer.engine = "reference"
            got[dtype, "reference"] = _grads(layer, x, h0, None)
    finally:
        native_switches.set_one_row(True)
    for on in (True, False):
        for a, b in zip(got[torch.float64, on], got[torch.float64, "reference"]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(got[torch.float32, True], got[torch.float32, False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_call_of_one_row_splits_its_columns_without_changing_a_value(own_kernel):
    """A call of one row splits a product's columns over the threads from 2^16 multiply-adds
    (here the LSTM's 4H x H = 512 x 128); each column is the same sum on one thread or two, so
    the results are the same bits, and in float64 the reference runner's."""
    kept = torch.get_num_threads()
    results = {}
    try:
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(8)
            layer = Recurrent(CELLS["lstm"], 128, 128).to(dtype)
            x = torch.randn(12, 1, 128, dtype=dtype, requires_grad=True)
            h0 = tuple(torch.randn(1, 1, 128, dtype=dtype, requires_grad=True) for _ in "hc")
            for threads in (1, 2):
                torch.set_num_threads(threads)
                layer.engine = "native"
                results[dtype, threads] = _grads(layer, x, h0, None)
            layer.engine = "reference"
            results[dtype, "reference"] = _grads(layer, x, h0, None)
    finally:
        torch.set_num_threads(kept)
    assert own_kernel() > 0
    _same_bits_and_reference(results, 2, 1)


def _same_bits_and_reference(results, form=True, other=False):
    """``results[dtype, form]`` equals ``results[torch.float32, other]`` bit for bit in float32
    and the reference runner's in float64."""
    for a, b in zip(results[torch.float32, form], results[torch.float32, other]):
        assert torch.equal(a, b)
    for a, b in zip(results[torch.float64, form], results[torch.float64, "reference"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# -- products of one to three rows, several panels at a time ---------------------------------


def _switched_results(name, switch, width, batch, steps, lengths, seed, count=None, threads=None):
    """{(dtype, switch on / off or "reference"): outputs, finals and gradients} for a
    bidirectional layer of cell ``name`` (I = 5, H = ``width``) on ``batch`` rows of ``steps``
    steps with ``lengths``, the loops' ``switch`` on and off (left on), on ``threads`` threads
    (None: as they are); and how much ``count()`` grew in the calls with the switch on."""
    kept = torch.get_num_threads()
    results, grew = {}, 0
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(seed)
            layer = Recurrent(CELLS[name], 5, width, 1, bidirectional=True).to(dtype)
            gen = torch.Generator().manual_seed(seed + 1)
            x = torch.randn(steps, batch, 5, generator=gen, dtype=dtype, requires_grad=True)
            parts = tuple(
                torch.randn(2, batch, *s, generator=gen, dtype=dtype, requires_grad=True)
                for s in layer.state_shapes
            )
            h0 = parts if len(parts) > 1 else parts[0]
            for on in (True, False):
                switch(on)
                layer.engine = "native"
                start = count() if count else 0
                results[dtype, on] = _grads(layer, x, h0, lengths)
                if count and on:
                    grew += count() - start
            layer.engine = "reference"
            results[dtype, "reference"] = _grads(layer, x, h0, lengths)
    finally:
        switch(True)
        torch.set_num_threads(kept)
    return results, grew


def _few_rows_results(name, width, batch, steps, lengths):
    """:func:`_switched_results` of ``set_few_rows``."""
    switch = native_switches.set_few_rows
    return _switched_results(name, switch, width, batch, steps, lengths, seed=9)[0]


@pytest.mark.parametrize("name", LOOP_CELLS)
@pytest.mark.parametrize("batch", [1, 3, 14])
def test_few_rows_take_several_panels_without_changing_a_value(name, batch, own_kernel):
    """Products of 1 to 3 rows run 4 (one row) or 2 (two, three) full panels of W at a time,
    then the rest one by one, and a partial last panel: each output column is the same sum
    either way, so the results are the bits of one panel at a time (float32), and in float64
    the reference runner's. H = 72 gives the forward products 2 to 18 full panels and a
    partial one (AVX-512, float32: 32 columns a panel), the backward ones 2 and a partial one;
    with lengths 9, 6 and 3 the sorted steps have 3, 2 and 1 rows, with 14 sequences 14 down
    to 1 (blocks of rows, then few), and T = 9 steps both sweep directions."""
    lengths = {
        1: None,
        3: torch.tensor([9, 6, 3]),
        14: torch.tensor([9, 9, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1, 9, 9]),
    }[batch]
    _same_bits_and_reference(_few_rows_results(name, 72, batch, 9, lengths))
    assert own_kernel() > 0


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_few_rows_keep_their_values_on_split_columns(name, own_kernel):
    """On two threads a product of H = 256 splits its columns (the second thread's block starts
    mid-matrix), and the grouped panels start from there: the same bits as one panel at a time,
    and in float64 the reference runner's."""
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = _few_rows_results(name, 256, 3, 4, torch.tensor([4, 3, 2]))
    finally:
        torch.set_num_threads(kept)
    _same_bits_and_reference(results)
    assert own_kernel() > 0


# -- the pointwise pass's split over the threads ----------------------------------------------

# cells whose backward pass sums per-thread partials (peephole and layer-norm gradients): their
# float32 results depend on the split of the rows to rounding
PER_THREAD_SUMS = ("lstm_peephole", "layernorm_lstm")


@pytest.mark.parametrize("name", LOOP_CELLS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_the_pointwise_split_changes_no_value(name, with_lengths):
    """A step's pointwise pass works row by row, so splitting its rows over two threads (line
    0: every step of two rows or more) gives the values of one thread (a line no step reaches)
    bit for bit in float32, to rounding for the cells that sum per-thread partials; in float64
    both equal the reference runner's. Lengths make the steps' rows shrink, bidirectional
    layers run both directions."""
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    results = {}
    try:
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(6)
            layer = Recurrent(CELLS[name], I, H, 1, bidirectional=True).to(dtype)
            layer.engine = "native"
            x, h0, lengths = _inputs(layer, dtype, seed=3)
            lengths = lengths if with_lengths else None
            for line in (0, 1 << 40):
                native_switches.set_rows_split(line, line)
                results[dtype, line] = _grads(layer, x, h0, lengths)
            layer.engine = "reference"
            results[dtype, "reference"] = _grads(layer, x, h0, lengths)
    finally:
        native_switches.set_rows_split(None)
        torch.set_num_threads(kept)
    for a, b in zip(results[torch.float32, 0], results[torch.float32, 1 << 40]):
        if name in PER_THREAD_SUMS:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(a, b)
    for line in (0, 1 << 40):
        for a, b in zip(results[torch.float64, line], results[torch.float64, "reference"]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_elman_splits_its_pointwise_pass_from_its_own_line():
    """The defaults: the gated cells split a step's pointwise pass from 8192 values, Elman from
    4096; set_rows_split sets both, None restores them, and a line that is not a count is
    refused with its name."""
    assert native.ROWS_SPLIT == (8192, 4096)
    assert native_switches.rows_split() == native.ROWS_SPLIT
    try:
        native_switches.set_rows_split(5, 7)
        assert native_switches.rows_split() == (5, 7)
        native_switches.set_rows_split(9)
        assert native_switches.rows_split() == (9, 4096)
    finally:
        native_switches.set_rows_split(None)
    assert native_switches.rows_split() == (8192, 4096)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="values must be an int >= 0 or None, got"):
            native_switches.set_rows_split(bad)
        with pytest.raises(ValueError, match="elman must be an int >= 0 or None, got"):
            native_switches.set_rows_split(None, bad)


# -- the split by hidden units ----------------------------------------------------------------

# the cells whose loops split a call by hidden units (_loops_units.h)
UNIT_CELLS = (
    "elman_tanh",
    "elman_relu",
    "lstm",
    "lstm_peephole",
    "gru",
    "gru_reset_before",
    "mgu",
    "mut1",
    "mut2",
    "mut3",
    "nas",
)


def _units_results(name, batch, lengths, width=256):
    """:func:`_switched_results` of ``set_units`` on two threads, T = 6, and how many calls
    ran split by units with the switch on."""
    switch, count = native_switches.set_units, native_switches.units_count
    return _switched_results(name, switch, width, batch, 6, lengths, 12, count, threads=2)


def _unit_batch(name):
    """A batch of several rows whose calls split by units at H = 256: its products at or over
    the column split's line (2^19 multiply-adds with AVX-512, for Elman's 256 x 256 from 8
    rows) and its step within 2^21 (an LSTM's 4·256 x 256 up to 8 rows, NAS's 8·256 x 256 up
    to 4)."""
    return {"nas": 4, "lstm": 6, "lstm_peephole": 6}.get(name, 9)


@pytest.mark.parametrize("name", UNIT_CELLS)
@pytest.mark.parametrize("several", [False, True], ids=["one row", "several rows"])
def test_the_split_by_units_changes_no_value(name, several, own_kernel):
    """On two threads, a small call whose products split over the threads runs as one parallel
    region split by hidden units (H = 256: two or more panels a thread): each product column
    is the same sum as on the column split and each unit's pointwise step the same arithmetic,
    so the results are the same bits in float32 (the peephole LSTM's weight gradients, summed
    per thread, to rounding) and in float64 the reference runner's. Both directions of a
    bidirectional layer, forward and backward loops, every call split."""
    results, split = _units_results(name, _unit_batch(name) if several else 1, None)
    assert split == 2 * 2 * 2  # two dtypes, two directions, forward and backward
    if name == "lstm_peephole":
        for a, b in zip(results[torch.float32, True], results[torch.float32, False]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for on in (True, False):
            for a, b in zip(results[torch.float64, on], results[torch.float64, "reference"]):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    else:
        _same_bits_and_reference(results)
    assert own_kernel() > 0


@pytest.mark.parametrize("name", ["gru", "lstm", "mgu", "mut3", "nas"])
def test_the_split_by_units_takes_shrinking_steps(name, own_kernel):
    """With lengths in the sorted layout the split by units runs every step on its running
    rows, which shrink from step to step; the forward direction's first steps keep the batch's
    order, and at the turn one thread gathers the previous step's rows (and in the backward
    pass puts the state gradients back) while the others wait. The same bits as the column
    split, and in float64 the reference runner's; every call split."""
    from rnnkit.engine import masked

    kept = masked.MASKED_MAX
    masked.MASKED_MAX = 0  # the sorted layout, not the masked one
    batch = _unit_batch(name)
    try:
        results, split = _units_results(
            name, batch, torch.tensor([6, 4, 5, 2, 6, 3, 1, 5, 6][:batch])
        )
    finally:
        masked.MASKED_MAX = kept
    assert split == 2 * 2 * 2
    _same_bits_and_reference(results)


@pytest.mark.parametrize("name", ["gru", "lstm", "nas"])
def test_the_split_by_units_takes_widths_off_the_panels(name, own_kernel):
    """H = 200 is no multiple of the panel width (32 float32 or 16 float64 columns with
    AVX-512, 16 or 8 with AVX2): the threads' units end inside a panel, and each gate block's
    last panel on each thread is partial. The same bits as the column split, and in float64
    the reference runner's; every call split."""
    results, split = _units_results(name, 1, None, width=200)
    assert split == 2 * 2 * 2
    _same_bits_and_reference(results)


@pytest.mark.parametrize("name, batch", [("gru", 11), ("nas", 5), ("elman_tanh", 17)])
def test_a_step_over_the_line_keeps_the_column_split(name, batch, own_kernel):
    """A call whose step has more than 2^21 multiply-adds (the GRU's 3·256 x 256 on 11 rows,
    NAS's 8·256 x 256 on 5) or more than 16 rows keeps the column split, where the split by
    units cost 1.00-1.04 of it: no call runs split by units."""
    _, split = _units_results(name, batch, None)
    assert split == 0


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru", "mut3", "mgu", "nas"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_a_forward_pass_without_gradients_splits_by_units_too(name, with_lengths, own_kernel):
    """Without gradients the forward loop keeps its saved values in two blocks of B rows that
    alternate by step (and a third at the turn), which the split by units reads back as the
    previous step's c, r·h_prev or tanh(h_prev): the outputs and final states are the column
    split's bits, and in float64 the reference runner's."""
    kept = torch.get_num_threads()
    torch.set_num_threads(2)
    batch = _unit_batch(name)
    lengths = torch.tensor([6, 4, 5, 2, 6, 3, 1, 5, 6][:batch]) if with_lengths else None
    results, split = {}, 0
    try:
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(14)
            layer = Recurrent(CELLS[name], 5, 256, 1, bidirectional=True).to(dtype)
            x = torch.randn(6, batch, 5, dtype=dtype)
            with torch.no_grad():
                for on in (True, False):
                    native_switches.set_units(on)
                    layer.engine = "native"
                    start = native_switches.units_count()
                    out, h_n = layer(x, lengths=lengths)
                    split += native_switches.units_count() - start if on else 0
                    results[dtype, on] = [out, *(h_n if isinstance(h_n, tuple) else (h_n,))]
                layer.engine = "reference"
                out, h_n = layer(x, lengths=lengths)
                results[dtype, "reference"] = [out, *(h_n if isinstance(h_n, tuple) else (h_n,))]
    finally:
        native_switches.set_units(True)
        torch.set_num_threads(kept)
    assert split == 2 * 2  # two dtypes, two directions
    _same_bits_and_reference(results)
