"""Limits every local HTTP server the app runs should have: a header deadline, a connection cap, a keep-alive
timeout. uvicorn has the last two; the first is added here, because a client that opens a connection and
never finishes its request line would otherwise hold a socket (and, with a cap, a slot) forever.

The body read deadline belongs to the app (it reads the body), see ``read_body_within``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 64


class BodyTooLarge(Exception):
    """The body passed the size limit while it was read."""


def header_deadline_protocol(timeout_s: float) -> type[H11Protocol]:
    """An h11 protocol that closes a connection whose first request's headers have not arrived in time."""

    class HeaderDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = self.loop.call_later(timeout_s, self._drop_if_no_request)

        def _drop_if_no_request(self) -> None:
            # ``cycle`` is set when a request's headers are complete; later idle time is keep-alive's job.
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


def bounded_config(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    keep_alive_s: int = KEEP_ALIVE_S,
    **kwargs: Any,
) -> uvicorn.Config:
    """``uvicorn.Config`` with the limits: past ``max_connections`` a request gets 503, not a hang."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_deadline_protocol(header_timeout_s),
        limit_concurrency=max_connections,
        timeout_keep_alive=keep_alive_s,
        **kwargs,
    )


async def read_body_within(request: Request, *, max_bytes: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The whole body, or ``TimeoutError`` if it has not all arrived in ``timeout_s``, or ``BodyTooLarge``."""
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise BodyTooLarge

    await asyncio.wait_for(read(), timeout_s)
    return bytes(body)
