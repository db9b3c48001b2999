"""Participation, opinion posts, reports and moderation: shared by forums and asks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import timeline
from api.schemas import (
    ModerationOut,
    ModerationRequest,
    Page,
    ParticipationCreate,
    ParticipationOut,
    PostOut,
    ReportCreate,
    ReportOut,
    Timeline,
)
from models.case import Role
from models.deliberation import Position
from models.deliberation_tables import ModerationAction, Post, PostReport
from models.opinion_box import ParticipationRefused, participate

CaseRow = TypeVar("CaseRow", bound=SQLModel)
OutT = TypeVar("OutT", bound=BaseModel)


async def take_part(
    ctx: AppContext, principal: Principal, case_id: str, body: ParticipationCreate, *, kind: str
) -> ParticipationOut:
    """One participation per person; a for/against case needs a position, a discussion none."""
    if kind == "discussion" and body.position is not None:
        raise Problem(422, "a discussion forum takes opinions, not positions", field="position")
    if kind != "discussion" and body.position is None:
        raise Problem(422, "position is required (for, against or other)", field="position")
    if kind == "discussion" and not body.opinion:
        raise Problem(422, "a discussion forum takes an opinion", field="opinion")
    try:
        async with ctx.sessions() as session, session.begin():
            done = await participate(
                session,
                case_id=case_id,
                person_id=principal.sub,
                position=None if body.position is None else Position(body.position),
                opinion=body.opinion or None,
                now=await ctx.clock.now(),
            )
    except ParticipationRefused as refused:
        raise Problem(404 if refused.not_found else 409, refused.reason) from refused
    return ParticipationOut(id=f"{case_id}:{principal.sub}", post_id=done.post_id)


async def visible_posts(session: AsyncSession, case_id: str) -> Page[PostOut]:
    rows = (
        await session.exec(
            select(Post)
            .where(col(Post.case_id) == case_id, col(Post.hidden).is_(False))
            .order_by(col(Post.created_at), col(Post.id))
        )
    ).all()
    return Page[PostOut](items=[PostOut.model_validate(r, from_attributes=True) for r in rows])


async def _post_of(session: AsyncSession, case_id: str, post_id: str) -> Post:
    post = await session.get(Post, post_id, with_for_update=True)
    if post is None or post.case_id != case_id:
        raise not_found("post")
    return post


async def report_post(
    ctx: AppContext, principal: Principal, case_id: str, post_id: str, reason: str
) -> ReportOut:
    async with ctx.sessions() as session, session.begin():
        await _post_of(session, case_id, post_id)
        inserted = await session.execute(
            insert(PostReport)
            .values(
                post_id=post_id,
                reporter_id=principal.sub,
                reason=reason,
                created_at=await ctx.clock.now(),
            )
            .on_conflict_do_nothing()
            .returning(col(PostReport.post_id))
        )
        if inserted.first() is None:
            raise Problem(409, "you have already reported this post")
        reports = (
            await session.execute(
                update(Post)
                .where(col(Post.id) == post_id)
                .values(reports=col(Post.reports) + 1)
                .returning(col(Post.reports))
            )
        ).scalar_one()
        return ReportOut(post_id=post_id, reports=reports)


async def moderate_post(
    ctx: AppContext, principal: Principal, case_id: str, post_id: str, body: ModerationRequest
) -> ModerationOut:
    """Hide or restore under the published criteria; the post itself is never deleted."""
    hide = body.action == "hide"
    async with ctx.sessions() as session, session.begin():
        post = await _post_of(session, case_id, post_id)
        if post.hidden == hide:
            raise Problem(409, f"the post is already {'hidden' if hide else 'visible'}")
        post.hidden = hide
        now = await ctx.clock.now()
        session.add(post)
        session.add(
            ModerationAction(
                post_id=post_id,
                action=body.action,
                reason=body.reason,
                actor_id=principal.sub,
                at=now,
            )
        )
    return ModerationOut(
        post_id=post_id, hidden=hide, action=body.action, reason=body.reason, at=now
    )


def add_case_routes(
    router: APIRouter,
    load_case: Callable[[AsyncSession, str], Awaitable[object]],
    *,
    kind_of: Callable[[Any], str],
) -> None:
    """The endpoints every opinion-box case kind (forums, asks) shares: its timeline, taking
    part, and the opinion posts (list, report, moderate).

    `load_case` raises 404 for an unknown case; `kind_of(case)` is its kind (`for_against` or
    `discussion`: what a participation must carry).
    """

    @router.get("/{case_id}/timeline", response_model=Timeline)
    async def case_timeline(case_id: str, session: Session) -> Timeline:
        await load_case(session, case_id)
        return await timeline(session, case_id)

    @router.post("/{case_id}/participations", status_code=201, response_model=ParticipationOut)
    async def participate_in_case(
        case_id: str,
        body: ParticipationCreate,
        ctx: Ctx,
        principal: CurrentPrincipal,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        require_eligible(principal)
        async with ctx.sessions() as session:
            kind = kind_of(await load_case(session, case_id))
        return await run_once(
            ctx,
            principal,
            idempotency_key,
            f"POST participations {case_id}",
            body,
            lambda unit: take_part(unit, principal, case_id, body, kind=kind),
        )

    base = "/{case_id}/posts"

    @router.get(base, response_model=Page[PostOut])
    async def list_posts(case_id: str, session: Session) -> Page[PostOut]:
        await load_case(session, case_id)
        return await visible_posts(session, case_id)

    @router.post(base + "/{post_id}/reports", status_code=201, response_model=ReportOut)
    async def report(
        case_id: str, post_id: str, body: ReportCreate, ctx: Ctx, principal: CurrentPrincipal
    ) -> ReportOut:
        require_role(principal, Role.CITIZEN)
        return await report_post(ctx, principal, case_id, post_id, body.reason)

    @router.post(base + "/{post_id}/moderation", response_model=ModerationOut)
    async def moderate(
        case_id: str,
        post_id: str,
        body: ModerationRequest,
        ctx: Ctx,
        principal: CurrentPrincipal,
    ) -> ModerationOut:
        require_role(principal, Role.ADMIN)
        return await moderate_post(ctx, principal, case_id, post_id, body)


def with_tally_names(row: SQLModel) -> dict[str, Any]:
    """A forum's or ask's row with the API's names for its counts (`for` is a keyword)."""
    fields = row.model_dump()
    fields |= {
        "for": fields.pop("for_count"),
        "against": fields.pop("against_count"),
        "other": fields.pop("other_count"),
    }
    return fields


async def offset_page(
    session: AsyncSession,
    query: SelectOfScalar[CaseRow],
    *,
    limit: int,
    offset: int,
    to_out: Callable[[CaseRow], OutT],
) -> Page[OutT]:
    """One page of cases, newest first; `next_cursor` is the next offset, or null at the end."""
    rows = (await session.exec(query.offset(offset).limit(limit + 1))).all()
    return Page[OutT](
        items=[to_out(r) for r in rows[:limit]],
        next_cursor=str(offset + limit) if len(rows) > limit else None,
    )
