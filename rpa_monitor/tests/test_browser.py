"""End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's sync API).

The web server (`runserver`) and the task worker (`db_worker`) run as real processes
against the test database, with the demo data loaded and its chain made to fail
every time. The browser logs into the admin, keeps the dashboard open in one tab,
executes the demo chain from its page in another, watches the chain run fail, and
sees the dashboard's auto-refresh count the failure and show the alert raised by a
scheduler tick (`manage.py fire_triggers`), whose webhook notification a local HTTP
server records. Screenshots go to var/screenshots/.

Playwright's sync API keeps an asyncio loop marked as running in this thread while
the browser is open, and Django refuses ORM calls there (SynchronousOnlyOperation):
the tests seed the database before the browser starts and check it after it closed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from alerts.models import Alert, AlertRule, Delivery, NotificationChannel
from alerts.tests.servers import RecordingHTTPServer
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from rpa_monitor.demo import DEMO_CHAIN_SLUG, load_demo
from rpa_monitor.test import manage, start_manage, stop_process
from triggers.models import Trigger

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
USERNAME = "admin"
PASSWORD = "browser-test-password-7"  # a throwaway superuser in the test database
WEBHOOK_SECRET = "browser-test-secret"
RULE_NAME = "Browser test: demo chain failed"
WORKER = ["db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2"]
# The dashboard refreshes every 5 s; a chain run of fast demo bots takes a few seconds.
WAIT_MS = 45_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it as root with "
    "apt-get install chromium); this test drives that browser and never downloads one",
)


# -- real processes --------------------------------------------------------------------------


@dataclass
class Child:
    """A manage.py process whose output is drained by threads (a full pipe would block it)."""

    name: str
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.output.append(line.decode(errors="replace").rstrip())

    def stop(self) -> None:
        stop_process(self.process)

    def tail(self, lines: int = 30) -> str:
        return f"--- {self.name} (exit {self.process.poll()}):\n" + "\n".join(self.output[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(server: Child, port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the web server exited early\n{server.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the web server did not listen on port {port} within {seconds:g}s\n{server.tail()}")


@dataclass
class Site:
    url: str
    children: list[Child]

    def logs(self) -> str:
        return "\n".join(child.tail() for child in self.children)


@pytest.fixture
def site(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> Iterator[Site]:
    """runserver and db_worker against this test's database; stopped before it is flushed."""
    # The test's webhook listens on 127.0.0.1: allowed here and in the children (alerts.egress).
    settings.RPA_ALLOW_PRIVATE_WEBHOOKS = True
    monkeypatch.setenv("RPA_ALLOW_PRIVATE_WEBHOOKS", "1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # start_manage() hands this environment to the children (and they to the bots).
    monkeypatch.setenv("DEBUG", "1")  # runserver serves the admin's CSS; session cookies work over http
    monkeypatch.setenv("RPA_DEMO_SPEED", "0.05")  # the demo bots' pretend work takes 5% of its time
    monkeypatch.setenv("RPA_BASE_URL", url)  # links in notifications point at this server
    monkeypatch.setenv(
        "EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend"
    )  # demo's email channel
    monkeypatch.setenv("RPA_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    server = Child("runserver", start_manage("runserver", "--noreload", f"127.0.0.1:{port}"))
    worker = Child(
        "db_worker", start_manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2")
    )
    children = [server, worker]
    try:
        wait_listening(server, port)
        yield Site(url, children)
    finally:
        for child in children:
            child.stop()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless. Open it only once the database is seeded (see the module doc)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def watch_errors(page: Page) -> list[str]:
    """The page's JavaScript errors: uncaught exceptions and console errors (not the browser's own
    "Failed to load resource" lines, e.g. for /favicon.ico, which this site does not serve)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")

    page.on("console", console)
    return errors


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


# -- the demo, made to fail --------------------------------------------------------------------


def seed_failing_demo(webhook_url: str) -> Chain:
    """The demo data with data_entry failing on its first record, no retry; an alert rule on the
    demo chain notifying a webhook; every trigger off (only the admin's Execute starts work)."""
    load_demo(USERNAME, PASSWORD)
    entry = Workflow.objects.get(slug="data_entry")
    records = int(entry.environment.get("RPA_DEMO_RECORDS", "5"))
    # Each record fails with probability rate/records: a rate >= records fails the first one.
    entry.environment = {**entry.environment, "RPA_DEMO_FAIL_RATE": str(records)}
    entry.max_retries = 0
    entry.full_clean()
    entry.save()
    Trigger.objects.update(enabled=False)
    chain = Chain.objects.get(slug=DEMO_CHAIN_SLUG)
    channel = NotificationChannel(
        name="Browser test webhook", kind="webhook", target=f"{webhook_url}/hook", secret=WEBHOOK_SECRET
    )
    channel.full_clean()
    channel.save()
    rule = AlertRule(name=RULE_NAME, kind="chain_failed", chain=chain, severity="critical")
    rule.full_clean()
    rule.save()
    rule.channels.set([channel])
    return chain


@dataclass
class Seen:
    chain_run_id: int
    screenshots: list[Path]
    errors: list[str]


@pytest.mark.django_db(transaction=True)
def test_it_executes_the_demo_chain_and_the_dashboard_shows_the_failure_and_its_alert(site: Site) -> None:
    with RecordingHTTPServer() as webhook:
        chain = seed_failing_demo(webhook.url)
        with chromium() as browser:
            seen = execute_and_watch(browser, site, chain)
        [hook] = [r for r in webhook.wait_for(1, timeout=30) if r.path == "/hook"]

    assert seen.errors == [], seen.errors
    assert all(path.stat().st_size > 0 for path in seen.screenshots)
    chain_run = ChainRun.objects.get(pk=seen.chain_run_id)
    assert (chain_run.status, chain_run.failed_step) == (RunStatus.FAILURE, 2)
    alert = Alert.objects.get(rule__name=RULE_NAME)
    assert (alert.subject, alert.status) == (DEMO_CHAIN_SLUG, Alert.Status.TRIGGERED)
    body = hook.json
    assert body == {
        **body,
        "event": "triggered",
        "alert_id": alert.pk,
        "rule": RULE_NAME,
        "kind": "chain_failed",
        "severity": "critical",
        "subject": DEMO_CHAIN_SLUG,
    }
    assert body["url"].startswith(site.url)
    signature = hmac.new(WEBHOOK_SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hook.headers["X-RPA-Signature"], f"sha256={signature}")
    delivery = Delivery.objects.get(alert=alert)
    assert (delivery.outcome, delivery.response_code) == (Delivery.Outcome.SENT, 200)


def execute_and_watch(browser: Browser, site: Site, chain: Chain) -> Seen:
    """Dashboard open in one tab; Execute the chain in another; watch it fail; one scheduler tick;
    the dashboard (never reloaded) shows the failure and the alert. No ORM in here (module doc)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    dashboard = context.new_page()
    errors = watch_errors(dashboard)

    log_in(dashboard, site.url)
    dashboard.click("#rpa-dashboard-card a")
    dashboard.wait_for_url(f"{site.url}/admin/dashboard/")
    expect(dashboard.locator("#count-failed")).to_have_text(re.compile(r"^\d+$"))
    failed_before = int(dashboard.inner_text("#count-failed"))
    # Marks this page load: still there later means the figures changed without a reload.
    dashboard.evaluate("window.rpaFirstLoad = 'kept'")

    runs = context.new_page()
    runs.goto(f"{site.url}/admin/chains/chain/{chain.pk}/change/")
    runs.click("button:has-text('Execute')")
    runs.wait_for_url(re.compile(r"/admin/chains/chainrun/\d+/change/$"))
    match = re.search(r"/chainrun/(\d+)/change/$", runs.url)
    assert match is not None
    chain_run_id = int(match.group(1))
    wait_for_status(runs, "failure", site)
    expect(runs.locator(".field-failure_point .readonly")).to_contain_text("step 2")
    timeline = runs.locator(".rpa-timeline")
    expect(timeline.locator(".rpa-tl-bar")).to_have_count(2)  # login, data_entry; submit never started
    expect(timeline).to_contain_text("login · attempt 1")
    expect(timeline).to_contain_text("data_entry · attempt 1")
    expect(timeline).to_contain_text("· failure")
    chain_run_png = screenshot(runs, "chain_run.png")

    expect(dashboard.locator("#count-failed")).to_have_text(str(failed_before + 1), timeout=WAIT_MS)
    tick = manage("fire_triggers")
    assert tick.returncode == 0, tick.stderr
    print(tick.stdout.strip())
    alert_row = dashboard.locator("#rpa-alerts tr", has_text=f"chain {DEMO_CHAIN_SLUG} failed").first
    expect(alert_row).to_be_visible(timeout=WAIT_MS)
    expect(alert_row).to_contain_text(f"run #{chain_run_id}")
    expect(dashboard.locator("#rpa-refresh-error")).to_be_hidden()
    assert dashboard.evaluate("window.rpaFirstLoad") == "kept", "the dashboard page was reloaded"
    dashboard_png = screenshot(dashboard, "dashboard.png")
    context.close()
    return Seen(chain_run_id, [dashboard_png, chain_run_png], errors)


def wait_for_status(page: Page, status: str, site: Site, seconds: float = 60.0) -> None:
    """Reload the run's admin page until its status badge reads `status`."""
    badge = page.locator(".field-status_badge .readonly")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if badge.inner_text().strip() == status:
            return
        time.sleep(0.5)
        page.reload()
    raise AssertionError(f"the run page still says {badge.inner_text()!r} after {seconds:g}s\n{site.logs()}")


# -- escaping and a failing refresh, against an in-process server ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_shows_user_text_as_text_and_says_when_a_refresh_fails(live_server: object) -> None:
    hostile = '<img src=x onerror="window.rpaInjected=1">'
    Workflow.objects.create(slug="hostile", name=hostile, command=["true"])
    WorkflowRun.objects.create(
        workflow=Workflow.objects.get(slug="hostile"), status=RunStatus.RUNNING, started_at=timezone.now()
    )
    rule = AlertRule.objects.create(name=f"rule {hostile}", kind="workflow_failed", severity="warning")
    Alert.objects.create(rule=rule, subject=hostile, severity="warning", summary=f"summary {hostile}")
    load_demo(USERNAME, PASSWORD)  # the admin login
    with chromium() as browser:
        errors = watch_hostile_dashboard(browser, str(live_server), hostile)
    assert errors == [], errors


def watch_hostile_dashboard(browser: Browser, url: str, hostile: str) -> list[str]:
    page = browser.new_page()
    errors = watch_errors(page)
    log_in(page, url)
    page.goto(f"{url}/admin/dashboard/")

    alerts = page.locator("#rpa-alerts")
    expect(alerts).to_contain_text(f"summary {hostile}")  # shown literally ...
    assert alerts.locator("img").count() == 0  # ... never parsed as HTML
    assert page.evaluate("window.rpaInjected") is None
    expect(page.locator("#rpa-running")).to_contain_text("hostile #")
    expect(page.locator("#rpa-chart svg rect")).to_have_count(30)  # a bar per day, drawn by the page
    expect(page.locator("#rpa-alerts-more")).to_be_hidden()

    page.route("**/admin/dashboard/data.json", lambda route: route.fulfill(status=502, body="bad gateway"))
    expect(page.locator("#rpa-refresh-error")).to_contain_text("HTTP 502", timeout=WAIT_MS)
    expect(page.locator("#count-running")).to_have_text("1")  # the last figures stay, marked stale
    page.unroute("**/admin/dashboard/data.json")
    expect(page.locator("#rpa-refresh-error")).to_be_hidden(timeout=WAIT_MS)
    page.close()
    return errors
