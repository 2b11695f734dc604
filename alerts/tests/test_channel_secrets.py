"""Channel credentials are write-only: the HMAC secret, the PagerDuty routing key and an HTTP
target (a Slack webhook's path is its token) never appear in an admin page, for any user."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from alerts.channels import send_test
from alerts.models import NotificationChannel
from alerts.tests.servers import RecordingHTTPServer
from rpa_monitor.tests.badinput import form_errors, superuser_client

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "whsec-HMAC-4242-do-not-show"
SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/SLACKTOKEN9999"
ROUTING_KEY = "PDROUTINGKEY0123456789"
WEBHOOK_URL = "https://hooks.example.com/rpa/in-7f3a9?token=QUERYTOKEN55"
# Every piece of a credential that must not be in any page.
CREDENTIALS = [WEBHOOK_SECRET, ROUTING_KEY, "SLACKTOKEN9999", "T0001/B0002", "in-7f3a9", "QUERYTOKEN55"]
CHANGELIST = "admin:alerts_notificationchannel_changelist"
CHANGE = "admin:alerts_notificationchannel_change"


@pytest.fixture
def channels() -> dict[str, NotificationChannel]:
    made = {
        "webhook": NotificationChannel(
            name="hook", kind="webhook", target=WEBHOOK_URL, secret=WEBHOOK_SECRET
        ),
        "slack": NotificationChannel(name="chat", kind="slack", target=SLACK_URL),
        "pagerduty": NotificationChannel(
            name="pager",
            kind="pagerduty",
            target="https://events.pagerduty.com/v2/enqueue",
            secret=ROUTING_KEY,
        ),
        "email": NotificationChannel(name="mail", kind="email", target="ops@example.com"),
    }
    for channel in made.values():
        channel.full_clean()
        channel.save()
    return made


def viewer_client() -> Client:
    viewer = User.objects.create_user("viewer", password=None, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notificationchannel"))
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    return client


def pages(client: Client, channels: dict[str, NotificationChannel]) -> list[str]:
    urls = [reverse(CHANGELIST)] + [reverse(CHANGE, args=[c.pk]) for c in channels.values()]
    responses = [client.get(url) for url in urls]
    assert [response.status_code for response in responses] == [200] * len(urls)
    return [response.content.decode() for response in responses]


def assert_no_credentials(html: str) -> None:
    for credential in CREDENTIALS:
        assert credential not in html, credential


def change_data(channel: NotificationChannel, **overrides: str) -> dict[str, str]:
    data = {"name": channel.name, "kind": channel.kind, "target": "", "secret": "", "enabled": "on"}
    return {key: value for key, value in (data | overrides).items() if value is not None}


@pytest.mark.parametrize("who", ["viewer", "superuser"])
def test_it_shows_no_channel_credential_on_any_page(
    who: str, channels: dict[str, NotificationChannel]
) -> None:
    client = viewer_client() if who == "viewer" else superuser_client()
    html = pages(client, channels)
    for page in html:
        assert_no_credentials(page)
    changelist = html[0]
    for shown in ("https://hooks.slack.com/…", "https://hooks.example.com/…", "ops@example.com"):
        assert shown in changelist


def test_it_says_only_whether_a_secret_is_set(channels: dict[str, NotificationChannel]) -> None:
    client = viewer_client()
    page = client.get(reverse(CHANGE, args=[channels["webhook"].pk])).content.decode()
    assert "https://hooks.example.com/…" in page
    assert '<div class="readonly">set</div>' in page
    page = client.get(reverse(CHANGE, args=[channels["slack"].pk])).content.decode()
    assert '<div class="readonly">-</div>' in page


def test_it_finds_no_channel_by_a_piece_of_its_credential(channels: dict[str, NotificationChannel]) -> None:
    client = viewer_client()
    found = client.get(reverse(CHANGELIST), {"q": "SLACKTOKEN"}).context["cl"].result_count
    assert found == 0  # else a viewer could guess the token a letter at a time
    assert client.get(reverse(CHANGELIST), {"q": "ops@example"}).context["cl"].result_count == 1


@pytest.mark.parametrize("kind", ["webhook", "slack", "pagerduty"])
def test_it_keeps_the_stored_credentials_when_the_fields_are_left_blank(
    kind: str, channels: dict[str, NotificationChannel]
) -> None:
    channel = channels[kind]
    response = superuser_client().post(
        reverse(CHANGE, args=[channel.pk]), change_data(channel, name="renamed")
    )
    assert response.status_code == 302, form_errors(response)
    stored = NotificationChannel.objects.get(pk=channel.pk)
    assert stored.name == "renamed"
    assert (stored.get_target(), stored.get_secret()) == (channel.get_target(), channel.get_secret())


def test_it_replaces_and_removes_a_secret(channels: dict[str, NotificationChannel]) -> None:
    hook = channels["webhook"]
    client = superuser_client()
    url = reverse(CHANGE, args=[hook.pk])
    assert client.post(url, change_data(hook, secret="new-key")).status_code == 302
    assert NotificationChannel.objects.get(pk=hook.pk).get_secret() == "new-key"
    assert client.post(url, change_data(hook, target="https://hooks.example.com/v2")).status_code == 302
    assert NotificationChannel.objects.get(pk=hook.pk).get_target() == "https://hooks.example.com/v2"
    assert client.post(url, change_data(hook, clear_secret="on")).status_code == 302
    assert NotificationChannel.objects.get(pk=hook.pk).get_secret() == ""


def test_it_does_not_keep_a_url_as_the_addresses_of_an_email_channel(
    channels: dict[str, NotificationChannel],
) -> None:
    slack = channels["slack"]
    response = superuser_client().post(reverse(CHANGE, args=[slack.pk]), change_data(slack, kind="email"))
    assert response.status_code == 200
    assert form_errors(response)["target"] == ["This field is required."]
    assert_no_credentials(response.content.decode())
    assert NotificationChannel.objects.get(pk=slack.pk).get_target() == SLACK_URL


def test_it_still_signs_with_the_stored_secret_after_a_blank_save(http_server: RecordingHTTPServer) -> None:
    hook = NotificationChannel(
        name="signed", kind="webhook", target=http_server.url + "/hook", secret="s3cret"
    )
    hook.full_clean()
    hook.save()
    response = superuser_client().post(
        reverse(CHANGE, args=[hook.pk]), change_data(hook, name="still signed")
    )
    assert response.status_code == 302, form_errors(response)

    hook.refresh_from_db()
    assert send_test(hook) == (True, "HTTP 200 OK")
    [request] = http_server.requests
    expected = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-RPA-Signature"], expected)
    assert request.path == "/hook"


def _raw(channel: NotificationChannel) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT target, secret FROM alerts_notificationchannel WHERE id = %s", [channel.pk])
        target, secret = cursor.fetchone()
    return str(target), str(secret)


def test_it_stores_the_secret_and_http_targets_encrypted(channels: dict[str, NotificationChannel]) -> None:
    for channel in channels.values():
        raw = " ".join(_raw(channel))
        assert not any(piece in raw for piece in CREDENTIALS), channel.kind
        if channel.kind in ("webhook", "slack", "pagerduty"):
            assert raw.startswith("enc:")
    fresh = NotificationChannel.objects.get(pk=channels["webhook"].pk)
    assert (fresh.get_target(), fresh.get_secret()) == (WEBHOOK_URL, WEBHOOK_SECRET)


def test_it_keeps_email_addresses_plain_so_they_can_be_searched() -> None:
    mail = NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    assert _raw(mail) == ("ops@example.com", "")
