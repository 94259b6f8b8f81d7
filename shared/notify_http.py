"""The one POST a webhook delivery makes: to a public address only, never following a redirect.

The host is resolved at send time and every address it resolves to is checked; the connection then goes to
the address that was checked (not to the name again), so a DNS answer that changes between the check and the
connect (DNS rebinding) cannot steer the POST to an internal service. Refused: loopback, private (RFC 1918,
fc00::/7), link-local (169.254/16 with the cloud metadata address 169.254.169.254, fe80::/10), the AWS IPv6
metadata address fd00:ec2::254, and whatever else is not globally routable (``ipaddress``'s ``is_global``),
unless ``AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES`` allows them (local development and tests, whose receivers
listen on 127.0.0.1); the two metadata addresses even then. ``http.client`` follows no redirect: a 3xx is an
answer like any other, and nothing goes to its ``Location``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.exceptions import FieldIssue, RefusedAddressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], list[str]]
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
# One try's whole budget: connect, send, and the status line and headers back (a receiver that trickles its
# answer is cut off here, not at each read's timeout).
TIMEOUT_S = 10.0


def refusal(address: IPAddress) -> str | None:
    """Why the app does not send to ``address``, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "the cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address.is_multicast:
        return "not a public address"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (OSError when it resolves to none)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def checked_address(url: str, *, allow_private: bool, resolver: Resolve = resolve) -> str:
    """The address to connect to for ``url``: ``RefusedAddressError`` if any address its host resolves to is
    refused (a name with one internal address among public ones is refused as a whole)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        # The metadata address hands out the host's credentials: no setting opens it, local testing needs none.
        why = refusal(address) if not allow_private or address in METADATA_ADDRESSES else None
        if why is not None:
            raise RefusedAddressError(
                f"{host} resolves to {address}, {why}: the app sends notifications to public addresses only "
                "(AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES)"
            )
    return str(addresses[0])


def webhook_issues(urls: list[str], *, allow_private: bool, resolver: Resolve = resolve) -> list[FieldIssue]:
    """At submit: the webhooks of a config that lead to a refused address (a name that does not resolve now
    passes: it is checked again at each send)."""
    issues = []
    for i, url in enumerate(urls):
        try:
            checked_address(url, allow_private=allow_private, resolver=resolver)
        except RefusedAddressError as exc:
            issues.append(FieldIssue(f"notify.webhooks[{i}]", str(exc)))
        except (OSError, ValueError):
            continue
    return issues


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``address``; the Host header still names the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to ``address`` and checks the certificate against the URL's host (SNI too)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout_s: float = TIMEOUT_S,
    resolver: Resolve = resolve,
) -> int:
    """POST ``body`` to ``url``; the HTTP status it answered. ``RefusedAddressError`` for a refused address,
    OSError when nothing answered in ``timeout_s``."""
    parts = urlsplit(url)
    address = checked_address(url, allow_private=allow_private, resolver=resolver)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = cls(host, port, address, timeout_s)
    cut = threading.Event()
    watchdog = threading.Timer(timeout_s, _cut, (connection, cut))
    watchdog.start()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        status = int(connection.getresponse().status)
    except (http.client.HTTPException, ValueError) as exc:  # a garbled answer is no answer
        raise OSError(type(exc).__name__) from None
    finally:
        watchdog.cancel()
        connection.close()
    if cut.is_set():  # what was read before the cut is no answer, whatever it looked like
        raise TimeoutError(f"no complete answer within {timeout_s:g} s")
    return status


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Interrupt a try that outlived its budget (a read blocked in another thread returns at once)."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
