"""Optional dependencies of the dataset loaders, imported on demand with a clear message."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """A dataset needs a package that is not installed; the message says what to install."""


def require(module: str, *, package: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip ``package``.

    ``needed_for`` completes the sentence "... needs <package>" (e.g. "the sunspots dataset").
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{needed_for} needs the package '{package}', which is not installed "
            f"(import {module!r} failed: {e}). Install it with `pip install {package}`, "
            f"or install all dataset dependencies with `pip install 'rnnkit[data]'`"
        ) from e
