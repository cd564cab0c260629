"""The package's top level: every advertised name resolves to its defining module's object."""

from __future__ import annotations

import importlib

import pytest

import rnnkit


@pytest.mark.parametrize("name", sorted(rnnkit._EXPORTS))
def test_top_level_name_is_the_modules_object(name: str) -> None:
    module = importlib.import_module(rnnkit._EXPORTS[name])
    assert getattr(rnnkit, name) is getattr(module, name)
    assert name in rnnkit.__all__


def test_unknown_top_level_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'LSTMcell'"):
        rnnkit.LSTMcell  # noqa: B018


def test_subpackages_are_attributes_after_a_plain_import() -> None:
    """``import rnnkit`` then ``rnnkit.engine.use(...)``, in a fresh interpreter where nothing
    imported the subpackage first; and every name in the list is a real subpackage."""
    import subprocess
    import sys

    code = (
        "import sys, rnnkit\n"
        "assert 'rnnkit.engine' not in sys.modules\n"
        "assert rnnkit.engine is sys.modules['rnnkit.engine']\n"
        "assert rnnkit.engine.reuse_freed_memory.__module__ == 'rnnkit.engine.allocator'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in rnnkit._SUBMODULES:
        assert getattr(rnnkit, name) is importlib.import_module(f"rnnkit.{name}")
