"""Ballots from other channels, in bulk: `POST /v1/budget-cycles/{year}/ballot-batches`.

Seoul's votes come online, through mVoting, on-site e-voting and paper. A channel (its service
account: a caseworker token whose `dept` is `channel:<name>`) or an admin submits a batch; the
ballots go into the same box as the online ones (models/ballot_batches.py), one ballot per
person per cycle and kind across every channel.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import CurrentPrincipal, Principal
from api.budget import Year, _phase_of, load_cycle
from api.context import AppContext, Ctx
from api.errors import Problem
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import pinned_rules
from models.ballot_batches import (
    CHANNELS,
    CSV_FORMAT,
    JSON_FORMAT,
    JSON_LINES_FORMAT,
    BallotBatch,
    BatchUnreadable,
    BoxNotOpen,
    ReadBatch,
    content_digest,
    read_csv,
    read_json,
    read_json_lines,
    refused_json,
    take_batch,
)
from models.ballot_box import BoxTally, budget_box_id, count_box_by_channel
from models.budget import VOTE_PHASE
from models.budget_tables import BudgetCycle
from models.case import Role
from models.tables import BallotBox

router = APIRouter(prefix="/v1/budget-cycles", tags=["budget cycles"])

#: A channel's service account: a caseworker token with `dept: "channel:<name>"`.
CHANNEL_DEPT_PREFIX = "channel:"
#: Media types a batch may be sent as, and the reader of each.
MEDIA_TYPES = {
    "application/json": JSON_FORMAT,
    "text/csv": CSV_FORMAT,
    "application/csv": CSV_FORMAT,
    "application/x-ndjson": JSON_LINES_FORMAT,
    "application/jsonl": JSON_LINES_FORMAT,
    "application/jsonlines": JSON_LINES_FORMAT,
    "application/json-lines": JSON_LINES_FORMAT,
}

Channel = Literal["mvoting", "onsite", "paper"]


class RefusedLine(BaseModel):
    line: int
    reason: str


class BallotBatchOut(BaseModel):
    batch_id: str
    year: int
    kind: str
    channel: str
    format: str
    content_digest: str
    received: int
    accepted: int
    refused: list[RefusedLine]


class ChannelTotals(BaseModel):
    batches: int
    received: int
    accepted: int
    refused: int


class ChannelRecount(BaseModel):
    """A closed box's ballots of one channel, counted again from Postgres."""

    approvals: dict[str, dict[str, int]]
    ballots: dict[str, int]
    digest: str


class KindBatches(BaseModel):
    batches: list[BallotBatchOut]
    totals: dict[str, ChannelTotals]
    #: After the close only (no count is shown while a vote runs): per channel, `online`
    #: included; the channels' counts add up to the box's.
    recount: dict[str, ChannelRecount] | None


class BallotBatchesOut(BaseModel):
    year: int
    kinds: dict[str, KindBatches]


def _channel_of(principal: Principal) -> str | None:
    """The channel a service account submits for (None for an admin, who may submit any)."""
    if principal.role is Role.ADMIN:
        return None
    dept = principal.dept or ""
    if principal.role is Role.CASEWORKER and dept.startswith(CHANNEL_DEPT_PREFIX):
        return dept.removeprefix(CHANNEL_DEPT_PREFIX)
    raise Problem(403, "ballot batches are submitted by an admin or a channel's service account")


def _one_of(name: str, given: list[object], allowed: tuple[str, ...]) -> str:
    """The value given for `name` (in the query, the JSON body or both, which must agree)."""
    values = {v for v in given if v is not None}
    if not values:
        raise Problem(422, f"{name} is required: one of {', '.join(allowed)}", field=name)
    if len(values) > 1:
        raise Problem(422, f"{name} is given twice, differently", field=name)
    value = values.pop()
    if value not in allowed:
        raise Problem(422, f"{name} must be one of {', '.join(allowed)}", field=name)
    return str(value)


def _ballot_kinds(ctx: AppContext, cycle: BudgetCycle) -> tuple[str, ...]:
    """The cycle's types that vote: those whose calendar has a `vote` phase."""
    calendar = pinned_rules(ctx, cycle.rulebook, default=cycle.rulebook, sections=()).rulebook
    return tuple(kind for kind, phases in (calendar.calendar or {}).items() if VOTE_PHASE in phases)


def _read(media_type: str, content: bytes) -> tuple[str, ReadBatch, dict[str, Any]]:
    format_ = MEDIA_TYPES.get(media_type)
    if format_ is None:
        raise Problem(
            415,
            f"a batch is sent as one of: {', '.join(MEDIA_TYPES)} (got {media_type or 'none'})",
            field="Content-Type",
        )
    try:
        if format_ == JSON_FORMAT:
            read, members = read_json(content)
            return format_, read, members
        reader = read_csv if format_ == CSV_FORMAT else read_json_lines
        return format_, reader(content), {}
    except BatchUnreadable as unreadable:
        raise Problem(422, unreadable.reason, field=unreadable.field) from unreadable


def _out(row: BallotBatch, year: int, kind: str) -> BallotBatchOut:
    return BallotBatchOut(
        batch_id=row.id,
        year=year,
        kind=kind,
        channel=row.channel,
        format=row.format,
        content_digest=row.content_digest,
        received=row.received,
        accepted=row.accepted,
        refused=[RefusedLine(**refusal) for refusal in row.refused],
    )


@router.post(
    "/{year}/ballot-batches",
    status_code=201,
    response_model=BallotBatchOut,
    description=(
        "A channel's ballots in bulk (mVoting, on-site e-voting, paper), taken in one "
        "transaction while the kind's vote is open (409 naming the phase otherwise). "
        "Sent as JSON `{channel, kind, ballots: [{person_id, group, project_ids}]}`, as JSON "
        "lines (`application/x-ndjson`, one ballot object per line) or as CSV (`text/csv`, a "
        "header naming `person_id`, `project_ids` and optionally `group`; project ids "
        "separated by `;`, `|` or spaces); for JSON lines and CSV, `channel` and `kind` are "
        "query parameters (also accepted with JSON, where they must agree with the body). "
        "`person_id` is the same identifier the online ballots use (the token's `sub`); "
        "`group` is `general` (the default) or `budget_school`. One ballot per person per "
        "cycle and kind across every channel: a person who voted already, online or through "
        "any channel, or twice in the batch, is refused by line, never counted twice; so is "
        "a ballot naming a project not on the ballot or in no known group. A batch that "
        "cannot be read at all (not JSON, no CSV header) is 422 and takes nothing. "
        "Submitted by an admin, or by a channel's service account (a caseworker token with "
        '`dept: "channel:<name>"`) for its own channel only (403 otherwise). The '
        "participations and the choices are stored apart, as online. With an "
        "`Idempotency-Key`, the same batch sent again returns the first result."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def submit_ballot_batch(
    year: Year,
    request: Request,
    ctx: Ctx,
    principal: CurrentPrincipal,
    channel: Annotated[Channel | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    own_channel = _channel_of(principal)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    content = await request.body()
    format_, read, members = _read(media_type, content)
    channel_ = _one_of("channel", [channel, members.get("channel")], CHANNELS)
    if own_channel is not None and channel_ != own_channel:
        raise Problem(403, f"this account submits ballots of the {own_channel} channel only")
    async with ctx.sessions() as session:
        cycle = await load_cycle(session, year)
    kind_ = _one_of("kind", [kind, members.get("kind")], _ballot_kinds(ctx, cycle))
    digest = content_digest(content)

    async def take(unit: AppContext) -> BallotBatchOut:
        box_id = budget_box_id(year, kind_)
        async with unit.sessions() as session, session.begin():
            try:
                accepted, refused = await take_batch(session, box_id, channel_, read)
            except BoxNotOpen as closed:
                raise Problem(
                    409, f"the {kind_} vote is not open: the phase is {_phase_of(cycle, kind_)}"
                ) from closed
            row = BallotBatch(
                id=f"batch-{uuid.uuid4()}",
                box_id=box_id,
                channel=channel_,
                submitted_by=principal.sub,
                submitted_at=await unit.clock.now(),
                format=format_,
                content_digest=digest,
                received=read.received,
                accepted=accepted,
                refused=refused_json(refused),
            )
            session.add(row)
        return _out(row, year, kind_)

    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST ballot-batches {year} {kind_} {channel_}",
        {"content_digest": digest, "format": format_},
        take,
    )


@router.get(
    "/{year}/ballot-batches",
    response_model=BallotBatchesOut,
    description=(
        "Per kind of the cycle's ballots (or the one `kind` named): the batches each channel "
        "submitted, with their totals per channel, and after the vote's close the box "
        "recounted per channel from Postgres (`online` included), each channel with the "
        "digest of its rows; no count before the close. Admins and auditors see every "
        "channel, a channel's service account its own."
    ),
)
async def list_ballot_batches(
    year: Year,
    ctx: Ctx,
    principal: CurrentPrincipal,
    kind: Annotated[str | None, Query(max_length=40)] = None,
) -> BallotBatchesOut:
    own_channel = None if principal.role is Role.AUDITOR else _channel_of(principal)
    async with ctx.sessions() as session:
        cycle = await load_cycle(session, year)
        kinds = _ballot_kinds(ctx, cycle)
        if kind is not None:
            kinds = (_one_of("kind", [kind], kinds),)
        return BallotBatchesOut(
            year=year,
            kinds={k: await _kind_batches(session, year, k, own_channel) for k in kinds},
        )


async def _kind_batches(
    session: AsyncSession, year: int, kind: str, own_channel: str | None
) -> KindBatches:
    box_id = budget_box_id(year, kind)
    query = select(BallotBatch).where(col(BallotBatch.box_id) == box_id)
    if own_channel is not None:
        query = query.where(col(BallotBatch.channel) == own_channel)
    rows = list((await session.execute(query.order_by(col(BallotBatch.submitted_at)))).scalars())
    recount = None
    closed_at = await session.scalar(
        select(col(BallotBox.closed_at)).where(col(BallotBox.id) == box_id)
    )
    if closed_at is not None:
        tallies = await count_box_by_channel(session, box_id)
        recount = {
            name: _recount(tally)
            for name, tally in tallies.items()
            if own_channel is None or name == own_channel
        }
    totals: dict[str, ChannelTotals] = {}
    for row in rows:
        total = totals.setdefault(
            row.channel, ChannelTotals(batches=0, received=0, accepted=0, refused=0)
        )
        total.batches += 1
        total.received += row.received
        total.accepted += row.accepted
        total.refused += len(row.refused)
    return KindBatches(
        batches=[_out(row, year, kind) for row in rows], totals=totals, recount=recount
    )


def _recount(tally: BoxTally) -> ChannelRecount:
    return ChannelRecount(approvals=tally.approvals, ballots=tally.ballots, digest=tally.digest)
