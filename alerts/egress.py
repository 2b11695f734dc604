"""Where a notification may be POSTed: only to public addresses, and to the very address checked.

A channel's URL is typed by a staff user, and the scheduler POSTs to it from inside the
network, so without a check a webhook could reach internal services (an admin on
127.0.0.1, a cloud metadata endpoint on 169.254.169.254, a database on 10.x). The
guarantee: unless `RPA_ALLOW_PRIVATE_WEBHOOKS` is on, no notification opens a connection
to an address that is not global unicast (loopback, link-local, private and ULA,
shared, unspecified, multicast, reserved, documentation), and what comes back is only
ever a status code. How the code keeps it:

1. At save, `target_problem` refuses schemes other than http/https, an address literal
   that is not public and `localhost` names (RFC 6761): the form error names `target`.
   No DNS there: an answer at save proves nothing about the one at send.
2. At send, `post` resolves the host once itself and refuses it when ANY of the answers
   is not public (the client, not the attacker, must not pick among them); then the
   connection is pinned to the first answer: urllib3 connects to that IP while the Host
   header, TLS SNI and certificate verification use the name. Nothing resolves the name a
   second time, so a DNS rebind between check and connect has nothing to change.
3. Redirects are never followed (a 3xx is an answer like any other), and proxies from the
   environment are not used: a proxy would connect on our behalf, to wherever.
4. `status_text` describes an answer by its code and the standard reason phrase: never
   the body, the server's own reason text or a Location (an internal service's error page
   must not come back into the admin, a Delivery or the logs).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import SplitResult, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.connection import allowed_gai_family

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = {"http": 80, "https": 443}
SETTING = "RPA_ALLOW_PRIVATE_WEBHOOKS"
NOT_HTTP = "refused: only http and https URLs can be notified"


class RefusedTarget(Exception):
    """The URL may not be POSTed to; the text says why (never the URL's path or query)."""


# -- what is public ----------------------------------------------------------------------


def address_problem(address: IPAddress) -> str | None:
    """Why a notification may not go to `address` ("a loopback address", ...), None if public."""
    for embedded in _embedded_ipv4(address):
        if problem := address_problem(embedded):
            return problem
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:  # RFC 1918, ULA, and the reserved/documentation ranges Python lists
        return "a private or reserved address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    # ::ffff:127.0.0.1 reaches 127.0.0.1 (Python 3.11 does not look inside for is_private).
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    return [embedded for embedded in found if embedded is not None]


def allow_private() -> bool:
    return bool(getattr(settings, SETTING, False))


def target_problem(url: str) -> str | None:
    """Why `url` cannot be a notification target, judged without DNS (the save-time check)."""
    parts = _split(url)
    if parts is None or parts.scheme.lower() not in SCHEMES:
        return "Only http and https URLs can be notified."
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "The URL names no host."
    if allow_private():
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name; {_hint()}"
    address = _literal(host)
    if address is not None and (problem := address_problem(address)):
        return f"{address} is {problem}; {_hint()}"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _hint() -> str:
    return f"notifications go to public addresses only ({SETTING}=1 allows private ones)."


def masked(url: str) -> str:
    """The URL shown without what can be a credential (path, query, user info): scheme and host."""
    parts = _split(url)
    if parts is None or not parts.scheme or not parts.hostname:
        return "…" if url else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if _port(parts) not in (None, SCHEMES.get(parts.scheme.lower())) else ""
    return f"{parts.scheme.lower()}://{host}{port}/…"


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit((url or "").strip())
    except ValueError:  # e.g. an unclosed "[" of an IPv6 literal
        return None


def _port(parts: SplitResult) -> int | None:
    try:
        return int(parts.port) if parts.port is not None else None
    except ValueError:
        return None


# -- sending ---------------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an address literal: itself), in the resolver's order."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    # sockaddr[0] can carry an IPv6 scope ("fe80::1%eth0"): ip_address keeps it (3.9+).
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


def vetted_address(host: str, port: int) -> IPAddress:
    """The address to connect to for `host`: the first it resolves to, once all were checked."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError
        raise requests.ConnectionError(exc) from exc
    return checked(host, addresses)


def checked(host: str, addresses: list[IPAddress]) -> IPAddress:
    """The first of `addresses` if every one of them may be notified; else RefusedTarget."""
    if not addresses:
        raise requests.ConnectionError(f"{host} resolves to no address")
    if not allow_private():
        for address in addresses:
            if problem := address_problem(address):
                shown = host if str(address) == host else f"{host} resolves to {address}, which"
                raise RefusedTarget(f"refused: {shown} is {problem}; {_hint()}")
    return addresses[0]


class PinnedAdapter(HTTPAdapter):
    """A requests transport that vets each request's host and connects to the vetted address.

    The pool is keyed by the IP (so urllib3 never resolves the name), `server_hostname`
    makes TLS send SNI for the name and verify the certificate against it (the default
    context has check_hostname on), and the Host header is set to the name.
    """

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self._pins: dict[tuple[str, int], IPAddress] = {}

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise RefusedTarget(NOT_HTTP)
        host = parts.hostname or ""
        port = _port(parts) or SCHEMES[scheme]
        self._pins[(host, port)] = vetted_address(host, port)
        request.headers["Host"] = _host_header(host, port, SCHEMES[scheme])
        return super().send(request, *args, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host = host_params["host"]
        port = host_params["port"] or SCHEMES[host_params["scheme"]]
        host_params["host"] = str(self._pins[(host, port)])  # KeyError: send() did not vet it
        if host_params["scheme"] == "https":
            cast(dict[str, Any], pool_kwargs)["server_hostname"] = host  # SNI and verification
        return host_params, pool_kwargs


def _host_header(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url` (see the module docstring); returns the status code, reads no body.

    Raises RefusedTarget for a target that is not allowed, and requests' exceptions for
    everything else (a timeout, a refused connection, a bad certificate).
    """
    if (urlsplit(url).scheme or "").lower() not in SCHEMES:
        raise RefusedTarget(NOT_HTTP)
    with requests.Session() as session:
        session.trust_env = False  # no proxies, no .netrc credentials from the environment
        session.mount("http://", PinnedAdapter())
        session.mount("https://", PinnedAdapter())
        response = session.post(
            url,
            data=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            stream=True,  # the body is never read: closing drops the connection
            verify=_ca_bundle(),
        )
        with response:
            return response.status_code


def _ca_bundle() -> str | bool:
    # trust_env is off (for the proxies), but a deployment's own CA bundle still counts.
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def status_text(code: int) -> str:
    """ "HTTP 403 Forbidden": the code and its standard phrase, never what the server wrote."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"
