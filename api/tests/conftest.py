"""Fixtures for the API tests: a staff user holding the API's permissions, and a token client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from api.tests.helpers import API_PERMISSIONS, POOL, make_user, token_client
from chains.models import Workflow


@pytest.fixture
def staff() -> User:
    """A staff user (not a superuser) holding exactly the API's permissions."""
    return make_user("staff", *API_PERMISSIONS)


@pytest.fixture
def api(staff: User) -> Client:
    """A token client acting as `staff`."""
    return token_client(staff)


@pytest.fixture
def workflows() -> list[Workflow]:
    return [Workflow.objects.create(slug=slug, name=slug, command=["true"]) for slug in POOL]
