"""Public forums (process.md §3-4): opened by the operations team or by a proposal's agenda
selection; anyone reads, eligible citizens take part, the operations team moderates."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from api import opinion_service
from api.auth import CurrentPrincipal, require_role
from api.context import AppContext, Ctx, Session
from api.errors import not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import (
    decide_case,
    pinned_rules,
    revealed_draw_size,
    update_id,
)
from api.schemas import (
    ForumCreate,
    ForumOut,
    Page,
    RecommendationRequest,
)
from models.case import Role
from models.deliberation import ForumKind, ForumOpening, ForumStart, Recommendation
from models.deliberation_tables import Forum
from models.forum_records import insert_forum
from models.ids import forum_workflow_id
from rulebooks import DEFAULT_DELIBERATION_RULEBOOK
from workflows.forum import ForumWorkflow

router = APIRouter(prefix="/v1/forums", tags=["forums"])

FORUM_SECTIONS = ("forum", "linked", "budget")


def forum_out(row: Forum) -> ForumOut:
    return ForumOut.model_validate(opinion_service.with_tally_names(row))


async def load_forum(session: Session, forum_id: str) -> Forum:
    row = await session.get(Forum, forum_id)
    if row is None:
        raise not_found("forum")
    return row


async def _open_forum(ctx: AppContext, created_by: str, body: ForumCreate) -> ForumOut:
    pinned = pinned_rules(
        ctx,
        body.rulebook,
        default=DEFAULT_DELIBERATION_RULEBOOK,
        sections=FORUM_SECTIONS,
        purpose="forum",
    )
    opening = ForumOpening(
        forum_id=str(uuid.uuid4()),
        title=body.title,
        body=body.body,
        kind=ForumKind(body.kind),
        rules=pinned,
        created_by=created_by,
        field=body.field,
        origin_proposal_id=body.origin_proposal_id,
        panel_draw_id=body.panel_draw_id,
    )
    async with ctx.sessions() as session, session.begin():
        if body.panel_draw_id is not None:
            await revealed_draw_size(session, body.panel_draw_id, field="panel_draw_id")
        await insert_forum(session, opening, await ctx.clock.now())
        await ctx.temporal.start_workflow(
            ForumWorkflow.run,
            ForumStart(
                forum_id=opening.forum_id,
                kind=opening.kind,
                rules=pinned,
                origin_proposal_id=opening.origin_proposal_id,
                panel_draw_id=opening.panel_draw_id,
            ),
            id=forum_workflow_id(opening.forum_id),
            task_queue=ctx.settings.task_queue,
        )
    async with ctx.sessions() as session:
        return forum_out(await load_forum(session, opening.forum_id))


@router.post("", status_code=201, response_model=ForumOut)
async def create_forum(
    body: ForumCreate, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    require_role(principal, Role.ADMIN)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        "POST /v1/forums",
        body,
        lambda unit: _open_forum(unit, principal.sub, body),
    )


@router.get("", response_model=Page[ForumOut])
async def list_forums(
    session: Session,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    budget_year: Annotated[int | None, Query(ge=2000, le=2200)] = None,
    origin_proposal_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
) -> Page[ForumOut]:
    query = select(Forum)
    if status is not None:
        query = query.where(col(Forum.status) == status)
    if budget_year is not None:
        query = query.where(col(Forum.budget_year) == budget_year)
    if origin_proposal_id is not None:
        query = query.where(col(Forum.origin_proposal_id) == origin_proposal_id)
    return await opinion_service.offset_page(
        session,
        query.order_by(col(Forum.created_at).desc(), col(Forum.id)),
        limit=limit,
        offset=int(cursor or 0),
        to_out=forum_out,
    )


@router.get("/{forum_id}", response_model=ForumOut)
async def get_forum(forum_id: str, session: Session) -> ForumOut:
    return forum_out(await load_forum(session, forum_id))


@router.post("/{forum_id}/recommendation", response_model=ForumOut)
async def publish_recommendation(
    forum_id: str,
    body: RecommendationRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ForumOut:
    """A public deliberation ends with its policy recommendation, published after the close."""
    require_role(principal, Role.ADMIN)

    async def reload_forum() -> ForumOut:
        async with ctx.sessions() as session:
            return forum_out(await load_forum(session, forum_id))

    await reload_forum()
    return await decide_case(
        ctx,
        forum_workflow_id(forum_id),
        ForumWorkflow.publish_recommendation,
        Recommendation(actor_role=principal.role.value, text=body.text),
        request_id=update_id("publish_recommendation", principal, idempotency_key),
        reload_case=reload_forum,
        what="forum",
    )


opinion_service.add_case_routes(router, load_forum, kind_of=lambda forum: forum.kind)
