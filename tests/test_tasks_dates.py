"""dates end to end with a tiny budget: exact match recomputed through `rnnkit translate`'s
path, per-locale scores consistent with the total, the attention figure."""

from __future__ import annotations

import numpy as np

from rnnkit.cli import main
from rnnkit.datasets.dates import load_dates
from rnnkit.training.run import load_run, train


def test_dates_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    m = train(
        "dates",
        {"data.n_train": "3000", "data.n_valid": "100", "data.n_test": "300",
         "trainer.max_steps": "40", "trainer.val_every_n_steps": "20",
         "trainer.checkpoint_every_n_steps": "20", "trainer.progress_bar": "false",
         "model.encoder.hidden_size": "32", "model.decoder_hidden_size": "32",
         "trainer.accelerator": "cpu"},
        run_dir=run, argv=["rnnkit"], echo=False,
    )["metrics"]  # fmt: skip
    pairs = load_dates("test", 300, seed=0)
    task, _, model, folder = load_run(run)
    out = task.translate(model, folder, [p.source for p in pairs], beam=1)
    hits = np.array([o == p.target for o, p in zip(out, pairs)])
    assert m["exact_match"] == float(hits.mean())
    weights = [sum(p.locale == loc for p in pairs) for loc in m["exact_match_by_locale"]]
    total = sum(w * a for w, a in zip(weights, m["exact_match_by_locale"].values()))
    assert np.isclose(total / 300, m["exact_match"])
    assert m["locales"] >= 10
    assert (run / "attention.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["translate", str(run), pairs[0].source, "--beam", "1"]) == 0
    assert capsys.readouterr().out == f"{pairs[0].source}\t{out[0]}\n"
