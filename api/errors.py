"""Errors as RFC 9457 problem+json: bad input never becomes a 500, a backend that is down is a
503 with Retry-After, and even an unexpected error answers without dropping the connection."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from models.ballot_box import BallotRefused
from models.text import unwritable_reason

log = logging.getLogger("minju.api")

PROBLEM_JSON = "application/problem+json"
#: Seconds a client should wait before retrying when a backend is down or busy.
RETRY_AFTER_SECONDS = 5


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"https://minju.example/problems/{phrase.lower().replace(' ', '-')}",
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(jsonable_encoder(extra))
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def not_found(what: str = "resource") -> Problem:
    return Problem(404, f"no such {what}")


def ballot_problem(refused: BallotRefused) -> Problem:
    """A refused ballot: 404 for no such box, 422 naming what it does not take, else 409."""
    if refused.not_found:
        return Problem(404, refused.reason)
    if refused.field is not None:
        return Problem(422, refused.reason, field=refused.field)
    return Problem(409, refused.reason)


def unavailable(detail: str, **extra: Any) -> Problem:
    """503 with Retry-After: a backend is down or busy; the request changed nothing."""
    return Problem(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, **extra)


_TEMPORAL_DOWN = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
}


def backend_down(exc: BaseException) -> str | None:
    """Which backend `exc` says is unreachable ("database", "Temporal"), or None."""
    for cause in _causes(exc):
        if isinstance(cause, RPCError) and cause.status in _TEMPORAL_DOWN:
            return "Temporal"
        if isinstance(cause, WorkflowUpdateRPCTimeoutOrCancelledError):
            return "Temporal"
        if isinstance(cause, RuntimeError) and "client connect" in str(cause).lower():
            return "Temporal"
        if isinstance(
            cause,
            sqlalchemy.exc.OperationalError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.TimeoutError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | ConnectionError
            | OSError,
        ):
            return "database"
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return "database"
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def reject_unwritable_parameters(request: Request) -> None:
    """Path segments, query parameters and the idempotency key: one check for every route."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            reason = unwritable_reason(str(value), single_line=True)
            if reason is not None:
                raise Problem(422, f"{name} {reason}", field=f"{where}.{name}")
    key = request.headers.get("idempotency-key")
    if key is not None:
        reason = unwritable_reason(key, single_line=True)
        if reason is not None:
            raise Problem(422, f"Idempotency-Key {reason}", field="Idempotency-Key")


class UnexpectedErrors:
    """Turn any exception that escapes the routes into problem+json (503 for a backend that is
    down, else 500, logged) without re-raising, so the server keeps the connection open."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if started:
                raise
            response = _response_for(exc, scope)
            await response(scope, receive, send)


def _response_for(exc: Exception, scope: Scope) -> JSONResponse:
    down = backend_down(exc)
    where = f"{scope.get('method')} {scope.get('path')}"
    if down is not None:
        log.warning("%s: %s unavailable: %s: %s", where, down, type(exc).__name__, exc)
        return problem_response(
            503,
            f"{down} is unavailable; nothing was changed, retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.error("unhandled error on %s", where, exc_info=exc)
    return problem_response(500, "internal error; it has been logged")


def install(app: FastAPI) -> None:
    app.add_middleware(UnexpectedErrors)

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, field=exc.field, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem_response(
            422, f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, str(exc.detail), headers=headers)
