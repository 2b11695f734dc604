"""Where notifications may go (alerts.egress): private targets are refused at save and at send,
the connection goes to the address that was checked, and an answer is only a status code."""

from __future__ import annotations

import importlib
import ipaddress
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from alerts import egress
from alerts.channels import deliver_pending, send_test
from alerts.models import Delivery, NotificationChannel
from alerts.notify import queue_notifications
from alerts.tests.conftest import MakeAlert, MakeChannel
from alerts.tests.servers import RecordingHTTPServer
from rpa_monitor.tests.badinput import form_errors, superuser_client

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# What an internal service answers: its error page must never come back.
INTERNAL_BODY = b"<h1>Forbidden</h1> internal admin; db password: hunter2"
SECRET_WORDS = ("hunter2", "internal admin", "db password")

PRIVATE_TARGETS = [
    "http://127.0.0.1:8000/hook",
    "http://127.8.9.10/hook",
    "http://[::1]:8080/hook",
    "http://localhost:8000/hook",
    "http://api.localhost/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "https://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://[fd12:3456::1]/hook",
    "http://0.0.0.0:9200/",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://[::ffff:127.0.0.1]/hook",
]


@pytest.fixture
def refuse_private(settings: Any) -> None:
    settings.RPA_ALLOW_PRIVATE_WEBHOOKS = False


@pytest.fixture
def internal_service() -> Iterator[RecordingHTTPServer]:
    """An "internal service" on 127.0.0.1 answering 403 with a body that must not leak."""
    with RecordingHTTPServer([403], body=INTERNAL_BODY) as server:
        yield server


def assert_no_secret(text: str) -> None:
    for word in SECRET_WORDS:
        assert word not in text, text


# -- at save ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("refuse_private")
@pytest.mark.parametrize("kind", ["webhook", "slack", "pagerduty"])
@pytest.mark.parametrize("target", PRIVATE_TARGETS)
def test_it_refuses_a_private_target_at_save(kind: str, target: str) -> None:
    channel = NotificationChannel(name="internal", kind=kind, target=target, secret="key")
    with pytest.raises(ValidationError) as refused:
        channel.full_clean()
    [message] = refused.value.message_dict["target"]
    assert "public addresses only (RPA_ALLOW_PRIVATE_WEBHOOKS=1 allows private ones)" in message


@pytest.mark.django_db
@pytest.mark.usefixtures("refuse_private")
@pytest.mark.parametrize(
    "target",
    ["https://hooks.slack.com/services/T/B/X", "https://93.184.215.14/hook", "http://[2606:4700::1111]/x"],
)
def test_it_accepts_a_public_target_at_save(target: str) -> None:
    NotificationChannel(name="public", kind="webhook", target=target).full_clean()


@pytest.mark.django_db
def test_it_accepts_a_private_target_when_the_setting_allows_it() -> None:
    NotificationChannel(name="lab", kind="webhook", target="http://10.0.0.5/hook").full_clean()


@pytest.mark.django_db
@pytest.mark.usefixtures("refuse_private")
def test_it_refuses_a_private_target_in_the_admin_naming_the_target(
    internal_service: RecordingHTTPServer,
) -> None:
    response = superuser_client().post(
        reverse("admin:alerts_notificationchannel_add"),
        {"name": "internal", "kind": "webhook", "target": internal_service.url + "/hook", "enabled": "on"},
    )
    assert response.status_code == 200
    [message] = form_errors(response)["target"]
    assert message.startswith("127.0.0.1 is a loopback address; notifications go to public addresses")
    assert not NotificationChannel.objects.exists()


# -- at send ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_at_send_a_private_target_saved_earlier(
    settings: Any,
    internal_service: RecordingHTTPServer,
    make_channel: MakeChannel,
    make_alert: MakeAlert,
) -> None:
    # Saved while private targets were allowed (or before this check existed).
    by_address = make_channel("webhook", internal_service.url + "/hook", name="by address")
    by_name = make_channel("slack", f"http://localhost:{internal_service.port}/hook", name="by name")
    queue_notifications(make_alert([by_address, by_name]), Delivery.Event.TRIGGERED, T0)
    settings.RPA_ALLOW_PRIVATE_WEBHOOKS = False

    assert deliver_pending(T0).retrying == 2
    errors = dict(Delivery.objects.values_list("channel__name", "error"))
    hint = "notifications go to public addresses only (RPA_ALLOW_PRIVATE_WEBHOOKS=1 allows private ones)."
    assert errors == {
        "by address": f"refused: 127.0.0.1 is a loopback address; {hint}",
        "by name": f"refused: localhost resolves to 127.0.0.1, which is a loopback address; {hint}",
    }
    assert send_test(by_name) == (False, errors["by name"])
    assert internal_service.requests == []  # nothing reached the internal service


@pytest.mark.django_db
def test_it_refuses_at_send_a_target_that_is_not_http(
    http_server: RecordingHTTPServer, make_channel: MakeChannel
) -> None:
    hook = make_channel("webhook", http_server.url)
    NotificationChannel.objects.filter(pk=hook.pk).update(target="file:///etc/passwd")
    hook.refresh_from_db()
    assert send_test(hook) == (False, "refused: only http and https URLs can be notified")


@pytest.mark.usefixtures("refuse_private")
def test_it_refuses_a_name_when_any_of_its_addresses_is_private() -> None:
    public, private = ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.1.2.3")
    assert egress.checked("hooks.example.com", [public]) == public
    for answers in ([public, private], [private, public]):
        with pytest.raises(egress.RefusedTarget, match=r"resolves to 10\.1\.2\.3, which is a private"):
            egress.checked("hooks.example.com", answers)


@dataclass
class Resolver:
    """getaddrinfo for one made-up name: `first` on the first lookup, `later` on every other one
    (the DNS rebind: a public answer for the check, an internal one for the connection)."""

    name: str
    first: str
    later: str
    lookups: int = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != self.name:
                return real(host, port, *args, **kwargs)
            self.lookups += 1
            address = self.first if self.lookups == 1 else self.later
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.django_db
def test_it_connects_to_the_address_it_checked_whatever_dns_answers_next(
    monkeypatch: pytest.MonkeyPatch, make_channel: MakeChannel
) -> None:
    # Two servers on one port: the checked address (127.0.0.1) and the one a second lookup
    # would give (127.0.0.2, also loopback on Linux). Only the first may ever be reached.
    with RecordingHTTPServer() as checked_server:
        port = checked_server.port
        with RecordingHTTPServer(host="127.0.0.2", port=port) as rebound:
            resolver = Resolver("hooks.rebind.test", first="127.0.0.1", later="127.0.0.2")
            resolver.install(monkeypatch)
            hook = make_channel("webhook", f"http://hooks.rebind.test:{port}/hook")
            assert send_test(hook) == (True, "HTTP 200 OK")
            assert send_test(hook) == (True, "HTTP 200 OK")  # a new lookup, the rebound answer
        [first] = checked_server.requests
        [second] = rebound.requests
    assert resolver.lookups == 2  # one per send: the connection never asked DNS again
    assert first.headers["Host"] == f"hooks.rebind.test:{port}"
    assert (first.path, second.path) == ("/hook", "/hook")


# -- what an answer leaves behind ------------------------------------------------------------


@pytest.mark.django_db
def test_it_records_only_the_status_code_and_reason(
    caplog: pytest.LogCaptureFixture,
    internal_service: RecordingHTTPServer,
    make_channel: MakeChannel,
    make_alert: MakeAlert,
) -> None:
    # The server's own reason text is as much the server's as the body is.
    internal_service.respond(403, body=INTERNAL_BODY, reason="Forbidden: hunter2")
    hook = make_channel("webhook", internal_service.url + "/hook", name="internal")
    alert = make_alert([hook])
    queue_notifications(alert, Delivery.Event.TRIGGERED, T0)

    deliver_pending(T0)
    delivery = Delivery.objects.get(alert=alert)
    assert (delivery.error, delivery.response_code) == ("HTTP 403 Forbidden", 403)
    assert send_test(hook) == (False, "HTTP 403 Forbidden")

    client = superuser_client()
    changelist = reverse("admin:alerts_notificationchannel_changelist")
    response = client.post(
        changelist, {"action": "send_test_notification", "_selected_action": [hook.pk]}, follow=True
    )
    assert [str(message) for message in response.context["messages"]] == [
        "internal: failed: HTTP 403 Forbidden"
    ]
    assert_no_secret(response.content.decode())
    assert_no_secret(client.get(reverse("admin:alerts_delivery_change", args=[delivery.pk])).content.decode())
    assert_no_secret(caplog.text)
    assert len(internal_service.requests) == 3


# -- TLS to a pinned address ---------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: str
    localhost: tuple[str, str]  # (certificate, key) for the name "localhost"
    other: tuple[str, str]  # ... for "other.example"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA and two server certificates it signed, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test CA")
    for name in ("localhost", "other.example"):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip

    def pair(name: str) -> tuple[str, str]:
        return str(folder / f"{name}.pem"), str(folder / f"{name}.key")

    return Certificates(str(folder / "ca.pem"), pair("localhost"), pair("other.example"))


@pytest.mark.django_db
def test_it_keeps_sni_and_certificate_checks_for_the_name_it_pinned(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch, make_channel: MakeChannel
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificates.ca)
    with RecordingHTTPServer(tls=certificates.localhost) as server:
        hook = make_channel("webhook", f"https://localhost:{server.port}/hook")
        assert send_test(hook) == (True, "HTTP 200 OK")
        [request] = server.requests
    assert server.server_names == ["localhost"]  # SNI names the host, not 127.0.0.1
    assert request.headers["Host"] == f"localhost:{server.port}"


@pytest.mark.django_db
def test_it_refuses_a_certificate_for_another_name(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch, make_channel: MakeChannel
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificates.ca)
    with RecordingHTTPServer(tls=certificates.other) as server:
        hook = make_channel("webhook", f"https://localhost:{server.port}/hook")
        ok, detail = send_test(hook)
        assert server.requests == []
    assert not ok
    assert "certificate verify failed" in detail
    assert "/hook" not in detail


def test_it_shows_a_url_by_its_scheme_and_host_only() -> None:
    assert egress.masked("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/…"
    assert egress.masked("http://user:pw@[::1]:8080/x?token=1") == "http://[::1]:8080/…"
    assert egress.masked("https://events.pagerduty.com:443/v2/enqueue") == "https://events.pagerduty.com/…"
    assert egress.masked("not a url") == "…"


@pytest.mark.django_db
def test_it_drops_the_bodies_that_stored_errors_quoted(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0002_delivery_error_without_body")
    hook = make_channel("webhook", "https://hooks.example.com/x")
    stored = {
        "HTTP 403: <h1>Forbidden</h1> internal admin; db password: hunter2": "HTTP 403 Forbidden",
        "HTTP 302: redirect to http://10.0.0.1/ not followed": "HTTP 302 Found (redirects are not followed)",
        "HTTP 599: ?": "HTTP 599",
        "connection failed: Connection refused": "connection failed: Connection refused",
    }
    alerts = [make_alert([hook], subject=f"bot-{n}") for n in range(len(stored))]
    for alert, error in zip(alerts, stored, strict=True):
        Delivery.objects.create(alert=alert, channel=hook, event="triggered", error=error)

    migration.drop_bodies(apps, None)
    assert sorted(Delivery.objects.values_list("error", flat=True)) == sorted(stored.values())
