"""The secrets admin: values go in and never come back out, not even to a superuser."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from chains.models import Workflow
from credentials.models import Secret
from credentials.tests.helpers import VALUE, make_user, raw_ciphertext
from rpa_monitor.tests.badinput import HAND_PICKED, TEXT, rolled_back

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:credentials_secret_add")


@pytest.fixture
def client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def change_url(secret: Secret) -> str:
    return reverse("admin:credentials_secret_change", args=[secret.pk])


def secret_data(**overrides: str) -> dict[str, str]:
    return {"name": "ERP_PASSWORD", "value": VALUE, "description": "the ERP robot's login"} | overrides


def assert_hidden(html: str, secret: Secret) -> None:
    assert VALUE not in html
    assert raw_ciphertext(secret) not in html
    assert raw_ciphertext(secret)[:20] not in html


def test_it_stores_a_value_typed_in_the_admin_encrypted(client: Client) -> None:
    assert client.post(ADD_URL, secret_data()).status_code == 302
    secret = Secret.objects.get()
    assert VALUE not in raw_ciphertext(secret)
    assert secret.reveal() == VALUE


def test_it_never_renders_the_value_on_the_change_form(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    response = client.get(change_url(secret))
    html = response.content.decode()
    assert response.status_code == 200
    assert_hidden(html, secret)
    assert 'type="password" name="value"' in html
    assert response.context["adminform"].form["value"].value() in (None, "")


def test_it_keeps_the_value_when_the_field_is_left_blank(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    before = raw_ciphertext(secret)
    response = client.post(change_url(secret), secret_data(value="", description="new words"))
    assert response.status_code == 302
    secret.refresh_from_db()
    assert (secret.description, raw_ciphertext(secret), secret.reveal()) == ("new words", before, VALUE)


def test_it_replaces_the_value_when_one_is_typed(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    rotated = secret.rotated_at
    assert client.post(change_url(secret), secret_data(value="a new passphrase")).status_code == 302
    secret.refresh_from_db()
    assert secret.reveal() == "a new passphrase"
    assert secret.rotated_at > rotated


def test_it_does_not_echo_the_value_of_a_refused_form(client: Client) -> None:
    response = client.post(ADD_URL, secret_data(name="1-not-a-name"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "is not an environment-variable name" in html
    assert VALUE not in html
    assert not Secret.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"name": "ERP PASSWORD"}, "is not an environment-variable name"),
        ({"name": "RPA_PARAMS"}, "reserved for the run"),
        ({"value": ""}, "a new secret needs a value"),
        ({"value": "abc"}, "at least 4 characters"),
    ],
)
def test_it_refuses_bad_names_and_values_naming_the_field(
    client: Client, overrides: dict[str, str], error: str
) -> None:
    response = client.post(ADD_URL, secret_data(**overrides))
    errors = response.context["adminform"].form.errors
    assert list(errors) == list(overrides)
    assert error in str(errors)
    assert not Secret.objects.exists()


def test_it_lists_names_and_the_workflows_that_use_them_never_values(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    Workflow.objects.create(slug="erp-login", name="ERP login", command=["true"]).secrets.add(secret)
    html = client.get(reverse("admin:credentials_secret_changelist")).content.decode()
    assert "ERP_PASSWORD" in html
    assert "erp-login" in html
    assert "the ERP robot&#x27;s login" in html
    assert_hidden(html, secret)


def test_it_keeps_values_out_of_the_history(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    client.post(change_url(secret), secret_data(value="second passphrase"))
    response = client.get(reverse("admin:credentials_secret_history", args=[secret.pk]))
    html = response.content.decode()
    assert "Changed value." in html
    assert "second passphrase" not in html
    assert_hidden(html, secret)


def test_it_hides_the_posted_value_from_error_reports(client: Client) -> None:
    # An error report of the add view (DEBUG page, mail to ADMINS) shows the value as stars.
    from django.views.debug import SafeExceptionReporterFilter

    response = client.post(ADD_URL, secret_data(name="bad name"))
    request = response.wsgi_request
    assert SafeExceptionReporterFilter().get_post_parameters(request)["value"] == "********************"


@given(
    st.fixed_dictionaries({k: TEXT | st.sampled_from(HAND_PICKED) for k in ("name", "value", "description")})
)
def test_property_garbage_in_the_form_is_a_form_error_or_a_valid_secret(
    client: Client, data: dict[str, str]
) -> None:
    with rolled_back():
        response = client.post(ADD_URL, data)
        assert response.status_code in (200, 302)
        if response.status_code == 302:
            Secret.objects.get().full_clean()
        else:
            assert response.context["adminform"].form.errors
            assert not Secret.objects.exists()
            password_input = re.search(
                r'<input type="password" name="value"[^>]*>', response.content.decode()
            )
            assert password_input is not None
            assert " value=" not in password_input.group()


def test_it_shows_a_view_only_user_no_value(client: Client) -> None:
    client.post(ADD_URL, secret_data())
    secret = Secret.objects.get()
    viewer = Client()
    viewer.force_login(make_user("viewer", "credentials.view_secret"))
    response = viewer.get(change_url(secret))
    assert response.status_code == 200
    assert "ERP_PASSWORD" in response.content.decode()
    assert_hidden(response.content.decode(), secret)
