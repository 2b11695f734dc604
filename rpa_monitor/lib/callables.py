"""Resolving `package.module:function` paths for python workflows."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

CALLABLE_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class CallableError(ValueError):
    pass


def resolve_callable(path: str) -> Callable[..., Any]:
    """Import `package.module:function`; CallableError says precisely what is wrong."""
    if not CALLABLE_RE.match(path or ""):
        raise CallableError(f"{path!r} is not of the form package.module:function")
    module_name, _, attr_path = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CallableError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise CallableError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise CallableError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise CallableError(f"{path!r} is not callable")
    return target
