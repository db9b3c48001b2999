"""Development and simulation endpoints: only mounted when dev endpoints are enabled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import AwareDatetime, Field, field_validator

from api.auth import TEXT_CLAIMS, claim_problem, issue_token
from api.context import Ctx
from api.errors import Problem
from api.schemas import ClockAdvance, ClockResponse, TokenRequest, TokenResponse
from minju.clock import ClockError, ClockStalled, ClockUnavailable
from models.calendar import in_seoul

router = APIRouter(prefix="/v1", tags=["development"])

#: Seconds a client should wait before repeating an advance that stopped short.
ADVANCE_RETRY_AFTER_SECONDS = 5
#: The furthest one advance may go (the same bound as `days`).
MAX_ADVANCE = timedelta(days=3660)

ADVANCE_DESCRIPTION = f"""\
Move the simulated clock forward, firing every timer due on the way (simulated mode only;
409 in real mode). Give either a relative step, `{{"days": 1.5, "hours": 2, "seconds": 30}}`
(any of the three; the step starts from the clock's current time), or an absolute target,
`{{"to": "2027-03-01T00:00:00+09:00"}}` (ISO 8601 with a UTC offset), not both.

**An absolute target is safe to repeat**: advancing to a time already passed moves nothing
and answers 200 with the current `now`. Use it when a request may be retried (timeouts,
reconnects), since repeating a relative step moves the clock again.

Advances are serialized: one runs at a time, the next starts where it ended. An advance that
cannot reach its target within its time budget (the worker is busy with what the jump set off,
or Temporal cannot be reached) answers **503** with a `Retry-After` header and a problem body
holding `now` (where the clock is) and `target` (where it is going); nothing is rolled back,
and the clock keeps moving towards `target` on the server. To continue, repeat the request
with `{{"to": <target>}}` after `Retry-After` seconds (about {ADVANCE_RETRY_AFTER_SECONDS}):
it waits for the advance under way rather than starting a second one, and answers 200 once
the clock is at `target`. It never answers 500 for a clock that is slow to move.
"""


class ClockAdvanceRequest(ClockAdvance):
    """`{days?, hours?, seconds?}` (api.md), or `{to}`: an absolute target, safe to repeat."""

    # not strict like the rest of the body: JSON has no datetime type, the ISO string is parsed
    to: AwareDatetime | None = Field(
        default=None,
        strict=False,
        description=(
            "Absolute target time (ISO 8601 with offset). Repeating an advance to the same "
            "target moves nothing once it is reached. Not together with days/hours/seconds."
        ),
        examples=["2027-03-01T00:00:00+09:00"],
    )

    @field_validator("to", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("to must be an ISO 8601 string with an offset")
        return value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else in_seoul(moment).isoformat()


def _stalled(exc: ClockUnavailable) -> Problem:
    now = _iso(exc.now)
    target = _iso(exc.target) if isinstance(exc, ClockStalled) else None
    extra: dict[str, Any] = {"now": now, "target": target}
    if target is None:
        detail = f"the clock did not move: {exc}. Retry after {ADVANCE_RETRY_AFTER_SECONDS} s"
    else:
        where = f"at {now}" if now is not None else "at a time that could not be read"
        detail = (
            f"the clock stopped {where} on its way to {target}: {exc}. Nothing was rolled back. "
            f'To continue, repeat with {{"to": "{target}"}} after '
            f"{ADVANCE_RETRY_AFTER_SECONDS} s; it moves nothing once the target is reached"
        )
        extra["retry_with"] = {"to": target}
    return Problem(503, detail, headers={"Retry-After": str(ADVANCE_RETRY_AFTER_SECONDS)}, **extra)


@router.post("/dev/tokens", response_model=TokenResponse)
async def dev_token(body: TokenRequest, ctx: Ctx) -> TokenResponse:
    if body.role == "caseworker" and not body.dept:
        raise Problem(422, "a caseworker token needs dept", field="dept")
    claims = body.model_dump(exclude_none=True)
    # The same checks as for a token received (api/auth.py): never issue one that is refused.
    for name in TEXT_CLAIMS:
        if name in claims and (reason := claim_problem(name, claims[name])) is not None:
            raise Problem(422, f"{name}: {reason}", field=name)
    settings = ctx.settings
    token = issue_token(
        settings.jwt_secret, claims, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return TokenResponse(token=token)


@router.post(
    "/dev/clock/advance",
    response_model=ClockResponse,
    description=ADVANCE_DESCRIPTION,
    responses={
        503: {
            "description": (
                "The clock stopped short of its target within the time budget, or Temporal "
                "is unreachable: the body has `now` and `target`; repeat with "
                '`{"to": target}` after Retry-After seconds to continue.'
            ),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before repeating the advance.",
                    "schema": {"type": "integer"},
                }
            },
        }
    },
)
async def advance_clock(body: ClockAdvanceRequest, ctx: Ctx) -> ClockResponse:
    delta = timedelta(days=body.days, hours=body.hours, seconds=body.seconds)
    if body.to is not None and delta > timedelta(0):
        raise Problem(422, "give either to or days/hours/seconds, not both", field="to")
    if body.to is None and delta <= timedelta(0):
        raise Problem(422, "give a positive days, hours or seconds, or to", field="days")
    try:
        if body.to is not None:
            if body.to - await ctx.clock.now() > MAX_ADVANCE:
                raise Problem(422, "to is more than 3,660 days ahead of the clock", field="to")
            now = await ctx.clock.advance_to(body.to)
        else:
            now = await ctx.clock.advance(delta)
    except ClockUnavailable as exc:
        raise _stalled(exc) from exc
    except ClockError as exc:
        raise Problem(409, str(exc)) from exc
    return ClockResponse(now=now, mode=ctx.clock.mode.value)
