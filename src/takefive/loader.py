"""Load ``MODULE:ATTR`` references given on the command line.

``MODULE`` is either a dotted module name importable from the current directory
(``myapp.web:app``) or a path to a Python file (``examples/hello.py:app``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["LoadError", "load_object"]


class LoadError(ImportError):
    """A ``MODULE:ATTR`` reference could not be loaded; the message says why."""


def _import_file(path: Path) -> Any:
    name = "_takefive_user_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Let the file import its siblings, as `python path/to/file.py` would.
    sys.path.insert(0, str(path.parent.resolve()))
    spec.loader.exec_module(module)
    return module


def load_object(reference: str) -> Any:
    """Return the object named by ``MODULE:ATTR`` (``ATTR`` may be dotted)."""
    module_part, sep, attr_part = reference.rpartition(":")
    if not sep or not module_part or not attr_part:
        raise LoadError(f"expected MODULE:ATTR (e.g. examples/hello.py:app), got {reference!r}")
    if module_part.endswith(".py") or os.sep in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise LoadError(f"no such file: {module_part}")
        module = _import_file(path)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            if exc.name and module_part.startswith(exc.name):
                raise LoadError(f"no module named {module_part!r}") from exc
            raise
    obj: Any = module
    for name in attr_part.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise LoadError(f"module {module_part!r} has no attribute {attr_part!r}") from None
    return obj
