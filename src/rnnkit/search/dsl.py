r"""A small language for recurrent cells: the cell's equations, parsed into a validated tree.

A *program* is a list of statements ``name = expression``, one per line (or separated by
``;``), ``#`` starting a comment. It must define ``h``, the new hidden state h_t, and may define
``c``, a new memory cell c_t (Zoph & Le's "memory-cell injection"); every other name is an
intermediate value that later statements may use. All values are (B, H).

Leaves (the cell's inputs):

* ``Wx``: a fresh learned projection W_k x_t + b_k of the input; every occurrence has its own
  (H, I) matrix, and all of them are computed in one product before the time loop.
* ``Uh``: a fresh learned projection U_k h_{t-1} + b_k of the previous state ((H, H) each).
* ``U(e)``: a fresh learned projection of any expression ``e`` (GRU's W_hn (r ⊙ h_{t-1})).
* ``h_prev`` and ``c_prev``: h_{t-1} and c_{t-1} themselves.
* numbers (``1``, ``0.5``), as scalars inside an operation.

Operators: ``a + b``, ``a - b``, ``a * b`` (elementwise), ``-a``, and the calls ``add(a, b)``,
``sub(a, b)``, ``mul(a, b)``, ``max(a, b)``, ``identity(a)``, ``tanh(a)``, ``sigmoid(a)``,
``relu(a)``, ``sin(a)`` -- Zoph & Le's combinations (add, elementwise multiply, max) and
activations (identity, tanh, sigmoid, relu, sin), plus ``sub``/``neg``, which the GRU needs.

The LSTM of :class:`rnnkit.LSTMCell`, in this language::

    i = sigmoid(Wx + Uh)
    f = sigmoid(Wx + Uh)
    g = tanh(Wx + Uh)
    o = sigmoid(Wx + Uh)
    c = f * c_prev + i * g
    h = o * tanh(c)

Names are bound in order: inside ``h = o * tanh(c)``, ``c`` is the new c_t defined above, while
c_{t-1} is always ``c_prev``. :func:`parse` checks the whole program and raises a ``ValueError``
that gives the line and column of the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNARY = ("identity", "tanh", "sigmoid", "relu", "sin", "neg")
BINARY = ("add", "sub", "mul", "max")
OPERATORS = UNARY + BINARY + ("U",)
LEAVES = ("Wx", "Uh")
PREVIOUS = ("h_prev", "c_prev")
OUTPUTS = ("h", "c")
_RESERVED = set(OPERATORS) | set(LEAVES) | set(PREVIOUS)
_INFIX = {"add": "+", "sub": "-", "mul": "*"}


# -- the tree ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    """``Wx`` or ``Uh``: one fresh learned projection of x_t or h_{t-1}."""

    kind: str
    pos: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Name:
    """A reference to ``h_prev``, ``c_prev`` or an earlier statement's target."""

    name: str
    pos: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Const:
    """A scalar."""

    value: float
    pos: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Apply:
    """An operator of :data:`UNARY` or :data:`BINARY` applied to its arguments."""

    op: str
    args: tuple[Expr, ...]
    pos: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Project:
    """``U(arg)``: a fresh learned (H, H) projection (with bias) of an expression."""

    arg: Expr
    pos: int = field(default=-1, compare=False)


Expr = Leaf | Name | Const | Apply | Project


@dataclass(frozen=True)
class Statement:
    target: str
    expr: Expr
    pos: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Program:
    """A parsed and validated cell program (build one with :func:`parse`)."""

    statements: tuple[Statement, ...]

    @property
    def has_memory(self) -> bool:
        """Whether the cell carries a memory cell c (its state is then (h, c))."""
        return any(s.target == "c" for s in self.statements)

    @property
    def num_input_projections(self) -> int:
        """How many ``Wx`` leaves: the input matrix W is (that · H, I)."""
        return sum(_count(s.expr, Leaf, "Wx") for s in self.statements)

    @property
    def num_state_projections(self) -> int:
        """How many ``Uh`` leaves and ``U(...)`` calls: the matrix U is (that · H, H)."""
        return sum(_count(s.expr, Leaf, "Uh") + _count(s.expr, Project) for s in self.statements)

    def to_source(self) -> str:
        """The program as text, one statement a line; ``parse(p.to_source()) == p``."""
        return "\n".join(f"{s.target} = {format_expr(s.expr)}" for s in self.statements)

    def __str__(self) -> str:
        return self.to_source()


def _count(e: Expr, kind: type, leaf: str | None = None) -> int:
    n = 1 if isinstance(e, kind) and (leaf is None or e.kind == leaf) else 0
    if isinstance(e, Apply):
        return n + sum(_count(a, kind, leaf) for a in e.args)
    if isinstance(e, Project):
        return n + _count(e.arg, kind, leaf)
    return n


def format_expr(e: Expr, parent: int = 0) -> str:
    """``e`` as source text, parenthesised only where precedence needs it."""
    if isinstance(e, Leaf):
        return e.kind
    if isinstance(e, Name):
        return e.name
    if isinstance(e, Const):
        v = e.value
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))
    if isinstance(e, Project):
        return f"U({format_expr(e.arg)})"
    if e.op in _INFIX:
        a, b = e.args
        prec = 1 if e.op in ("add", "sub") else 2
        # left-associative: the right operand of - (and of *) needs parentheses at equal level
        text = f"{format_expr(a, prec)} {_INFIX[e.op]} {format_expr(b, prec + 1)}"
        return f"({text})" if prec < parent else text
    if e.op == "neg":
        return f"-{format_expr(e.args[0], 3)}"
    return f"{e.op}({', '.join(format_expr(a) for a in e.args)})"


# -- tokens ------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"(?P<space>[ \t\r]+|\#[^\n]*)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>[=+\-*(),;\n])"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "op", "end"
    text: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ProgramError(source, pos, f"unexpected character {source[pos]!r}")
        if m.lastgroup != "space":
            kind = "op" if m.lastgroup == "op" else m.lastgroup
            text = ";" if m.group() == "\n" else m.group()  # a newline ends a statement
            tokens.append(_Token(kind, text, pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


class ProgramError(ValueError):
    """A ``ValueError`` about a cell program, pointing at the offending place in its text."""

    def __init__(self, source: str, pos: int, message: str) -> None:
        line = source.count("\n", 0, pos) + 1
        start = source.rfind("\n", 0, pos) + 1
        end = source.find("\n", pos)
        text = source[start : end if end >= 0 else len(source)]
        column = pos - start + 1
        super().__init__(
            f"program: {message} at line {line}, column {column}\n  {text}\n  {' ' * (column - 1)}^"
        )
        self.line, self.column = line, column


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the program"
    return "a line break" if tok.text == ";" and tok.kind == "op" else repr(tok.text)


# -- parser ------------------------------------------------------------------------------------
class _Parser:
    """Recursive descent over the grammar

    program   := statement ((';' | newline) statement)*
    statement := NAME '=' sum
    sum       := product (('+' | '-') product)*
    product   := unary ('*' unary)*
    unary     := '-' unary | atom
    atom      := NUMBER | NAME | NAME '(' sum (',' sum)* ')' | '(' sum ')'
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.bound: dict[str, bool] = {"h_prev": False, "c_prev": False}  # name -> is constant
        self.used: dict[str, int] = {}  # name -> position of its first use

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: _Token | None = None) -> ProgramError:
        return ProgramError(self.source, (tok or self.tok).pos, message)

    def expect(self, text: str, what: str) -> _Token:
        tok = self.tok
        if tok.kind != "op" or tok.text != text:
            raise self.error(f"expected {what}, got {_describe(tok)}")
        self.i += 1
        return tok

    def program(self) -> list[Statement]:
        statements = []
        while True:
            while self.tok.kind == "op" and self.tok.text == ";":
                self.i += 1
            if self.tok.kind == "end":
                return statements
            statements.append(self.statement())
            if self.tok.kind != "end" and not (self.tok.kind == "op" and self.tok.text == ";"):
                raise self.error(f"expected an operator or a line break, got {_describe(self.tok)}")

    def statement(self) -> Statement:
        tok = self.tok
        if tok.kind != "name":
            raise self.error(f"expected a statement 'name = expression', got {_describe(tok)}")
        if tok.text in _RESERVED:
            raise self.error(f"cannot assign to {tok.text!r}, a reserved name")
        if tok.text in self.bound:
            raise self.error(f"{tok.text!r} is already defined; every name is assigned once")
        self.i += 1
        self.expect("=", f"'=' after {tok.text!r}")
        expr = self.sum()
        self.bound[tok.text] = self.is_constant(expr)
        return Statement(tok.text, expr, tok.pos)

    def sum(self) -> Expr:
        left = self.product()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.tok
            self.i += 1
            left = self.apply("add" if op.text == "+" else "sub", (left, self.product()), op)
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.tok.kind == "op" and self.tok.text == "*":
            op = self.tok
            self.i += 1
            left = self.apply("mul", (left, self.unary()), op)
        return left

    def unary(self) -> Expr:
        if self.tok.kind == "op" and self.tok.text == "-":
            op = self.tok
            self.i += 1
            arg = self.unary()
            if isinstance(arg, Const):
                return Const(-arg.value, op.pos)
            return self.apply("neg", (arg,), op)
        return self.atom()

    def atom(self) -> Expr:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            return Const(float(tok.text), tok.pos)
        if tok.kind == "op" and tok.text == "(":
            self.i += 1
            inner = self.sum()
            self.expect(")", "')'")
            return inner
        if tok.kind != "name":
            raise self.error(f"expected a value (a name, a number or '('), got {_describe(tok)}")
        self.i += 1
        nxt = self.tok
        if nxt.kind == "op" and nxt.text == "(":
            return self.call(tok)
        return self.name(tok)

    def call(self, tok: _Token) -> Expr:
        if tok.text not in OPERATORS:
            raise self.error(
                f"unknown operator {tok.text!r}; expected one of {', '.join(OPERATORS)}", tok
            )
        self.expect("(", "'('")
        args = [self.sum()]
        while self.tok.kind == "op" and self.tok.text == ",":
            self.i += 1
            args.append(self.sum())
        self.expect(")", f"')' or ',' in the arguments of {tok.text!r}")
        if tok.text == "U":
            if len(args) != 1:
                raise self.error(f"'U' takes 1 argument, got {len(args)}", tok)
            if self.is_constant(args[0]):
                raise self.error("'U' of a constant; project a value that varies", tok)
            return Project(args[0], tok.pos)
        return self.apply(tok.text, tuple(args), tok)

    def apply(self, op: str, args: tuple[Expr, ...], tok: _Token) -> Apply:
        arity = 1 if op in UNARY else 2
        if len(args) != arity:
            raise self.error(f"{op!r} takes {arity} argument(s), got {len(args)}", tok)
        if all(self.is_constant(a) for a in args):
            raise self.error(f"{op!r} of constants only; write its value instead", tok)
        return Apply(op, args, tok.pos)

    def name(self, tok: _Token) -> Expr:
        text = tok.text
        if text in LEAVES:
            return Leaf(text, tok.pos)
        if text in self.bound:
            self.used.setdefault(text, tok.pos)
            return Name(text, tok.pos)
        if text in OPERATORS:
            raise self.error(f"operator {text!r} needs arguments in parentheses", tok)
        hints = {
            "x": "; the input enters only through Wx (a learned projection of x_t)",
            "h": "; h is the new h_t -- write h_prev for h_{t-1}",
            "c": "; c is the new c_t -- write c_prev for c_{t-1}",
        }
        raise self.error(f"unknown name {text!r}{hints.get(text, ' (not defined above)')}", tok)

    def is_constant(self, e: Expr) -> bool:
        if isinstance(e, Const):
            return True
        if isinstance(e, Name):
            return self.bound.get(e.name, False)
        if isinstance(e, Apply):
            return all(self.is_constant(a) for a in e.args)
        return False


def parse(source: str | Program) -> Program:
    """Parse and validate a cell program; a :class:`Program` passes through unchanged.

    Raises ``TypeError`` for a non-string, and :class:`ProgramError` (a ``ValueError``) with
    the line and column for a malformed program, an unknown operator or name, a program that
    defines no ``h``, never reads h_{t-1} or x_t, reads ``c_prev`` without defining ``c`` (or
    the reverse), or leaves a name unused.
    """
    if isinstance(source, Program):
        return source
    if not isinstance(source, str):
        raise TypeError(
            f"program must be a str (the cell's equations), got {type(source).__name__}"
        )
    parser = _Parser(source)
    statements = parser.program()
    if not statements:
        raise ValueError("program: is empty; expected statements such as 'h = tanh(Wx + Uh)'")
    _check(source, statements, parser.used)
    return Program(tuple(statements))


def _check(source: str, statements: list[Statement], used: dict[str, int]) -> None:
    targets = {s.target: s for s in statements}
    end = len(source)
    if "h" not in targets:
        raise ProgramError(
            source, end, "defines no h (the new hidden state h_t); expected a statement 'h = ...'"
        )
    for s in statements:
        if s.target not in OUTPUTS and s.target not in used:
            raise ProgramError(source, s.pos, f"{s.target!r} is defined but never used")
    if "c_prev" in used and "c" not in targets:
        raise ProgramError(
            source,
            used["c_prev"],
            "reads c_prev but defines no c (the new memory cell c_t); add 'c = ...'",
        )
    if "c" in targets and "c_prev" not in used:
        raise ProgramError(
            source,
            targets["c"].pos,
            "defines the memory cell c but never reads c_prev, so c_t carries nothing to the "
            "next step; read c_prev or give the value another name",
        )
    deps: dict[str, set[str]] = {"h_prev": {"h_prev"}, "c_prev": {"c_prev"}}
    for s in statements:
        deps[s.target] = _dependencies(s.expr, deps)
    state = deps["h"] | deps.get("c", set())
    if "h_prev" not in state:
        raise ProgramError(
            source,
            targets["h"].pos,
            "the cell never reads h_{t-1}: no Uh, U(...) of h_prev or h_prev reaches h or c; "
            "expected a recurrent cell",
        )
    if "Wx" not in state:
        raise ProgramError(
            source, targets["h"].pos, "the cell never reads the input x_t: no Wx reaches h or c"
        )
    if not deps["h"] & {"h_prev", "c_prev"}:
        raise ProgramError(
            source,
            targets["h"].pos,
            "h_t does not depend on the previous state (h_prev, Uh or c_prev); "
            "expected a recurrent output",
        )


def _dependencies(e: Expr, deps: dict[str, set[str]]) -> set[str]:
    """Which of Wx, h_prev, c_prev the value of ``e`` depends on."""
    if isinstance(e, Leaf):
        return {"Wx"} if e.kind == "Wx" else {"h_prev"}
    if isinstance(e, Name):
        return deps[e.name]
    if isinstance(e, Const):
        return set()
    if isinstance(e, Project):
        return _dependencies(e.arg, deps)
    return set().union(*(_dependencies(a, deps) for a in e.args))
