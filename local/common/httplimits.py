"""The limits of every HTTP server the twin runs (the host's webhook, each endpoint server), and its body reader.

Below the app, in the protocol: uvicorn's keep-alive timer stops at a request's first byte, so a client that
trickles its request line and headers (or opens a connection and sends nothing) would hold the connection,
and with a cap a slot, for ever; hundreds of such connections stayed open. ``GuardedH11Protocol`` closes a
connection whose headers have not all arrived within ``header_timeout_s`` of its start (or of the previous
response). Past ``max_connections`` a server either answers 503 (uvicorn's ``limit_concurrency``: the host,
whose callers retry on a status) or closes the connection before reading a byte (an endpoint).

In the app: ``read_body`` reads a body within a size and a time limit; what to answer is the app's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import uvicorn
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 64

OverCap = Literal["503", "close"]


class BodyTooLarge(Exception):
    """The body is larger than the limit (said by its Content-Length, or found while it was read)."""


class BodyTooSlow(TimeoutError):
    """The body had not all arrived within the time limit."""


class GuardedH11Protocol(H11Protocol):
    """h11 with a header deadline on every request and, when ``max_connections`` is set, a connection cap."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._armed_for: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            transport.close()  # over the cap: refused before any byte is read
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._header_timer is not None and self.cycle is not self._armed_for:
            self._disarm()  # a new request cycle began: its headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same deadline

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(*, header_timeout_s: float, max_connections: int | None) -> type[GuardedH11Protocol]:
    """The protocol class with these limits, for ``uvicorn.Config(http=...)``."""
    return type(
        "BoundedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


def bounded_config(
    app: Any,
    *,
    host: str,
    port: int,
    over_cap: OverCap,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    keep_alive_s: int = KEEP_ALIVE_S,
    **kwargs: Any,
) -> uvicorn.Config:
    """``uvicorn.Config`` with the limits; past ``max_connections``, ``over_cap`` says what a client gets."""
    capped_here = over_cap == "close"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(
            header_timeout_s=header_timeout_s, max_connections=max_connections if capped_here else None
        ),
        limit_concurrency=None if capped_here else max_connections,
        timeout_keep_alive=keep_alive_s,
        **kwargs,
    )


async def read_body(request: Request, *, max_bytes: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The whole body; ``BodyTooLarge`` past ``max_bytes``, ``BodyTooSlow`` if not all in within ``timeout_s``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise BodyTooLarge

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise BodyTooSlow from None
    return bytes(body)
