"""Products of one to three rows, several panels of W_hh at a time: the compiled loops now and
earlier.

The loops' own product kernel keeps 2 vectors of output columns by up to 12 rows in registers
and streams W_hh's packed panels through them. On 1 to 3 rows that leaves 2 to 6 chains of
multiply-adds, each waiting on the one before it, so a panel took as long on one row as on
four. Such products (a batch of one to three sequences, and the last steps of a batch with
lengths) now take 4 panels at a time on one row and 2 on two or three (``_loops_products.h``,
``micro_panels``; ``engine.native_switches.set_few_rows``). The values are the same bits.

For each model and shape this times the training step (forward, then the gradients with respect
to the input and every parameter), the forward pass and, from B = 2 on, the training step with
lengths spread evenly over [T/2, T], in both forms in one process: back to back in every round,
in alternating order, and the median of the rounds' ratios (now over earlier).

    python benchmarks/few_rows.py                  # about a minute on 2 cores
    python benchmarks/few_rows.py --quick          # the GRU at B = 1, H = 256 only
"""

from __future__ import annotations

import switched

from rnnkit.engine import native_switches

CASES = (
    ("GRU", 1, 256),
    ("LSTM [native loop]", 1, 256),
    ("Elman", 1, 256),
    ("MUT1", 1, 256),
    ("NAS", 1, 256),
    ("GRU", 1, 64),
    ("LSTM [native loop]", 1, 512),
    ("NAS", 1, 512),
    ("GRU", 2, 256),
    ("Elman", 3, 256),
    ("GRU", 32, 256),
    ("Elman", 32, 256),
)


def main() -> None:
    switched.main(
        __doc__,
        "Products of one to three rows, several panels at a time: now / earlier",
        "now / earlier",
        CASES,
        native_switches.set_few_rows,
    )


if __name__ == "__main__":
    main()
