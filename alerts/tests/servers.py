"""Real servers on 127.0.0.1 for notification tests: an HTTP endpoint and an SMTP server that record.

with RecordingHTTPServer(statuses=[500, 500, 200]) as server:
    ...  # POST to server.url (or server.url + "/any/path")
    server.requests[0].json

with RecordingSMTPServer() as smtp, smtp.as_email_backend():
    ...  # Django's mail API really talks SMTP to it
    smtp.messages[0]["Subject"]
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from django.test import override_settings


def free_port() -> int:
    """A port nothing listens on right now (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Message  # case-insensitive: request.headers["x-rpa-signature"]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        """The body parsed as JSON; None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Reply:
    """What the server answers: `statuses` are used one per request, the last one repeating."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0  # seconds before answering (longer than the client's timeout: a timeout)
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # the status line's text (None: the standard phrase)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many notifications connect at once (one thread each): the default backlog of 5
    # would make the kernel reset some connections, a failure of the test server.
    request_queue_size = 128


class RecordingHTTPServer:
    """A real ThreadingHTTPServer on 127.0.0.1 (a free port; or `host`, `port`) that records every request."""

    def __init__(
        self,
        statuses: Iterable[int] = (200,),
        *,
        delay: float = 0.0,
        body: bytes = b"ok",
        headers: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`tls`: (certificate file, key file) to serve HTTPS; `server_names` records each SNI."""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._reply = Reply(list(statuses) or [200], delay, body, dict(headers or {}))
        self._served = 0
        self._closing = threading.Event()
        self._server = _Server((host, port), self._handler_class())
        self.server_names: list[str | None] = []
        self.scheme = "http"
        if tls is not None:
            self.scheme = "https"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def respond(
        self,
        *statuses: int,
        delay: float = 0.0,
        body: bytes = b"ok",
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer the next requests with `statuses` (the last one repeating)."""
        with self._lock:
            self._reply = Reply(list(statuses) or [200], delay, body, dict(headers or {}), reason)
            self._served = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """The requests once there are at least `count`; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(seen := self.requests) >= count:
                return seen
            time.sleep(0.01)
        raise AssertionError(f"{len(self.requests)} request(s) within {timeout}s, expected {count}")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # wakes handlers still sleeping out a delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: RecordedRequest) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(request)
            reply = self._reply
            status = reply.statuses[min(self._served, len(reply.statuses) - 1)]
            self._served += 1
        return status, reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self._answer(body)

            def do_GET(self) -> None:
                self._answer(b"")

            do_PUT = do_POST

            def _answer(self, body: bytes) -> None:
                request = RecordedRequest(self.command, self.path, self.headers, body)
                status, reply = recorder._next_reply(request)
                if reply.delay and recorder._closing.wait(reply.delay):
                    return
                try:
                    self.send_response(status, reply.reason)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timed out) before the delayed answer

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep the test output clean

        return Handler


class _SMTPHandler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.server.rcpt_reply:
            return self.server.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.data_reply:
            return self.server.data_reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.server._lock:
            self.server._messages.append(message)
            self.server._envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


class RecordingSMTPServer:
    """An aiosmtpd server on 127.0.0.1 (a free port) that records each message it accepts.

    `rcpt_reply` / `data_reply` (e.g. "550 No such user") make it refuse instead.
    """

    def __init__(self, *, rcpt_reply: str = "", data_reply: str = "") -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._envelopes: list[tuple[str, list[str]]] = []
        self.port = free_port()
        self._controller = Controller(_SMTPHandler(self), hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        """(MAIL FROM, RCPT TO list) of each accepted message."""
        with self._lock:
            return list(self._envelopes)

    def as_email_backend(self) -> override_settings:
        """Settings under which Django's mail API sends to this server over real SMTP."""
        return override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=self.port,
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            EMAIL_USE_TLS=False,
            EMAIL_USE_SSL=False,
        )

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(seen := self.messages) >= count:
                return seen
            time.sleep(0.01)
        raise AssertionError(f"{len(self.messages)} message(s) within {timeout}s, expected {count}")

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._controller.stop()
