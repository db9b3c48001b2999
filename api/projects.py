"""Budget projects (process.md §5, §6, §6a; api.md "Budget-year cycles and projects").

Metropolitan projects: citizens propose them in the cycle's call; the operations team screens
them, the committee (the public-private budget council) reviews them, anyone objects to a vote
candidate and the operations team answers; the proposer may withdraw.

Deliberative projects: a caseworker enters an existing programme of their department, a member
of the field's citizen council a new item; the field's council deliberates on its list
(continue, resize, end); members of the Budget Square give opinions; the proposer may withdraw.

Anyone reads. Every write is refused with 409 naming the phase when the cycle's type of the
project (`metro` or `deliberative`) is not in the phase the write belongs to (read from the
cycle's projection, `budget_cycles.phases`); who sits on a council or the Square is read from
`budget_body_members`; what the project's own stage allows is the workflow's validators' to say
(workflows/project.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlalchemy import func, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WorkflowUpdateFailedError

from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.budget import Year
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import decide_case, pinned_rules, refusal, timeline, update_id
from api.schemas import Body, Page, SeoulTime, ShortText, Text, Timeline
from models.budget_bodies import SQUARE, council_body, is_member
from models.budget_tables import BudgetCycle, ProjectOpinion
from models.case import Role
from models.ids import budget_cycle_workflow_id, project_workflow_id
from models.project import (
    DELIBERATIVE,
    GOVERNANCE,
    METRO,
    SUPPORTED_KINDS,
    TWO_STAGE_KINDS,
    CouncilReview,
    Deliberation,
    Evaluation,
    ExecutingDepartment,
    FormExecutionCouncil,
    ObjectionAnswer,
    ObjectionFiled,
    ProjectExecutionReport,
    ProjectStart,
    ProjectStatus,
    ProjectWithdrawal,
    ReviewScores,
    Screening,
    YearCost,
)
from models.project_tables import BudgetProject, ProjectObjection
from models.sortition import DISTRICTS
from workflows.budget import BudgetCycleWorkflow
from workflows.project import ProjectWorkflow

router = APIRouter(prefix="/v1", tags=["budget projects"])

ProjectId = Annotated[str, PathParam(max_length=64, description="The project's id.")]
#: A positive amount of KRW; strict (a string or a boolean is refused).
PositiveKRW = Annotated[int, Field(gt=0, le=10**15)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
ReviewScore = Annotated[int, Field(ge=0, le=100)]
#: The rulebook sections each kind of project needs.
PROJECT_SECTIONS = {
    METRO: ("metro", "review"),
    DELIBERATIVE: ("deliberative",),
    GOVERNANCE: ("metro", "review", "governance"),
}
#: The statuses of a governance project that take room under the type's yearly ceiling.
GOVERNANCE_COUNTED = ("candidate", "selected")
#: The deliberative phases in which a caseworker enters an existing programme, and in which a
#: council member enters a new item (process.md §5: new ones are added in deliberation too).
PROGRAMME_PHASES = ("forming", "shortlist")
NEW_ITEM_PHASES = ("forming", "shortlist", "deliberation")
#: The deliberative phases in which the Budget Square gives opinions.
OPINION_PHASES = ("shortlist", "deliberation", "vote")
#: The phases in which a proposer may withdraw, by kind.
WITHDRAWAL_PHASES = {
    METRO: ("call", "screening", "council_review", "objections"),
    GOVERNANCE: ("call", "screening", "council_review", "objections"),
    DELIBERATIVE: ("forming", "shortlist", "deliberation"),
}


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
    #: At least one for a metropolitan project (checked with the kind); a deliberative project
    #: needs none.
    districts: Annotated[list[ShortText], Field(max_length=len(DISTRICTS))] = Field(
        default_factory=list
    )
    years: list[YearCostIn] | None = None
    #: Governance: the department proposing and running the project with the citizens.
    department: ShortText | None = None

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


class ExecutionReportRequest(Body):
    progress_pct: Annotated[int, Field(ge=0, le=100)]
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    final: bool = False


class ExecutionCouncilRequest(Body):
    citizen_members: Annotated[int, Field(ge=1, le=1000)]
    official_members: Annotated[int, Field(ge=1, le=1000)]
    note: Note = ""


class EvaluationRequest(Body):
    findings: Text
    #: The meeting's date, `YYYY-MM-DD`.
    results_meeting_on: ShortText

    @field_validator("results_meeting_on")
    @classmethod
    def _a_date(cls, value: str) -> str:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("a date, YYYY-MM-DD") from None


class ExecutingDepartmentRequest(Body):
    department: ShortText
    reason: Note = ""


class DeliberationRequest(Body):
    action: Literal["continue", "resize", "end"]
    #: The new cost: with `resize` only.
    cost_krw: PositiveKRW | None = None
    note: Text


class OpinionCreate(Body):
    body: Text


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
    #: How many opinions the Budget Square gave (deliberative projects).
    opinions: int
    #: A selected project's execution in Y+1: `department`, `progress_pct`, `reports`,
    #: `next_report_due_at`, `final_due_at`, `overdue`, `completed_at`, `council` (None before).
    execution: dict[str, Any] | None = None
    #: Governance: the evaluation of the December results meeting.
    evaluation: dict[str, Any] | None = None


class OpinionOut(BaseModel):
    """A Budget Square opinion as anyone may read it: no author id."""

    id: str
    project_id: str
    body: str
    created_at: SeoulTime


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


def project_out(
    row: BudgetProject, filed: Sequence[ProjectObjection] = (), opinions: int = 0
) -> ProjectOut:
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
        opinions=opinions,
        execution=row.execution,
        evaluation=row.evaluation,
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


async def _opinion_counts(session: AsyncSession, project_ids: list[str]) -> dict[str, int]:
    if not project_ids:
        return {}
    query = (
        select(ProjectOpinion.project_id, func.count())
        .where(col(ProjectOpinion.project_id).in_(project_ids))
        .group_by(col(ProjectOpinion.project_id))
    )
    return {project_id: count for project_id, count in (await session.exec(query)).all()}


async def _project_out(session: AsyncSession, row: BudgetProject) -> ProjectOut:
    counts = await _opinion_counts(session, [row.id])
    return project_out(row, await _filed(session, [row.id]), counts.get(row.id, 0))


async def load_project(session: AsyncSession, project_id: str) -> BudgetProject:
    row = await session.get(BudgetProject, project_id)
    if row is None:
        raise not_found("project")
    return row


async def reload_project(ctx: AppContext, project_id: str) -> ProjectOut:
    async with ctx.sessions() as session:
        return await _project_out(session, await load_project(session, project_id))


async def _cycle(session: AsyncSession, year: int) -> BudgetCycle:
    row = (await session.exec(select(BudgetCycle).where(col(BudgetCycle.year) == year))).first()
    if row is None:
        raise not_found("budget cycle")
    return row


def require_phase(cycle: BudgetCycle, action: str, *phases: str, kind: str = METRO) -> None:
    """409 naming the phase unless the cycle's type `kind` is in one of `phases`."""
    current = cycle.phases.get(kind, {}).get("phase")
    if current not in phases:
        wanted = " or ".join(phases)
        raise Problem(
            409,
            f"{action} belongs to the {kind} {wanted} phase of the {cycle.year} cycle; "
            f"the {kind} phase is now {current}",
        )


def require_metro(row: BudgetProject, action: str) -> None:
    """409: screening, the council review and objections are the metropolitan and governance
    types' (the two-stage review of process.md §6a)."""
    if row.kind not in TWO_STAGE_KINDS:
        raise Problem(
            409,
            f"{action} is for metropolitan and governance projects (process.md §6a); this one "
            f"is {row.kind}",
        )


def require_deliberative(row: BudgetProject, action: str) -> None:
    if row.kind != DELIBERATIVE:
        raise Problem(
            409, f"{action} is for deliberative projects (process.md §5); this one is {row.kind}"
        )


async def _project_in_phase(
    ctx: AppContext, project_id: str, action: str, *phases: str
) -> BudgetProject:
    """A metropolitan or governance project whose cycle's type (its kind) is in one of
    `phases` (409 otherwise)."""
    async with ctx.sessions() as session:
        row = await load_project(session, project_id)
        require_metro(row, action)
        require_phase(await _cycle(session, row.year), action, *phases, kind=row.kind)
    return row


@asynccontextmanager
async def governance_ceiling(
    ctx: AppContext, row: BudgetProject, cost_krw: int
) -> AsyncIterator[None]:
    """For a decision that puts `row` on the governance ballot at `cost_krw` (the council
    advancing it, an objection's answer adjusting its cost): 422 naming
    `governance.ceiling_krw` unless the type's candidates of the year, with linked items,
    stay within the yearly ceiling; held (an advisory lock per cycle) until the decision is
    recorded, so two decisions cannot both take the last room. Other kinds pass through."""
    if row.kind != GOVERNANCE:
        yield
        return
    rules = pinned_rules(ctx, row.rulebook, default=row.rulebook, sections=("governance",))
    governance = rules.rulebook.governance
    assert governance is not None
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"governance-ceiling:{row.year}"},
        )
        others = await session.scalar(
            select(func.coalesce(func.sum(col(BudgetProject.cost_krw)), 0)).where(
                col(BudgetProject.year) == row.year,
                col(BudgetProject.kind) == GOVERNANCE,
                col(BudgetProject.id) != row.id,
                or_(
                    col(BudgetProject.status).in_(GOVERNANCE_COUNTED),
                    col(BudgetProject.linked),
                ),
            )
        )
        total = int(others or 0) + cost_krw
        if total > governance.ceiling_krw:
            raise Problem(
                422,
                f"governance.ceiling_krw: the governance candidates of {row.year}, linked items "
                f"included, would total {total:,} KRW ({int(others or 0):,} KRW besides this "
                f"project's {cost_krw:,}), over the yearly ceiling of "
                f"{governance.ceiling_krw:,} KRW",
                field="governance.ceiling_krw",
            )
        yield


# ---- submission --------------------------------------------------------------------------------


async def _submit_two_stage(
    ctx: AppContext, principal: Principal, year: int, body: ProjectCreate
) -> ProjectOut:
    """A metropolitan project, or a governance one with its partner department, in the
    type's call."""
    async with ctx.sessions() as session:
        cycle = await _cycle(session, year)
    what = "a metropolitan" if body.kind == METRO else "a governance"
    require_phase(cycle, f"submitting {what} project", "call", kind=body.kind)
    department = body.department if body.kind == GOVERNANCE else None
    return await _start_project(ctx, principal, cycle, body, department=department)


def _require_cycle_field(cycle: BudgetCycle, field: str) -> None:
    """422 naming `field` unless it is one of the fields the cycle chose (its allocation)."""
    known = [str(f["field"]) for f in cycle.fields]
    if field in known:
        return
    listed = ", ".join(known) if known else "none yet (the allocation phase sets them)"
    raise Problem(
        422,
        f"field: {field!r} is not one of the {cycle.year} cycle's deliberation fields: {listed}",
        field="field",
    )


async def _submit_deliberative(
    ctx: AppContext, principal: Principal, year: int, body: ProjectCreate
) -> ProjectOut:
    """A caseworker enters an existing programme of their department (forming, shortlist); a
    member of the field's council a new item (forming, shortlist, deliberation: entered in
    deliberation, it starts on the list)."""
    async with ctx.sessions() as session:
        cycle = await _cycle(session, year)
        _require_cycle_field(cycle, body.field)
        member = principal.role is Role.CITIZEN and await is_member(
            session, year, council_body(body.field), principal.sub
        )
    if principal.role is Role.CASEWORKER:
        require_phase(cycle, "entering an existing programme", *PROGRAMME_PHASES, kind=DELIBERATIVE)
        return await _start_project(ctx, principal, cycle, body, department=principal.dept)
    if not member:
        raise Problem(
            403,
            f"a new deliberative item is entered by a member of the {body.field} citizen "
            f"council of the {year} cycle; you are not one",
        )
    require_phase(cycle, "entering a new item", *NEW_ITEM_PHASES, kind=DELIBERATIVE)
    shortlisted = cycle.phases[DELIBERATIVE]["phase"] == "deliberation"
    return await _start_project(ctx, principal, cycle, body, shortlisted=shortlisted)


async def _start_project(
    ctx: AppContext,
    principal: Principal,
    cycle: BudgetCycle,
    body: ProjectCreate,
    *,
    department: str | None = None,
    shortlisted: bool = False,
) -> ProjectOut:
    """Write the project's row and start its workflow, together."""
    year = cycle.year
    sections = PROJECT_SECTIONS[body.kind]
    pinned = pinned_rules(
        ctx,
        cycle.rulebook,
        sections=sections,
        purpose=f"{body.kind}-project ({' and '.join(sections)})",
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
        status=(ProjectStatus.SHORTLISTED if shortlisted else ProjectStatus.SUBMITTED).value,
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
        department=department,
        shortlisted=shortlisted,
    )
    # The row and the workflow appear together: the cycle starts the project as its child
    # inside the transaction, and the project's first projection waits for the commit.
    cycle_handle = ctx.temporal.get_workflow_handle(budget_cycle_workflow_id(year))
    async with ctx.sessions() as session, session.begin():
        session.add(row)
        await session.flush()
        try:
            await cycle_handle.execute_update(
                BudgetCycleWorkflow.enter_project, start, id=f"enter-project-{project_id}"
            )
        except WorkflowUpdateFailedError as exc:
            raise refusal(exc) from exc
    return project_out(row)


@router.post(
    "/budget-cycles/{year}/projects",
    status_code=201,
    response_model=ProjectOut,
    description=(
        "`kind: metro`: an eligible citizen proposes a metropolitan project in the metro `call` "
        "phase; at least one district (`districts`, 422 otherwise).\n\n"
        "`kind: governance` (process.md §7): an eligible citizen proposes jointly with a "
        "department, named in `department` (422 without it), in the governance `call` phase; "
        "it takes the metropolitan path (screening with `metro.min_districts`, the council "
        "review, objections, the August vote with the drop rule) without a per-project cap: "
        "a project over the type's yearly ceiling is refused at screening, and the council "
        "advancing a candidate, or an objection's answer raising its cost, past the ceiling "
        "for the year's candidates (`governance.ceiling_krw`, the ceiling itself allowed) is "
        "422 naming it with the sums.\n\n"
        "`kind: deliberative` (process.md §5): a caseworker enters an existing programme of "
        "their department (`dept`) while the deliberative phase is `forming` or `shortlist`; a "
        "member of the field's citizen council enters a new item while it is `forming`, "
        "`shortlist` or `deliberation` (entered in `deliberation`, the item starts on the "
        "council's list: status `shortlisted`; otherwise `submitted`). Anyone else: 403 (a "
        "citizen not on the field's council: 403 naming the field). `field` must be one of "
        "the cycle's fields (422 naming `field`, listing them); no districts are needed and no "
        "metropolitan cap applies. Outside the phases: 409 naming the phase."
    ),
)
async def submit_project(
    year: Year,
    body: ProjectCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Propose a metropolitan project, or enter a deliberative one."""
    if body.kind not in SUPPORTED_KINDS:
        raise Problem(
            422,
            f"kind {body.kind!r} is not yet supported; supported: {', '.join(SUPPORTED_KINDS)}",
            field="kind",
        )
    submit = _submit_two_stage
    if body.kind == DELIBERATIVE:
        if principal.role not in (Role.CASEWORKER, Role.CITIZEN):
            raise Problem(
                403,
                "a deliberative project is entered by a caseworker (an existing programme) or "
                "a member of the field's citizen council (a new item)",
            )
        submit = _submit_deliberative
    else:
        require_eligible(principal)
        if not body.districts:
            what = "a metropolitan" if body.kind == METRO else "a governance"
            raise Problem(422, f"districts: {what} project names its districts", field="districts")
        if body.kind == GOVERNANCE and body.department is None:
            raise Problem(
                422,
                "department: a governance project is proposed jointly by citizens and a "
                "department (process.md §7): name the department that runs it with you",
                field="department",
            )
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/projects",
        body,
        lambda unit: submit(unit, principal, year, body),
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
    counts = await _opinion_counts(session, [r.id for r in shown])
    by_project: dict[str, list[ProjectObjection]] = {}
    for objection in filed:
        by_project.setdefault(objection.project_id, []).append(objection)
    return Page[ProjectOut](
        items=[project_out(r, by_project.get(r.id, []), counts.get(r.id, 0)) for r in shown],
        next_cursor=str(int(cursor or 0) + limit) if len(rows) > limit else None,
    )


@router.get("/projects/{project_id}", response_model=ProjectOut)
async def get_project(project_id: ProjectId, session: Session) -> ProjectOut:
    return await _project_out(session, await load_project(session, project_id))


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


async def _decide_as(
    ctx: AppContext,
    principal: Principal,
    role: Role,
    project_id: str,
    update: Any,
    command: Any,
    name: str,
    idempotency_key: str | None,
) -> ProjectOut:
    """A decision on a project (404 if there is none) by a caller of `role` (403 otherwise)."""
    require_role(principal, role)
    async with ctx.sessions() as session:
        await load_project(session, project_id)
    return await _decide(
        ctx, project_id, update, command, update_id(name, principal, idempotency_key)
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
    row = await _project_in_phase(ctx, project_id, "the council review", "council_review")
    if not body.advance:
        return await _review(ctx, project_id, principal, body, idempotency_key)
    async with governance_ceiling(ctx, row, row.cost_krw):
        return await _review(ctx, project_id, principal, body, idempotency_key)


async def _review(
    ctx: AppContext,
    project_id: str,
    principal: Principal,
    body: ProjectReviewRequest,
    idempotency_key: str | None,
) -> ProjectOut:
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
    row = await _project_in_phase(ctx, project_id, "answering an objection", "objections")
    async with ctx.sessions() as session:
        objection = await session.get(ProjectObjection, objection_id)
    if objection is None or objection.project_id != project_id:
        raise not_found("objection")
    if body.adjusted_cost_krw is None:
        return await _answer(ctx, project_id, objection_id, principal, body, idempotency_key)
    async with governance_ceiling(ctx, row, body.adjusted_cost_krw):
        return await _answer(ctx, project_id, objection_id, principal, body, idempotency_key)


async def _answer(
    ctx: AppContext,
    project_id: str,
    objection_id: str,
    principal: Principal,
    body: ObjectionAnswerRequest,
    idempotency_key: str | None,
) -> ProjectOut:
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


@router.post(
    "/projects/{project_id}/execution-reports",
    status_code=201,
    response_model=ProjectOut,
    description=(
        "A selected project's progress report (`final: true` with `progress_pct` 100: the "
        "final report, which completes it), by a caseworker of the executing department "
        "(`dept`), while it is `executing`: from 1 January of Y+1 (409 before). A progress "
        "report is due at least every `monitoring.report_days` and the final one by the end "
        "of the project's last year (Y+1, or the last year of its year-by-year plan); a "
        "missing one is escalated to the department and the operations team, then reminded "
        "every `escalation.reminder_days` (timeline `deadline_missed`, `reminder_sent`). A "
        "caseworker of another department: 403; no department named yet: 409."
    ),
)
async def report_project_execution(
    project_id: ProjectId,
    body: ExecutionReportRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    out = await _decide_as(
        ctx,
        principal,
        Role.CASEWORKER,
        project_id,
        ProjectWorkflow.report_execution,
        ProjectExecutionReport(
            actor_role=principal.role.value,
            actor_department=principal.dept,
            progress_pct=body.progress_pct,
            note=body.note,
            final=body.final,
        ),
        "report_project_execution",
        idempotency_key,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.post(
    "/projects/{project_id}/execution-council",
    response_model=ProjectOut,
    description=(
        "A governance project's public-private council for its execution (process.md §7), "
        "recorded by the operations team while the project is `selected` or `executing`: how "
        "many citizens and officials sit on it (no names). Another kind: 409."
    ),
)
async def form_execution_council(
    project_id: ProjectId,
    body: ExecutionCouncilRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    return await _decide_as(
        ctx,
        principal,
        Role.ADMIN,
        project_id,
        ProjectWorkflow.form_execution_council,
        FormExecutionCouncil(
            actor_role=principal.role.value,
            citizen_members=body.citizen_members,
            official_members=body.official_members,
            note=body.note,
        ),
        "form_execution_council",
        idempotency_key,
    )


@router.post(
    "/projects/{project_id}/evaluation",
    response_model=ProjectOut,
    description=(
        "A completed governance project's evaluation and feedback, recorded by the operations "
        "team at the December results meeting (process.md §7: case book and results meeting "
        "in December); `results_meeting_on` is a December date of a year after the cycle's "
        "(422 otherwise). Only once; before the final report, or for another kind: 409. A "
        "completed governance project without one by the end of that December is escalated "
        "to the operations team and reminded."
    ),
)
async def evaluate_project(
    project_id: ProjectId,
    body: EvaluationRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    return await _decide_as(
        ctx,
        principal,
        Role.ADMIN,
        project_id,
        ProjectWorkflow.evaluate,
        Evaluation(
            actor_role=principal.role.value,
            findings=body.findings,
            results_meeting_on=body.results_meeting_on,
        ),
        "evaluate_project",
        idempotency_key,
    )


@router.post(
    "/projects/{project_id}/executing-department",
    response_model=ProjectOut,
    description=(
        "The operations team names (or changes) the department that executes a selected "
        "project and files its reports: a governance project starts with its partner "
        "department, a deliberative programme with its own; a metropolitan project or a "
        "council's new item needs one named. While `selected` or `executing` (409 otherwise)."
    ),
)
async def name_executing_department(
    project_id: ProjectId,
    body: ExecutingDepartmentRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    return await _decide_as(
        ctx,
        principal,
        Role.ADMIN,
        project_id,
        ProjectWorkflow.name_executing_department,
        ExecutingDepartment(
            actor_role=principal.role.value, department=body.department, reason=body.reason
        ),
        "name_executing_department",
        idempotency_key,
    )


@router.post("/projects/{project_id}/withdraw", response_model=ProjectOut)
async def withdraw_project(
    project_id: ProjectId,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """The proposer withdraws, until the vote; a linked item is refused (409).

    A metropolitan project in the metro call, screening, council review or objection phase,
    while submitted, eligible or a candidate; a deliberative one (its caseworker or council
    member) in the deliberative forming, shortlist or deliberation phase, while submitted or
    shortlisted."""
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
    require_phase(cycle, "a withdrawal", *WITHDRAWAL_PHASES[row.kind], kind=row.kind)
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.withdraw,
        ProjectWithdrawal(actor=principal.actor()),
        update_id("withdraw_project", principal, idempotency_key),
    )


# ---- the deliberative type: the council's deliberation, the Square's opinions ------------------


@router.post(
    "/projects/{project_id}/deliberation",
    response_model=ProjectOut,
    description=(
        "The field's citizen council decides on a project on its deliberation list (status "
        "`shortlisted`) while the cycle's deliberative phase is `deliberation` (409 naming the "
        "phase otherwise): `continue`, `resize` (with the new `cost_krw`, positive and "
        "different from the current cost; 422 naming `cost_krw` otherwise) or `end` (the "
        "project ends: status `ended`). `continue` and `end` carry no `cost_krw` (422). A "
        "member of that field's council only (403); a metropolitan project: 409; a project "
        "not on the list: 409. Recorded in the timeline with the old and the new cost; the "
        "project's `cost_krw` is its current cost."
    ),
)
async def deliberate_project(
    project_id: ProjectId,
    body: DeliberationRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ProjectOut:
    """The field's citizen council continues, resizes or ends a project on its list."""
    async with ctx.sessions() as session:
        row = await load_project(session, project_id)
        require_deliberative(row, "deliberation")
        if not await is_member(session, row.year, council_body(row.field), principal.sub):
            raise Problem(
                403,
                f"deliberation is for members of the {row.field} citizen council of the "
                f"{row.year} cycle",
            )
        require_phase(
            await _cycle(session, row.year), "deliberation", "deliberation", kind=DELIBERATIVE
        )
    if body.action == "resize":
        if body.cost_krw is None:
            raise Problem(422, "cost_krw: a resize needs the new cost", field="cost_krw")
        if body.cost_krw == row.cost_krw:
            raise Problem(
                422,
                f"cost_krw: a resize must change the cost; it is {row.cost_krw:,} KRW now",
                field="cost_krw",
            )
    elif body.cost_krw is not None:
        raise Problem(
            422, f"cost_krw: only a resize carries a cost, not {body.action}", field="cost_krw"
        )
    return await _decide(
        ctx,
        project_id,
        ProjectWorkflow.deliberate,
        Deliberation(
            actor=principal.actor(), action=body.action, note=body.note, cost_krw=body.cost_krw
        ),
        update_id("deliberate_project", principal, idempotency_key),
    )


async def _opine(
    ctx: AppContext, principal: Principal, project_id: str, body: OpinionCreate
) -> OpinionOut:
    now: datetime = await ctx.clock.now()
    async with ctx.sessions() as session, session.begin():
        row = await load_project(session, project_id)
        require_deliberative(row, "an opinion of the Budget Square")
        if not await is_member(session, row.year, SQUARE, principal.sub):
            raise Problem(
                403, f"opinions are given by members of the {row.year} cycle's Budget Square"
            )
        cycle = await _cycle(session, row.year)
        require_phase(cycle, "an opinion", *OPINION_PHASES, kind=DELIBERATIVE)
        opinion = ProjectOpinion(
            id=str(uuid.uuid4()),
            project_id=project_id,
            author_id=principal.sub,
            body=body.body,
            created_at=now,
        )
        session.add(opinion)
    return OpinionOut(id=opinion.id, project_id=project_id, body=opinion.body, created_at=now)


@router.post(
    "/projects/{project_id}/opinions",
    status_code=201,
    response_model=OpinionOut,
    description=(
        "A member of the project's cycle's Budget Square gives an opinion on a deliberative "
        "project (403 for anyone else), while the cycle's deliberative phase is `shortlist`, "
        "`deliberation` or `vote` (409 naming the phase otherwise). A project of another "
        "kind: 409. The opinion is public; its author is not shown."
    ),
)
async def give_opinion(
    project_id: ProjectId,
    body: OpinionCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A Budget Square member's opinion on a deliberative project."""
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/projects/{project_id}/opinions",
        body,
        lambda unit: _opine(unit, principal, project_id, body),
    )


@router.get("/projects/{project_id}/opinions", response_model=Page[OpinionOut])
async def list_opinions(
    project_id: ProjectId,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
) -> Page[OpinionOut]:
    """The Budget Square's opinions on a project, oldest first; anyone reads, no author ids."""
    row = await load_project(session, project_id)
    rows = (
        await session.exec(
            select(ProjectOpinion)
            .where(col(ProjectOpinion.project_id) == row.id)
            .order_by(col(ProjectOpinion.created_at), col(ProjectOpinion.id))
            .offset(int(cursor or 0))
            .limit(limit + 1)
        )
    ).all()
    return Page[OpinionOut](
        items=[
            OpinionOut(id=o.id, project_id=o.project_id, body=o.body, created_at=o.created_at)
            for o in rows[:limit]
        ],
        next_cursor=str(int(cursor or 0) + limit) if len(rows) > limit else None,
    )
