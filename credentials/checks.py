"""System check: RPA_SECRET_KEYS holds Fernet keys (so a typo fails `migrate`, not the first run)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from credentials.vault import check_keys


@checks.register(checks.Tags.security)
def secret_keys_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        check_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="credentials.E001")]
    return []
