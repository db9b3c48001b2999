"""What auditors do, for every kind of case (api/auditors.py is the HTTP side, `minju audit`
the command line): list the cases of a kind, read the tallies a history recorded, recount a
ballot box and compare, find the transitions a timer made, and log every audit call.

A case is a workflow (proposal, forum, ask, budget cycle, budget project, district plan) or a
sortition draw, which is no workflow: its "history" is its frozen record (snapshot, seed
commitment, seed, result digest) and replaying it is re-running the draw
(`api.sortition_service.verify_draw`). Its audit id is `sortition-<draw id>`.

What a history recorded is read from the history itself, not from the projection: the result
of the activity that closed and counted the box (`close_and_tally`, `close_budget_ballot`,
`close_and_count_opinions`), and for each transition the input of the projection activity that
recorded it (an `entry` with its seq, event and actor). Which transitions a timer made is told
by what woke the workflow task that scheduled the projection: a fired timer, or an activity
that such a task had scheduled (a vote's close: the timer fires, the tally runs, then the
transition is recorded), as against an Update, a signal or the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from api.auth import Principal
from api.errors import Problem, not_found
from api.schemas import TransitionOut
from models.ballot_box import budget_box_id, count_box, count_box_by_channel
from models.ballot_box import count_proposal_ballots as count_proposal_box
from models.budget_tables import BudgetCycle
from models.deliberation_tables import Ask, Forum, OpinionBox
from models.district_plans import DistrictPlan
from models.ids import budget_cycle_workflow_id, proposal_workflow_id
from models.opinion_box import count_opinions
from models.project_tables import BudgetProject
from models.tables import BallotBox, Proposal, SortitionDraw

#: The kinds of case an auditor can name, with the table of their rows.
CASE_TABLES: dict[str, Any] = {
    "proposal": Proposal,
    "forum": Forum,
    "ask": Ask,
    "cycle": BudgetCycle,
    "project": BudgetProject,
    "district_plan": DistrictPlan,
    "sortition": SortitionDraw,
}
CASE_KINDS = tuple(CASE_TABLES)
#: The audit id of a sortition draw (no workflow): `sortition-<draw id>`.
SORTITION_PREFIX = "sortition-"
#: The activities that close and count a box, whose results are the recorded tallies.
TALLY_ACTIVITIES = ("close_and_tally", "close_budget_ballot", "close_and_count_opinions")


def check_kind(kind: str) -> str:
    """The case kind, or a 422 naming `kind` and the kinds there are."""
    if kind not in CASE_TABLES:
        raise Problem(
            422, f"no case kind {kind!r}; there are: {', '.join(CASE_KINDS)}", field="kind"
        )
    return kind


@dataclass(frozen=True)
class CaseRef:
    kind: str
    case_id: str
    workflow_id: str
    status: str


async def list_cases(
    session: AsyncSession, kind: str, *, after: str | None = None, limit: int = 1000
) -> list[CaseRef]:
    """The cases of `kind` in id order, `limit` of them after `after`."""
    table = CASE_TABLES[check_kind(kind)]
    query = select(table).order_by(col(table.id)).limit(limit)
    if after is not None:
        query = query.where(col(table.id) > after)
    rows = (await session.exec(query)).all()
    return [
        CaseRef(
            kind=kind,
            case_id=row.id,
            workflow_id=(
                SORTITION_PREFIX + row.id if kind == "sortition" else str(row.workflow_id)
            ),
            status=str(getattr(row, "status", "") or ""),
        )
        for row in rows
    ]


async def log_call(
    session: AsyncSession, principal: Principal, action: str, target: str, outcome: str
) -> None:
    """Record one audit call (design.md, 8: every audit call is itself logged), committed
    before the answer is sent."""
    await session.execute(
        text(
            "INSERT INTO audit_log (at, auditor, role, action, target, outcome) "
            "VALUES (:at, :auditor, :role, :action, :target, :outcome)"
        ),
        {
            "at": datetime.now(UTC),
            "auditor": principal.sub,
            "role": principal.role.value,
            "action": action,
            "target": target,
            "outcome": outcome[:2000],
        },
    )
    await session.commit()


# ---- what a history recorded -------------------------------------------------------------


async def _decode(converter: DataConverter, payloads: Sequence[Any]) -> list[Any]:
    """Payloads as the plain JSON values they carry (dicts for dataclasses), decrypted first
    when a payload codec is configured."""
    if not payloads:
        return []
    return list(await converter.decode(list(payloads)))


@dataclass(frozen=True)
class RecordedTally:
    activity: str
    #: The activity's input: the proposal or case id, or `{year, kind}` for a budget ballot.
    input: Any
    result: dict[str, Any]


async def recorded_tallies(
    history: WorkflowHistory, converter: DataConverter
) -> list[RecordedTally]:
    """The tallies the history recorded: each completed close-and-count activity, in order."""
    scheduled: dict[int, HistoryEvent] = {}
    found: list[RecordedTally] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name in TALLY_ACTIVITIES:
                scheduled[event.event_id] = event
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            start = scheduled.get(done.scheduled_event_id)
            if start is None:
                continue
            attrs = start.activity_task_scheduled_event_attributes
            inputs = await _decode(converter, attrs.input.payloads)
            results = await _decode(converter, done.result.payloads)
            found.append(
                RecordedTally(
                    activity=attrs.activity_type.name,
                    input=inputs[0] if inputs else None,
                    result=results[0] if results else {},
                )
            )
    return found


#: Events that wake a workflow task, and what each says about its cause.
_WAKERS = {
    EventType.EVENT_TYPE_TIMER_FIRED: "timer",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED: "update",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "start",
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: "child",
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: "child",
}
#: When one task was woken by several, the one a person's act outranks.
_RANK = ("update", "signal", "start", "child", "timer")


async def transitions(history: WorkflowHistory, converter: DataConverter) -> list[TransitionOut]:
    """Every transition the history recorded (the inputs of its projection activities), with
    what triggered it. An activity's completion passes on the cause of the task that scheduled
    it, so a count that follows a timer is the timer's doing. A task woken by nothing the
    history shows, and running no update, is `other`."""
    cause_of_activity: dict[int, str] = {}
    pending: set[str] = set()
    cause = "start"
    found: list[TransitionOut] = []
    for event in history.events:
        kind = event.event_type
        if kind in _WAKERS:
            pending.add(_WAKERS[kind])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            pending.add(cause_of_activity.get(scheduled, "timer"))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            cause = next((c for c in _RANK if c in pending), "other")
            pending = set()
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            # Recorded after the task that ran the update completed, before its commands: an
            # update's admission leaves no event before the task, so the task is the update's.
            cause = "update"
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            cause_of_activity[event.event_id] = cause
            attrs = event.activity_task_scheduled_event_attributes
            if not attrs.activity_type.name.startswith("project_"):
                continue
            inputs = await _decode(converter, attrs.input.payloads)
            entry = inputs[0].get("entry") if inputs and isinstance(inputs[0], dict) else None
            if not isinstance(entry, dict) or "seq" not in entry:
                continue
            found.append(
                TransitionOut(
                    seq=int(entry["seq"]),
                    at=str(entry.get("at", "")),
                    stage=str(entry.get("stage", "")),
                    event=str(entry.get("event", "")),
                    actor_role=str(entry.get("actor_role", "")),
                    trigger=cause,
                    note=str(entry.get("note", "")),
                )
            )
    return found


# ---- recounts ------------------------------------------------------------------------------


@dataclass
class BallotCase:
    """The box a ballot id names: its kind, the workflow whose history recorded its tally,
    and how the tally activity's input names it."""

    kind: str
    box_id: str
    workflow_id: str
    activity: str
    activity_input: Any


async def resolve_ballot(session: AsyncSession, ballot_id: str) -> BallotCase:
    """`ballot_id`: a proposal id (its vote), `budget:<year>:<kind>` (a budget ballot; also
    `<year>:<kind>`), or a forum's or an ask's id (its participation box). 404 if none; 409
    while the vote is open: nobody sees counts before the close (design.md, 7)."""
    parts = ballot_id.split(":")
    if parts[0] == "budget":
        parts = parts[1:]
    if len(parts) == 2 and parts[0].isdigit():
        year, kind = int(parts[0]), parts[1]
        box = await session.get(BallotBox, budget_box_id(year, kind))
        if box is None:
            raise not_found("ballot")
        if box.closed_at is None:
            raise Problem(409, f"the {kind} vote of {year} is not closed")
        return BallotCase(
            "budget",
            box.id,
            budget_cycle_workflow_id(year),
            "close_budget_ballot",
            {"year": year, "kind": kind},
        )
    proposal = await session.get(Proposal, ballot_id)
    if proposal is not None:
        if proposal.tallied_at is None:
            raise Problem(409, f"the vote is not closed (the proposal is {proposal.status})")
        return BallotCase(
            "proposal", ballot_id, proposal_workflow_id(ballot_id), "close_and_tally", ballot_id
        )
    forum = await session.get(Forum, ballot_id)
    if forum is not None:
        kind, workflow_id = "forum", forum.workflow_id
    else:
        ask = await session.get(Ask, ballot_id)
        if ask is None:
            raise not_found("ballot")
        kind, workflow_id = "ask", ask.workflow_id
    opinion_box = await session.get(OpinionBox, ballot_id)
    if opinion_box is None or opinion_box.closed_at is None:
        raise Problem(409, f"the {kind}'s participation is not closed")
    return BallotCase(kind, ballot_id, workflow_id, "close_and_count_opinions", ballot_id)


async def count_ballot(session: AsyncSession, case: BallotCase) -> dict[str, Any]:
    """Count the box again in SQL, as the tally activity's result has it."""
    if case.kind == "proposal":
        tally = await count_proposal_box(session, case.box_id)
        return {"yes": tally.yes, "no": tally.no, "turnout": tally.turnout, "digest": tally.digest}
    if case.kind == "budget":
        box = await count_box(session, case.box_id)
        return {"approvals": box.approvals, "ballots": box.ballots, "digest": box.digest}
    opinions = await count_opinions(session, case.box_id)
    return {
        "participants": opinions.participants,
        "for_": opinions.for_,
        "against": opinions.against,
        "other": opinions.other,
        "opinions": opinions.opinions,
        "digest": opinions.digest,
    }


async def count_per_channel(session: AsyncSession, case: BallotCase) -> dict[str, Any] | None:
    """A budget ballot counted apart per channel (online, mvoting, onsite, paper)."""
    if case.kind != "budget":
        return None
    return {
        channel: {"approvals": t.approvals, "ballots": t.ballots, "digest": t.digest}
        for channel, t in (await count_box_by_channel(session, case.box_id)).items()
    }


def recorded_for(case: BallotCase, tallies: Sequence[RecordedTally]) -> dict[str, Any] | None:
    """The tally the history recorded for this box (the last, if a retried close ran twice)."""
    mine = [t for t in tallies if t.activity == case.activity and t.input == case.activity_input]
    return mine[-1].result if mine else None


def same_tally(recount: dict[str, Any], recorded: dict[str, Any] | None) -> bool | None:
    """Whether the recount equals what the history recorded (None: nothing recorded)."""
    if recorded is None:
        return None
    return all(recorded.get(key) == value for key, value in recount.items())
