"""`Idempotency-Key` for creating POSTs: the same key and body return the first result.

A placeholder row is claimed before the work runs, so two concurrent requests with one key
cannot both create an object: the second gets 409 until the first is done, then the replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from api.auth import Principal
from api.context import AppContext
from api.errors import Problem
from models.tables import IdempotencyRecord

IN_PROGRESS = 0
MAX_KEY_LENGTH = 200


def _request_hash(scope: str, body: Any) -> str:
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\n{canonical}".encode()).hexdigest()


async def run_once(
    ctx: AppContext,
    principal: Principal,
    key: str | None,
    scope: str,
    body: Any,
    produce: Callable[[], Awaitable[BaseModel]],
    *,
    status_code: int = 201,
) -> JSONResponse:
    if key is None:
        result = await produce()
        return JSONResponse(jsonable_encoder(result), status_code=status_code)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Problem(400, "Idempotency-Key must be 1-200 characters", field="Idempotency-Key")
    request_hash = _request_hash(scope, body)
    where = (col(IdempotencyRecord.principal) == principal.sub, col(IdempotencyRecord.key) == key)
    async with ctx.sessions() as session, session.begin():
        claimed = await session.execute(
            insert(IdempotencyRecord)
            .values(
                principal=principal.sub,
                key=key,
                scope=scope,
                request_hash=request_hash,
                status_code=IN_PROGRESS,
                response={},
                created_at=await ctx.clock.now(),
            )
            .on_conflict_do_nothing()
            .returning(col(IdempotencyRecord.key))
        )
        first = claimed.first() is not None
        if not first:
            record = await session.get(IdempotencyRecord, (principal.sub, key))
    if not first:
        assert record is not None
        if record.request_hash != request_hash:
            raise Problem(
                422,
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
            )
        if record.status_code == IN_PROGRESS:
            raise Problem(409, "a request with this Idempotency-Key is still in progress")
        return JSONResponse(record.response, status_code=record.status_code)
    try:
        result = await produce()
    except BaseException:
        async with ctx.sessions() as session, session.begin():
            await session.execute(delete(IdempotencyRecord).where(*where))
        raise
    encoded = jsonable_encoder(result)
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord)
            .where(*where)
            .values(status_code=status_code, response=encoded)
        )
    return JSONResponse(encoded, status_code=status_code)
