"""Shared check for the command line's bad-input tests."""

from __future__ import annotations

from rnnkit.cli import main


def fails(capsys, argv: list[str], message: str) -> None:
    """``rnnkit ARGV`` exits with 2 and prints ``message`` as one line on stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1  # one line, no traceback
