"""The optional extras (pyproject's optional-dependencies), imported only where used: one
function, so every missing extra is the same ImportError naming what needs it and the pip
command that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def missing(what: str, package: str, extra: str | None) -> ImportError:
    pip = f"'imdbfast[{extra}]'" if extra else package
    return ImportError(f"{what} needs {package}: pip install {pip}")


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """``module``, imported now, or an ImportError saying that ``what`` needs it and how to
    install it (the extra ``imdbfast[extra]``, or the package itself when no extra has it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(what, module.split(".")[0], extra) from None
