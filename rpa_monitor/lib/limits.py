"""Bounds on JSON a request hands us (params, configs): one check for every path that writes it.

The API, the admin forms, the commands and the trigger code all call `json_problem`
(or `params_problem` for run params) before anything is stored, so each refuses the
same values with the same message, naming the field:

- NaN, Infinity and numbers beyond a double (`1e400`, read as infinity): not JSON, and
  neither database's JSON column stores them (they used to fail at the INSERT, a 500);
- NUL and lone surrogates, which no supported database stores;
- nesting deeper than MAX_JSON_DEPTH: walking it recursively (ours, the database
  driver's) ran out of stack (a RecursionError, a 500);
- params whose JSON, as it travels to the bot in RPA_PARAMS, is over
  RPA_MAX_PARAMS_BYTES (an environment variable has a hard size cap: above it the
  bot never started, "Argument list too long").

The walk is iterative, so it cannot itself overflow the stack.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from rpa_monitor.lib.text import is_storable

MAX_JSON_DEPTH = 100  # arrays and objects inside each other; real params are a few levels deep


def json_problem(value: Any) -> str | None:
    """What makes `value` (decoded JSON) unfit to store, or None; says where (`a.b[2]`)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        at = f" (at {where if len(where) <= 80 else where[:80] + '…'})" if where else ""
        if isinstance(item, float) and not math.isfinite(item):
            return f"{_float_name(item)} is not a JSON number{at}"
        if isinstance(item, str) and not is_storable(item):
            return f"must not contain NUL characters or invalid Unicode (lone surrogates){at}"
        if isinstance(item, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels{at}"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not is_storable(key):
                        return f"keys must not contain NUL characters or lone surrogates{at}"
                    stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    sign = "" if value > 0 else "-"
    return f"{sign}Infinity (or a number beyond a double's range, such as {sign}1e400)"


def params_size(params: Any) -> int:
    """Bytes of params as the bot receives them (RPA_PARAMS is json.dumps, ASCII-escaped)."""
    return len(json.dumps(params))


def params_problem(params: Any) -> str | None:
    """What makes `params` (a run's, a trigger's) unfit to pass to a bot, or None."""
    if not isinstance(params, dict):
        return "must be a JSON object"
    problem = json_problem(params)
    if problem:
        return problem
    limit = settings.RPA_MAX_PARAMS_BYTES
    size = params_size(params)
    if size > limit:
        return (
            f"{size:,} bytes as JSON; the limit is {limit:,} bytes (RPA_MAX_PARAMS_BYTES): "
            "params travel to the bot in the RPA_PARAMS environment variable"
        )
    return None


def check_params(params: Any, field: str = "params") -> None:
    """ValidationError({field: ...}) when `params_problem` finds something."""
    problem = params_problem(params)
    if problem:
        raise ValidationError({field: problem})


def check_json(value: Any, field: str) -> None:
    """ValidationError({field: ...}) when `json_problem` finds something (configs)."""
    problem = json_problem(value)
    if problem:
        raise ValidationError({field: problem})
