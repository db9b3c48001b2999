"""Development and simulation endpoints: only mounted when dev endpoints are enabled."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from api.auth import issue_token
from api.context import Ctx
from api.errors import Problem
from api.schemas import ClockAdvance, ClockResponse, TokenRequest, TokenResponse
from minju.clock import ClockError

router = APIRouter(prefix="/v1", tags=["development"])


@router.post("/dev/tokens", response_model=TokenResponse)
async def dev_token(body: TokenRequest, ctx: Ctx) -> TokenResponse:
    if body.role == "caseworker" and not body.dept:
        raise Problem(422, "a caseworker token needs dept", field="dept")
    claims = body.model_dump(exclude_none=True)
    return TokenResponse(token=issue_token(ctx.settings.jwt_secret, claims))


@router.post("/dev/clock/advance", response_model=ClockResponse)
async def advance_clock(body: ClockAdvance, ctx: Ctx) -> ClockResponse:
    delta = timedelta(days=body.days, hours=body.hours, seconds=body.seconds)
    if delta <= timedelta(0):
        raise Problem(422, "give a positive days, hours or seconds", field="days")
    try:
        now = await ctx.clock.advance(delta)
    except ClockError as exc:
        raise Problem(409, str(exc)) from exc
    return ClockResponse(now=now, mode=ctx.clock.mode.value)
