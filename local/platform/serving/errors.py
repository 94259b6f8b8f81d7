"""The endpoint server's refusals: the key check every route but ``/health`` passes through (``RequireKey``),
and the exception handlers that turn what a request raises into its answer, in OpenAI's error shape
(``error.message``, ``type``, ``param``, ``code``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from local.common.httplimits import BodyTooLarge, BodyTooSlow
from local.platform.serving import openai_api
from local.platform.serving.batching import PromptTooLongError
from local.platform.serving.serving import MAX_BODY_BYTES, Keys

log = logging.getLogger(__name__)

ErrorHandler = Callable[[Request, Any], Awaitable[Response]]


class ApiError(Exception):
    """A request answered with an error: status, OpenAI error type, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = openai_api.error_body(self.message, type_=self.type, param=self.param, code=self.code)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None


class RequireKey:
    """Middleware of a keyed route: ``Authorization: Bearer <key>`` or ``api-key: <key>``, primary or
    secondary, else 401. On the route (not the app), so an unknown path is still a 404 and a wrong method a 405."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = presented_key(Request(scope))
            if key is None or not self.keys.accepts(key):
                message = (
                    "a key is required: Authorization: Bearer <key> or api-key: <key>"
                    if key is None
                    else "the key is not valid for this endpoint"
                )
                refusal = ApiError(
                    401,
                    message,
                    type_="authentication_error",
                    code="Unauthorized",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def error_handlers(*, request_timeout_ms: int, body_timeout_s: float) -> dict[Any, ErrorHandler]:
    """What each error a request raises is answered with (Starlette looks a handler up by the error's MRO)."""

    def answer(error: ApiError) -> ErrorHandler:
        async def handler(request: Request, exc: Any) -> Response:
            return error.response()

        return handler

    async def api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    async def bad_request(request: Request, exc: ValidationError) -> Response:
        message, param = openai_api.validation_error(exc)
        return ApiError(400, message, param=param, code="BadRequest").response()

    async def prompt_too_long(request: Request, exc: PromptTooLongError) -> Response:
        return ApiError(400, str(exc), param="messages", code="context_length_exceeded").response()

    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=499)

    async def internal(request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware re-raises after this answer: uvicorn logs the traceback.
        return ApiError(
            500, "generation failed; see the endpoint log", type_="server_error", code="InternalServerError"
        ).response()

    return {
        ApiError: api_error,
        ValidationError: bad_request,
        PromptTooLongError: prompt_too_long,
        BodyTooLarge: answer(ApiError(400, f"the body is larger than {MAX_BODY_BYTES} bytes", code="BadRequest")),
        BodyTooSlow: answer(
            ApiError(408, f"the body did not arrive within {body_timeout_s:g} s", code="RequestTimeout")
        ),
        TimeoutError: answer(
            ApiError(408, f"no answer within request_timeout_ms={request_timeout_ms}", code="RequestTimeout")
        ),
        ClientDisconnect: client_gone,
        Exception: internal,
    }
