"""Errors as RFC 9457 problem+json; bad input never becomes a 500."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("minju.api")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.extra = extra


def problem_response(
    status: int, detail: str, *, field: str | None = None, **extra: Any
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
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def not_found(what: str = "resource") -> Problem:
    return Problem(404, f"no such {what}")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, field=exc.field, **exc.extra)

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
        return problem_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; it has been logged")
