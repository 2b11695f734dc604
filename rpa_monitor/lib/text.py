"""Text every supported database can store.

PostgreSQL refuses NUL in text and jsonb; both databases' drivers refuse lone
surrogates (what undecodable bytes and JSON escapes such as "\\ud800" become).
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models

SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """NUL and lone surrogates become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return SURROGATES.sub("\ufffd", value)


def clean_json(value: Any) -> Any:
    """`clean_text` applied to every string (keys included) in a JSON-like value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def is_storable(value: Any) -> bool:
    """True when no string inside `value` holds NUL or a lone surrogate.

    Iterative: JSON nested hundreds deep (which json.loads reads) must not overflow the stack.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or SURROGATES.search(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True


def unstorable_fields(instance: models.Model) -> dict[str, str]:
    """{field: reason} for every text/JSON field of `instance` holding NUL or a lone surrogate."""
    errors = {}
    for field in instance._meta.concrete_fields:
        is_text = isinstance(field, models.CharField | models.TextField | models.JSONField)
        if is_text and not is_storable(getattr(instance, field.attname)):
            errors[field.name] = "must not contain NUL characters or invalid Unicode (lone surrogates)"
    return errors
