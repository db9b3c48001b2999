"""Budget projects (process.md §6, §6a; api.md "Budget-year cycles and projects"): citizens
propose metropolitan projects in the cycle's call; the operations team screens them, the
committee (the public-private budget council) reviews them, anyone objects to a vote candidate
and the operations team answers; the proposer may withdraw. Anyone reads.

Every write is refused with 409 naming the phase when the cycle's `metro` type is not in the
phase the write belongs to (read from the cycle's projection, `budget_cycles.phases`); what
the project's own stage allows is the workflow's validators' to say (workflows/project.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.budget import Year
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import decide_case, pinned_rules, timeline, update_id
from api.schemas import Body, Page, SeoulTime, ShortText, Text, Timeline
from models.budget_tables import BudgetCycle
from models.case import Role
from models.ids import project_workflow_id
from models.project import (
    SUPPORTED_KINDS,
    CouncilReview,
    ObjectionAnswer,
    ObjectionFiled,
    ProjectStart,
    ProjectWithdrawal,
    ReviewScores,
    Screening,
    YearCost,
)
from models.project_tables import BudgetProject, ProjectObjection
from models.sortition import DISTRICTS
from workflows.project import ProjectWorkflow

router = APIRouter(prefix="/v1", tags=["budget projects"])

ProjectId = Annotated[str, PathParam(max_length=64, description="The project's id.")]
#: A positive amount of KRW; strict (a string or a boolean is refused).
PositiveKRW = Annotated[int, Field(gt=0, le=10**15)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
ReviewScore = Annotated[int, Field(ge=0, le=100)]
PROJECT_SECTIONS = ("metro", "review")
#: The cycle type whose phases the metropolitan project's writes follow.
METRO = "metro"


# ---- bodies ----------------------------------------------------------------------------------


class YearCostIn(Body):
    year: Annotated[int, Field(ge=2000, le=2200)]
    cost_krw: PositiveKRW


class ProjectCreate(Body):
    title: ShortText
    body: Text
    field: ShortText
    kind: Literal["deliberative", "metro", "governance"]
    cost_krw: PositiveKRW
    event: bool = False
    districts: Annotated[list[ShortText], Field(min_length=1, max_length=len(DISTRICTS))]
    years: list[YearCostIn] | None = None

    @field_validator("districts")
    @classmethod
    def _seoul_districts(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in DISTRICTS]
        if unknown:
            raise ValueError(f"not Seoul districts: {', '.join(unknown)}")
        if len(set(value)) != len(value):
            raise ValueError("a district is named twice")
        return value


class ScreeningRequest(Body):
    eligible: bool
    reason: Note = ""
    transfer_to_district: ShortText | None = None


class ReviewScoresIn(Body):
    necessity: ReviewScore
    feasibility: ReviewScore
    impact: ReviewScore
    inclusiveness: ReviewScore


class ProjectReviewRequest(Body):
    advance: bool
    scores: ReviewScoresIn
    note: Note = ""


class ObjectionCreate(Body):
    body: Text


class ObjectionAnswerRequest(Body):
    answer: Text
    adjusted_cost_krw: PositiveKRW | None = None


# ---- answers ---------------------------------------------------------------------------------


class ObjectionOut(BaseModel):
    id: str
    project_id: str
    body: str
    created_at: SeoulTime
    answer: str | None = None
    adjusted_cost_krw: int | None = None
    answered_at: SeoulTime | None = None


class ProjectOut(BaseModel):
    """A project as anyone may read it: no proposer id, no objector ids."""

    id: str
    workflow_id: str
    year: int
    kind: str
    status: str
    field: str
    title: str
    body: str
    cost_krw: int
    submitted_cost_krw: int
    event: bool
    districts: list[str]
    years: list[dict[str, Any]]
    linked: bool
    rulebook: str
    rulebook_hash: str
    created_at: SeoulTime
    eligibility: dict[str, Any] | None
    scores: dict[str, Any] | None
    objections: list[ObjectionOut]
    vote: dict[str, Any] | None
    selected: bool | None


def _objections_out(row: BudgetProject, filed: Sequence[ProjectObjection]) -> list[ObjectionOut]:
    answers = {o["objection_id"]: o for o in row.objections}
    out = []
    for objection in filed:
        answered = answers.get(objection.id, {})
        out.append(
            ObjectionOut(
                id=objection.id,
                project_id=row.id,
                body=objection.body,
                created_at=objection.created_at,
                answer=answered.get("answer"),
                adjusted_cost_krw=answered.get("adjusted_cost_krw"),
                answered_at=answered.get("answered_at"),
            )
        )
    return out


def project_out(row: BudgetProject, filed: Sequence[ProjectObjection] = ()) -> ProjectOut:
    return ProjectOut(
        id=row.id,
        workflow_id=row.workflow_id,
        year=row.year,
        kind=row.kind,
        status=row.status,
        field=row.field,
        title=row.title,
        body=row.body,
        cost_krw=row.cost_krw,
        submitted_cost_krw=row.submitted_cost_krw,
        event=row.event,
        districts=list(row.districts),
        years=list(row.years),
        linked=row.linked,
        rulebook=row.rulebook,
        rulebook_hash=row.rulebook_hash,
        created_at=row.created_at,
        eligibility=row.eligibility,
        scores=row.review,
        objections=_objections_out(row, filed),
        vote=row.vote,
        selected=row.selected,
    )


async def _filed(session: AsyncSession, project_ids: list[str]) -> list[ProjectObjection]:
    if not project_ids:
        return []
    query = (
        select(ProjectObjection)
        .where(col(ProjectObjection.project_id).in_(project_ids))
        .order_by(col(ProjectObjection.created_at), col(ProjectObjection.id))
    )
    return list((await session.exec(query)).all())


async def load_project(session: AsyncSession, project_id: str) -> BudgetProject:
    row = await session.get(BudgetProject, project_id)
    if row is None:
        raise not_found("project")
    return row


async def reload_project(ctx: AppContext, project_id: str) -> ProjectOut:
    async with ctx.sessions() as session:
        row = await load_project(session, project_id)
        return project_out(row, await _filed(session, [row.id]))


async def _cycle(session: AsyncSession, year: int) -> BudgetCycle:
    row = (await session.exec(select(BudgetCycle).where(col(BudgetCycle.year) == year))).first()
    if row is None:
        raise not_found("budget cycle")
    return row


def require_phase(cycle: BudgetCycle, action: str, *phases: str) -> None:
    """409 naming the phase unless the cycle's metro type is in one of `phases`."""
    current = cycle.phases.get(METRO, {}).get("phase")
    if current not in phases:
        wanted = " or ".join(phases)
        raise Problem(
            409,
            f"{action} belongs to the metro {wanted} phase of the {cycle.year} cycle; "
            f"the metro phase is now {current}",
        )


async def _project_in_phase(
    ctx: AppContext, project_id: str, action: str, *phases: str
) -> BudgetProject:
    async with ctx.sessions() as session:
        row = await load_project(session, project_id)
        require_phase(await _cycle(session, row.year), action, *phases)
    return row


# ---- submission --------------------------------------------------------------------------------


async def _submit(
    ctx: AppContext, principal: Principal, year: int, body: ProjectCreate
) -> ProjectOut:
    async with ctx.sessions() as session:
        cycle = await _cycle(session, year)
    require_phase(cycle, "submitting a metropolitan project", "call")
    pinned = pinned_rules(
        ctx,
        cycle.rulebook,
        sections=PROJECT_SECTIONS,
        purpose="metropolitan-project (metro and review)",
    )
    project_id = str(uuid.uuid4())
    years = [YearCost(y.year, y.cost_krw) for y in body.years or []]
    row = BudgetProject(
        id=project_id,
        workflow_id=project_workflow_id(project_id),
        year=year,
        kind=body.kind,
        field=body.field,
        title=body.title,
        body=body.body,
        proposer_id=principal.sub,
        event=body.event,
        districts=list(body.districts),
        years=[{"year": y.year, "cost_krw": y.cost_krw} for y in years],
        linked=False,
        submitted_cost_krw=body.cost_krw,
        cost_krw=body.cost_krw,
        rulebook=pinned.name,
        rulebook_hash=pinned.content_hash,
        created_at=await ctx.clock.now(),
    )
    start = ProjectStart(
        project_id=project_id,
        year=year,
        kind=body.kind,
        proposer_id=principal.sub,
        field=body.field,
        cost_krw=body.cost_krw,
        event=body.event,
        districts=list(body.districts),
        rules=pinned,
        years=years,
    )
    # The row and the workflow appear together: the workflow is started inside the
    # transaction, and its first projection waits for the commit.
    async with ctx.sessions() as session, session.begin():
        session.add(row)
        await session.flush()
        await ctx.temporal.start_workflow(
            ProjectWorkflow.run, start, id=row.workflow_id, task_queue=ctx.settings.task_queue
        )
    return project_out(row)


@router.post("/budget-cycles/{year}/projects", status_code=201, response_model=ProjectOut)
async def submit_project(
    year: Year,
    body: ProjectCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Propose a metropolitan project in the cycle's call (an eligible citizen)."""
    if body.kind not in SUPPORTED_KINDS:
        raise Problem(
            422,
            f"kind {body.kind!r} is not yet supported; supported: {', '.join(SUPPORTED_KINDS)}",
            field="kind",
        )
    require_eligible(principal)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/projects",
        body,
        lambda unit: _submit(unit, principal, year, body),
    )


# ---- reads -------------------------------------------------------------------------------------


@router.get("/budget-cycles/{year}/projects", response_model=Page[ProjectOut])
async def list_projects(
    year: Year,
    session: Session,
    kind: Annotated[str | None, Query(max_length=50)] = None,
    field: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
) -> Page[ProjectOut]:
    await _cycle(session, year)
    query = select(BudgetProject).where(col(BudgetProject.year) == year)
    if kind is not None:
        query = query.where(col(BudgetProject.kind) == kind)
    if field is not None:
        query = query.where(col(BudgetProject.field) == field)
    if status is not None:
        query = query.where(col(BudgetProject.status) == status)
    rows = (
        await session.exec(
            query.order_by(col(BudgetProject.created_at).desc(), col(BudgetProject.id))
            .offset(int(cursor or 0))
            .limit(limit + 1)
        )
    ).all()
    shown = list(rows[:limit])
    filed = await _filed(session, [r.id for r in shown])
    by_project: dict[str, list[ProjectObjection]] = {}
    for objection in filed:
        by_project.setdefault(objection.project_id, []).append(objection)
    return Page[ProjectOut](
        items=[project_out(r, by_project.get(r.id, [])) for r in shown],
        next_cursor=str(int(cursor or 0) + limit) if len(rows) > limit else None,
    )


@router.get("/projects/{project_id}", response_model=ProjectOut)
async def get_project(project_id: ProjectId, session: Session) -> ProjectOut:
    row = await load_project(session, project_id)
    return project_out(row, await _filed(session, [row.id]))


@router.get("/projects/{project_id}/timeline", response_model=Timeline)
async def project_timeline(project_id: ProjectId, session: Session) -> Timeline:
    row = await load_project(session, project_id)
    return await timeline(session, row.id)


# ---- decisions ---------------------------------------------------------------------------------


async def _decide(
    ctx: AppContext, project_id: str, update: Any, command: Any, request_id: str
) -> ProjectOut:
    return await decide_case(
        ctx,
        project_workflow_id(project_id),
        update,
        command,
        request_id=request_id,
        reload_case=lambda: reload_project(ctx, project_id),
        what="project",
    )


@router.post("/projects/{project_id}/screening", response_model=ProjectOut)
async def screen_project(
    project_id: ProjectId,
    body: ScreeningRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """Eligibility screening (the operations team): caps and the district rule are checked."""
    require_role(principal, Role.ADMIN)
    await _project_in_phase(ctx, project_id, "eligibility screening", "screening")
    if (not body.eligible or body.transfer_to_district is not None) and not body.reason:
        what = "a transfer to a district" if body.transfer_to_district else "an ineligible verdict"
        raise Problem(422, f"reason: {what} needs a reason", field="reason")
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.screen,
        Screening(
            actor_role=principal.role.value,
            eligible=body.eligible,
            reason=body.reason,
            transfer_to_district=body.transfer_to_district,
        ),
        update_id("screen_project", principal, idempotency_key),
    )


@router.post("/projects/{project_id}/review", response_model=ProjectOut)
async def review_project(
    project_id: ProjectId,
    body: ProjectReviewRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """The public-private budget council's review (committee): a vote candidate or not."""
    require_role(principal, Role.COMMITTEE)
    await _project_in_phase(ctx, project_id, "the council review", "council_review")
    scores = body.scores
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.review,
        CouncilReview(
            actor_role=principal.role.value,
            advance=body.advance,
            scores=ReviewScores(
                necessity=scores.necessity,
                feasibility=scores.feasibility,
                impact=scores.impact,
                inclusiveness=scores.inclusiveness,
            ),
            note=body.note,
        ),
        update_id("review_project", principal, idempotency_key),
    )


async def _object(
    ctx: AppContext, principal: Principal, project_id: str, body: ObjectionCreate
) -> ObjectionOut:
    now: datetime = await ctx.clock.now()
    row = await _project_in_phase(ctx, project_id, "an objection", "objections")
    objection = ProjectObjection(
        id=str(uuid.uuid4()),
        project_id=project_id,
        author_id=principal.sub,
        body=body.body,
        created_at=now,
    )
    async with ctx.sessions() as session, session.begin():
        locked = await session.get(BudgetProject, project_id, with_for_update={"read": True})
        assert locked is not None
        if locked.status != "candidate":
            raise Problem(
                409, f"objections are for vote candidates; this project is {locked.status}"
            )
        session.add(objection)
    filed = ObjectionFiled(objection_id=objection.id, at=now)

    async def tell(committed: AppContext) -> None:
        handle = committed.temporal.get_workflow_handle(row.workflow_id)
        try:
            await handle.signal(ProjectWorkflow.objection_filed, filed)
        except Exception:  # the answer records it anyway (workflows/project.py)
            pass

    await ctx.after_commit(tell)
    return ObjectionOut(id=objection.id, project_id=project_id, body=objection.body, created_at=now)


@router.post("/projects/{project_id}/objections", status_code=201, response_model=ObjectionOut)
async def file_objection(
    project_id: ProjectId,
    body: ObjectionCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Anyone signed in objects to a vote candidate, in the objection period."""
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/projects/{project_id}/objections",
        body,
        lambda unit: _object(unit, principal, project_id, body),
    )


@router.post("/projects/{project_id}/objections/{objection_id}/answer", response_model=ProjectOut)
async def answer_objection(
    project_id: ProjectId,
    objection_id: Annotated[str, PathParam(max_length=64)],
    body: ObjectionAnswerRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """The operations team answers an objection, possibly adjusting the cost (below the cap)."""
    require_role(principal, Role.ADMIN)
    await _project_in_phase(ctx, project_id, "answering an objection", "objections")
    async with ctx.sessions() as session:
        objection = await session.get(ProjectObjection, objection_id)
    if objection is None or objection.project_id != project_id:
        raise not_found("objection")
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.answer_objection,
        ObjectionAnswer(
            actor_role=principal.role.value,
            objection_id=objection_id,
            answer=body.answer,
            adjusted_cost_krw=body.adjusted_cost_krw,
        ),
        update_id("answer_objection", principal, idempotency_key),
    )


@router.post("/projects/{project_id}/withdraw", response_model=ProjectOut)
async def withdraw_project(
    project_id: ProjectId,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """The proposer withdraws, until the vote; a linked item is refused (409)."""
    async with ctx.sessions() as session:
        row = await load_project(session, project_id)
        cycle = await _cycle(session, row.year)
    if row.proposer_id != principal.sub:
        raise Problem(403, "only the proposer may withdraw a project")
    if row.linked:
        raise Problem(
            409,
            "a linked (forum-centred) item does not leave review when its proposer withdraws "
            "(process.md §6a)",
        )
    require_phase(cycle, "a withdrawal", "call", "screening", "council_review", "objections")
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.withdraw,
        ProjectWithdrawal(actor=principal.actor()),
        update_id("withdraw_project", principal, idempotency_key),
    )
