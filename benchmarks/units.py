"""The split by hidden units against the column split, paired in one process.

A call of the compiled loops whose step is small (at most 16 rows and 2^21 multiply-adds in its
recurrent products) and whose products split over the threads (Elman, LSTM with or without
peepholes, GRU both forms, MGU, MUT1-3, NAS) runs as one parallel region split by hidden units:
each thread's product computes its units' columns of every gate block, its pointwise pass the
same units of every row, one or two barriers a step. Before, every step opened two parallel
regions or four, the products split by columns and the passes by rows (``_loops_units.h``;
``engine.native_switches.set_units``). The values are the same bits (the peephole LSTM's
weight sums to rounding).

For each model and shape this times the training step (forward, then the gradients with respect
to the input and every parameter), the forward pass and, from B = 2 on, the training step with
lengths spread evenly over [T/2, T], in both forms in one process: back to back in every round,
in alternating order, and the median of the rounds' ratios (units over columns).

    python benchmarks/units.py --reuse-freed-memory    # the table in docs/benchmarks.md, ~1 min
    python benchmarks/units.py --quick                 # GRU, B = 1, H = 256 only
"""

from __future__ import annotations

import switched

from rnnkit.engine import native_switches

CASES = (
    ("GRU", 1, 256),
    ("Elman", 1, 256),
    ("LSTM [native loop]", 1, 256),
    ("LSTM peephole", 1, 256),
    ("GRU reset before", 1, 256),
    ("MGU", 1, 256),
    ("MUT1", 1, 256),
    ("MUT2", 1, 256),
    ("MUT3", 1, 256),
    ("NAS", 1, 256),
    ("GRU", 1, 512),
    ("Elman", 1, 512),
    ("LSTM [native loop]", 1, 512),
    ("NAS", 1, 512),
    ("GRU", 4, 256),
    ("NAS", 4, 256),
    ("GRU", 8, 256),
    ("Elman", 8, 256),
    ("LSTM [native loop]", 8, 256),
    ("GRU reset before", 8, 256),
    ("MUT3", 8, 256),
    ("GRU", 16, 128),
    ("Elman", 16, 256),
)


def main() -> None:
    switched.main(
        __doc__,
        "The split by hidden units: time split by units / split by columns and rows",
        "units / columns",
        CASES,
        native_switches.set_units,
    )


if __name__ == "__main__":
    main()
