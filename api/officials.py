"""Caseworkers, the committee and the operations team: the decisions of a proposal's life.

Each decision is a Temporal Update; its validator is the authority on what the stage allows.
Department scoping happens here first: a caseworker of another department gets 404, as if the
case did not exist for them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import or_
from sqlmodel import col, select

from api import proposal_service as service
from api.auth import CurrentPrincipal, Principal, require_role
from api.context import AppContext, Ctx, Session
from api.errors import not_found
from api.idempotency import IdempotencyKey, run_once
from api.schemas import (
    AgendaDecisionRequest,
    AgendaOut,
    AgendaPlanRequest,
    AppropriatenessRequest,
    AssignRequest,
    ExecutionReportRequest,
    InboxItem,
    Page,
    PlanRequest,
    ProposalOut,
    ReviewRequest,
    ScreeningRequest,
)
from models.case import Role
from models.proposal import (
    AgendaDecision,
    AgendaPlan,
    AppropriatenessVerdict,
    Assignment,
    ExecutionPlan,
    ExecutionReport,
    ReviewAnswer,
    ReviewDecision,
    Screening,
    ScreeningDecision,
    Status,
    Verdict,
)
from models.tables import Proposal
from workflows.proposal import ProposalWorkflow

router = APIRouter(prefix="/v1", tags=["officials"])


async def _case_of_department(
    ctx: AppContext, principal: Principal, proposal_id: str, *, executing: bool
) -> None:
    """404 unless the caller is a caseworker of the department the case belongs to."""
    require_role(principal, Role.CASEWORKER)
    async with ctx.sessions() as session:
        row = await service.load(session, proposal_id)
    owner = row.executing_department if executing else row.department
    if owner is None or owner != principal.dept:
        raise not_found("proposal")


async def _decide(
    ctx: AppContext,
    principal: Principal,
    proposal_id: str,
    update: Any,
    command: Any,
    key: str | None,
) -> ProposalOut:
    return await service.decide(
        ctx,
        proposal_id,
        update,
        command,
        request_id=service.update_id(update.__name__, principal, key),
    )


@router.post("/proposals/{proposal_id}/assign", response_model=ProposalOut)
async def assign_department(
    proposal_id: str,
    body: AssignRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProposalOut:
    require_role(principal, Role.ADMIN)
    command = Assignment(actor=principal.actor(), department=body.department, note=body.note)
    return await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.assign, command, idempotency_key
    )


@router.post("/proposals/{proposal_id}/agenda/plan", response_model=AgendaOut)
async def plan_agenda(
    proposal_id: str,
    body: AgendaPlanRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> AgendaOut:
    """The agenda planning group's agenda, entered by the operations team."""
    require_role(principal, Role.ADMIN)
    members = None
    if body.selection_draw_id is not None:
        async with ctx.sessions() as session:
            members = await service.revealed_draw_size(
                session,
                body.selection_draw_id,
                field="selection_draw_id",
                purpose="agenda_selection_group",
            )
    command = AgendaPlan(
        actor=principal.actor(),
        agenda_title=body.agenda_title,
        summary=body.summary,
        forum_kind=body.forum_kind,
        selection_draw_id=body.selection_draw_id,
        selection_members=members,
    )
    await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.plan_agenda, command, idempotency_key
    )
    async with ctx.sessions() as session:
        return service.agenda_out(await service.load(session, proposal_id))


@router.post("/proposals/{proposal_id}/agenda/decision", response_model=AgendaOut)
async def decide_agenda(
    proposal_id: str,
    body: AgendaDecisionRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> AgendaOut:
    """The agenda selection group's decision, due between day 30 and day 90."""
    require_role(principal, Role.COMMITTEE)
    command = AgendaDecision(
        actor=principal.actor(),
        hold_forum=body.hold_forum,
        votes_for=body.votes_for,
        votes_against=body.votes_against,
        reason=body.reason,
    )
    await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.decide_agenda, command, idempotency_key
    )
    async with ctx.sessions() as session:
        return service.agenda_out(await service.load(session, proposal_id))


@router.post("/proposals/{proposal_id}/review", response_model=ProposalOut)
async def review_proposal(
    proposal_id: str,
    body: ReviewRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProposalOut:
    await _case_of_department(ctx, principal, proposal_id, executing=False)
    command = ReviewAnswer(
        actor=principal.actor(), decision=ReviewDecision(body.decision), reason=body.reason
    )
    return await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.review, command, idempotency_key
    )


@router.post("/proposals/{proposal_id}/screening", response_model=ProposalOut)
async def screen_proposal(
    proposal_id: str,
    body: ScreeningRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProposalOut:
    require_role(principal, Role.COMMITTEE)
    command = Screening(
        actor=principal.actor(),
        decision=ScreeningDecision(body.decision),
        scores=body.scores.model_dump(),
        note=body.note,
    )
    return await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.screen, command, idempotency_key
    )


@router.post("/proposals/{proposal_id}/plan", response_model=ProposalOut)
async def submit_plan(
    proposal_id: str,
    body: PlanRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProposalOut:
    require_role(principal, Role.COMMITTEE)
    command = ExecutionPlan(
        actor=principal.actor(),
        summary=body.summary,
        executing_department=body.executing_department,
        cost_krw=body.cost_krw,
    )
    return await _decide(
        ctx, principal, proposal_id, ProposalWorkflow.plan, command, idempotency_key
    )


@router.post("/proposals/{proposal_id}/appropriateness", response_model=ProposalOut)
async def check_appropriateness(
    proposal_id: str,
    body: AppropriatenessRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProposalOut:
    await _case_of_department(ctx, principal, proposal_id, executing=True)
    command = AppropriatenessVerdict(
        actor=principal.actor(), verdict=Verdict(body.verdict), reason=body.reason
    )
    return await _decide(
        ctx,
        principal,
        proposal_id,
        ProposalWorkflow.check_appropriateness,
        command,
        idempotency_key,
    )


@router.post(
    "/proposals/{proposal_id}/execution-reports", status_code=201, response_model=ProposalOut
)
async def report_execution(
    proposal_id: str,
    body: ExecutionReportRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    await _case_of_department(ctx, principal, proposal_id, executing=True)
    command = ExecutionReport(
        actor=principal.actor(), progress_pct=body.progress_pct, note=body.note, final=body.final
    )
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST execution-reports {proposal_id}",
        body,
        lambda unit: _decide(
            unit,
            principal,
            proposal_id,
            ProposalWorkflow.report_execution,
            command,
            idempotency_key,
        ),
    )


def _waiting_for(row: Proposal) -> str:
    if row.status == Status.DEPT_REVIEW.value:
        return "assignment" if row.department is None else "department review"
    return {
        Status.COMMITTEE_SCREENING.value: "committee screening",
        Status.PLANNING.value: "execution plan",
        Status.REVISING.value: "revised execution plan",
        Status.APPROPRIATENESS_CHECK.value: "appropriateness check",
        Status.EXECUTING.value: "execution report",
    }.get(row.status, row.status)


@router.get("/inbox", response_model=Page[InboxItem])
async def inbox(session: Session, principal: CurrentPrincipal) -> Page[InboxItem]:
    """Cases waiting for the caller, most urgent first."""
    require_role(principal, Role.CASEWORKER, Role.COMMITTEE, Role.ADMIN)
    status = col(Proposal.status)
    if principal.role is Role.CASEWORKER:
        condition = or_(
            (status == Status.DEPT_REVIEW.value) & (col(Proposal.department) == principal.dept),
            status.in_([Status.APPROPRIATENESS_CHECK.value, Status.EXECUTING.value])
            & (col(Proposal.executing_department) == principal.dept),
        )
    elif principal.role is Role.COMMITTEE:
        condition = status.in_(
            [Status.COMMITTEE_SCREENING.value, Status.PLANNING.value, Status.REVISING.value]
        )
    else:  # the operations team: unassigned cases, and every overdue one
        condition = or_(
            (status == Status.DEPT_REVIEW.value) & col(Proposal.department).is_(None),
            col(Proposal.overdue).is_(True),
        )
    rows = (
        await session.exec(
            select(Proposal)
            .where(condition)
            .order_by(col(Proposal.overdue).desc(), col(Proposal.due_at).asc().nulls_last())
            .limit(500)
        )
    ).all()
    return Page[InboxItem](
        items=[
            InboxItem(
                proposal_id=r.id,
                title=r.title,
                status=r.status,
                waiting_for=_waiting_for(r),
                due_at=r.due_at,
                overdue=r.overdue,
            )
            for r in rows
        ]
    )
