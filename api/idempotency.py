"""`Idempotency-Key` for creating POSTs: the same key and body return the first result.

The record is claimed, the work done and the record completed in one transaction
(`AppContext.unit`): a request killed at any point either left its object and its record, so a
retry with the same key gets the first answer, or left neither, so a retry does the work. A
second request with the same key waits on the claimed row until the first has committed (then
it gets the replay) or rolled back (then it does the work itself); two can never both create.

A secret request (a ballot) must not leave its voter beside its receipt or choice (design.md,
principle 7). Its record keeps neither the key nor anything readable: the key is stored as a
digest, the request as a keyed hash, and the response sealed with AES-GCM under a key derived
from the server's secret and the client's Idempotency-Key, which is never stored. Only the
client holding the key can have its first response replayed; someone holding the database
(or a backup) and even the server's secret cannot read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from api.auth import Principal
from api.context import AppContext
from api.errors import Problem
from models.tables import IdempotencyRecord

#: The `Idempotency-Key` header of a creating POST or a decision.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
#: The status of a claimed record until its request commits (never seen by another request).
CLAIMED = 0
MAX_KEY_LENGTH = 200


def _canonical(body: Any) -> bytes:
    return json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":")).encode()


def _request_hash(scope: str, body: Any) -> str:
    return hashlib.sha256(scope.encode() + b"\n" + _canonical(body)).hexdigest()


class _Seal:
    """What a secret request's record holds instead of its key, request and response."""

    def __init__(self, server_secret: str, principal: str, scope: str, key: str) -> None:
        pepper = hmac.digest(server_secret.encode(), b"minju idempotency seal v1", "sha256")
        self._key = hmac.digest(pepper, f"{principal}\n{scope}\n{key}".encode(), "sha256")
        self.stored_key = (
            "sealed:" + hashlib.sha256(b"minju idempotency key\n" + self._key).hexdigest()
        )

    def request_hash(self, body: Any) -> str:
        return hmac.new(self._key, _canonical(body), "sha256").hexdigest()

    def seal(self, response: Any) -> dict[str, Any]:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._key).encrypt(nonce, _canonical(response), None)
        return {"sealed": base64.b64encode(nonce + sealed).decode()}

    def open(self, record: dict[str, Any]) -> Any:
        raw = base64.b64decode(record["sealed"])
        return json.loads(AESGCM(self._key).decrypt(raw[:12], raw[12:], None))


async def run_once(
    ctx: AppContext,
    principal: Principal,
    key: str | None,
    scope: str,
    body: Any,
    produce: Callable[[AppContext], Awaitable[BaseModel]],
    *,
    status_code: int = 201,
    secret: bool = False,
) -> JSONResponse:
    """Run `produce` once per (caller, key), inside the transaction of the key's record: it is
    given the context to write with. `secret=True` for a request whose body or result must not
    be readable beside the caller's id (see the module's docstring)."""
    if key is None:
        result = await produce(ctx)
        return JSONResponse(jsonable_encoder(result), status_code=status_code)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Problem(400, "Idempotency-Key must be 1-200 characters", field="Idempotency-Key")
    seal = _Seal(ctx.settings.jwt_secret, principal.sub, scope, key) if secret else None
    if seal is not None:
        key = seal.stored_key
        request_hash = seal.request_hash(body)
    else:
        request_hash = _request_hash(scope, body)
    where = (col(IdempotencyRecord.principal) == principal.sub, col(IdempotencyRecord.key) == key)
    now = await ctx.clock.now()
    async with ctx.unit() as (unit, connection):
        claimed = await connection.execute(
            insert(IdempotencyRecord)
            .values(
                principal=principal.sub,
                key=key,
                scope=scope,
                request_hash=request_hash,
                status_code=CLAIMED,
                response={},
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(IdempotencyRecord.key))
        )
        if claimed.first() is None:
            # the first request with this key has committed (the insert waited for it)
            stored_columns = (
                col(IdempotencyRecord.request_hash),
                col(IdempotencyRecord.status_code),
                col(IdempotencyRecord.response),
            )
            record = (await connection.execute(select(*stored_columns).where(*where))).one()
        else:
            encoded = jsonable_encoder(await produce(unit))
            stored = seal.seal(encoded) if seal is not None else encoded
            await connection.execute(
                update(IdempotencyRecord)
                .where(*where)
                .values(status_code=status_code, response=stored)
            )
            return JSONResponse(encoded, status_code=status_code)
    if record.request_hash != request_hash:
        raise Problem(
            422, "this Idempotency-Key was used for a different request", field="Idempotency-Key"
        )
    replay = seal.open(record.response) if seal is not None else record.response
    return JSONResponse(replay, status_code=record.status_code)
