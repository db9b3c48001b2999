"""The OpenAPI document and its docs pages (Swagger UI, ReDoc), served without a network.

`install(app)` does two things:

- it replaces `app.openapi` with a generator that completes FastAPI's document: every operation
  lists the error statuses it can answer with, as `application/problem+json` bodies of one
  shared `Problem` schema (the handlers in api/errors.py produce nothing else), and operations
  that take a bearer token say so through an HTTP bearer security scheme, so /docs can
  authorize. The result is computed once and cached on `app.openapi_schema`;
- it serves /docs, /docs/oauth2-redirect and /redoc with Swagger UI's and ReDoc's JavaScript,
  CSS and favicon from the installed `fastapi-offline` package, under /static/docs, instead of a
  CDN: the pages work on a machine without internet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from api.auth import current_principal
from api.errors import PROBLEM_JSON

#: The security scheme's name in `components.securitySchemes`.
BEARER = "bearerAuth"
#: Where the docs pages' JavaScript, CSS and favicon are served from.
STATIC_DOCS_URL = "/static/docs"
#: The files under STATIC_DOCS_URL: Swagger UI's and ReDoc's bundles, as the package ships them.
STATIC_DOCS_DIR = Path(fastapi_offline.__file__).parent / "static"

_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_WRITE_METHODS = {"post", "put", "patch", "delete"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": (
        "An RFC 9457 problem detail: every error this API returns has this shape, with the "
        "content type application/problem+json."
    ),
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string", "description": "The HTTP status phrase."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person to read."},
        "field": {
            "type": "string",
            "description": "The input the problem is about (body field, query.x, path.x, header).",
        },
        "errors": {
            "type": "array",
            "description": "Every validation error, when there are several.",
            "items": {"$ref": "#/components/schemas/ProblemFieldError"},
        },
    },
    "additionalProperties": True,
}

PROBLEM_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ProblemFieldError",
    "type": "object",
    "required": ["field", "message"],
    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    "additionalProperties": True,
}

BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": (
        "A JWT signed with the deployment's key: from the city's identity provider, or in dev "
        "and simulated mode from POST /v1/dev/tokens."
    ),
}

RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}

#: What each status means, as the response's description. 429 is described for when something
#: rate-limits; no route does yet, so no operation lists it.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request: malformed input outside the schema (e.g. a cursor or Idempotency-Key).",
    401: "No bearer token, or an invalid or expired one.",
    403: "The caller's role or eligibility does not allow this action.",
    404: "No such object (also for objects the caller may not see).",
    409: "Conflict with the object's current state (wrong stage, already done, in progress).",
    422: "Invalid input; `field` names the first offending input and `errors` lists all.",
    429: "Too many requests; retry after the time in Retry-After.",
    500: "Internal error; it has been logged.",
    503: "A backend (database or Temporal) is unavailable; nothing was changed. Retry later.",
}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return response


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency callable in the tree under `dependant`."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _auth(route: APIRoute) -> str | None:
    """Whether the route reads a bearer token: "required" or None."""
    return "required" if current_principal in set(_calls(route.dependant)) else None


def _operations(routes: list[Any]) -> Iterator[tuple[APIRoute, str, list[str]]]:
    """(route, path as documented, methods) for every documented route, included routers too.

    FastAPI 0.16x keeps included routers as wrappers in `app.routes`;
    `fastapi.routing.iter_route_contexts` unwraps them with their prefixes, as get_openapi does.
    """
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts: list[Any] = list(iter_contexts(routes)) if iter_contexts else routes
    for context in contexts:
        route = getattr(context, "original_route", context)
        if not isinstance(route, APIRoute) or not getattr(context, "include_in_schema", False):
            continue
        path = getattr(context, "path_format", None) or route.path_format
        methods = getattr(context, "methods", None) or route.methods or set()
        yield route, path, sorted(m.lower() for m in methods)


def _body_properties(operation: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """The top-level property names of the operation's JSON request body."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = schemas.get(ref.rsplit("/", 1)[1], {})
    return set(schema.get("properties", {}))


def _refers_to_objects(properties: set[str]) -> bool:
    """Whether a body names other objects (a pool, a draw, a proposal) that may not exist."""
    return any(p == "pool" or p.endswith(("_id", "_ids")) for p in properties)


def _error_statuses(
    operation: dict[str, Any], method: str, auth: str | None, schemas: dict[str, Any]
) -> list[int]:
    """The error statuses an operation can answer with, from what it takes and does."""
    where = {parameter.get("in") for parameter in operation.get("parameters", [])}
    has_path = "path" in where
    has_body = "requestBody" in operation
    has_input = bool(where) or has_body
    refers = has_path or _refers_to_objects(_body_properties(operation, schemas))
    statuses: list[int] = []
    if has_input:
        statuses.append(400)
    if auth is not None:
        statuses.append(401)
    if auth == "required":
        statuses.append(403)
    if refers:
        # an id in the path or in the body that names no object (or one the caller may not see)
        statuses.append(404)
    if method in _WRITE_METHODS or has_path:
        # a write in the wrong state, or a read of an object not in a state to answer it
        # (e.g. verifying a draw whose seed is not revealed)
        statuses.append(409)
    # every route checks its path and query parameters for unwritable text (api/errors.py)
    statuses.append(422)
    statuses += [500, 503]
    return statuses


def _is_default_validation_error(response: dict[str, Any]) -> bool:
    content = response.get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def complete(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Add error responses and security to FastAPI's document for `routes`, in place."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemFieldError"] = PROBLEM_FIELD_ERROR_SCHEMA
    components.setdefault("securitySchemes", {})[BEARER] = BEARER_SCHEME
    paths = schema.get("paths", {})
    for route, path, methods in _operations(routes):
        auth = _auth(route)
        for method in methods:
            operation = paths.get(path, {}).get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status in _error_statuses(operation, method, auth, schemas):
                existing = responses.get(str(status))
                if existing is None or _is_default_validation_error(existing):
                    responses[str(status)] = _problem_response(status)
                else:
                    # a route that documents its own body for this status keeps it, and may
                    # also answer with a problem (say, a backend going down mid-request)
                    content = existing.setdefault("content", {})
                    content.setdefault(
                        PROBLEM_JSON, _problem_response(status)["content"][PROBLEM_JSON]
                    )
            if auth == "required":
                operation["security"] = [{BEARER: []}]
    _drop_unused(schemas, schema)
    return schema


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _drop_unused(schemas: dict[str, Any], schema: dict[str, Any]) -> None:
    """Remove FastAPI's validation error schemas once nothing refers to them."""
    for name in _VALIDATION_SCHEMAS:
        if name not in schemas:
            continue
        others = {k: v for k, v in schemas.items() if k not in _VALIDATION_SCHEMAS}
        rest = {k: v for k, v in schema.items() if k != "components"}
        if f"#/components/schemas/{name}" not in set(_refs([rest, others])):
            del schemas[name]


def _healthz_responses(schema: dict[str, Any]) -> None:
    """/healthz answers 503 with its own Health body when a backend is degraded."""
    operation = schema.get("paths", {}).get("/healthz", {}).get("get")
    if operation is None:
        return
    operation["responses"]["503"] = {
        "description": "Degraded: the database or Temporal does not answer.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Health"}},
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}},
        },
    }


def build(app: FastAPI) -> dict[str, Any]:
    """The complete OpenAPI document for `app`'s current routes (not cached)."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        terms_of_service=app.terms_of_service,
        contact=app.contact,
        license_info=app.license_info,
        routes=app.routes,
        webhooks=app.webhooks.routes,
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
        external_docs=app.openapi_external_docs,
    )
    complete(schema, app.routes)
    _healthz_responses(schema)
    return schema


def install(app: FastAPI) -> None:
    """Document every operation's error responses and serve /docs and /redoc offline."""
    built_for: list[tuple[int, ...]] = []

    def openapi() -> dict[str, Any]:
        routes = tuple(id(route) for route in app.routes)
        if app.openapi_schema is None or built_for != [routes]:
            app.openapi_schema = build(app)
            built_for[:] = [routes]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _install_docs(app)


def _install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(STATIC_DOCS_URL, StaticFiles(directory=STATIC_DOCS_DIR), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{STATIC_DOCS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_DOCS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_DOCS_URL}/favicon.png",
            init_oauth=app.swagger_ui_init_oauth,
            # no badge from the public validator service; keep the token across reloads
            swagger_ui_parameters={
                "validatorUrl": None,
                "persistAuthorization": True,
                **(app.swagger_ui_parameters or {}),
            },
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_DOCS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_DOCS_URL}/favicon.png",
            with_google_fonts=False,
        )
