"""The input projection's bias added in the compiled loops, against in the projection, paired in
one process.

For the cells whose loops add their own bias where they read the input projection (Elman, the
LSTMs, the GRU, NAS, the reset-before family with an affine projection), the projection is
x·W_ihᵀ alone and b_ih goes to the loops with b_hh (``engine.turn_input.FOLD_INPUT_BIAS``).
With the bias in the projection, ``addmm`` copies it into its output before the product, and
autograd sums the projection's gradient for it besides the loops' own sum for b_hh.

For each model and shape this times the training step, the forward pass and, from B = 2 on,
the training step with lengths spread evenly over [T/2, T], both ways in one process: back to
back in every round, in alternating order, and the median of the rounds' ratios (folded over
not).

    python benchmarks/fold_bias.py --reuse-freed-memory   # the table in docs/benchmarks.md
    python benchmarks/fold_bias.py --quick                # the LSTM at B = 128, H = 256 only
"""

from __future__ import annotations

import switched

from rnnkit.engine import turn_input

CASES = (
    ("LSTM [native loop]", 128, 256),
    ("LSTM peephole", 128, 256),
    ("Elman", 128, 256),
    ("GRU reset before", 128, 256),
    ("MUT3", 128, 256),
    ("LSTM [native loop]", 128, 512),
    ("LSTM [native loop]", 32, 256),
    ("LSTM peephole", 32, 256),
    ("Elman", 32, 256),
    ("MGU", 32, 256),
    ("LSTM [native loop]", 1, 256),
    ("GRU", 128, 256),
    ("GRU", 32, 256),
    ("GRU", 32, 64),
    ("GRU", 4, 64),
    ("GRU", 1, 256),
    ("NAS", 128, 256),
    ("NAS", 32, 256),
    ("NAS", 1, 256),
)


def fold(on: bool) -> None:
    turn_input.FOLD_INPUT_BIAS = on


def main() -> None:
    switched.main(
        __doc__,
        "The input bias in the loops: time folded / in the projection",
        "folded / not",
        CASES,
        fold,
    )


if __name__ == "__main__":
    main()
