r"""Zoph & Le's search space: a binary tree of combinations and activations over (W x_t, U h_{t-1}).

A tree with N leaves (N = 2, 4 or 8) has N base nodes and N - 1 inner nodes, numbered base
first, then level by level up to the root, node 2N - 2::

    base node j      n_j = act_j(comb_j(W_j x_t, U_j h_{t-1}))          j = 0..N-1
    inner node j     n_j = act_j(comb_j(n_left, n_right))                children in order
    root             h_t = n_{2N-2}

with comb in (add, mul, max) and act in (identity, tanh, sigmoid, relu, sin). With a memory cell
two more choices follow Zoph & Le's "cell injection": node ``inject`` (any but the root) is
replaced by act_i(comb_i(n_inject, c_{t-1})) before its parent reads it, and c_t is node
``cell``'s combination before its activation.

A *genome* is the tuple of these discrete choices, in the order of :meth:`TreeSpace.decisions`:
(comb_0, act_0, ..., comb_{2N-2}, act_{2N-2}[, inject, comb_i, act_i, cell]). Every genome is a
valid program of :mod:`rnnkit.search.dsl`, with N ``Wx`` and N ``Uh`` leaves: N = 4 has an
LSTM's parameter count at equal H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dsl import Program, parse

COMBINATIONS = ("add", "mul", "max")
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "sin")

Genome = tuple[int, ...]


def _combine(op: str, a: str, b: str) -> str:
    if op == "add":
        return f"{a} + {b}"
    if op == "mul":
        return f"{a} * {b}"
    return f"max({a}, {b})"


def _activate(op: str, text: str) -> str:
    if op == "identity":
        return text
    return f"{op}({text})"


@dataclass(frozen=True)
class TreeSpace:
    """The space of trees with ``leaves`` base nodes, with or without a memory cell."""

    leaves: int = 8
    memory: bool = True

    def __post_init__(self) -> None:
        if self.leaves not in (2, 4, 8, 16):
            raise ValueError(f"leaves must be 2, 4, 8 or 16, got {self.leaves!r}")
        if not isinstance(self.memory, bool):
            raise TypeError(f"memory must be a bool, got {type(self.memory).__name__}")

    @property
    def num_nodes(self) -> int:
        return 2 * self.leaves - 1

    def decisions(self) -> list[tuple[str, tuple[str, ...]]]:
        """Each decision's name and its options, in genome order."""
        out: list[tuple[str, tuple[str, ...]]] = []
        for j in range(self.num_nodes):
            out += [(f"comb_{j}", COMBINATIONS), (f"act_{j}", ACTIVATIONS)]
        if self.memory:
            nodes = tuple(f"n{j}" for j in range(self.num_nodes - 1))  # all but the root
            out += [
                ("inject", nodes),
                ("inject_comb", COMBINATIONS),
                ("inject_act", ACTIVATIONS),
                ("cell", nodes),
            ]
        return out

    def sizes(self) -> list[int]:
        """Number of options of each decision."""
        return [len(options) for _, options in self.decisions()]

    def check(self, genome: object) -> Genome:
        """Return ``genome`` as a tuple of ints if it belongs to this space; raise otherwise."""
        sizes = self.sizes()
        if not isinstance(genome, (tuple, list)) or len(genome) != len(sizes):
            raise ValueError(
                f"genome must be a sequence of {len(sizes)} ints for {self}, got {genome!r}"
            )
        for k, (g, n) in enumerate(zip(genome, sizes)):
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 0 <= g < n:
                raise ValueError(f"genome[{k}] must be an int in [0, {n}), got {g!r}")
        return tuple(int(g) for g in genome)

    def random(self, rng: np.random.Generator) -> Genome:
        """A genome with every choice uniform."""
        return tuple(int(rng.integers(n)) for n in self.sizes())

    def mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        """Change exactly one choice, drawn uniformly, to another of its options."""
        genome = self.check(genome)
        sizes = self.sizes()
        k = int(rng.integers(len(sizes)))
        new = (genome[k] + 1 + int(rng.integers(sizes[k] - 1))) % sizes[k]
        return genome[:k] + (new,) + genome[k + 1 :]

    def to_source(self, genome: Genome) -> str:
        """The genome as cell-language text."""
        g = self.check(genome)
        N, root = self.leaves, self.num_nodes - 1
        inject = cell = -1
        if self.memory:
            inject, inject_comb, inject_act, cell = g[2 * self.num_nodes :]
        lines: list[str] = []
        ref: dict[int, str] = {}
        for j in range(self.num_nodes):
            comb, act = COMBINATIONS[g[2 * j]], ACTIVATIONS[g[2 * j + 1]]
            if j < N:
                a, b = "Wx", "Uh"
            else:
                left = 2 * (j - N)  # children of inner node j: 2(j-N), 2(j-N)+1
                a, b = ref[left], ref[left + 1]
            combined = _combine(comb, a, b)
            if j == cell:
                lines.append(f"c = {combined}")
                combined = "c"
            value = _activate(act, combined)
            if j == root:
                lines.append(f"h = {value}")
                break
            if value == "c":
                ref[j] = "c"
            else:
                lines.append(f"n{j} = {value}")
                ref[j] = f"n{j}"
            if j == inject:
                mixed = _combine(COMBINATIONS[inject_comb], ref[j], "c_prev")
                lines.append(f"m{j} = {_activate(ACTIVATIONS[inject_act], mixed)}")
                ref[j] = f"m{j}"
        return "\n".join(lines)

    def to_program(self, genome: Genome) -> Program:
        """The genome as a parsed, validated :class:`~rnnkit.search.dsl.Program`."""
        return parse(self.to_source(genome))
