"""Project-wide pytest configuration."""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "30")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("default")


def pytest_configure(config: pytest.Config) -> None:
    """Fast password hashing in this process (settings.py does it for the processes tests start,
    from RPA_TEST_FAST_HASHER; here the database is not yet the test database it checks for)."""
    from django.conf import settings as django_settings

    django_settings.PASSWORD_HASHERS = django_settings.TEST_PASSWORD_HASHERS


@pytest.fixture(autouse=True, scope="session")
def _flush_logs_in_the_calling_thread() -> None:
    """The database log handler's background flusher would write on its own
    connection, which cannot see (and on SQLite waits behind) a test's open
    transaction; in tests records are flushed by the thread that logs them."""
    from logs.handlers import DatabaseHandler

    handlers = [h for h in logging.getLogger("rpa").handlers if isinstance(h, DatabaseHandler)]
    for handler in handlers:
        handler.background = False
        handler.flush_interval = 0.0
    return
