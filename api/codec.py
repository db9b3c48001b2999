"""The codec server: Temporal's remote codec protocol, for the Temporal UI and CLI to show what
encrypted histories carry (minju.codec) to authorised staff.

`POST /v1/codec/decode` and `/v1/codec/encode` take and give `{"payloads": [...]}`, each
payload as protobuf JSON (`metadata` values and `data` in base64). The UI is pointed at
`<api>/v1/codec` and calls them from the browser: a preflight, then the POST with
`Content-Type`, `X-Namespace` (accepted; one deployment's keys serve its one namespace) and the
user's bearer token. CORS answers only the origins in MINJU_CODEC_CORS_ORIGINS, on these two
routes only, errors included (a page cannot read a response without them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import CurrentPrincipal, require_role
from api.context import Ctx
from api.errors import Problem
from minju.codec import EncryptionCodec, PayloadCodecError
from minju.config import PayloadKey, Settings
from models.case import Role

#: What a preflight allows: the UI's and the CLI's headers.
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
#: Seconds a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE = 600


def _cors_headers(request: Request) -> dict[str, str]:
    """CORS response headers for the request's Origin: allowed only if configured."""
    settings: Settings = request.app.state.ctx.settings
    origin = request.headers.get("origin")
    if origin is None or origin not in settings.codec_cors_origins:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


class _CorsRoute(APIRoute):
    """A route whose every answer carries the CORS headers, problems (401, 403, 400) too."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            headers = _cors_headers(request)
            try:
                response = await handler(request)
            except Problem as exc:
                exc.headers = {**(exc.headers or {}), **headers}
                raise
            response.headers.update(headers)
            return response

        return with_cors


router = APIRouter(prefix="/v1/codec", tags=["auditors"], route_class=_CorsRoute)


class JsonPayload(BaseModel):
    """A Temporal `Payload` as protobuf JSON."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, str] = Field(
        default_factory=dict, description="Metadata values, each base64 (e.g. `encoding`)."
    )
    data: str = Field("", description="The payload's bytes, base64.")


class CodecPayloads(BaseModel):
    """The codec protocol's body, request and response alike."""

    payloads: list[JsonPayload]


@functools.cache
def _codec(keys: tuple[PayloadKey, ...]) -> EncryptionCodec:
    return EncryptionCodec(keys)


def _parse(body: CodecPayloads) -> list[Payload]:
    try:
        message = json_format.ParseDict(
            {"payloads": [p.model_dump() for p in body.payloads]}, Payloads()
        )
    except json_format.ParseError as exc:
        raise Problem(400, f"not Temporal payloads in protobuf JSON: {exc}") from None
    return list(message.payloads)


def _render(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads(
        payloads=[JsonPayload.model_validate(json_format.MessageToDict(p)) for p in payloads]
    )


_DESCRIPTION = (
    ' The body is Temporal\'s codec server protocol: `{"payloads": [...]}`, each payload as '
    "protobuf JSON (its `metadata` values and its `data` in base64). For the Temporal UI (its "
    "codec endpoint is `<this API>/v1/codec`, passing the user's access token) and the CLI "
    "(`--codec-endpoint`, `--codec-auth 'Bearer <token>'`); browsers may call it from the "
    "origins in MINJU_CODEC_CORS_ORIGINS. An `X-Namespace` header is accepted. For auditors "
    "and admins."
)


@router.post(
    "/decode",
    response_model=CodecPayloads,
    summary="Decrypt Temporal payloads",
    description=(
        "Decrypt payloads encrypted with MINJU_PAYLOAD_KEYS (any of its keys); payloads not "
        "encrypted come back unchanged. 400 for a payload encrypted with a key id the "
        "deployment does not hold (the detail names it), or one that does not decrypt."
        + _DESCRIPTION
    ),
)
async def decode(body: CodecPayloads, ctx: Ctx, principal: CurrentPrincipal) -> CodecPayloads:
    require_role(principal, Role.AUDITOR, Role.ADMIN)
    payloads = _parse(body)
    try:
        decoded = await _codec(ctx.settings.payload_keys).decode(payloads)
    except PayloadCodecError as exc:
        raise Problem(400, str(exc)) from None
    return _render(decoded)


@router.post(
    "/encode",
    response_model=CodecPayloads,
    summary="Encrypt Temporal payloads",
    description=(
        "Encrypt payloads as the deployment's workers and API do (with the first key of "
        "MINJU_PAYLOAD_KEYS); unchanged when encryption is off. The UI uses it for input it "
        "sends (a signal's arguments)." + _DESCRIPTION
    ),
)
async def encode(body: CodecPayloads, ctx: Ctx, principal: CurrentPrincipal) -> CodecPayloads:
    require_role(principal, Role.AUDITOR, Role.ADMIN)
    payloads = _parse(body)
    keys = ctx.settings.payload_keys
    return _render(await _codec(keys).encode(payloads) if keys else payloads)


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """A browser's CORS preflight: allowed for the configured origins (the route class adds
    Access-Control-Allow-Origin), refused with 400 for any other (as Starlette's CORS
    middleware does: a matter of the page's origin, not of the caller's role)."""
    origin = request.headers.get("origin")
    settings: Settings = request.app.state.ctx.settings
    if origin is None:
        raise Problem(400, "not a CORS preflight: no Origin header")
    if origin not in settings.codec_cors_origins:
        raise Problem(400, f"origin {origin!r} may not call the codec (MINJU_CODEC_CORS_ORIGINS)")
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        },
    )
