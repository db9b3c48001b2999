"""Budget-year cycles (process.md §5-8, api.md "Budget-year cycles and projects"): the operations
team starts one cycle per year; its phases change by themselves on the rulebook calendar; anyone
reads where it stands; the operations team may move a phase's end, audited."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, ballot_problem, not_found, unavailable
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import StagedOut, decide_case, pinned_rules, timeline, update_id
from api.schemas import (
    Body,
    IsoTime,
    RulebookName,
    SeoulTime,
    ShortText,
    Text,
    Timeline,
    seoul_times,
)
from models import selection
from models.ballot_box import BallotRefused, BoxTally, budget_box_id, cast, count_box, voter_group
from models.budget import (
    VOTE_PHASE,
    BudgetCycleStart,
    BudgetCycleState,
    BudgetVote,
    CyclePhase,
    FieldAllocation,
    FormBody,
    LinkedForum,
    PhaseOverride,
    PhaseSlot,
    RecordDecision,
    SetFields,
    SetShortlist,
    ShortlistEntry,
    cycle_columns,
    select_vote,
)
from models.budget_bodies import SQUARE, council_body, is_member
from models.budget_tables import BudgetCycle
from models.calendar import phase_at, phase_ends_at, phase_schedule
from models.case import Role
from models.deliberation_tables import Forum
from models.ids import budget_cycle_workflow_id
from models.project_tables import BudgetProject
from models.rules import PinnedRules
from models.tables import SortitionDraw
from workflows.budget import BODY_PHASES, DELIBERATIVE, SHORTLIST_PHASES, BudgetCycleWorkflow

router = APIRouter(prefix="/v1/budget-cycles", tags=["budget cycles"])

Year = Annotated[int, PathParam(ge=2000, le=2200, description="The cycle's budget year.")]
DEFAULT_CYCLE_RULEBOOK = "seoul-2021-2"
CYCLE_SECTIONS = ("calendar", "metro")


class BudgetCycleCreate(Body):
    year: Annotated[int, Field(ge=2000, le=2200)]
    rulebook: RulebookName | None = None
    #: Within the rulebook's `metro.vote_drop_ratio_min..max`; its minimum when left out.
    drop_ratio: Annotated[float, Field(allow_inf_nan=False)] | None = None


class PhaseOverrideRequest(Body):
    type: ShortText
    phase: ShortText
    new_end: IsoTime
    reason: Text


class PhaseOut(BaseModel):
    phase: str
    phase_ends_at: SeoulTime | None


class BudgetCycleOut(BaseModel):
    year: int
    workflow_id: str
    rulebook: str
    rulebook_hash: str
    drop_ratio: float
    status: str
    phases: dict[str, PhaseOut]
    fields: list[dict[str, Any]]
    linked_forums: list[dict[str, Any]]
    carried_over: list[dict[str, Any]]
    totals: dict[str, int]
    #: Each body formed: `council:<field>` and `square` -> {draw_id, active, drawn, formed_at}.
    bodies: dict[str, Any]
    #: The councils' shortlists, the general assembly's approval and the city council's decision.
    decisions: dict[str, Any]
    created_at: SeoulTime


#: Project statuses on a field's deliberation list (the shortlist, as deliberation changed it).
LISTED = ("shortlisted", "selected", "dropped")


async def cycle_view(session: AsyncSession, row: BudgetCycle) -> BudgetCycleOut:
    """The cycle's projection, with each field's sums read from its projects' projections:
    the shortlist (the council's list, then the deliberation list as resized, added to and
    ended) and what the vote selected."""
    projects = (
        await session.exec(select(BudgetProject).where(col(BudgetProject.year) == row.year))
    ).all()
    shortlisted = {pid for ids in row.decisions.get("shortlists", {}).values() for pid in ids}
    listed: dict[str, int] = {}
    selected: dict[str, int] = {}
    selected_by_kind: dict[str, int] = {}
    for project in projects:
        pid, kind, field_name = project.id, project.kind, project.field
        status, cost = project.status, project.cost_krw
        if status == "selected":
            selected_by_kind[kind] = selected_by_kind.get(kind, 0) + cost
        if kind != "deliberative":
            continue
        if status in LISTED or (pid in shortlisted and status == "submitted"):
            listed[field_name] = listed.get(field_name, 0) + cost
        if status == "selected":
            selected[field_name] = selected.get(field_name, 0) + cost
    fields = [
        {
            "field": f["field"],
            "allocation_krw": f["allocation_krw"],
            "shortlist_krw": listed.get(f["field"], 0),
            "selected_krw": selected.get(f["field"], 0),
        }
        for f in row.fields
    ]
    totals = {
        "allocation_krw": sum(f["allocation_krw"] for f in fields),
        "shortlist_krw": sum(f["shortlist_krw"] for f in fields),
        **{f"{kind}_selected_krw": amount for kind, amount in sorted(selected_by_kind.items())},
    }
    return BudgetCycleOut(
        year=row.year,
        workflow_id=row.workflow_id,
        rulebook=row.rulebook,
        rulebook_hash=row.rulebook_hash,
        drop_ratio=row.drop_ratio,
        status=row.status,
        phases={kind: PhaseOut.model_validate(value) for kind, value in row.phases.items()},
        fields=fields,
        linked_forums=seoul_times([f for f in row.linked_forums if "carried_over_to" not in f]),
        carried_over=seoul_times([f for f in row.linked_forums if "carried_over_to" in f]),
        totals=totals,
        bodies=seoul_times(row.bodies),
        decisions=seoul_times(row.decisions),
        created_at=row.created_at,
    )


async def load_cycle(session: Session, year: int) -> BudgetCycle:
    row = (await session.exec(select(BudgetCycle).where(col(BudgetCycle.year) == year))).first()
    if row is None:
        raise not_found("budget cycle")
    return row


def _initial_state(start: BudgetCycleStart, now: datetime) -> BudgetCycleState:
    """The state the workflow starts from, by the same pure functions: the row shows it until
    the workflow's first projection replaces it."""
    calendar = start.rules.rulebook.calendar
    assert calendar is not None
    state = BudgetCycleState(year=start.year)
    state.linked_forums = list(start.linked_forums)
    state.carried_over = list(start.carried_over)
    for kind in calendar:
        schedule = phase_schedule(calendar, kind, start.year)
        state.schedules[kind] = [PhaseSlot.of(p) for p in schedule]
        state.phases[kind] = CyclePhase(phase_at(schedule, now), phase_ends_at(schedule, now))
    return state


async def _handed_forums(
    session: AsyncSession, year: int
) -> tuple[list[LinkedForum], list[LinkedForum]]:
    """The linked forums handed to `year` before its cycle existed (they join it), and those
    handed to `year + 1` because they closed after `year`'s window (carried over): the
    forums' projections say so (the forum workflow decides, `_hand_off_to_budget_year`). A
    forum handed over while the cycle runs tells the cycle itself."""
    rows = (
        await session.exec(
            select(Forum)
            .where(col(Forum.budget_year).in_([year, year + 1]))
            .order_by(col(Forum.closes_at), col(Forum.id))
        )
    ).all()
    joined, carried = [], []
    for forum in rows:
        if forum.closes_at is None:
            continue
        if forum.budget_year == year:
            origin = year - 1 if forum.carried_over else None
            joined.append(LinkedForum(forum.id, forum.closes_at, carried_over_from=origin))
        elif forum.carried_over:
            carried.append(LinkedForum(forum.id, forum.closes_at, carried_over_from=year))
    return joined, carried


def _duplicate(year: int) -> Problem:
    return Problem(409, f"the budget cycle {year} exists already", field="year")


async def _start_cycle(ctx: AppContext, principal: Principal, body: BudgetCycleCreate) -> Any:
    pinned = pinned_rules(
        ctx,
        body.rulebook,
        default=DEFAULT_CYCLE_RULEBOOK,
        sections=CYCLE_SECTIONS,
        purpose="budget-cycle (calendar and metro)",
    )
    metro = pinned.rulebook.metro
    assert metro is not None
    ratio = metro.vote_drop_ratio_min if body.drop_ratio is None else body.drop_ratio
    if not metro.allows_drop_ratio(ratio):
        raise Problem(
            422,
            f"drop_ratio {ratio} is outside metro.vote_drop_ratio "
            f"[{metro.vote_drop_ratio_min}, {metro.vote_drop_ratio_max}] "
            f"of rulebook {pinned.name}",
            field="drop_ratio",
        )
    workflow_id = budget_cycle_workflow_id(body.year)
    async with ctx.sessions() as session:
        joined, carried = await _handed_forums(session, body.year)
    start = BudgetCycleStart(
        year=body.year,
        rules=pinned,
        drop_ratio=ratio,
        linked_forums=joined,
        carried_over=carried,
        max_history_events=ctx.settings.cycle_max_history_events,
        follow_suggestion=ctx.settings.cycle_follow_suggestion,
    )
    now = await ctx.clock.now()
    row = BudgetCycle(
        id=workflow_id,
        year=body.year,
        workflow_id=workflow_id,
        rulebook=pinned.name,
        rulebook_hash=pinned.content_hash,
        drop_ratio=ratio,
        created_by=principal.sub,
        created_at=now,
        **cycle_columns(_initial_state(start, now)),
    )
    # The row and the workflow appear together: the workflow is started inside the
    # transaction, and its first projection waits for the commit.
    try:
        async with ctx.sessions() as session, session.begin():
            if await session.get(BudgetCycle, workflow_id) is not None:
                raise _duplicate(body.year)
            session.add(row)
            await session.flush()
            await ctx.temporal.start_workflow(
                BudgetCycleWorkflow.run,
                start,
                id=workflow_id,
                task_queue=ctx.settings.task_queue,
            )
    except (IntegrityError, WorkflowAlreadyStartedError) as exc:
        raise _duplicate(body.year) from exc
    async with ctx.sessions() as session:
        return await cycle_view(session, await load_cycle(session, body.year))


@router.post("", status_code=201, response_model=BudgetCycleOut)
async def create_cycle(
    body: BudgetCycleCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Start the budget-year cycle of `year` (one per year) on its rulebook's calendar."""
    require_role(principal, Role.ADMIN)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        "POST /v1/budget-cycles",
        body,
        lambda unit: _start_cycle(unit, principal, body),
    )


@router.get("/{year}", response_model=BudgetCycleOut)
async def get_cycle(year: Year, session: Session) -> BudgetCycleOut:
    return await cycle_view(session, await load_cycle(session, year))


@router.get("/{year}/timeline", response_model=Timeline)
async def cycle_timeline(year: Year, session: Session) -> Timeline:
    row = await load_cycle(session, year)
    return await timeline(session, row.id)


@router.post("/{year}/phase-overrides", response_model=BudgetCycleOut)
async def override_phase(
    year: Year,
    body: PhaseOverrideRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> BudgetCycleOut:
    """Move the end of one type's phase (and the next phase's start): audited, with a reason."""
    require_role(principal, Role.ADMIN)
    command = PhaseOverride(
        actor_role=principal.role.value,
        type=body.type,
        phase=body.phase,
        new_end=body.new_end,
        reason=body.reason,
    )
    return await _decide_cycle(
        ctx, principal, idempotency_key, year, BudgetCycleWorkflow.override_phase, command
    )


# ---- the vote: ballots, and results after the close ---------------------------------------------


class BudgetBallotRequest(Body):
    kind: ShortText
    project_ids: Annotated[list[ShortText], Field(min_length=1, max_length=500)]


class BudgetBallotReceipt(BaseModel):
    receipt: str


class BudgetResultsOut(BaseModel):
    year: int
    kind: str
    rule: str
    drop_ratio: float
    weights: dict[str, str]
    ballots: dict[str, int]
    turnout: int
    digest: str
    #: Whether a recount of the box now gives the counts and digest the workflow recorded.
    matches_recorded_tally: bool
    #: Whether the selection recomputed from the recount is the one the workflow recorded
    #: at the close (each project's rank and outcome, per field).
    matches_recorded_selection: bool
    #: Field -> the ranking with each group's approvals, the weighted score, the cost and
    #: `selected | dropped`, the drop line and the totals.
    fields: dict[str, dict[str, Any]]


def _phase_of(row: BudgetCycle, kind: str) -> str:
    current = row.phases.get(kind)
    if current is None:
        raise Problem(422, f"the cycle has no type {kind!r}", field="kind")
    return str(current["phase"])


@router.post(
    "/{year}/ballots",
    status_code=201,
    response_model=BudgetBallotReceipt,
    description=(
        "One ballot per person per cycle and kind, approving any of the projects on that "
        "kind's ballot (`project_ids`), cast while the kind is in its `vote` phase (409 naming "
        "the phase otherwise). The ballot counts in the voter's group (budget-school graduates "
        "apart, for `vote.group_weights`); who voted and what they chose are stored apart. "
        "A project not on the ballot is 422 naming `options`."
    ),
)
async def cast_budget_ballot(
    year: Year,
    body: BudgetBallotRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_eligible(principal)

    async def cast_it(unit: AppContext) -> BudgetBallotReceipt:
        # The box is open exactly while the vote is: the cycle is read only to say why a
        # ballot was refused (the phase), not on every ballot.
        try:
            async with unit.statement_session() as session:
                receipt = await cast(
                    session,
                    box_id=budget_box_id(year, body.kind),
                    person_id=principal.sub,
                    options=body.project_ids,
                    group=voter_group(budget_school=principal.budget_school),
                )
        except BallotRefused as refused:
            if refused.field is None:
                async with unit.sessions() as session:
                    phase = _phase_of(await load_cycle(session, year), body.kind)
                if phase != VOTE_PHASE:
                    raise Problem(
                        409, f"the {body.kind} vote is not open: the phase is {phase}"
                    ) from refused
                if refused.not_found:
                    # the phase has changed and the cycle is opening the box (it records
                    # every type's phase change first): moments, not a missing box
                    raise unavailable(
                        f"the {body.kind} ballot box is opening: send the ballot again"
                    ) from refused
            raise ballot_problem(refused) from refused
        return BudgetBallotReceipt(receipt=receipt)

    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST budget ballots {year} {body.kind}",
        body,
        cast_it,
        secret=True,
    )


async def _closed_vote(ctx: AppContext, year: int, kind: str) -> tuple[BudgetCycle, BudgetVote]:
    """The kind's counted vote, from the cycle workflow; 409 before the close (no one sees
    counts before it, design.md principle 7)."""
    async with ctx.sessions() as session:
        row = await load_cycle(session, year)
    phase = _phase_of(row, kind)
    state = await ctx.temporal.get_workflow_handle(row.workflow_id).query(BudgetCycleWorkflow.state)
    vote = state.votes.get(kind)
    if vote is None or vote.closed_at is None:
        raise Problem(409, f"the {kind} vote is not closed: the phase is {phase}")
    return row, vote


async def _recounted(
    ctx: AppContext, year: int, kind: str
) -> tuple[
    BudgetCycle,
    BudgetVote,
    BoxTally,
    PinnedRules,
    str,
    dict[str, selection.SelectionResult],
]:
    """A closed vote recounted from Postgres, and the selection the recount gives."""
    row, vote = await _closed_vote(ctx, year, kind)
    async with ctx.sessions() as session:
        recount = await count_box(session, budget_box_id(year, kind))
    rules = pinned_rules(ctx, row.rulebook, default=row.rulebook, sections=CYCLE_SECTIONS)
    recounted = BudgetVote(
        kind=kind,
        opened_at=vote.opened_at,
        candidates=vote.candidates,
        closed_at=vote.closed_at,
        ballots=recount.ballots,
        approvals=recount.approvals,
        digest=recount.digest,
    )
    allocations = {str(f["field"]): int(f["allocation_krw"]) for f in row.fields}
    rule, results = select_vote(recounted, rules.rulebook, row.drop_ratio, allocations)
    return row, vote, recount, rules, rule, results


@router.get(
    "/{year}/results",
    response_model=BudgetResultsOut,
    description=(
        "After the close only (409 before: nobody sees counts while a vote runs). The box is "
        "recounted from Postgres and the selection recomputed with the rulebook's rule (and, "
        "for the deliberative type, each field's allocation); `matches_recorded_tally` "
        "compares the recount with the counts and digest the workflow recorded, "
        "`matches_recorded_selection` the recomputed selection with the one it recorded."
    ),
)
async def budget_results(
    year: Year,
    ctx: Ctx,
    kind: Annotated[
        str, Query(min_length=1, max_length=200, description="The type voted on (default metro).")
    ] = "metro",
) -> BudgetResultsOut:
    row, vote, recount, rules, rule, results = await _recounted(ctx, year, kind)
    matches = (recount.ballots, recount.approvals, recount.digest) == (
        vote.ballots,
        vote.approvals,
        vote.digest,
    )
    weights = rules.rulebook.vote.exact_weights() if rules.rulebook.vote is not None else {}
    fields = {name: result.to_dict() for name, result in results.items()}
    return BudgetResultsOut(
        year=year,
        kind=kind,
        rule=rule,
        drop_ratio=row.drop_ratio,
        weights={group: str(w) for group, w in weights.items()},
        ballots=recount.ballots,
        turnout=recount.turnout,
        digest=recount.digest,
        matches_recorded_tally=matches,
        matches_recorded_selection=fields == vote.results,
        fields=fields,
    )


@router.get(
    "/{year}/results.pb",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
    description=(
        "One field's result as a pabulib file (META / PROJECTS / VOTES, approval ballots), "
        "after the close only. Voters are numbered by a hash of their ballot's content: no "
        "number joins a person or the order ballots were cast. `field` may be left out when "
        "the vote had one field."
    ),
)
async def budget_results_pabulib(
    year: Year,
    ctx: Ctx,
    kind: Annotated[str, Query(min_length=1, max_length=200)] = "metro",
    field: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> PlainTextResponse:
    _, _, _, _, _, results = await _recounted(ctx, year, kind)
    if field is None and len(results) == 1:
        field = next(iter(results))
    if field is None or field not in results:
        known = ", ".join(sorted(results)) or "none"
        raise Problem(422, f"field: one of the vote's fields ({known})", field="field")
    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT voter_group, array_agg(option) AS options FROM ballot_choices "
                    "WHERE box_id = :box GROUP BY receipt, voter_group"
                ),
                {"box": budget_box_id(year, kind)},
            )
        ).all()
    ballots = [
        selection.Ballot(group=r.voter_group, project_ids=frozenset(r.options)) for r in rows
    ]
    document = selection.to_pabulib(
        results[field],
        ballots,
        description=f"Seoul {kind} participatory budget vote {year}, field {field}",
        instance=str(year),
        subunit=field,
    )
    return PlainTextResponse(document, media_type="text/plain")


# ---- the deliberative type: fields, bodies, shortlists (process.md §5) --------------------------

FieldName = Annotated[str, PathParam(min_length=1, max_length=200, description="A field.")]
KrwAmount = Annotated[int, Field(gt=0, le=10**15)]


class FieldAllocationIn(Body):
    field: ShortText
    allocation_krw: KrwAmount


class FieldsRequest(Body):
    fields: Annotated[list[FieldAllocationIn], Field(min_length=1, max_length=100)]


class CouncilRequest(Body):
    field: ShortText
    active_member_ids: Annotated[list[ShortText], Field(min_length=1, max_length=10_000)]
    draw_id: ShortText


class SquareRequest(Body):
    draw_id: ShortText


class BodyOut(BaseModel):
    year: int
    body: str
    field: str | None
    draw_id: str
    active: int
    drawn: int
    formed_at: SeoulTime


class ShortlistRequest(Body):
    project_ids: Annotated[list[ShortText], Field(min_length=1, max_length=1_000)]


class AssemblyRequest(Body):
    approved_project_ids: Annotated[list[ShortText], Field(max_length=10_000)]
    minutes: Text


class CouncilDecisionRequest(Body):
    adopted_project_ids: Annotated[list[ShortText], Field(max_length=10_000)]
    resolution_ref: ShortText


#: The workflow's refusals of bad input start with the name of what is wrong (`draw_id: ...`).
_NAMED = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*)(?:: | is mandatory$)")


def _named(problem: Problem, names: dict[str, str]) -> Problem:
    """A workflow's 422 naming the field, as the API's own 422s do: the field its message
    starts with, under the request's name for it (`names`)."""
    found = _NAMED.match(problem.detail) if problem.status == 422 else None
    if problem.field is not None or found is None:
        return problem
    field = names.get(found.group(1), found.group(1))
    return Problem(problem.status, problem.detail, field=field, headers=problem.headers)


async def _decide_cycle(
    ctx: AppContext,
    principal: Principal,
    idempotency_key: str | None,
    year: int,
    update: Any,
    command: Any,
    names: dict[str, str] | None = None,
) -> BudgetCycleOut:
    """Run one of the cycle's Updates (the workflow checks the phase and the rules, refusing
    with nothing written) and answer with the cycle's projection once it has landed."""

    async def reload_cycle() -> BudgetCycleOut:
        async with ctx.sessions() as session:
            return await cycle_view(session, await load_cycle(session, year))

    await reload_cycle()
    return await decide_naming_fields(
        ctx,
        budget_cycle_workflow_id(year),
        update,
        command,
        request_id=update_id(update.__name__, principal, idempotency_key),
        reload_case=reload_cycle,
        what="budget cycle",
        names=names,
    )


async def decide_naming_fields(
    ctx: AppContext,
    case_workflow_id: str,
    update: Any,
    command: Any,
    *,
    request_id: str,
    reload_case: Callable[[], Awaitable[StagedOut]],
    what: str,
    names: dict[str, str] | None = None,
) -> StagedOut:
    """`decide_case`, with a workflow's 422 naming its field (`_named`)."""
    try:
        return await decide_case(
            ctx,
            case_workflow_id,
            update,
            command,
            request_id=request_id,
            reload_case=reload_case,
            what=what,
        )
    except Problem as problem:
        named = _named(problem, names or {})
        if named is problem:
            raise
        raise named from problem


@router.put(
    "/{year}/fields",
    response_model=BudgetCycleOut,
    description=(
        "The deliberative type's fields and the budget allocated to each, in its `allocation` "
        "phase only (409 naming the phase otherwise); a second call replaces the first."
    ),
)
async def set_fields(
    year: Year,
    body: FieldsRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> BudgetCycleOut:
    require_role(principal, Role.ADMIN)
    names = [f.field for f in body.fields]
    if len(set(names)) != len(names):
        raise Problem(422, "fields: each field once", field="fields")
    command = SetFields(
        actor_role=principal.role.value,
        fields=[FieldAllocation(f.field, f.allocation_krw) for f in body.fields],
    )
    return await _decide_cycle(
        ctx, principal, idempotency_key, year, BudgetCycleWorkflow.set_fields, command
    )


def _require_deliberative_phase(cycle: BudgetCycle, phases: tuple[str, ...], what: str) -> None:
    """409 naming the phase unless the deliberative type is in one of `phases`: checked from
    the projection before what the request names (the workflow checks it again), so that a
    request outside its phase is refused for its phase first."""
    phase = _phase_of(cycle, DELIBERATIVE)
    if phase not in phases:
        raise Problem(
            409,
            f"{what} is taken in the {' or '.join(phases)} phase; the phase is deliberative "
            f"{phase}",
        )


async def _revealed_draw(ctx: AppContext, draw_id: str, purpose: str) -> SortitionDraw:
    async with ctx.sessions() as session:
        draw = await session.get(SortitionDraw, draw_id)
    if draw is None:
        raise Problem(422, f"draw_id: no sortition draw {draw_id!r}", field="draw_id")
    if draw.purpose != purpose:
        raise Problem(
            422, f"draw_id: the draw is for {draw.purpose}, not {purpose}", field="draw_id"
        )
    if draw.status != "revealed" or draw.members is None:
        raise Problem(422, "draw_id: the draw is not revealed yet", field="draw_id")
    return draw


def _body_out(year: int, name: str, state: BudgetCycleState) -> BodyOut:
    formed = state.bodies[name]
    return BodyOut(
        year=year,
        body=name,
        field=None if name == SQUARE else name.removeprefix("council:"),
        draw_id=formed.draw_id,
        active=formed.active,
        drawn=formed.drawn,
        formed_at=formed.formed_at,
    )


async def _form(
    ctx: AppContext,
    principal: Principal,
    idempotency_key: str | None,
    year: int,
    command: FormBody,
) -> JSONResponse:
    await _decide_cycle(
        ctx, principal, idempotency_key, year, BudgetCycleWorkflow.form_body, command
    )
    state = await ctx.temporal.get_workflow_handle(budget_cycle_workflow_id(year)).query(
        BudgetCycleWorkflow.state
    )
    formed = state.bodies.get(command.body)
    if formed is None or (formed.draw_id, formed.active, formed.drawn) != (
        command.draw_id,
        len(command.active_ids),
        len(command.drawn_ids),
    ):
        # The key is the update id: the workflow answered with the update first sent with it,
        # which formed another body (or this one from another draw).
        raise Problem(
            422, "this Idempotency-Key was used for a different request", field="Idempotency-Key"
        )
    out = _body_out(year, command.body, state)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.post(
    "/{year}/councils",
    status_code=201,
    response_model=BodyOut,
    description=(
        "A field's citizen council: the active members named here and every member of a "
        "revealed `citizen_council` draw (budget-school graduates), 5:5 within one person "
        "(422 naming `active_member_ids` otherwise); in the deliberative `allocation` or "
        "`forming` phase, once per field, each draw for one body only."
    ),
)
async def form_council(
    year: Year,
    body: CouncilRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.ADMIN)
    async with ctx.sessions() as session:
        cycle = await load_cycle(session, year)
    _require_deliberative_phase(cycle, BODY_PHASES, "forming a council or the Square")
    draw = await _revealed_draw(ctx, body.draw_id, "citizen_council")
    if not draw.filter.get("budget_school"):
        raise Problem(
            422, "draw_id: a council's draw is of budget-school graduates", field="draw_id"
        )
    if len(set(body.active_member_ids)) != len(body.active_member_ids):
        raise Problem(422, "active_member_ids: each member once", field="active_member_ids")
    command = FormBody(
        actor_role=principal.role.value,
        body=council_body(body.field),
        draw_id=body.draw_id,
        active_ids=list(body.active_member_ids),
        drawn_ids=list(draw.members or []),
    )
    return await _form(ctx, principal, idempotency_key, year, command)


@router.post(
    "/{year}/square",
    status_code=201,
    response_model=BodyOut,
    description=(
        "The On-Citizen Budget Square: every member of a revealed `budget_square` draw of "
        "exactly `sortition.square_size` citizens (422 naming `draw_id` otherwise); in the "
        "deliberative `allocation` or `forming` phase, once."
    ),
)
async def form_square(
    year: Year,
    body: SquareRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.ADMIN)
    async with ctx.sessions() as session:
        cycle = await load_cycle(session, year)
    _require_deliberative_phase(cycle, BODY_PHASES, "forming a council or the Square")
    draw = await _revealed_draw(ctx, body.draw_id, "budget_square")
    command = FormBody(
        actor_role=principal.role.value,
        body=SQUARE,
        draw_id=body.draw_id,
        active_ids=[],
        drawn_ids=list(draw.members or []),
    )
    return await _form(ctx, principal, idempotency_key, year, command)


@router.put(
    "/{year}/fields/{field}/shortlist",
    response_model=BudgetCycleOut,
    description=(
        "A member of the field's citizen council sets the field's shortlist: deliberative "
        "projects of the field still `submitted`, totalling the `deliberative.shortlist_ratio` "
        "level of the allocation within `deliberative.level_tolerance` (130 % +/- 5 %: 422 "
        "naming both sums otherwise). In the `shortlist` phase; a later call replaces it; it "
        "is final when the phase ends, and each project then learns whether it is on it."
    ),
)
async def set_shortlist(
    year: Year,
    field: FieldName,
    body: ShortlistRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> BudgetCycleOut:
    async with ctx.sessions() as session:
        cycle = await load_cycle(session, year)
        if not await is_member(session, year, council_body(field), principal.sub):
            raise Problem(403, f"only a member of the {field} citizen council sets its shortlist")
        # The phase first: once the shortlist phase is over the projects have learned their
        # result (no longer `submitted`), and a late list is 409 for its phase, not 422.
        _require_deliberative_phase(cycle, SHORTLIST_PHASES, "the shortlist")
        rows = (
            await session.exec(
                select(BudgetProject).where(
                    col(BudgetProject.year) == year,
                    col(BudgetProject.id).in_(body.project_ids),
                )
            )
        ).all()
    found = {row.id: row for row in rows}
    wrong = [
        pid
        for pid in body.project_ids
        if pid not in found
        or (found[pid].kind, found[pid].field, found[pid].status)
        != ("deliberative", field, "submitted")
    ]
    if wrong:
        raise Problem(
            422,
            f"project_ids: not a submitted deliberative project of {field}: {', '.join(wrong)}",
            field="project_ids",
        )
    if len(set(body.project_ids)) != len(body.project_ids):
        raise Problem(422, "project_ids: each project once", field="project_ids")
    command = SetShortlist(
        actor_role=principal.role.value,
        field=field,
        projects=[ShortlistEntry(pid, found[pid].cost_krw) for pid in body.project_ids],
    )
    return await _decide_cycle(
        ctx, principal, idempotency_key, year, BudgetCycleWorkflow.set_shortlist, command
    )


# ---- the general assembly and the city council: recorded as given -----------------------------


async def _record_decision(
    ctx: AppContext,
    principal: Principal,
    idempotency_key: str | None,
    year: int,
    decision: str,
    project_ids: list[str],
    reference: str,
) -> BudgetCycleOut:
    require_role(principal, Role.ADMIN)
    async with ctx.sessions() as session:
        known = set(
            (
                await session.exec(
                    select(BudgetProject.id).where(
                        col(BudgetProject.year) == year, col(BudgetProject.id).in_(project_ids)
                    )
                )
            ).all()
        )
    missing = [pid for pid in project_ids if pid not in known]
    field_name = "approved_project_ids" if decision == "assembly" else "adopted_project_ids"
    reference_name = "minutes" if decision == "assembly" else "resolution_ref"
    if missing:
        raise Problem(
            422,
            f"{field_name}: not a project of the {year} cycle: {', '.join(missing)}",
            field=field_name,
        )
    if len(set(project_ids)) != len(project_ids):
        raise Problem(422, f"{field_name}: each project once", field=field_name)
    command = RecordDecision(
        actor_role=principal.role.value,
        decision=decision,
        project_ids=list(project_ids),
        reference=reference,
    )
    return await _decide_cycle(
        ctx,
        principal,
        idempotency_key,
        year,
        BudgetCycleWorkflow.record_decision,
        command,
        names={"project_ids": field_name, "reference": reference_name},
    )


@router.post(
    "/{year}/assembly",
    response_model=BudgetCycleOut,
    description=(
        "The general assembly's approval of next year's projects, recorded as given (in the "
        "metropolitan `assembly` phase, once). The timeline says which approved projects the "
        "vote had not selected; nothing overrides the vote or the assembly."
    ),
)
async def record_assembly(
    year: Year,
    body: AssemblyRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> BudgetCycleOut:
    return await _record_decision(
        ctx,
        principal,
        idempotency_key,
        year,
        "assembly",
        list(body.approved_project_ids),
        body.minutes,
    )


@router.post(
    "/{year}/council",
    response_model=BudgetCycleOut,
    description=(
        "The city council's December decision, recorded as given (in the `council` phase, "
        "once): the engine never overrides it, and the timeline says which adopted projects "
        "the vote had not selected."
    ),
)
async def record_council(
    year: Year,
    body: CouncilDecisionRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> BudgetCycleOut:
    return await _record_decision(
        ctx,
        principal,
        idempotency_key,
        year,
        "council",
        list(body.adopted_project_ids),
        body.resolution_ref,
    )
