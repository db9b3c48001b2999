"""Budget-year cycles (process.md §5-8, api.md "Budget-year cycles and projects"): the operations
team starts one cycle per year; its phases change by themselves on the rulebook calendar; anyone
reads where it stands; the operations team may move a phase's end, audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, ballot_problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.proposal_service import decide_case, pinned_rules, timeline, update_id
from api.schemas import Body, IsoTime, RulebookName, SeoulTime, ShortText, Text, Timeline
from models import selection
from models.ballot_box import BallotRefused, BoxTally, budget_box_id, cast, count_box, voter_group
from models.budget import (
    VOTE_PHASE,
    BudgetCycleStart,
    BudgetCycleState,
    BudgetVote,
    CyclePhase,
    PhaseOverride,
    PhaseSlot,
    cycle_columns,
    select_vote,
)
from models.budget_tables import BudgetCycle
from models.calendar import phase_at, phase_ends_at, phase_schedule
from models.case import Role
from models.ids import budget_cycle_workflow_id
from models.rules import PinnedRules
from workflows.budget import BudgetCycleWorkflow

router = APIRouter(prefix="/v1/budget-cycles", tags=["budget cycles"])

Year = Annotated[int, PathParam(ge=2000, le=2200, description="The cycle's budget year.")]
DEFAULT_CYCLE_RULEBOOK = "seoul-2021"
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
    created_at: SeoulTime


def cycle_out(row: BudgetCycle) -> BudgetCycleOut:
    return BudgetCycleOut(
        year=row.year,
        workflow_id=row.workflow_id,
        rulebook=row.rulebook,
        rulebook_hash=row.rulebook_hash,
        drop_ratio=row.drop_ratio,
        status=row.status,
        phases={kind: PhaseOut.model_validate(value) for kind, value in row.phases.items()},
        fields=[],
        linked_forums=[],
        carried_over=[],
        totals={},
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
    for kind in calendar:
        schedule = phase_schedule(calendar, kind, start.year)
        state.schedules[kind] = [PhaseSlot.of(p) for p in schedule]
        state.phases[kind] = CyclePhase(phase_at(schedule, now), phase_ends_at(schedule, now))
    return state


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
    start = BudgetCycleStart(year=body.year, rules=pinned, drop_ratio=ratio)
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
        return cycle_out(await load_cycle(session, body.year))


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
    return cycle_out(await load_cycle(session, year))


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

    async def reload_cycle() -> BudgetCycleOut:
        async with ctx.sessions() as session:
            return cycle_out(await load_cycle(session, year))

    await reload_cycle()
    return await decide_case(
        ctx,
        budget_cycle_workflow_id(year),
        BudgetCycleWorkflow.override_phase,
        PhaseOverride(
            actor_role=principal.role.value,
            type=body.type,
            phase=body.phase,
            new_end=body.new_end,
            reason=body.reason,
        ),
        request_id=update_id("override_phase", principal, idempotency_key),
        reload_case=reload_cycle,
        what="budget cycle",
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
    async with ctx.sessions() as session:
        row = await load_cycle(session, year)
    phase = _phase_of(row, body.kind)
    if phase != VOTE_PHASE:
        raise Problem(409, f"the {body.kind} vote is not open: the phase is {phase}")

    async def cast_it(unit: AppContext) -> BudgetBallotReceipt:
        try:
            async with unit.sessions() as session, session.begin():
                receipt = await cast(
                    session,
                    box_id=budget_box_id(year, body.kind),
                    person_id=principal.sub,
                    options=body.project_ids,
                    group=voter_group(budget_school=principal.budget_school),
                )
        except BallotRefused as refused:
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
    rule, results = select_vote(recounted, rules.rulebook, row.drop_ratio)
    return row, vote, recount, rules, rule, results


@router.get(
    "/{year}/results",
    response_model=BudgetResultsOut,
    description=(
        "After the close only (409 before: nobody sees counts while a vote runs). The box is "
        "recounted from Postgres and the selection recomputed with the rulebook's rule; "
        "`matches_recorded_tally` compares the recount with what the workflow recorded."
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
        fields={name: result.to_dict() for name, result in results.items()},
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
