"""District plans (구단위계획형) and neighbourhood plans (동단위계획형), process.md §8, §6a, api.md
"Budget-year cycles and projects", 003 1-2-④⑤.

District plans, on the cycle's `district` calendar type (rulebook `[calendar.district]`):

- `selection` (3월 초): the operations team records the districts chosen for strategic projects,
  `district.strategic_count_min`..`max` of them (5-6), once per cycle;
- `submission` (7월 초): a district's caseworker (`dept: "district:<name>"`) submits its plan
  (a 3-year strategy and a 1-year plan) within its ceiling (`district.ceiling_krw`, plus
  `district.strategic_ceiling_krw` for a strategic district; 이내, the ceiling itself is
  allowed); the plan is a child workflow of the cycle (workflows/district_plan.py);
- `negotiation` (7~8월): two rounds, the operations team, each may adjust the cost (within the
  ceiling again);
- `decision` (8월 말): the funding decision, after both rounds;
- `council` (12월): the agreement, once the city council's decision is recorded in the cycle.

Neighbourhood plans, on the `neighbourhood` type (`[calendar.neighbourhood]`, dates read):

- `ceilings`: the operations team announces each district's ceiling, computed from its counts
  of planning-type and autonomous neighbourhoods (`[neighbourhood_ceiling]`);
- `agendas`: a district's caseworker submits each neighbourhood's agendas as its residents'
  assembly ranked them, with the assembly's minutes, within the district's ceiling;
- `review`: the operations team scores each agenda on quantitative indicators and selects,
  the district's selected agendas together within its ceiling.

District names are the 25 Seoul autonomous districts (`models.sortition.DISTRICTS`): the
rulebook budgets for `district.district_count` (24) of them, and a plan or a ceiling is taken
for any one of the 25, one per district and cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WorkflowUpdateFailedError

import rulebooks
from api.auth import CurrentPrincipal, Principal, require_role
from api.budget import Year, decide_naming_fields, load_cycle
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.projects import require_phase
from api.proposal_service import refusal, timeline, update_id
from api.schemas import KRW, Body, SeoulTime, ShortText, Text, Timeline
from models.budget_tables import BudgetCycle
from models.case import Role
from models.district_plans import (
    AGENDA_PHASES,
    AGREEMENT_PHASES,
    APPLICATION_PHASES,
    CEILING_PHASES,
    DECISION_PHASES,
    DISTRICT,
    DISTRICT_DEPT,
    INDICATOR_MAX,
    NEGOTIATION_PHASES,
    NEIGHBOURHOOD,
    REVIEW_PHASES,
    SELECTION_PHASES,
    SUBMISSION_PHASES,
    Agreement,
    DistrictApplication,
    DistrictPlan,
    DistrictPlanStart,
    FundingDecision,
    Negotiation,
    NeighbourhoodAgendaSet,
    NeighbourhoodCeiling,
    PlanStatus,
    StrategicSelection,
    district_ceiling_krw,
    district_ceiling_refusal,
    district_plan_workflow_id,
)
from models.ids import budget_cycle_workflow_id
from models.rules import DistrictRules, NeighbourhoodCeilingRules, NeighbourhoodRules, PinnedRules
from models.sortition import DISTRICTS
from models.tables import TimelineRow
from workflows.budget import BudgetCycleWorkflow
from workflows.district_plan import DistrictPlanWorkflow

router = APIRouter(prefix="/v1", tags=["district and neighbourhood plans"])

PlanId = Annotated[str, PathParam(max_length=64, description="The district plan's id.")]
AgendaId = Annotated[str, PathParam(max_length=64, description="The agenda set's id.")]
DistrictName = Annotated[str, Field(description="A Seoul district, e.g. `Mapo-gu`.")]
Positive = Annotated[int, Field(gt=0, le=10**15)]
Count = Annotated[int, Field(ge=0, le=1_000)]
Indicator = Annotated[int, Field(ge=0, le=INDICATOR_MAX)]


def _krw(amount: int) -> str:
    return f"{amount:,} KRW"


# ---- shared checks ---------------------------------------------------------------------------


def _pinned(ctx: AppContext, cycle: BudgetCycle) -> PinnedRules:
    """The rulebook the cycle pinned, as it pinned it (409 if it cannot be read the same)."""
    try:
        pinned = rulebooks.load(cycle.rulebook, ctx.settings.extra_rulebook_dirs)
    except rulebooks.RulebookError as exc:
        raise Problem(409, f"the {cycle.year} cycle's rulebook cannot be read: {exc}") from exc
    if pinned.content_hash != cycle.rulebook_hash:
        raise Problem(
            409,
            f"rulebook {cycle.rulebook} no longer has the content the {cycle.year} cycle pinned "
            f"({cycle.rulebook_hash})",
        )
    return pinned


def _district_rules(ctx: AppContext, cycle: BudgetCycle) -> tuple[PinnedRules, DistrictRules]:
    pinned = _pinned(ctx, cycle)
    rules = pinned.rulebook.district
    if rules is None or DISTRICT not in (pinned.rulebook.calendar or {}):
        raise Problem(
            409,
            f"the {cycle.year} cycle runs on rulebook {cycle.rulebook}, which has no [district] "
            "rules and [calendar.district] phases: it takes no district plans",
        )
    return pinned, rules


def _neighbourhood_rules(
    ctx: AppContext, cycle: BudgetCycle
) -> tuple[NeighbourhoodRules, NeighbourhoodCeilingRules]:
    book = _pinned(ctx, cycle).rulebook
    if (
        book.neighbourhood is None
        or book.neighbourhood_ceiling is None
        or NEIGHBOURHOOD not in (book.calendar or {})
    ):
        raise Problem(
            409,
            f"the {cycle.year} cycle runs on rulebook {cycle.rulebook}, which has no "
            "[neighbourhood], [neighbourhood_ceiling] and [calendar.neighbourhood]: it takes no "
            "neighbourhood plans",
        )
    return book.neighbourhood, book.neighbourhood_ceiling


def _require_district_name(name: str, field: str) -> None:
    if name not in DISTRICTS:
        raise Problem(
            422, f"{field}: {name!r} is not a Seoul district ({', '.join(DISTRICTS)})", field=field
        )


def caseworker_district(principal: Principal) -> str:
    """The district a caseworker acts for (`dept: "district:<name>"`); 403 for anyone else."""
    require_role(principal, Role.CASEWORKER)
    dept = principal.dept or ""
    name = dept.removeprefix(DISTRICT_DEPT)
    if not dept.startswith(DISTRICT_DEPT) or name not in DISTRICTS:
        raise Problem(
            403,
            'this is done by a caseworker of a district (dept "district:<name>", a Seoul '
            f"district); your department is {dept or 'none'}",
        )
    return name


async def _cycle(ctx: AppContext, year: int) -> BudgetCycle:
    async with ctx.sessions() as session:
        return await load_cycle(session, year)


# ---- the applications of February --------------------------------------------------------------


class ApplicationRequest(Body):
    district: DistrictName
    #: Also for strategic projects (전략사업 신청, received apart from the plan's application).
    strategic: bool = False
    note: Text | None = None


class ApplicationOut(BaseModel):
    year: int
    district: str
    strategic: bool
    note: str
    applied_at: SeoulTime


class ApplicationList(BaseModel):
    items: list[ApplicationOut]


def _application_out(row: DistrictApplication) -> ApplicationOut:
    return ApplicationOut(
        year=row.year,
        district=row.district,
        strategic=row.strategic,
        note=row.note,
        applied_at=row.applied_at,
    )


def _application_exists(year: int, district: str) -> Problem:
    return Problem(409, f"{district} has applied to the {year} cycle already")


async def _apply(
    ctx: AppContext, principal: Principal, year: int, body: ApplicationRequest
) -> ApplicationOut:
    row = DistrictApplication(
        year=year,
        district=body.district,
        strategic=body.strategic,
        note=body.note or "",
        applied_by=principal.sub,
        applied_at=await ctx.clock.now(),
    )
    try:
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            _district_rules(ctx, cycle)
            require_phase(
                cycle, "applying for the district plans", *APPLICATION_PHASES, kind=DISTRICT
            )
            if await session.get(DistrictApplication, (year, body.district)) is not None:
                raise _application_exists(year, body.district)
            session.add(row)
    except IntegrityError as exc:  # applied at the same moment
        raise _application_exists(year, body.district) from exc
    return _application_out(row)


@router.post(
    "/budget-cycles/{year}/district-applications",
    status_code=201,
    response_model=ApplicationOut,
    description=(
        "A district's application (2월 사업 접수, 003 1-2-④: the plan type's application and, "
        "received apart, the application for strategic projects, `strategic: true`), by a "
        'caseworker of that district (`dept: "district:<name>"`, `district` the same name; '
        "403 otherwise), in the cycle's district `applications` phase (February; 409 naming "
        "the phase otherwise), once per district and cycle (409 for a second). The strategic "
        "districts of March are chosen among those that applied for strategic projects. "
        "Reading: a district that did not apply may still submit its plan in July (the "
        "application is the city's count of who takes part, not a condition 003 states)."
    ),
)
async def apply_district(
    year: Year,
    body: ApplicationRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    own = caseworker_district(principal)
    _require_district_name(body.district, "district")
    if body.district != own:
        raise Problem(
            403, f"a caseworker of {own} applies for {own} only; this one is for {body.district}"
        )
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/district-applications",
        body,
        lambda unit: _apply(unit, principal, year, body),
    )


@router.get(
    "/budget-cycles/{year}/district-applications",
    response_model=ApplicationList,
    description="The districts' applications of February, by district. Anyone reads.",
)
async def list_applications(year: Year, session: Session) -> ApplicationList:
    await load_cycle(session, year)
    rows = (
        await session.exec(
            select(DistrictApplication)
            .where(col(DistrictApplication.year) == year)
            .order_by(col(DistrictApplication.district))
        )
    ).all()
    return ApplicationList(items=[_application_out(r) for r in rows])


# ---- strategic districts -----------------------------------------------------------------------


class StrategicRequest(Body):
    districts: Annotated[list[DistrictName], Field(max_length=100)]
    note: Text | None = None


class StrategicOut(BaseModel):
    year: int
    districts: list[str]
    note: str
    selected_at: SeoulTime


def _strategic_out(row: StrategicSelection) -> StrategicOut:
    return StrategicOut(
        year=row.year, districts=list(row.districts), note=row.note, selected_at=row.selected_at
    )


def _check_strategic(rules: DistrictRules, districts: list[str]) -> None:
    for name in districts:
        _require_district_name(name, "districts")
    if len(set(districts)) != len(districts):
        raise Problem(422, "districts: each district once", field="districts")
    low, high = rules.strategic_count_min, rules.strategic_count_max
    if not low <= len(districts) <= high:
        raise Problem(
            422,
            f"districts: {low} to {high} districts are chosen for strategic projects "
            f"(district.strategic_count_min..max); {len(districts)} named",
            field="districts",
        )


async def _require_strategic_applicants(
    session: AsyncSession, year: int, districts: list[str]
) -> None:
    """422 naming `districts` unless each applied in February for strategic projects."""
    applied = set(
        (
            await session.exec(
                select(DistrictApplication.district).where(
                    col(DistrictApplication.year) == year, col(DistrictApplication.strategic)
                )
            )
        ).all()
    )
    missing = [name for name in districts if name not in applied]
    if missing:
        shown = ", ".join(sorted(applied)) or "none"
        raise Problem(
            422,
            f"districts: {', '.join(missing)} did not apply for strategic projects in February "
            f"(전략사업 신청); the {year} cycle's applicants for them: {shown}",
            field="districts",
        )


def _strategic_exists(year: int) -> Problem:
    return Problem(409, f"the strategic districts of the {year} cycle are selected already")


async def _select_strategic(ctx: AppContext, year: int, body: StrategicRequest) -> StrategicOut:
    row = StrategicSelection(
        year=year,
        districts=list(body.districts),
        note=body.note or "",
        selected_at=await ctx.clock.now(),
    )
    try:
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            _, rules = _district_rules(ctx, cycle)
            require_phase(
                cycle, "selecting the strategic districts", *SELECTION_PHASES, kind=DISTRICT
            )
            _check_strategic(rules, list(body.districts))
            if await session.get(StrategicSelection, year) is not None:
                raise _strategic_exists(year)
            await _require_strategic_applicants(session, year, list(body.districts))
            session.add(row)
    except IntegrityError as exc:  # selected at the same moment
        raise _strategic_exists(year) from exc
    return _strategic_out(row)


@router.post(
    "/budget-cycles/{year}/strategic-districts",
    status_code=201,
    response_model=StrategicOut,
    description=(
        "The districts chosen for strategic projects (전략사업, 003 1-2-④, 3월 초), by the "
        "operations team (admin), in the cycle's district `selection` phase only (1-10 March, "
        "a reading of 3월 초; 409 naming the phase otherwise), once per cycle (409 for a "
        "second). Between `district.strategic_count_min` and `strategic_count_max` districts "
        "(5-6 in seoul-2021-2), each a Seoul district and named once: 422 naming `districts` "
        "otherwise. A chosen district's plan is strategic (its ceiling is "
        "`district.ceiling_krw + district.strategic_ceiling_krw`). Each chosen district must "
        "have applied for strategic projects in February "
        "(`POST .../district-applications`, `strategic: true`; 422 naming `districts` and the "
        "applicants otherwise)."
    ),
)
async def select_strategic(
    year: Year,
    body: StrategicRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.ADMIN)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/strategic-districts",
        body,
        lambda unit: _select_strategic(unit, year, body),
    )


@router.get(
    "/budget-cycles/{year}/strategic-districts",
    response_model=StrategicOut,
    description="The cycle's strategic districts; 404 until they are selected. Anyone reads.",
)
async def get_strategic(year: Year, session: Session) -> StrategicOut:
    await load_cycle(session, year)
    row = await session.get(StrategicSelection, year)
    if row is None:
        raise not_found("strategic-district selection")
    return _strategic_out(row)


# ---- district plans --------------------------------------------------------------------------


class PlanCreate(Body):
    district: DistrictName
    strategic: bool
    #: The 3-year strategy: mandatory for a strategic district's plan.
    strategy: Text | None = None
    #: The 1-year (first-year) plan.
    plan: Text
    cost_krw: KRW


class PlanOut(BaseModel):
    id: str
    year: int
    district: str
    strategic: bool
    strategy: str | None
    plan: str
    submitted_cost_krw: int
    #: The current cost, after any adjustment in negotiation.
    cost_krw: int
    ceiling_krw: int
    status: str
    #: [{round, notes, old_cost_krw, new_cost_krw, at}].
    negotiations: list[dict[str, Any]]
    decision: dict[str, Any] | None
    agreement: dict[str, Any] | None
    rulebook: str
    created_at: SeoulTime


class PlanList(BaseModel):
    items: list[PlanOut]


def _plan_out(row: DistrictPlan) -> PlanOut:
    return PlanOut(
        id=row.id,
        year=row.year,
        district=row.district,
        strategic=row.strategic,
        strategy=row.strategy,
        plan=row.plan,
        submitted_cost_krw=row.submitted_cost_krw,
        cost_krw=row.cost_krw,
        ceiling_krw=row.ceiling_krw,
        status=row.status,
        negotiations=list(row.negotiations),
        decision=row.decision,
        agreement=row.agreement,
        rulebook=row.rulebook,
        created_at=row.created_at,
    )


async def _load_plan(session: AsyncSession, plan_id: str) -> DistrictPlan:
    row = await session.get(DistrictPlan, plan_id)
    if row is None:
        raise not_found("district plan")
    return row


def _plan_exists(year: int, district: str) -> Problem:
    return Problem(409, f"{district} has a district plan in the {year} cycle already")


async def _check_plan(
    session: AsyncSession, ctx: AppContext, cycle: BudgetCycle, body: PlanCreate
) -> PinnedRules:
    """The submission's phase (409), its ceiling and its strategic flag (422), and that the
    district has no plan yet (409)."""
    pinned, rules = _district_rules(ctx, cycle)
    require_phase(cycle, "submitting a district plan", *SUBMISSION_PHASES, kind=DISTRICT)
    selection = await session.get(StrategicSelection, cycle.year)
    chosen = selection is not None and body.district in selection.districts
    if body.strategic != chosen:
        shown = ", ".join(selection.districts) if selection is not None else "none selected"
        raise Problem(
            422,
            f"strategic: {body.district} is {'' if chosen else 'not '}one of the {cycle.year} "
            f"cycle's strategic districts ({shown}); its plan is "
            f"{'' if chosen else 'not '}strategic",
            field="strategic",
        )
    if body.strategic and body.strategy is None:
        raise Problem(
            422,
            "strategy: a strategic district submits its 3-year strategy with its 1-year plan "
            "(3년 전략계획, 003 1-2-④)",
            field="strategy",
        )
    refused = district_ceiling_refusal(rules, body.strategic, body.cost_krw)
    if refused is not None:
        raise Problem(422, refused, field="cost_krw")
    found = await session.exec(
        select(DistrictPlan.id).where(
            col(DistrictPlan.year) == cycle.year, col(DistrictPlan.district) == body.district
        )
    )
    if found.first() is not None:
        raise _plan_exists(cycle.year, body.district)
    return pinned


async def _submit_plan(
    ctx: AppContext, principal: Principal, year: int, body: PlanCreate
) -> PlanOut:
    plan_id = str(uuid.uuid4())
    now = await ctx.clock.now()
    cycle_handle = ctx.temporal.get_workflow_handle(budget_cycle_workflow_id(year))
    try:
        # The row and the workflow appear together: the cycle starts the plan as its child
        # inside the transaction, and the plan's first projection waits for the commit.
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            pinned = await _check_plan(session, ctx, cycle, body)
            assert pinned.rulebook.district is not None
            ceiling = district_ceiling_krw(pinned.rulebook.district, body.strategic)
            row = DistrictPlan(
                id=plan_id,
                workflow_id=district_plan_workflow_id(plan_id),
                year=year,
                district=body.district,
                strategic=body.strategic,
                strategy=body.strategy,
                plan=body.plan,
                submitted_cost_krw=body.cost_krw,
                ceiling_krw=ceiling,
                cost_krw=body.cost_krw,
                submitted_by=principal.sub,
                rulebook=pinned.name,
                rulebook_hash=pinned.content_hash,
                created_at=now,
            )
            session.add(row)
            await session.flush()
            start = DistrictPlanStart(
                plan_id=plan_id,
                year=year,
                district=body.district,
                strategic=body.strategic,
                cost_krw=body.cost_krw,
                rules=pinned,
                submitted_by=principal.sub,
            )
            try:
                await cycle_handle.execute_update(
                    BudgetCycleWorkflow.enter_district_plan,
                    start,
                    id=f"enter-district-plan-{plan_id}",
                )
            except WorkflowUpdateFailedError as exc:
                raise refusal(exc) from exc
    except IntegrityError as exc:  # the district's plan submitted at the same moment
        raise _plan_exists(year, body.district) from exc
    return _plan_out(row)


@router.post(
    "/budget-cycles/{year}/district-plans",
    status_code=201,
    response_model=PlanOut,
    description=(
        "A district's plan (지역사회혁신계획, 003 1-2-④: the 3-year strategy and the 1-year "
        'plan), submitted by a caseworker of that district (`dept: "district:<name>"`, '
        "`district` the same name; 403 for anyone else, a caseworker of another district "
        "included) in the cycle's district `submission` phase (1-10 July, a reading of 7월 초; "
        "409 naming the phase otherwise), one plan per district and cycle (409 for a "
        "second). `district` is one of the 25 Seoul districts (422 naming it otherwise). "
        "`strategic` is true exactly for a district chosen in March "
        "(`POST .../strategic-districts`; 422 naming `strategic` otherwise), whose plan must "
        "carry its `strategy` (422 naming it; a reading of 3년 전략계획(해당자치구만 제출)). "
        "`cost_krw` is within the plan's ceiling, `district.ceiling_krw` (1 billion KRW), plus "
        "`district.strategic_ceiling_krw` (300 million) for a strategic plan; the ceiling "
        "itself is accepted (이내), one won more is 422 naming `cost_krw` and the ceiling. The "
        "plan is a child workflow of the cycle; its timeline is "
        "`GET /v1/district-plans/{plan_id}/timeline`."
    ),
)
async def submit_plan(
    year: Year,
    body: PlanCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    own = caseworker_district(principal)
    _require_district_name(body.district, "district")
    if body.district != own:
        raise Problem(
            403,
            f"a caseworker of {own} submits {own}'s plan only; this one is for {body.district}",
        )
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/district-plans",
        body,
        lambda unit: _submit_plan(unit, principal, year, body),
    )


@router.get(
    "/budget-cycles/{year}/district-plans",
    response_model=PlanList,
    description=(
        "The cycle's district plans, by district. Anyone reads; who submitted is not shown."
    ),
)
async def list_plans(year: Year, session: Session) -> PlanList:
    await load_cycle(session, year)
    rows = (
        await session.exec(
            select(DistrictPlan)
            .where(col(DistrictPlan.year) == year)
            .order_by(col(DistrictPlan.district))
        )
    ).all()
    return PlanList(items=[_plan_out(r) for r in rows])


@router.get(
    "/district-plans/{plan_id}",
    response_model=PlanOut,
    description="A district plan with its negotiation rounds, decision and agreement.",
)
async def get_plan(plan_id: PlanId, session: Session) -> PlanOut:
    return _plan_out(await _load_plan(session, plan_id))


@router.get(
    "/district-plans/{plan_id}/timeline",
    response_model=Timeline,
    description="The plan's timeline, as its workflow recorded it.",
)
async def plan_timeline(plan_id: PlanId, session: Session) -> Timeline:
    row = await _load_plan(session, plan_id)
    return await timeline(session, row.id)


class NegotiationRequest(Body):
    #: The round's outcome: what the city's negotiators and the district agreed or asked.
    notes: Text
    adjusted_cost_krw: KRW | None = None


class DecisionRequest(Body):
    funded: bool
    note: Text


class AgreementRequest(Body):
    #: The city council's approval the agreement follows (its resolution).
    council_reference: ShortText
    note: Text | None = None


async def _decide_plan(
    ctx: AppContext,
    principal: Principal,
    idempotency_key: str | None,
    plan_id: str,
    action: str,
    phases: tuple[str, ...],
    update: Any,
    command: Any,
    *,
    after_council: bool = False,
) -> PlanOut:
    """One of the plan's Updates, in its phase of the cycle's district type (409 otherwise);
    the workflow checks the plan's stage and the rules, refusing with nothing written."""
    require_role(principal, Role.ADMIN)
    async with ctx.sessions() as session:
        row = await _load_plan(session, plan_id)
        cycle = await load_cycle(session, row.year)
    require_phase(cycle, action, *phases, kind=DISTRICT)
    if after_council and cycle.decisions.get("council") is None:
        raise Problem(
            409,
            f"{action} follows the city council's approval (서울특별시의회 승인 후 협약): the "
            f"council's decision of the {row.year} cycle is not recorded yet "
            f"(POST /v1/budget-cycles/{row.year}/council)",
        )

    async def reload_plan() -> PlanOut:
        async with ctx.sessions() as session:
            return _plan_out(await _load_plan(session, plan_id))

    return await decide_naming_fields(
        ctx,
        district_plan_workflow_id(plan_id),
        update,
        command,
        request_id=update_id(update.__name__, principal, idempotency_key),
        reload_case=reload_plan,
        what="district plan",
    )


@router.post(
    "/district-plans/{plan_id}/negotiations",
    response_model=PlanOut,
    description=(
        "A round of negotiation (협의조정, 003 1-2-④: 7~8월 1차~2차) between the city's "
        "negotiators and the district, recorded by the operations team (admin) in the cycle's "
        "district `negotiation` phase (11 July to 20 August, a reading; 409 naming the phase "
        "otherwise). Exactly two rounds: the first makes the plan `negotiating`, the second "
        "`negotiated`, a third is 409. Each round records its `notes` (the outcome) and, if "
        "the round adjusts it, the new cost (`adjusted_cost_krw`), which must again be within "
        "the plan's ceiling (422 naming `adjusted_cost_krw` and the ceiling)."
    ),
)
async def negotiate_plan(
    plan_id: PlanId,
    body: NegotiationRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> PlanOut:
    command = Negotiation(
        actor_role=principal.role.value, notes=body.notes, adjusted_cost_krw=body.adjusted_cost_krw
    )
    return await _decide_plan(
        ctx,
        principal,
        idempotency_key,
        plan_id,
        "a negotiation round",
        NEGOTIATION_PHASES,
        DistrictPlanWorkflow.negotiate,
        command,
    )


@router.post(
    "/district-plans/{plan_id}/decision",
    response_model=PlanOut,
    description=(
        "The funding decision on the final plan (최종 제출 및 지원 결정, 8월 말), by the "
        "operations team (admin), in the cycle's district `decision` phase (21-31 August, a "
        "reading; 409 naming the phase otherwise, so never after the end of August), only "
        "after both rounds of negotiation (409 before), once (409 after). `funded: true` "
        "funds the plan at its current cost, while the cycle funds fewer than "
        "`district.district_count` plans (24; 422 naming `funded` for the 25th); `false` ends "
        "it."
    ),
)
async def decide_plan(
    plan_id: PlanId,
    body: DecisionRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> PlanOut:
    require_role(principal, Role.ADMIN)
    command = FundingDecision(actor_role=principal.role.value, funded=body.funded, note=body.note)
    async with _funding_room(ctx, plan_id, body.funded):
        return await _decide_plan(
            ctx,
            principal,
            idempotency_key,
            plan_id,
            "the funding decision",
            DECISION_PHASES,
            DistrictPlanWorkflow.decide,
            command,
        )


#: A plan that was funded (and then perhaps agreed).
FUNDED_STATUSES = (PlanStatus.FUNDED.value, PlanStatus.AGREED.value)


@asynccontextmanager
async def _funding_room(ctx: AppContext, plan_id: str, funded: bool) -> AsyncIterator[None]:
    """For a decision funding a plan: 422 naming `funded` once the cycle funds
    `district.district_count` plans (24 x 1 bn: the type's budget has room for that many);
    held (an advisory lock per cycle) until the decision is recorded, so two decisions cannot
    both take the last place. A decision not to fund passes through."""
    if not funded:
        yield
        return
    async with ctx.sessions() as session, session.begin():
        row = await _load_plan(session, plan_id)
        _, rules = _district_rules(ctx, await load_cycle(session, row.year))
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"district-funding:{row.year}"},
        )
        others = await session.scalar(
            select(func.count()).where(
                col(DistrictPlan.year) == row.year,
                col(DistrictPlan.id) != row.id,
                col(DistrictPlan.status).in_(FUNDED_STATUSES),
            )
        )
        if int(others or 0) >= rules.district_count:
            raise Problem(
                422,
                f"funded: the {row.year} cycle funds {others} district plans already, the "
                f"{rules.district_count} its budget has room for (district.district_count, "
                f"{rules.district_count} x {_krw(rules.ceiling_krw)}); this one may only be "
                "decided not funded",
                field="funded",
            )
        yield


@router.post(
    "/district-plans/{plan_id}/agreement",
    response_model=PlanOut,
    description=(
        "The agreement between the district and the city (협약, 12월), recorded by the "
        "operations team (admin) in the cycle's district `council` phase (December; 409 "
        "naming the phase otherwise) and only once the city council's decision of the cycle "
        "is recorded (`POST /v1/budget-cycles/{year}/council`; 409 before): a reading of "
        "서울특별시의회 승인 후. Only for a funded plan (409 otherwise); `council_reference` "
        "names the council's approval. The plan's workflow ends."
    ),
)
async def agree_plan(
    plan_id: PlanId,
    body: AgreementRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> PlanOut:
    command = Agreement(
        actor_role=principal.role.value,
        council_reference=body.council_reference,
        note=body.note or "",
    )
    return await _decide_plan(
        ctx,
        principal,
        idempotency_key,
        plan_id,
        "the agreement",
        AGREEMENT_PHASES,
        DistrictPlanWorkflow.agree,
        command,
        after_council=True,
    )


# ---- neighbourhood ceilings ------------------------------------------------------------------


class DistrictCounts(Body):
    district: DistrictName
    planning_neighbourhoods: Count
    autonomous_neighbourhoods: Count


class CeilingsRequest(Body):
    districts: Annotated[list[DistrictCounts], Field(min_length=1, max_length=100)]


class CeilingOut(BaseModel):
    district: str
    planning_neighbourhoods: int
    autonomous_neighbourhoods: int
    ceiling_krw: int
    announced_at: SeoulTime


class CeilingsOut(BaseModel):
    year: int
    districts: list[CeilingOut]
    total_krw: int
    #: `neighbourhood.ceiling_krw`: the districts' ceilings together stay within it.
    city_ceiling_krw: int
    krw_per_neighbourhood: int


def _ceilings_out(
    year: int, rows: Sequence[NeighbourhoodCeiling], city: int, rate: int
) -> CeilingsOut:
    return CeilingsOut(
        year=year,
        districts=[
            CeilingOut(
                district=r.district,
                planning_neighbourhoods=r.planning_neighbourhoods,
                autonomous_neighbourhoods=r.autonomous_neighbourhoods,
                ceiling_krw=r.ceiling_krw,
                announced_at=r.announced_at,
            )
            for r in sorted(rows, key=lambda r: r.district)
        ],
        total_krw=sum(r.ceiling_krw for r in rows),
        city_ceiling_krw=city,
        krw_per_neighbourhood=rate,
    )


def _check_counts(
    city: NeighbourhoodRules, rules: NeighbourhoodCeilingRules, body: CeilingsRequest
) -> list[int]:
    """Each district's ceiling from its counts; 422 naming the field for counts the rules do
    not allow or a total over the city's ceiling."""
    names = [d.district for d in body.districts]
    for name in names:
        _require_district_name(name, "districts.district")
    if len(set(names)) != len(names):
        raise Problem(422, "districts: each district once", field="districts")
    ceilings = []
    for counts in body.districts:
        if counts.autonomous_neighbourhoods > rules.autonomous_max_per_district:
            raise Problem(
                422,
                f"districts.autonomous_neighbourhoods: at most "
                f"{rules.autonomous_max_per_district} autonomous neighbourhoods per district "
                f"(neighbourhood_ceiling.autonomous_max_per_district); {counts.district} has "
                f"{counts.autonomous_neighbourhoods}",
                field="districts.autonomous_neighbourhoods",
            )
        if counts.planning_neighbourhoods + counts.autonomous_neighbourhoods == 0:
            raise Problem(
                422,
                f"districts.planning_neighbourhoods: {counts.district} has no neighbourhood",
                field="districts.planning_neighbourhoods",
            )
        ceilings.append(
            rules.district_ceiling_krw(
                counts.planning_neighbourhoods, counts.autonomous_neighbourhoods
            )
        )
    total = sum(ceilings)
    if total > city.ceiling_krw:
        raise Problem(
            422,
            f"districts: the districts' ceilings total {_krw(total)} "
            f"({_krw(rules.krw_per_neighbourhood)} a neighbourhood); the city's is "
            f"{_krw(city.ceiling_krw)} (neighbourhood.ceiling_krw)",
            field="districts",
        )
    return ceilings


@router.put(
    "/budget-cycles/{year}/neighbourhood-ceilings",
    response_model=CeilingsOut,
    description=(
        "The city announces each district's neighbourhood ceiling (자치구별 실링액 안내, 003 "
        "1-2-⑤), by the operations team (admin), in the cycle's neighbourhood `ceilings` phase "
        "(January, a reading; 409 naming the phase otherwise). Each district's ceiling is "
        "computed, not given: `neighbourhood_ceiling.krw_per_neighbourhood` (30 million KRW in "
        "seoul-2021-2) times its planning-type plus autonomous neighbourhoods (a reading: 003 "
        "gives no formula; the rate is its 2021 support of 6,840 million KRW for 228 "
        "neighbourhoods), at most `autonomous_max_per_district` (3) autonomous ones (422 "
        "naming `districts.autonomous_neighbourhoods`); the districts' ceilings together "
        "within `neighbourhood.ceiling_krw` (6 billion KRW; the total itself is accepted, one "
        "neighbourhood more is 422 naming `districts`). Each district once, a Seoul district, "
        "with at least one neighbourhood (422). A second call in the phase replaces the whole "
        "announcement."
    ),
)
async def announce_ceilings(
    year: Year, body: CeilingsRequest, ctx: Ctx, principal: CurrentPrincipal
) -> CeilingsOut:
    require_role(principal, Role.ADMIN)
    now = await ctx.clock.now()
    async with ctx.sessions() as session, session.begin():
        cycle = await load_cycle(session, year)
        city, rules = _neighbourhood_rules(ctx, cycle)
        require_phase(
            cycle, "announcing the neighbourhood ceilings", *CEILING_PHASES, kind=NEIGHBOURHOOD
        )
        ceilings = _check_counts(city, rules, body)
        await session.execute(
            delete(NeighbourhoodCeiling).where(col(NeighbourhoodCeiling.year) == year)
        )
        rows = [
            NeighbourhoodCeiling(
                year=year,
                district=counts.district,
                planning_neighbourhoods=counts.planning_neighbourhoods,
                autonomous_neighbourhoods=counts.autonomous_neighbourhoods,
                ceiling_krw=ceiling,
                announced_at=now,
            )
            for counts, ceiling in zip(body.districts, ceilings, strict=True)
        ]
        session.add_all(rows)
    return _ceilings_out(year, rows, city.ceiling_krw, rules.krw_per_neighbourhood)


@router.get(
    "/budget-cycles/{year}/neighbourhood-ceilings",
    response_model=CeilingsOut,
    description="The districts' neighbourhood ceilings as announced (none yet: an empty list).",
)
async def get_ceilings(year: Year, ctx: Ctx, session: Session) -> CeilingsOut:
    cycle = await load_cycle(session, year)
    city, rules = _neighbourhood_rules(ctx, cycle)
    rows = (
        await session.exec(
            select(NeighbourhoodCeiling).where(col(NeighbourhoodCeiling.year) == year)
        )
    ).all()
    return _ceilings_out(year, rows, city.ceiling_krw, rules.krw_per_neighbourhood)


# ---- neighbourhood agendas -------------------------------------------------------------------


class AgendaIn(Body):
    title: ShortText
    #: The residents' assembly's ranking: 1 is its first priority.
    rank: Annotated[int, Field(ge=1, le=1_000)]
    cost_krw: Positive


class AgendaSetCreate(Body):
    neighbourhood: ShortText
    agendas: Annotated[list[AgendaIn], Field(min_length=1, max_length=200)]
    #: The minutes of the residents' (village) assembly that selected and ranked them.
    assembly_minutes: Text


class AgendaScore(Body):
    rank: Annotated[int, Field(ge=1, le=1_000)]
    #: Indicator -> score 0..100 (the city's quantitative indicators; 003 names none).
    scores: Annotated[dict[ShortText, Indicator], Field(min_length=1, max_length=50)]
    selected: bool


class ReviewRequest(Body):
    agendas: Annotated[list[AgendaScore], Field(min_length=1, max_length=200)]
    note: Text | None = None


class AgendaSetOut(BaseModel):
    id: str
    year: int
    district: str
    neighbourhood: str
    #: In rank order: {title, rank, cost_krw}, and after the review `scores` and `selected`.
    agendas: list[dict[str, Any]]
    assembly_minutes: str
    cost_krw: int
    status: str
    selected_krw: int
    review_note: str | None
    created_at: SeoulTime
    reviewed_at: SeoulTime | None


class AgendaSetList(BaseModel):
    items: list[AgendaSetOut]


def _agenda_out(row: NeighbourhoodAgendaSet) -> AgendaSetOut:
    return AgendaSetOut(
        id=row.id,
        year=row.year,
        district=row.district,
        neighbourhood=row.neighbourhood,
        agendas=list(row.agendas),
        assembly_minutes=row.assembly_minutes,
        cost_krw=row.cost_krw,
        status=row.status,
        selected_krw=row.selected_krw,
        review_note=row.review_note,
        created_at=row.created_at,
        reviewed_at=row.reviewed_at,
    )


def _require_ranks(ranks: list[int], what: str) -> None:
    if sorted(ranks) != list(range(1, len(ranks) + 1)):
        raise Problem(422, f"agendas.rank: {what}", field="agendas.rank")


def _agendas_exist(district: str, neighbourhood: str) -> Problem:
    return Problem(409, f"{neighbourhood} ({district}) has submitted its agendas already")


async def _ceiling_of(
    session: AsyncSession, year: int, district: str, *, lock: bool = False
) -> NeighbourhoodCeiling:
    query = select(NeighbourhoodCeiling).where(
        col(NeighbourhoodCeiling.year) == year, col(NeighbourhoodCeiling.district) == district
    )
    found = (await session.exec(query.with_for_update() if lock else query)).first()
    if found is None:
        raise Problem(
            409,
            f"the city has not announced {district}'s neighbourhood ceiling for the {year} cycle",
        )
    return found


def _timeline_row(case_id: str, seq: int, at: datetime, event: str, role: Role, note: str) -> Any:
    return TimelineRow(
        case_id=case_id, seq=seq, at=at, stage=event, event=event, actor_role=role.value, note=note
    )


async def _submit_agendas(
    ctx: AppContext, principal: Principal, district: str, year: int, body: AgendaSetCreate
) -> AgendaSetOut:
    now = await ctx.clock.now()
    agendas = sorted(body.agendas, key=lambda a: a.rank)
    total = sum(a.cost_krw for a in agendas)
    row = NeighbourhoodAgendaSet(
        id=str(uuid.uuid4()),
        year=year,
        district=district,
        neighbourhood=body.neighbourhood,
        agendas=[{"title": a.title, "rank": a.rank, "cost_krw": a.cost_krw} for a in agendas],
        assembly_minutes=body.assembly_minutes,
        cost_krw=total,
        submitted_by=principal.sub,
        created_at=now,
    )
    try:
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            _neighbourhood_rules(ctx, cycle)
            require_phase(
                cycle, "submitting neighbourhood agendas", *AGENDA_PHASES, kind=NEIGHBOURHOOD
            )
            ceiling = await _ceiling_of(session, year, district)
            if total > ceiling.ceiling_krw:
                raise Problem(
                    422,
                    f"agendas: {body.neighbourhood}'s agendas total {_krw(total)}; {district}'s "
                    f"neighbourhood ceiling is {_krw(ceiling.ceiling_krw)}",
                    field="agendas",
                )
            found = await session.exec(
                select(NeighbourhoodAgendaSet.id).where(
                    col(NeighbourhoodAgendaSet.year) == year,
                    col(NeighbourhoodAgendaSet.district) == district,
                    col(NeighbourhoodAgendaSet.neighbourhood) == body.neighbourhood,
                )
            )
            if found.first() is not None:
                raise _agendas_exist(district, body.neighbourhood)
            session.add(row)
            await session.flush()
            session.add(
                _timeline_row(
                    row.id,
                    1,
                    now,
                    "agendas_submitted",
                    Role.CASEWORKER,
                    f"{len(agendas)} agendas of {body.neighbourhood} ({district}) as its "
                    f"residents' assembly ranked them, {_krw(total)}; {district}'s ceiling "
                    f"{_krw(ceiling.ceiling_krw)}",
                )
            )
    except IntegrityError as exc:  # the same neighbourhood at the same moment
        raise _agendas_exist(district, body.neighbourhood) from exc
    return _agenda_out(row)


@router.post(
    "/budget-cycles/{year}/neighbourhood-agendas",
    status_code=201,
    response_model=AgendaSetOut,
    description=(
        "One neighbourhood's agendas (동별 의제, 003 1-2-⑤) as its residents' assembly selected "
        "and ranked them (주민총회), with the assembly's minutes, submitted by a caseworker of "
        'its district (`dept: "district:<name>"`: the set is that district\'s; 403 for anyone '
        "else) in the cycle's neighbourhood `agendas` phase (February-June, a reading; 409 "
        "naming the phase otherwise), once per neighbourhood (409 for a second), after the "
        "city announced the district's ceiling (409 before). The ranks are 1..n, each once "
        "(422 naming `agendas.rank`); the agendas together are within the district's ceiling "
        "(the ceiling itself is accepted; over it 422 naming `agendas`). The city's review "
        "then selects among all of the district's agendas within the same ceiling."
    ),
)
async def submit_agendas(
    year: Year,
    body: AgendaSetCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    district = caseworker_district(principal)
    _require_ranks([a.rank for a in body.agendas], "the assembly's ranks are 1..n, each once")
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/neighbourhood-agendas",
        body,
        lambda unit: _submit_agendas(unit, principal, district, year, body),
    )


@router.get(
    "/budget-cycles/{year}/neighbourhood-agendas",
    response_model=AgendaSetList,
    description=(
        "The cycle's neighbourhood agenda sets, by district and neighbourhood; `district` "
        "filters. Anyone reads; who submitted is not shown."
    ),
)
async def list_agendas(
    year: Year,
    session: Session,
    district: Annotated[str | None, Query(max_length=100)] = None,
) -> AgendaSetList:
    await load_cycle(session, year)
    query = select(NeighbourhoodAgendaSet).where(col(NeighbourhoodAgendaSet.year) == year)
    if district is not None:
        query = query.where(col(NeighbourhoodAgendaSet.district) == district)
    rows = (
        await session.exec(
            query.order_by(
                col(NeighbourhoodAgendaSet.district), col(NeighbourhoodAgendaSet.neighbourhood)
            )
        )
    ).all()
    return AgendaSetList(items=[_agenda_out(r) for r in rows])


async def _load_agendas(session: AsyncSession, agenda_id: str) -> NeighbourhoodAgendaSet:
    row = await session.get(NeighbourhoodAgendaSet, agenda_id)
    if row is None:
        raise not_found("neighbourhood agenda set")
    return row


@router.get(
    "/neighbourhood-agendas/{agenda_id}",
    response_model=AgendaSetOut,
    description="A neighbourhood's agenda set, with its review once reviewed.",
)
async def get_agendas(agenda_id: AgendaId, session: Session) -> AgendaSetOut:
    return _agenda_out(await _load_agendas(session, agenda_id))


@router.get(
    "/neighbourhood-agendas/{agenda_id}/timeline",
    response_model=Timeline,
    description="The agenda set's timeline: its submission and its review.",
)
async def agendas_timeline(agenda_id: AgendaId, session: Session) -> Timeline:
    row = await _load_agendas(session, agenda_id)
    return await timeline(session, row.id)


async def _review(ctx: AppContext, agenda_id: str, body: ReviewRequest) -> AgendaSetOut:
    now = await ctx.clock.now()
    async with ctx.sessions() as session, session.begin():
        row = await _load_agendas(session, agenda_id)
        cycle = await load_cycle(session, row.year)
        _neighbourhood_rules(ctx, cycle)
        require_phase(cycle, "reviewing neighbourhood agendas", *REVIEW_PHASES, kind=NEIGHBOURHOOD)
        # the district's ceiling row, locked: its reviews are taken one at a time
        ceiling = await _ceiling_of(session, row.year, row.district, lock=True)
        await session.refresh(row)
        if row.status != "submitted":
            raise Problem(409, f"{row.neighbourhood}'s agendas are reviewed already")
        by_rank = {a.rank: a for a in body.agendas}
        ranks = [int(a["rank"]) for a in row.agendas]
        if len(by_rank) != len(body.agendas) or set(by_rank) != set(ranks):
            raise Problem(
                422,
                f"agendas: the review scores each of the set's {len(ranks)} agendas once, by "
                f"rank ({', '.join(map(str, ranks))})",
                field="agendas",
            )
        selected = sum(int(a["cost_krw"]) for a in row.agendas if by_rank[int(a["rank"])].selected)
        others = (
            await session.exec(
                select(NeighbourhoodAgendaSet).where(
                    col(NeighbourhoodAgendaSet.year) == row.year,
                    col(NeighbourhoodAgendaSet.district) == row.district,
                    col(NeighbourhoodAgendaSet.id) != row.id,
                )
            )
        ).all()
        already = sum(o.selected_krw for o in others)
        if already + selected > ceiling.ceiling_krw:
            raise Problem(
                422,
                f"agendas: the selected agendas cost {_krw(selected)}; with the {_krw(already)} "
                f"already selected in {row.district} that is {_krw(already + selected)}, over "
                f"its neighbourhood ceiling of {_krw(ceiling.ceiling_krw)}",
                field="agendas",
            )
        row.agendas = [
            {
                **a,
                "scores": dict(by_rank[int(a["rank"])].scores),
                "selected": by_rank[int(a["rank"])].selected,
            }
            for a in row.agendas
        ]
        row.status = "reviewed"
        row.selected_krw = selected
        row.review_note = body.note
        row.reviewed_at = now
        session.add(row)
        count = sum(1 for a in body.agendas if a.selected)
        session.add(
            _timeline_row(
                row.id,
                2,
                now,
                "agendas_reviewed",
                Role.ADMIN,
                f"reviewed on quantitative indicators: {count} of {len(ranks)} agendas "
                f"selected, {_krw(selected)}; {row.district} {_krw(already + selected)} of its "
                f"ceiling {_krw(ceiling.ceiling_krw)}" + (f"; {body.note}" if body.note else ""),
            )
        )
    return _agenda_out(row)


@router.post(
    "/neighbourhood-agendas/{agenda_id}/review",
    response_model=AgendaSetOut,
    description=(
        "The city's review of a neighbourhood's agendas (사업심의: 객관적 평가지표에 따른 "
        "사업전반 정량평가, 003 1-2-⑤) and its selection, by the operations team (admin), in "
        "the cycle's neighbourhood `review` phase (July to 20 August, a reading; 409 naming the "
        "phase otherwise), once per set (409 for a second). Each agenda of the set, named by "
        "its `rank`, is scored once on one or more indicators (name -> 0..100; 003 names no "
        "indicators: the city's own; 422 naming `agendas` otherwise) and `selected` or not; "
        "the scores are recorded as given. The district's selected agendas, over all its "
        "neighbourhoods, stay within its ceiling (the ceiling itself is accepted; over it 422 "
        "naming `agendas`)."
    ),
)
async def review_agendas(
    agenda_id: AgendaId,
    body: ReviewRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.ADMIN)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/neighbourhood-agendas/{agenda_id}/review",
        body,
        lambda unit: _review(unit, agenda_id, body),
        status_code=200,
    )
