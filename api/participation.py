"""Whole-budget participation (process.md §9, api.md `POST /v1/budget-cycles/{year}/participation`):
the records of a budget cycle's drafting, execution and settlement, each accepted only in its
`[participation]` window of the cycle's rulebook (models/participation.py).

- Citizens (eligible, as for proposals and votes) file material requests, opinions and waste
  reports; the operations team (admin) records the citizens' opinion statement sent to the city
  council, with the same POST and `kind: "opinion_statement"`.
- Departments answer: `POST .../participation/{record_id}/answers` by a caseworker, recorded
  under their `dept`. An answer to a material request is the department's explanation, one to
  a settlement opinion its answer; a record that names a department is answered by that
  department only.
- Anyone lists a cycle's records with their answers, without who filed them; the filer sees
  their own in `GET /v1/me/participation`.

The records are not in the cycle's timeline: its entries are the workflow's projection, numbered
by the workflow, and the records are rows the workflow never sees. They have their own listing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

import rulebooks
from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.budget import Year, load_cycle
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.idempotency import IdempotencyKey, run_once
from api.schemas import Body, Department, Page, SeoulTime, ShortText, Text
from models.budget_tables import BudgetCycle
from models.calendar import in_seoul
from models.case import Role
from models.participation import (
    ANSWER_WINDOWS,
    FILING_WINDOWS,
    OPINION_STATEMENT,
    WASTE_REPORT,
    WHAT,
    Kind,
    ParticipationAnswer,
    ParticipationRecord,
    Stage,
    Window,
    filing_refusal,
    window,
)
from models.project_tables import BudgetProject
from models.rules import ParticipationRules

router = APIRouter(prefix="/v1", tags=["budget participation"])

RecordId = Annotated[str, PathParam(max_length=64, description="The record's id.")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(pattern=r"^\d{1,9}$")]


class ParticipationCreate(Body):
    stage: Stage
    kind: Kind
    body: Text
    #: Mandatory for a waste report (a selected project of the cycle); optional otherwise.
    project_id: ShortText | None = None
    #: The department a citizen addresses (optional): only its caseworkers answer then.
    department: Department | None = None


class AnswerCreate(Body):
    body: Text


class AnswerOut(BaseModel):
    id: str
    record_id: str
    department: str
    body: str
    created_at: SeoulTime


class RecordOut(BaseModel):
    """A record as anyone may read it: no id of who filed it."""

    id: str
    year: int
    stage: str
    kind: str
    body: str
    project_id: str | None
    department: str | None
    #: `citizen`, or `admin` for the opinion statement.
    filed_by: str
    created_at: SeoulTime
    answers: list[AnswerOut]


def _answer_out(row: ParticipationAnswer) -> AnswerOut:
    return AnswerOut(
        id=row.id,
        record_id=row.record_id,
        department=row.department,
        body=row.body,
        created_at=row.created_at,
    )


def _record_out(row: ParticipationRecord, answers: Sequence[ParticipationAnswer]) -> RecordOut:
    return RecordOut(
        id=row.id,
        year=row.year,
        stage=row.stage,
        kind=row.kind,
        body=row.body,
        project_id=row.project_id,
        department=row.department,
        filed_by=row.author_role,
        created_at=row.created_at,
        answers=[_answer_out(a) for a in answers],
    )


async def _page(
    session: AsyncSession,
    query: SelectOfScalar[ParticipationRecord],
    limit: int,
    cursor: str | None,
) -> Page[RecordOut]:
    """One page of records, oldest first, each with its answers (oldest first)."""
    offset = int(cursor or 0)
    rows = list(
        (
            await session.exec(
                query.order_by(col(ParticipationRecord.created_at), col(ParticipationRecord.id))
                .offset(offset)
                .limit(limit + 1)
            )
        ).all()
    )
    page = rows[:limit]
    answers: dict[str, list[ParticipationAnswer]] = {r.id: [] for r in page}
    if page:
        found = await session.exec(
            select(ParticipationAnswer)
            .where(col(ParticipationAnswer.record_id).in_(list(answers)))
            .order_by(col(ParticipationAnswer.created_at), col(ParticipationAnswer.id))
        )
        for answer in found.all():
            answers[answer.record_id].append(answer)
    return Page[RecordOut](
        items=[_record_out(r, answers[r.id]) for r in page],
        next_cursor=str(offset + limit) if len(rows) > limit else None,
    )


def _rules(ctx: AppContext, cycle: BudgetCycle) -> ParticipationRules:
    """The `[participation]` windows of the rulebook the cycle pinned; 409 if it has none."""
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
    rules = pinned.rulebook.participation
    if rules is None:
        raise Problem(
            409,
            f"the {cycle.year} cycle runs on rulebook {cycle.rulebook}, which has no "
            "[participation] windows: its whole-budget participation (process.md §9) is not "
            "recorded; a cycle started on a rulebook with them is",
        )
    return rules


def _require_open(found: Window, now: datetime, what: str, year: int) -> None:
    """409 naming the window and its dates unless `now` is in it."""
    if found.holds(now):
        return
    raise Problem(
        409,
        f"{what} of the {year} cycle is accepted in {found.shown()} Seoul time; "
        f"it is now {in_seoul(now).isoformat()}",
        window=f"participation.{found.name}",
        opens_at=in_seoul(found.opens_at).isoformat(),
        closes_at=in_seoul(found.closes_at).isoformat(),
    )


async def _check_project(
    session: AsyncSession, year: int, kind: str, project_id: str
) -> BudgetProject:
    project = await session.get(BudgetProject, project_id)
    if project is None:
        raise not_found("project")
    if project.year != year:
        raise Problem(
            422,
            f"project_id: the project is of the {project.year} cycle, not {year}",
            field="project_id",
        )
    if kind == WASTE_REPORT and not project.selected:
        raise Problem(
            422,
            "project_id: a waste report is filed against a project of the cycle the vote "
            f"selected (selected, executing or completed); this one is {project.status}",
            field="project_id",
        )
    return project


def _check_filing(principal: Principal, body: ParticipationCreate) -> None:
    """Who files what (403), and what a record must name (422): nothing read yet."""
    if body.kind == OPINION_STATEMENT:
        require_role(principal, Role.ADMIN)
    else:
        require_eligible(principal)
    refusal = filing_refusal(body.stage, body.kind)
    if refusal is not None:
        raise Problem(422, refusal, field="kind")
    if body.kind == WASTE_REPORT and body.project_id is None:
        raise Problem(
            422, "project_id: a waste report names the selected project", field="project_id"
        )
    if body.kind == OPINION_STATEMENT:
        for name in ("project_id", "department"):
            if getattr(body, name) is not None:
                raise Problem(
                    422, f"{name}: the opinion statement is on the whole budget", field=name
                )


async def _file(
    ctx: AppContext, principal: Principal, year: int, body: ParticipationCreate
) -> RecordOut:
    now: datetime = await ctx.clock.now()
    record = ParticipationRecord(
        id=str(uuid.uuid4()),
        year=year,
        stage=body.stage,
        kind=body.kind,
        body=body.body,
        project_id=body.project_id,
        department=body.department,
        author_id=principal.sub,
        author_role=principal.role.value,
        created_at=now,
    )
    try:
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            rules = _rules(ctx, cycle)
            name = FILING_WINDOWS[(body.stage, body.kind)]
            _require_open(window(rules, name, year), now, WHAT[body.kind], year)
            if body.project_id is not None:
                await _check_project(session, year, body.kind, body.project_id)
            if body.kind == OPINION_STATEMENT:
                await _require_no_statement(session, year)
            session.add(record)
    except IntegrityError as exc:  # a statement recorded at the same moment
        raise _statement_exists(year) from exc
    return _record_out(record, [])


def _statement_exists(year: int) -> Problem:
    return Problem(409, f"the opinion statement of the {year} cycle is recorded already")


async def _require_no_statement(session: AsyncSession, year: int) -> None:
    found = await session.exec(
        select(ParticipationRecord.id).where(
            col(ParticipationRecord.year) == year,
            col(ParticipationRecord.kind) == OPINION_STATEMENT,
        )
    )
    if found.first() is not None:
        raise _statement_exists(year)


@router.post(
    "/budget-cycles/{year}/participation",
    status_code=201,
    response_model=RecordOut,
    description=(
        "A record of the cycle's whole-budget participation (process.md §9), accepted only in "
        "its window of the cycle's rulebook (`[participation]`, `[start, end)` at 00:00 Seoul "
        "time; 409 naming the window and its dates otherwise, and 409 for a cycle whose "
        "rulebook has no such windows). An eligible citizen files, at the `drafting` stage, a "
        "`material_request` (`participation.material_requests`, April-June of the cycle's "
        "year Y) or an `opinion` for the opinion statement (`drafting_opinions`, October); at "
        "the `execution` stage a `waste_report` against a selected project of the cycle "
        "(`waste_reports`, the year Y+1; `project_id` mandatory, 422 naming it for a project "
        "not selected or of another cycle, 404 for no such project); at the `settlement` stage "
        "an `opinion` (`settlement_opinions`, July-August of Y+1). The operations team (admin) "
        "records the citizens' opinion statement sent to the city council with `kind: "
        '"opinion_statement"` at the `drafting` stage (`opinion_statement`, October; once '
        "per cycle, 409 for a second). A stage that does not take the kind is 422 naming "
        "`kind`. A citizen may address a `department`: only it answers the record then. "
        "Departments answer through `POST .../participation/{record_id}/answers` (a separate "
        "endpoint rather than a `kind` of their own, so that each explanation or answer is "
        "tied to the request or opinion it answers and checked against the department the "
        "citizen addressed). The record is public; who filed it is not shown."
    ),
)
async def file_record(
    year: Year,
    body: ParticipationCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _check_filing(principal, body)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/participation",
        body,
        lambda unit: _file(unit, principal, year, body),
    )


async def _answer(
    ctx: AppContext, principal: Principal, year: int, record_id: str, body: AnswerCreate
) -> AnswerOut:
    now: datetime = await ctx.clock.now()
    department = principal.dept
    assert department is not None  # a caseworker's token has one (api/auth.py)
    answer = ParticipationAnswer(
        id=str(uuid.uuid4()),
        record_id=record_id,
        department=department,
        author_id=principal.sub,
        body=body.body,
        created_at=now,
    )
    try:
        async with ctx.sessions() as session, session.begin():
            cycle = await load_cycle(session, year)
            record = await session.get(ParticipationRecord, record_id)
            if record is None or record.year != year:
                raise not_found("participation record")
            rules = _rules(ctx, cycle)
            name = ANSWER_WINDOWS.get((record.stage, record.kind))
            if name is None:
                raise Problem(
                    409,
                    f"departments answer material requests (their explanations) and "
                    f"settlement opinions; this record is {WHAT[record.kind]} at the "
                    f"{record.stage} stage",
                )
            if record.department is not None and record.department != department:
                raise Problem(
                    403,
                    f"this record is addressed to the {record.department} department; "
                    "only its caseworkers answer it",
                )
            what = f"an answer to {WHAT[record.kind]}"
            _require_open(window(rules, name, year), now, what, year)
            if await _answered_by(session, record_id, department):
                raise _answered(department)
            session.add(answer)
    except IntegrityError as exc:  # the department answered at the same moment
        raise _answered(department) from exc
    return _answer_out(answer)


def _answered(department: str) -> Problem:
    return Problem(409, f"the {department} department has answered this record already")


async def _answered_by(session: AsyncSession, record_id: str, department: str) -> bool:
    found = await session.exec(
        select(ParticipationAnswer.id).where(
            col(ParticipationAnswer.record_id) == record_id,
            col(ParticipationAnswer.department) == department,
        )
    )
    return found.first() is not None


@router.post(
    "/budget-cycles/{year}/participation/{record_id}/answers",
    status_code=201,
    response_model=AnswerOut,
    description=(
        "A department's answer to a record, by one of its caseworkers (403 for anyone else), "
        "recorded under the caseworker's `dept`: to a `material_request`, the department's "
        "explanation (`participation.explanations`, August-October of Y); to a settlement "
        "`opinion`, its answer (`settlement_answers`, September of Y+1). Outside the window: "
        "409 naming it and its dates. Other records take no answer (409). A record that names "
        "a department is answered by that department only (403); each department answers a "
        "record once (409)."
    ),
)
async def answer_record(
    year: Year,
    record_id: RecordId,
    body: AnswerCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.CASEWORKER)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST /v1/budget-cycles/{year}/participation/{record_id}/answers",
        body,
        lambda unit: _answer(unit, principal, year, record_id, body),
    )


@router.get(
    "/budget-cycles/{year}/participation",
    response_model=Page[RecordOut],
    description=(
        "The cycle's whole-budget participation records, oldest first, each with the "
        "departments' answers; `stage` and `kind` filter. Anyone reads; who filed a record or "
        "answered it is not shown (the filer's own: `GET /v1/me/participation`). The records "
        "are not in the cycle's timeline, which is its workflow's."
    ),
)
async def list_records(
    year: Year,
    session: Session,
    stage: Stage | None = None,
    kind: Kind | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[RecordOut]:
    await load_cycle(session, year)
    query = select(ParticipationRecord).where(col(ParticipationRecord.year) == year)
    if stage is not None:
        query = query.where(col(ParticipationRecord.stage) == stage)
    if kind is not None:
        query = query.where(col(ParticipationRecord.kind) == kind)
    return await _page(session, query, limit, cursor)


@router.get(
    "/me/participation",
    response_model=Page[RecordOut],
    description=(
        "The whole-budget participation records the caller filed, oldest first, with their "
        "answers; `year` filters by cycle."
    ),
)
async def my_records(
    session: Session,
    principal: CurrentPrincipal,
    year: Annotated[int | None, Query(ge=2000, le=2200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[RecordOut]:
    query = select(ParticipationRecord).where(col(ParticipationRecord.author_id) == principal.sub)
    if year is not None:
        query = query.where(col(ParticipationRecord.year) == year)
    return await _page(session, query, limit, cursor)
