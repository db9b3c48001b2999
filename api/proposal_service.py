"""Citizen proposals: the operations behind the routers (Postgres rows + workflow calls)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import rulebooks
from api import signal_outbox
from api.auth import Principal
from api.context import AppContext
from api.errors import Problem, backend_down, not_found, unavailable
from api.schemas import (
    AgendaDecisionOut,
    AgendaOut,
    CommentOut,
    Page,
    PlanningGroupOut,
    ProposalCreate,
    ProposalOut,
    SelectionGroupOut,
    SupportOut,
    Timeline,
    TimelineItem,
)
from models.case import ErrorType
from models.ids import proposal_workflow_id
from models.proposal import ProposalStart, Status
from models.tables import Comment, Proposal, SortitionDraw, TimelineRow
from models.text import unwritable_reason
from workflows.common import SETTLE_SIGNAL
from workflows.proposal import ProposalWorkflow

_ERROR_STATUS = {
    ErrorType.CONFLICT: 409,
    ErrorType.FORBIDDEN: 403,
    ErrorType.INVALID: 422,
    ErrorType.BUSY: 503,
}


def refusal(exc: WorkflowUpdateFailedError) -> Problem:
    """The problem a workflow's refusal of an Update means (409, 403, 422, or 503 when busy);
    anything else is raised as it is."""
    cause = exc.cause
    if not isinstance(cause, ApplicationError) or cause.type not in _ERROR_STATUS:
        raise exc
    return Problem(_ERROR_STATUS[ErrorType(cause.type)], cause.message)


def to_out(row: Proposal) -> ProposalOut:
    return ProposalOut.model_validate(row, from_attributes=True)


async def load(session: AsyncSession, proposal_id: str) -> Proposal:
    row = await session.get(Proposal, proposal_id)
    if row is None:
        raise not_found("proposal")
    return row


async def reload(ctx: AppContext, proposal_id: str) -> ProposalOut:
    async with ctx.sessions() as session:
        return to_out(await load(session, proposal_id))


PROPOSAL_SECTIONS = ("proposal", "execution", "escalation")


def pinned_rules(
    ctx: AppContext,
    name: str | None,
    *,
    default: str = rulebooks.DEFAULT_PROPOSAL_RULEBOOK,
    sections: tuple[str, ...] = PROPOSAL_SECTIONS,
    purpose: str = "citizen-proposal",
) -> rulebooks.PinnedRules:
    """Load the rulebook a new case pins; 422 naming `rulebook` if unknown or unfit."""
    try:
        pinned = rulebooks.load(name or default, ctx.settings.extra_rulebook_dirs)
    except rulebooks.RulebookError as exc:
        raise Problem(422, str(exc), field="rulebook") from exc
    if any(getattr(pinned.rulebook, section) is None for section in sections):
        raise Problem(422, f"rulebook {pinned.name} has no {purpose} rules", field="rulebook")
    return pinned


async def create(ctx: AppContext, principal: Principal, body: ProposalCreate) -> ProposalOut:
    pinned = pinned_rules(ctx, body.rulebook)
    proposal_id = str(uuid.uuid4())
    row = Proposal(
        id=proposal_id,
        workflow_id=proposal_workflow_id(proposal_id),
        proposer_id=principal.sub,
        title=body.title,
        body=body.body,
        category=body.category,
        estimated_cost_krw=body.estimated_cost_krw,
        rulebook=pinned.name,
        rulebook_hash=pinned.content_hash,
        rules=rulebooks.as_json(pinned.rulebook),
        created_at=await ctx.clock.now(),
    )
    # The row and the workflow appear together: the workflow is started inside the
    # transaction, so a failed start leaves no row (its projection waits for the commit).
    async with ctx.sessions() as session, session.begin():
        session.add(row)
        await session.flush()
        await ctx.temporal.start_workflow(
            ProposalWorkflow.run,
            ProposalStart(proposal_id=proposal_id, proposer_id=principal.sub, rules=pinned),
            id=row.workflow_id,
            task_queue=ctx.settings.task_queue,
        )
    return to_out(row)


def _encode_cursor(created_at: datetime, proposal_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{proposal_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
        stamp, _, proposal_id = decoded.partition("|")
        if unwritable_reason(decoded, single_line=True) is not None:
            raise ValueError("a cursor holds no control characters")
        return datetime.fromisoformat(stamp), proposal_id
    except ValueError as exc:
        raise Problem(400, "cursor is not one this API returned", field="cursor") from exc


async def list_proposals(
    session: AsyncSession,
    *,
    status: str | None,
    department: str | None,
    limit: int,
    cursor: str | None,
) -> Page[ProposalOut]:
    query = select(Proposal)
    if status is not None:
        query = query.where(col(Proposal.status) == status)
    if department is not None:
        query = query.where(
            or_(
                col(Proposal.department) == department,
                col(Proposal.executing_department) == department,
            )
        )
    if cursor is not None:
        created_at, proposal_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                col(Proposal.created_at) < created_at,
                and_(col(Proposal.created_at) == created_at, col(Proposal.id) < proposal_id),
            )
        )
    query = query.order_by(col(Proposal.created_at).desc(), col(Proposal.id).desc()).limit(
        limit + 1
    )
    rows: Sequence[Proposal] = (await session.exec(query)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id)
    return Page[ProposalOut](items=[to_out(r) for r in rows], next_cursor=next_cursor)


async def timeline(session: AsyncSession, case_id: str) -> Timeline:
    rows = (
        await session.exec(
            select(TimelineRow)
            .where(col(TimelineRow.case_id) == case_id)
            .order_by(col(TimelineRow.seq))
        )
    ).all()
    return Timeline(items=[TimelineItem.model_validate(r, from_attributes=True) for r in rows])


#: The support row (none for a second support by the same person) and the proposal's count
#: after it, in one statement: the count, or no row for a duplicate.
_SUPPORT = text(
    """
    WITH added AS (
        INSERT INTO supports (proposal_id, person_id, created_at)
        VALUES (:proposal_id, :person_id, :now)
        ON CONFLICT DO NOTHING RETURNING proposal_id
    )
    UPDATE proposals SET support_count = support_count + 1
      FROM added WHERE proposals.id = added.proposal_id
    RETURNING proposals.support_count
    """
)


async def support(ctx: AppContext, principal: Principal, proposal_id: str) -> SupportOut:
    """One support per person; the support that reaches a threshold signals the workflow."""
    now = await ctx.clock.now()
    async with ctx.sessions() as session, session.begin():
        row = (
            await session.execute(
                select(
                    col(Proposal.supports_open),
                    col(Proposal.status),
                    col(Proposal.rulebook_hash),
                )
                .where(col(Proposal.id) == proposal_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise not_found("proposal")
        if not row.supports_open:
            raise Problem(409, f"supports are closed (the proposal is {row.status})")
        count: int | None = (
            await session.execute(
                _SUPPORT, {"proposal_id": proposal_id, "person_id": principal.sub, "now": now}
            )
        ).scalar_one_or_none()
        if count is None:
            raise Problem(409, "you have already supported this proposal")
        rulebook = rulebooks.cached(row.rulebook_hash)
        if rulebook is None:  # the case's pinned rules, read once per process and version
            rules = (
                await session.execute(
                    select(col(Proposal.rules)).where(col(Proposal.id) == proposal_id)
                )
            ).scalar_one()
            rulebook = rulebooks.from_json(rules, content_hash=row.rulebook_hash)
        # The row lock makes exactly one request see the count reach a threshold; its signal
        # is committed with the support and sent after the commit (api/signal_outbox.py).
        signals = _threshold_signals(proposal_id, rulebook, count, now)
        for signal in signals:
            await signal_outbox.enqueue(session, signal)
    if signals:
        await ctx.after_commit(lambda committed: signal_outbox.send(committed, signals))
    return SupportOut(proposal_id=proposal_id, support_count=count)


def _threshold_signals(
    proposal_id: str, rulebook: rulebooks.Rulebook, count: int, now: datetime
) -> list[signal_outbox.Signal]:
    """The signals the `count`-th support calls for: the review threshold, and on the linked
    path the forum threshold. Each carries the time it was reached; the workflow decides what
    it means (whether it came within the linked support window, whether its stage waits for
    it)."""
    target = proposal_workflow_id(proposal_id)
    signals: list[signal_outbox.Signal] = []
    if rulebook.proposal is not None and count == rulebook.proposal.review_support_threshold:
        signals.append((target, "support_threshold_reached", now))
    if rulebook.linked is not None and count == rulebook.linked.forum_support_threshold:
        signals.append((target, "forum_threshold_reached", now))
    return signals


async def comment(ctx: AppContext, principal: Principal, proposal_id: str, body: str) -> CommentOut:
    async with ctx.sessions() as session, session.begin():
        row = (
            await session.execute(
                select(col(Proposal.supports_open), col(Proposal.status))
                .where(col(Proposal.id) == proposal_id)
                .with_for_update(read=True)
            )
        ).one_or_none()
        if row is None:
            raise not_found("proposal")
        if not row.supports_open:
            raise Problem(409, f"comments are closed (the proposal is {row.status})")
        created = Comment(
            id=str(uuid.uuid4()),
            proposal_id=proposal_id,
            author_id=principal.sub,
            body=body,
            created_at=await ctx.clock.now(),
        )
        session.add(created)
    return CommentOut.model_validate(created, from_attributes=True)


def update_id(name: str, principal: Principal, key: str | None) -> str:
    """The request's idempotency key is the update id, so a retry is applied once."""
    return f"{name}:{principal.sub}:{key}" if key else f"{name}:{uuid.uuid4()}"


class _Staged(Protocol):
    @property
    def status(self) -> str: ...


StagedOut = TypeVar("StagedOut", bound=_Staged)


#: How long a decision waits for another transition of its case to be recorded before 503.
BUSY_PATIENCE_SECONDS = 10.0
#: How long a request waits for an accepted decision's projection before answering 503: the
#: decision stands, and a retry with the same Idempotency-Key returns its result.
RESULT_PATIENCE_SECONDS = 30.0


async def decide_case(
    ctx: AppContext,
    case_workflow_id: str,
    update: Any,
    command: Any,
    *,
    request_id: str,
    reload_case: Callable[[], Awaitable[StagedOut]],
    what: str,
) -> StagedOut:
    """Run a decision Update on any case's workflow, then answer with the case's projection.

    A validator's refusal becomes 409/403/422 with nothing written; a finished workflow 409.
    While the case records another transition the Update is refused as busy and tried again
    (the same update id: a refused update leaves no trace). An accepted decision whose
    projection does not land within RESULT_PATIENCE_SECONDS answers 503 with Retry-After.
    """
    handle: WorkflowHandle[Any, Any] = ctx.temporal.get_workflow_handle(case_workflow_id)
    loop = asyncio.get_running_loop()
    busy_until = loop.time() + BUSY_PATIENCE_SECONDS
    pause = 0.05
    while True:
        accepted: WorkflowUpdateHandle[Any] | None = None
        try:
            accepted = await handle.start_update(
                update, command, id=request_id, wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
            await asyncio.wait_for(accepted.result(), RESULT_PATIENCE_SECONDS)
            break
        except WorkflowUpdateFailedError as exc:
            problem = refusal(exc)
            if problem.status != _ERROR_STATUS[ErrorType.BUSY]:
                raise problem from exc
            if loop.time() > busy_until:
                raise unavailable(problem.detail) from exc
            with contextlib.suppress(RPCError):
                # have the pending projection applied before retrying (workflows.common.Settles)
                await handle.signal(SETTLE_SIGNAL)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as exc:
            if accepted is not None:
                # the decision stands (its update id makes a retry return its result); only
                # its projection, or the worker carrying it, is not there yet
                raise unavailable(
                    f"the decision was accepted but the {what} is not recorded yet; retry "
                    "with the same Idempotency-Key for its result",
                    request_id=request_id,
                ) from exc
            if isinstance(exc, RPCError) and exc.status is RPCStatusCode.NOT_FOUND:
                current = await reload_case()
                raise Problem(409, f"the case is closed (the {what} is {current.status})") from exc
            raise
    try:
        return await reload_case()
    except Exception as exc:
        if backend_down(exc) is None:
            raise
        # the decision is taken and recorded; only reading the case back failed
        raise unavailable(
            f"the decision was taken but the {what} could not be read back; retry with the "
            "same Idempotency-Key for its result",
            request_id=request_id,
        ) from exc


async def decide(
    ctx: AppContext,
    proposal_id: str,
    update: Any,
    command: Any,
    *,
    request_id: str,
) -> ProposalOut:
    """Run a decision Update on a proposal's workflow (see `decide_case`)."""
    return await decide_case(
        ctx,
        proposal_workflow_id(proposal_id),
        update,
        command,
        request_id=request_id,
        reload_case=lambda: reload(ctx, proposal_id),
        what="proposal",
    )


def agenda_out(row: Proposal) -> AgendaOut:
    """The agenda selection of a linked-path proposal, as the projection recorded it."""
    agenda = row.agenda
    if agenda is None:
        raise not_found("agenda selection")
    planned = agenda.get("agenda_title") is not None
    decided = agenda.get("hold_forum") is not None
    return AgendaOut(
        proposal_id=row.id,
        status=row.status,
        threshold_at=agenda["threshold_at"],
        decision_from=agenda["decision_from"],
        due_at=agenda["due_at"],
        overdue=row.overdue and row.status == Status.AGENDA_SELECTION.value,
        planning_group=PlanningGroupOut.model_validate(agenda) if planned else None,
        selection_group=SelectionGroupOut(
            draw_id=agenda.get("selection_draw_id"),
            members_count=agenda.get("selection_members"),
        ),
        decision=AgendaDecisionOut.model_validate(agenda) if decided else None,
        forum_id=agenda.get("forum_id"),
    )


async def revealed_draw_size(
    session: AsyncSession, draw_id: str, *, field: str, purpose: str | None = None
) -> int:
    """The number of members of a revealed sortition draw; 422 naming `field` if unfit."""
    draw = await session.get(SortitionDraw, draw_id)
    if draw is None or (purpose is not None and draw.purpose != purpose):
        raise Problem(422, f"no {purpose or 'sortition'} draw with this id", field=field)
    if draw.status != "revealed" or draw.members is None:
        raise Problem(422, "the draw is not revealed yet", field=field)
    return len(draw.members)
