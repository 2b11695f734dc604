"""Secrets in the workflow admin: who may attach them, and a warning for plain passwords."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chains.models import Workflow
from credentials.models import Secret
from credentials.tests.helpers import VALUE, make_secret, make_user

pytestmark = pytest.mark.django_db

EDITOR_PERMISSIONS = ("chains.view_workflow", "chains.add_workflow", "chains.change_workflow")
ADD_URL = reverse("admin:chains_workflow_add")


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def editor(username: str = "editor", *groups: Group) -> User:
    user = make_user(username, *EDITOR_PERMISSIONS, "chains.change_execution")
    user.groups.set(groups)
    return user


def workflow_data(*secrets: Secret, **overrides: Any) -> dict[str, Any]:
    data = {
        "slug": "erp-login",
        "name": "ERP login",
        "description": "",
        "enabled": "on",
        "kind": "command",
        "command": "python examples/login.py --fast",
        "callable": "",
        "working_dir": "",
        "environment": "{}",
        "secrets": [str(secret.pk) for secret in secrets],
        "timeout_seconds": "60",
        "max_retries": "0",
        "retry_delay_seconds": "0",
    }
    return data | overrides


def change_url(workflow: Workflow) -> str:
    return reverse("admin:chains_workflow_change", args=[workflow.pk])


@pytest.fixture
def finance() -> Group:
    return Group.objects.create(name="finance")


@pytest.fixture
def restricted(finance: Group) -> Secret:
    secret = make_secret("BANK_PASSWORD", VALUE)
    secret.allowed_groups.add(finance)
    return secret


@pytest.fixture
def open_secret() -> Secret:
    return make_secret("ERP_PASSWORD", "erp-password-1")


def test_it_attaches_secrets_to_a_workflow(open_secret: Secret) -> None:
    response = login(editor()).post(ADD_URL, workflow_data(open_secret))
    assert response.status_code == 302
    assert list(Workflow.objects.get().secrets.all()) == [open_secret]


def test_it_refuses_a_secret_restricted_to_groups_the_user_is_not_in(
    restricted: Secret, open_secret: Secret
) -> None:
    response = login(editor()).post(ADD_URL, workflow_data(restricted, open_secret))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["secrets"]
    assert "You may not attach BANK_PASSWORD" in str(errors)
    assert not Workflow.objects.exists()


def test_it_lets_a_member_of_an_allowed_group_attach_it(restricted: Secret, finance: Group) -> None:
    response = login(editor("treasurer", finance)).post(ADD_URL, workflow_data(restricted))
    assert response.status_code == 302
    assert list(Workflow.objects.get().secrets.all()) == [restricted]


def test_it_keeps_a_restricted_secret_a_non_member_finds_attached(
    restricted: Secret, superuser: User
) -> None:
    assert login(superuser).post(ADD_URL, workflow_data(restricted)).status_code == 302
    workflow = Workflow.objects.get()
    response = login(editor()).post(change_url(workflow), workflow_data(restricted, name="Renamed"))
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert (workflow.name, list(workflow.secrets.all())) == ("Renamed", [restricted])


def test_it_shows_secrets_read_only_without_change_execution(open_secret: Secret) -> None:
    workflow = Workflow.objects.create(slug="erp-login", name="ERP login", command=["true"])
    workflow.secrets.add(open_secret)
    client = login(make_user("viewer", *EDITOR_PERMISSIONS))
    html = client.get(change_url(workflow)).content.decode()
    assert 'name="secrets"' not in html
    assert "ERP_PASSWORD" in html
    assert "erp-password-1" not in html
    other = make_secret("OTHER_TOKEN", "other-token")
    data = {
        k: v
        for k, v in workflow_data(other, name="Renamed").items()
        if k
        in (
            "slug",
            "name",
            "description",
            "enabled",
            "timeout_seconds",
            "max_retries",
            "retry_delay_seconds",
            "secrets",
        )
    }
    assert client.post(change_url(workflow), data).status_code == 302
    assert list(workflow.secrets.all()) == [open_secret]


def test_it_refuses_an_environment_key_that_is_also_an_attached_secret(open_secret: Secret) -> None:
    data = workflow_data(open_secret, environment='{"ERP_PASSWORD": "x"}')
    errors = login(editor()).post(ADD_URL, data).context["adminform"].form.errors
    assert list(errors) == ["environment"]
    assert "ERP_PASSWORD is also an attached secret" in str(errors)


def test_it_warns_about_a_password_kept_in_the_environment() -> None:
    environment = '{"ERP_PASSWORD": "hunter22", "API_TOKEN": "t0k3n", "REGION": "eu", "OLD_SECRET": ""}'
    response = login(editor()).post(ADD_URL, workflow_data(environment=environment), follow=True)
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert len(warnings) == 1
    assert warnings[0].startswith("API_TOKEN, ERP_PASSWORD in the environment look like credentials")
    assert reverse("admin:credentials_secret_changelist") in warnings[0]
    assert "Secrets</a>" in response.content.decode()


def test_it_does_not_warn_about_an_environment_without_credentials(open_secret: Secret) -> None:
    data = workflow_data(open_secret, environment='{"REGION": "eu", "ERP_TOKEN_URL_EMPTY": ""}')
    response = login(editor()).post(ADD_URL, data, follow=True)
    assert [m for m in response.context["messages"] if m.level_tag == "warning"] == []
