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
