"""The cell language: built-in cells written in it equal the built-in cells bit for bit; a
program computes its equations; the search space's genomes are the programs they say; bad
programs raise errors that point at the problem."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.loop import run_cell
from rnnkit.search import ExpressionCell, TreeSpace, count_parameters, expression_cell, parse
from rnnkit.search import programs as P

BUILTIN = {
    "lstm": (P.LSTM, rnnkit.LSTMCell),
    "gru": (P.GRU, rnnkit.GRUCell),
    "gru_reset_before": (P.GRU_RESET_BEFORE, partial(rnnkit.GRUCell, reset_after=False)),
    "nas": (P.NAS, rnnkit.NASCell),
    "elman": (P.ELMAN, rnnkit.ElmanCell),
}


@pytest.mark.parametrize("name", list(BUILTIN))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_program_reproduces_the_builtin_cell_exactly(name, dtype):
    program, builtin = BUILTIN[name]
    T, B, I, H = 6, 3, 4, 5
    ref = builtin(I, H).to(dtype)
    dsl = ExpressionCell(I, H, program).to(dtype)
    dsl.load_state_dict(ref.state_dict())  # same names, same packing: loads unchanged
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(B, *s, dtype=dtype) for s in ref.state_shapes())
    lengths = torch.tensor([6, 2, 4])
    # the plain time loop over each cell: bit-for-bit the same outputs and states; gradients
    # equal up to the order autograd sums them in
    out_ref, s_ref = run_cell(ref, x, state, lengths)
    out_dsl, s_dsl = run_cell(dsl, x, state, lengths)
    assert torch.equal(out_ref, out_dsl)
    assert all(torch.equal(a, b) for a, b in zip(s_ref, s_dsl))
    w = torch.randn_like(out_ref)
    g_ref = torch.autograd.grad((out_ref * w).sum(), [x, *ref.parameters()])
    g_dsl = torch.autograd.grad((out_dsl * w).sum(), [x, *dsl.parameters()])
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    assert all(torch.allclose(a, b, rtol=tol, atol=tol) for a, b in zip(g_ref, g_dsl))
    assert sum(p.numel() for p in dsl.parameters()) == count_parameters(program, I, H)


@pytest.mark.parametrize("name", ["lstm", "gru", "nas"])
def test_program_runs_through_the_runner_like_the_builtin_layer(name):
    # the runner may send the built-in cell down a fused engine path and the program down the
    # generic one: equal up to rounding
    program, builtin = BUILTIN[name]
    ref = rnnkit.Recurrent(builtin, 3, 4, num_layers=2, bidirectional=True).double()
    dsl = rnnkit.Recurrent(expression_cell(program), 3, 4, num_layers=2, bidirectional=True)
    dsl = dsl.double()
    dsl.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    (out_ref, _), (out_dsl, _) = ref(x, lengths=lengths), dsl(x, lengths=lengths)
    assert torch.allclose(out_ref, out_dsl, rtol=0, atol=1e-12)
    g_ref = torch.autograd.grad(out_ref.square().sum(), list(ref.parameters()))
    g_dsl = torch.autograd.grad(out_dsl.square().sum(), list(dsl.parameters()))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(g_ref, g_dsl))


def test_program_computes_its_equations():
    # max, sub, neg, a constant, U(...) of an expression and a memory cell, recomputed by hand
    src = """
    a = max(Wx, Uh)            # x-block 0, h-block 0
    b = sigmoid(U(h_prev - 1))  # h-block 1
    c = a * b + c_prev
    h = -relu(Wx * c) + sin(Uh) # x-block 1, h-block 2
    """
    I, H, B = 3, 4, 2
    cell = ExpressionCell(I, H, src).double()
    x = torch.randn(B, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    c0 = torch.randn(B, H, dtype=torch.float64)
    W, U = cell.weight_ih.detach(), cell.weight_hh.detach()
    bw, bu = cell.bias_ih.detach(), cell.bias_hh.detach()

    def wx(k):
        return x @ W[k * H : (k + 1) * H].T + bw[k * H : (k + 1) * H]

    def u(k, v):
        return v @ U[k * H : (k + 1) * H].T + bu[k * H : (k + 1) * H]

    a = torch.maximum(wx(0), u(0, h0))
    b = torch.sigmoid(u(1, h0 - 1))
    c = a * b + c0
    h = -torch.relu(wx(1) * c) + torch.sin(u(2, h0))
    out, (h_new, c_new) = cell(x, (h0, c0))
    assert torch.allclose(out, h, atol=1e-14) and torch.allclose(c_new, c, atol=1e-14)
    assert torch.equal(out, h_new)
    # the input half: every Wx in one product
    assert torch.allclose(cell.project_input(x), x @ W.T + bw, atol=1e-14)
    assert cell.weight_ih.shape == (2 * H, I) and cell.weight_hh.shape == (3 * H, H)
    assert count_parameters(src, I, H) == sum(p.numel() for p in cell.parameters())
    assert count_parameters(src, I, H, bias=False) == sum(
        p.numel() for p in ExpressionCell(I, H, src, bias=False).parameters()
    )


def test_printing_round_trips():
    space = TreeSpace(leaves=8, memory=True)
    rng = np.random.default_rng(0)
    sources = list(P.PROGRAMS.values()) + [space.to_source(space.random(rng)) for _ in range(50)]
    sources.append("h = tanh(Wx - (Uh - h_prev) * -2.5 - -Uh)")
    for src in sources:
        p = parse(src)
        assert parse(p.to_source()) == p
    assert parse("h = tanh(Wx - (Uh - h_prev))").to_source() == "h = tanh(Wx - (Uh - h_prev))"
    assert parse("h = tanh((Wx - Uh) - h_prev)").to_source() == "h = tanh(Wx - Uh - h_prev)"


def test_genome_is_the_tree_it_says():
    space = TreeSpace(leaves=2, memory=True)
    names = [n for n, _ in space.decisions()]
    assert names == [
        "comb_0",
        "act_0",
        "comb_1",
        "act_1",
        "comb_2",
        "act_2",
        "inject",
        "inject_comb",
        "inject_act",
        "cell",
    ]
    # node 0 = tanh(Wx + Uh), injected: m0 = sigmoid(n0 * c_prev); node 1 = relu(max(Wx, Uh))
    # with c_t its combination; root h = sin(m0 + n1)
    genome = (0, 1, 2, 3, 0, 4, 0, 1, 2, 1)
    assert space.to_source(genome) == (
        "n0 = tanh(Wx + Uh)\n"
        "m0 = sigmoid(n0 * c_prev)\n"
        "c = max(Wx, Uh)\n"
        "n1 = relu(c)\n"
        "h = sin(m0 + n1)"
    )
    p = space.to_program(genome)
    assert (p.num_input_projections, p.num_state_projections, p.has_memory) == (2, 2, True)
    # every tree with N leaves has N Wx and N Uh: N = 4 is an LSTM's parameter count
    four = TreeSpace(leaves=4).to_program(TreeSpace(leaves=4).random(np.random.default_rng(1)))
    assert count_parameters(four, 2, 16) == count_parameters(P.LSTM, 2, 16)


def test_mutation_changes_exactly_one_choice():
    space = TreeSpace(leaves=4, memory=True)
    rng = np.random.default_rng(3)
    g = space.random(rng)
    for _ in range(100):
        m = space.mutate(g, rng)
        diff = [k for k, (a, b) in enumerate(zip(g, m)) if a != b]
        assert len(diff) == 1 and 0 <= m[diff[0]] < space.sizes()[diff[0]]


@pytest.mark.parametrize(
    "src, message",
    [
        (
            "h = tanh(Wx + Uh",
            r"expected '\)' or ',' in the arguments of 'tanh', got the end "
            r"of the program at line 1, column 17",
        ),
        (
            "h = tanh(Wx + Uh))",
            r"expected an operator or a line break, got '\)' at line 1, "
            r"column 18",
        ),
        ("i = Wx\nh = tanh(Wx @ Uh)", r"unexpected character '@' at line 2, column 13"),
        (
            "h = softplus(Wx + Uh)",
            r"unknown operator 'softplus'; expected one of identity, "
            r"tanh, .* at line 1, column 5",
        ),
        ("h = max(Wx)", r"'max' takes 2 argument\(s\), got 1 at line 1, column 5"),
        ("h = tanh(Wx)", r"never reads h_\{t-1\}.*expected a recurrent cell at line 1"),
        ("h = tanh(Uh)", r"never reads the input x_t"),
        (
            "h = tanh(Wx + x)",
            r"unknown name 'x'; the input enters only through Wx .* at line 1, "
            r"column 15",
        ),
        ("h = tanh(Wx + h)", r"unknown name 'h'; h is the new h_t -- write h_prev"),
        ("h = tanh(Wx + Uh) * c_prev", r"reads c_prev but defines no c .* line 1, column 21"),
        ("c = Wx + Uh\nh = tanh(c)", r"defines the memory cell c but never reads c_prev"),
        ("a = Uh\nh = tanh(Wx + Uh)", r"'a' is defined but never used at line 1, column 1"),
        ("h = tanh(Wx + Uh)\nh = Uh", r"'h' is already defined.* at line 2, column 1"),
        ("Wx = Uh\nh = Wx", r"cannot assign to 'Wx', a reserved name"),
        ("h = Wx + Uh * tanh(2)", r"'tanh' of constants only.* at line 1, column 15"),
        ("", r"program: is empty"),
        ("tanh(Wx + Uh)", r"expected '=' after 'tanh'|cannot assign to 'tanh'"),
    ],
)
def test_bad_programs_say_what_and_where(src, message):
    with pytest.raises(ValueError, match=message):
        parse(src)


def test_bad_program_types_and_space_arguments():
    with pytest.raises(TypeError, match=r"program must be a str .*got int"):
        parse(3)
    with pytest.raises(TypeError, match=r"program must be a str"):
        ExpressionCell(2, 3, None)
    with pytest.raises(ValueError, match=r"leaves must be 2, 4, 8 or 16, got 3"):
        TreeSpace(leaves=3)
    with pytest.raises(ValueError, match=r"genome\[0\] must be an int in \[0, 3\), got 7"):
        TreeSpace(leaves=2).to_source((7, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"genome must be a sequence of 10 ints"):
        TreeSpace(leaves=2).to_source((0, 0))
