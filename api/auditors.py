"""Auditors: list the cases of every kind, export any case's history, replay one case or every
case of a kind against this code, recount any ballot box against the tally its history
recorded, and list the transitions timers made. Auditors only; every call is itself
recorded in the audit log (`GET /v1/audit/log`). The logic is in `api.audit_service`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import text
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from api import audit_service as audit
from api import sortition_service
from api.auth import CurrentPrincipal, Principal, require_role
from api.context import AppContext, Ctx, Session
from api.errors import not_found
from api.schemas import (
    AuditCase,
    AuditCases,
    AuditLogEntry,
    AuditLogPage,
    BulkReplayResult,
    CaseTransitions,
    Recount,
    ReplayResult,
)
from minju.codec import replay_data_converter
from models.case import Role
from worker import WORKFLOW_RUNNER
from workflows.registry import WORKFLOWS

router = APIRouter(prefix="/v1/audit", tags=["auditors"])

#: Every workflow type by the name its histories carry.
_BY_TYPE = {workflow._Definition.must_from_class(cls).name: cls for cls in WORKFLOWS}


def replayer(
    workflows: Sequence[type] = WORKFLOWS, data_converter: DataConverter | None = None
) -> Replayer:
    """A Replayer of `workflows` in the worker's own sandbox (`worker.WORKFLOW_RUNNER`: the
    same restrictions and passthrough modules, each class validated once per process),
    decoding payloads with `data_converter` (the client's: its payload codec, if any)."""
    return Replayer(
        workflows=list(workflows),
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=data_converter or DataConverter.default,
    )


def _workflows_of(histories: Sequence[WorkflowHistory]) -> list[type]:
    """The workflow types these histories ran (a history replays its own type only: a child
    is a history of its own), or every type if one is not ours (so that the replay reports
    it unknown rather than this raising)."""
    names = {
        h.events[0].workflow_execution_started_event_attributes.workflow_type.name
        for h in histories
        if h.events
    }
    if not names or not names <= _BY_TYPE.keys():
        return list(WORKFLOWS)
    return [cls for name, cls in _BY_TYPE.items() if name in names]


async def replay_histories(
    histories: Iterable[WorkflowHistory], data_converter: DataConverter | None = None
) -> dict[str, str]:
    """Replay `histories` against the current code in one `replay_workflows` call (one
    replay worker for all of them); returns the divergence of each that did not replay, by
    workflow id (empty: every history replayed)."""
    batch = list(histories)
    if not batch:
        return {}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in batch:
            yield history

    results = await replayer(_workflows_of(batch), data_converter).replay_workflows(
        each(), raise_on_replay_failure=False
    )
    workflow_ids = {h.run_id: h.workflow_id for h in batch}
    return {
        workflow_ids.get(run_id, run_id): f"{type(failure).__name__}: {failure}"
        for run_id, failure in results.replay_failures.items()
    }


def _require_auditor(principal: Principal) -> None:
    require_role(principal, Role.AUDITOR)


async def _history(ctx: AppContext, workflow_id: str) -> WorkflowHistory:
    try:
        return await ctx.temporal.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise not_found("case") from exc
        raise


def _draw_id(workflow_id: str) -> str | None:
    """The draw id of a sortition draw's audit id, else None."""
    if workflow_id.startswith(audit.SORTITION_PREFIX):
        return workflow_id.removeprefix(audit.SORTITION_PREFIX)
    return None


@router.get("/cases", response_model=AuditCases)
async def list_cases(
    session: Session,
    principal: CurrentPrincipal,
    kind: str = Query(description=f"one of: {', '.join(audit.CASE_KINDS)}"),
    after: str | None = Query(None, description="the last `case_id` of the previous page"),
    limit: int = Query(1000, ge=1, le=10_000),
) -> AuditCases:
    """The cases of one kind in id order, with the workflow id to export or replay each (a
    sortition draw, which is no workflow, has the id `sortition-<draw id>`); page with `after`
    = the previous page's `next_after`."""
    _require_auditor(principal)
    audit.check_kind(kind)
    cases = await audit.list_cases(session, kind, after=after, limit=limit)
    await audit.log_call(session, principal, "list_cases", kind, f"{len(cases)} cases")
    return AuditCases(
        items=[AuditCase(**vars(case)) for case in cases],
        next_after=cases[-1].case_id if len(cases) == limit else None,
    )


@router.get("/cases/{workflow_id}/history")
async def case_history(
    workflow_id: str, ctx: Ctx, session: Session, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The full event history in Temporal's own JSON format (loadable by any Temporal SDK;
    payloads as the worker wrote them, encrypted if a payload codec is configured). For a
    sortition draw (`sortition-<draw id>`): its frozen record, the snapshot that re-runs it."""
    _require_auditor(principal)
    draw_id = _draw_id(workflow_id)
    if draw_id is not None:
        draw = sortition_service.snapshot(await sortition_service.load_draw(session, draw_id))
        await audit.log_call(session, principal, "history", workflow_id, "sortition snapshot")
        return draw.model_dump(mode="json")
    history = await _history(ctx, workflow_id)
    await audit.log_call(
        session, principal, "history", workflow_id, f"{len(history.events)} events"
    )
    result: dict[str, Any] = history.to_json_dict()
    return result


@router.post("/cases/{workflow_id}/replay", response_model=ReplayResult)
async def replay_case(
    workflow_id: str, ctx: Ctx, session: Session, principal: CurrentPrincipal
) -> ReplayResult:
    """Re-execute the recorded history with the current workflow code; report any divergence.
    A sortition draw is re-run from its snapshot and revealed seed (`events`: 0)."""
    _require_auditor(principal)
    draw_id = _draw_id(workflow_id)
    if draw_id is not None:
        verified = await sortition_service.verify_draw(session, draw_id)
        divergence = None if verified.reproduced else f"the draw does not reproduce: {verified}"
        result = ReplayResult(
            workflow_id=workflow_id, replayed=verified.reproduced, events=0, divergence=divergence
        )
    else:
        history = await _history(ctx, workflow_id)
        divergence = (await replay_histories([history], replay_data_converter(ctx.settings))).get(
            history.workflow_id
        )
        result = ReplayResult(
            workflow_id=workflow_id,
            replayed=divergence is None,
            events=len(history.events),
            divergence=divergence,
        )
    await audit.log_call(session, principal, "replay", workflow_id, divergence or "replayed")
    return result


@router.post("/replay", response_model=BulkReplayResult)
async def replay_kind(
    ctx: Ctx,
    session: Session,
    principal: CurrentPrincipal,
    kind: str = Query(description=f"one of: {', '.join(audit.CASE_KINDS)}"),
) -> BulkReplayResult:
    """Replay every case of a kind against the current code (histories fetched 100 at a time,
    replayed by one replay worker per batch); the divergences by workflow id. For many
    thousands of cases `minju audit replay --kind` shows progress and is resumable."""
    _require_auditor(principal)
    audit.check_kind(kind)
    divergences: dict[str, str] = {}
    count = 0
    after: str | None = None
    while True:
        cases = await audit.list_cases(session, kind, after=after, limit=100)
        if not cases:
            break
        after = cases[-1].case_id
        count += len(cases)
        if kind == "sortition":
            for case in cases:
                if case.status != "revealed":
                    continue
                verified = await sortition_service.verify_draw(session, case.case_id)
                if not verified.reproduced:
                    divergences[case.workflow_id] = f"the draw does not reproduce: {verified}"
            continue
        histories = [await _history(ctx, case.workflow_id) for case in cases]
        divergences |= await replay_histories(histories, replay_data_converter(ctx.settings))
    await audit.log_call(
        session, principal, "replay_kind", kind, f"{count} cases, {len(divergences)} diverged"
    )
    return BulkReplayResult(
        kind=kind, cases=count, replayed=count - len(divergences), divergences=divergences
    )


@router.get("/cases/{workflow_id}/transitions", response_model=CaseTransitions)
async def case_transitions(
    workflow_id: str,
    ctx: Ctx,
    session: Session,
    principal: CurrentPrincipal,
    trigger: str | None = Query(
        None, description="only those of one trigger: timer, update, signal, start or child"
    ),
) -> CaseTransitions:
    """Every transition the case's history recorded, each with what triggered it, read from
    the history itself: `timer` (a durable timer fired, or a count that a timer started),
    `update` (a person's decision through the API), `signal` (a count crossing a threshold, or
    another case), `start`, `child` (a child case ended). `?trigger=timer`: the transitions
    made by a timer rather than a person."""
    _require_auditor(principal)
    history = await _history(ctx, workflow_id)
    found = await audit.transitions(history, ctx.temporal.data_converter)
    if trigger is not None:
        found = [t for t in found if t.trigger == trigger]
    await audit.log_call(
        session, principal, "transitions", workflow_id, f"{len(found)} transitions ({trigger})"
    )
    return CaseTransitions(workflow_id=workflow_id, items=found)


@router.get("/ballots/{ballot_id}/recount", response_model=Recount)
async def recount(
    ballot_id: str, ctx: Ctx, session: Session, principal: CurrentPrincipal
) -> Recount:
    """Count a closed ballot box again from Postgres and compare it with the tally its
    history recorded (the close-and-count activity's result, digest included). `ballot_id`:
    a proposal's id (its vote: `yes`, `no`, `turnout`), `budget:<year>:<kind>` (a budget
    ballot: `approvals` per project per voter group, `ballots` per group, and `per_channel`),
    or a forum's or an ask's id (`positions`). 409 while the vote is open: nobody, auditors
    included, sees counts before the close."""
    _require_auditor(principal)
    case = await audit.resolve_ballot(session, ballot_id)
    counted = await audit.count_ballot(session, case)
    history = await _history(ctx, case.workflow_id)
    recorded = audit.recorded_for(
        case, await audit.recorded_tallies(history, ctx.temporal.data_converter)
    )
    matches = audit.same_tally(counted, recorded)
    per_channel = await audit.count_per_channel(session, case)
    await audit.log_call(session, principal, "recount", ballot_id, f"matches: {matches}")
    turnout = counted.get("turnout")
    if turnout is None and "ballots" in counted:
        turnout = sum(counted["ballots"].values())
    if turnout is None:
        turnout = counted.get("participants", 0)
    return Recount(
        kind=case.kind,
        ballot_id=ballot_id,
        box_id=case.box_id,
        workflow_id=case.workflow_id,
        yes=counted.get("yes"),
        no=counted.get("no"),
        turnout=int(turnout),
        digest=counted["digest"],
        approvals=counted.get("approvals"),
        ballots=counted.get("ballots"),
        positions=(
            {k: counted[k] for k in ("participants", "for_", "against", "other", "opinions")}
            if case.kind in ("forum", "ask")
            else None
        ),
        per_channel=per_channel,
        recorded=recorded,
        matches_recorded_tally=matches,
    )


@router.get("/log", response_model=AuditLogPage)
async def audit_log(
    session: Session,
    principal: CurrentPrincipal,
    after: int | None = Query(None, description="the last `id` of the previous page"),
    limit: int = Query(500, ge=1, le=5000),
) -> AuditLogPage:
    """The audit log: every audit call, who made it, on what, when and how it ended (this
    call included), oldest first."""
    _require_auditor(principal)
    await audit.log_call(session, principal, "log", str(after or 0), "read")
    rows = (
        await session.execute(
            text(
                "SELECT id, at, auditor, role, action, target, outcome FROM audit_log "
                "WHERE id > :after ORDER BY id LIMIT :limit"
            ),
            {"after": after or 0, "limit": limit},
        )
    ).all()
    items = [AuditLogEntry.model_validate(row, from_attributes=True) for row in rows]
    return AuditLogPage(items=items, next_after=items[-1].id if len(items) == limit else None)
