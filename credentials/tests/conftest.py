"""Fixtures for the secrets tests: explicit keys in force, a superuser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from credentials.tests.helpers import KEY_A, make_user


@pytest.fixture(autouse=True)
def _keys(settings: Any) -> None:
    settings.RPA_SECRET_KEYS = [KEY_A]


@pytest.fixture
def superuser() -> User:
    return make_user("root", is_superuser=True)
