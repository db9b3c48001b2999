""" "Seoul asks" (process.md §2): a department asks citizens, who give a position and an
opinion; the department publishes its review of the results. Anyone reads; eligible citizens
take part; the operations team moderates; the asking department reviews."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from api import opinion_service
from api.auth import CurrentPrincipal, Principal, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import decide_case, pinned_rules, update_id
from api.schemas import (
    AskCreate,
    AskOut,
    AskReviewRequest,
    Page,
)
from models.case import Role
from models.deliberation import AskReview, AskStart, ForumKind
from models.deliberation_tables import Ask, OpinionBox
from models.ids import ask_workflow_id
from rulebooks import DEFAULT_DELIBERATION_RULEBOOK
from workflows.ask import AskWorkflow

router = APIRouter(prefix="/v1/asks", tags=["asks"])

ASK_SECTIONS = ("ask", "escalation")


def ask_out(row: Ask) -> AskOut:
    return AskOut.model_validate(opinion_service.with_tally_names(row))


async def load_ask(session: Session, ask_id: str) -> Ask:
    row = await session.get(Ask, ask_id)
    if row is None:
        raise not_found("ask")
    return row


async def reload_ask(ctx: AppContext, ask_id: str) -> AskOut:
    async with ctx.sessions() as session:
        return ask_out(await load_ask(session, ask_id))


async def _open_ask(ctx: AppContext, principal: Principal, body: AskCreate) -> AskOut:
    pinned = pinned_rules(
        ctx,
        body.rulebook,
        default=DEFAULT_DELIBERATION_RULEBOOK,
        sections=ASK_SECTIONS,
        purpose="Seoul-asks",
    )
    rules = pinned.rulebook.ask
    assert rules is not None and principal.dept is not None
    now = await ctx.clock.now()
    lead = rules.request_lead_days
    if body.opens_at - now < timedelta(days=lead):
        raise Problem(
            422,
            f"opens_at must be at least {lead} days after the request "
            f"(ask.request_lead_days = {lead} in rulebook {pinned.name})",
            field="opens_at",
        )
    period = rules.opinion_days
    if body.closes_at - body.opens_at < timedelta(days=period):
        raise Problem(
            422,
            f"the opinion period must last at least {period} days, so closes_at must be at "
            f"least {period} days after opens_at (ask.opinion_days = {period} "
            f"in rulebook {pinned.name})",
            field="closes_at",
        )
    ask_id = str(uuid.uuid4())
    row = Ask(
        id=ask_id,
        workflow_id=ask_workflow_id(ask_id),
        department=principal.dept,
        created_by=principal.sub,
        title=body.title,
        body=body.body,
        rulebook=pinned.name,
        rulebook_hash=pinned.content_hash,
        created_at=now,
        opens_at=body.opens_at,
        closes_at=body.closes_at,
    )
    # The row, its (not yet open) opinion box and the workflow appear together: the workflow
    # is started inside the transaction, and its first projection waits for the commit.
    async with ctx.sessions() as session, session.begin():
        session.add(row)
        session.add(OpinionBox(case_id=ask_id, opened_at=None))
        await session.flush()
        await ctx.temporal.start_workflow(
            AskWorkflow.run,
            AskStart(
                ask_id=ask_id,
                department=principal.dept,
                rules=pinned,
                opens_at=body.opens_at,
                closes_at=body.closes_at,
            ),
            id=row.workflow_id,
            task_queue=ctx.settings.task_queue,
        )
    return await reload_ask(ctx, ask_id)


@router.post("", status_code=201, response_model=AskOut)
async def create_ask(
    body: AskCreate, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    require_role(principal, Role.CASEWORKER)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        "POST /v1/asks",
        body,
        lambda unit: _open_ask(unit, principal, body),
    )


@router.get("", response_model=Page[AskOut])
async def list_asks(
    session: Session,
    status: Annotated[str | None, Query(pattern="^(scheduled|open|dept_review|published)$")] = None,
    department: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
) -> Page[AskOut]:
    query = select(Ask)
    if status is not None:
        query = query.where(col(Ask.status) == status)
    if department is not None:
        query = query.where(col(Ask.department) == department)
    return await opinion_service.offset_page(
        session,
        query.order_by(col(Ask.created_at).desc(), col(Ask.id)),
        limit=limit,
        offset=int(cursor or 0),
        to_out=ask_out,
    )


@router.get("/{ask_id}", response_model=AskOut)
async def get_ask(ask_id: str, session: Session) -> AskOut:
    return ask_out(await load_ask(session, ask_id))


@router.post("/{ask_id}/review", response_model=AskOut)
async def review_ask(
    ask_id: str,
    body: AskReviewRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> AskOut:
    """The asking department publishes its review; other departments do not see the case."""
    require_role(principal, Role.CASEWORKER)
    async with ctx.sessions() as session:
        row = await load_ask(session, ask_id)
    if row.department != principal.dept:
        raise not_found("ask")
    return await decide_case(
        ctx,
        row.workflow_id,
        AskWorkflow.review,
        AskReview(actor=principal.actor(), summary=body.summary, actions=body.actions),
        request_id=update_id("ask_review", principal, idempotency_key),
        reload_case=lambda: reload_ask(ctx, ask_id),
        what="ask",
    )


# An ask is a for/against question: a position is required, an opinion optional.
opinion_service.add_case_routes(router, load_ask, kind_of=lambda _ask: ForumKind.FOR_AGAINST.value)
