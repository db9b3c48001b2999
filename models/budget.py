"""Payloads of the budget-year cycle (process.md §5-8): its start, phases, overrides and state.

A cycle for year Y is deliberated in Y and spent in Y+1. Each type of the rulebook calendar
(`deliberative`, `metro`, ...) moves through its phases on the calendar, Seoul time; the
workflow keeps the schedule (with any audited override) and projects every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from models import selection
from models.calendar import ScheduledPhase
from models.case import TimelineEntry
from models.rules import PinnedRules, Rulebook

#: Continue-as-new once the history holds this many events (Temporal suggests it at 4,096).
MAX_HISTORY_EVENTS = 2_000


class CycleStatus(StrEnum):
    RUNNING = "running"
    CLOSED = "closed"


@dataclass
class PhaseSlot:
    """One phase of one type: [starts_at, ends_at), UTC."""

    phase: str
    starts_at: datetime
    ends_at: datetime

    @staticmethod
    def of(scheduled: ScheduledPhase) -> PhaseSlot:
        return PhaseSlot(scheduled.phase, scheduled.starts_at, scheduled.ends_at)

    def scheduled(self) -> ScheduledPhase:
        return ScheduledPhase(self.phase, self.starts_at, self.ends_at)


@dataclass
class CyclePhase:
    """Where one type stands: its phase and when that phase gives way (None once closed)."""

    phase: str
    phase_ends_at: datetime | None


#: The phase in which a type's citizens vote (process.md §5-6): its ballot box opens when the
#: phase starts and closes when it ends.
VOTE_PHASE = "vote"


#: The project status that puts a project of each kind on its ballot when the vote opens: a
#: metropolitan (or governance) project the council review advanced, a deliberative project the
#: field's council kept on its deliberation list (process.md §5-7).
BALLOT_STATUS = {"metro": "candidate", "governance": "candidate", "deliberative": "shortlisted"}


@dataclass
class BallotRef:
    """One kind's ballot box in one cycle (`models.ballot_box.budget_box_id`)."""

    year: int
    kind: str


@dataclass
class BallotCandidate:
    """A project on the ballot, as the box opened: its field and cost then."""

    project_id: str
    field: str
    cost_krw: int
    title: str = ""


@dataclass
class BudgetVote:
    """One kind's vote: the candidates it opened with, then its count and the selection."""

    kind: str
    opened_at: datetime
    candidates: list[BallotCandidate] = field(default_factory=list)
    closed_at: datetime | None = None
    #: Ballots per voter group, approvals per project per group, and the digest of the rows.
    ballots: dict[str, int] = field(default_factory=dict)
    approvals: dict[str, dict[str, int]] = field(default_factory=dict)
    digest: str | None = None
    rule: str | None = None
    #: Field -> `models.selection.SelectionResult.to_dict()`.
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class FieldAllocation:
    """A deliberation field of the deliberative type and the budget allocated to it."""

    field: str
    allocation_krw: int


@dataclass
class CycleBody:
    """A body of the cycle (process.md §5): a field's citizen council, or the Budget Square."""

    body: str
    draw_id: str
    active: int
    drawn: int
    formed_at: datetime


@dataclass
class ShortlistEntry:
    project_id: str
    cost_krw: int


@dataclass
class LinkedForum:
    """A linked forum handed to a budget year (process.md §4): it joins the year's deliberation,
    or (`carried_over_from`) arrived after the previous year's window had closed."""

    forum_id: str
    closed_at: datetime
    carried_over_from: int | None = None


@dataclass
class CycleDecision:
    """The general assembly's approval or the city council's decision, recorded as given."""

    project_ids: list[str]
    reference: str
    recorded_at: datetime


@dataclass
class BudgetCycleState:
    year: int
    status: CycleStatus = CycleStatus.RUNNING
    #: Type -> its phases in order, overrides applied.
    schedules: dict[str, list[PhaseSlot]] = field(default_factory=dict)
    #: Type -> the phase last announced (recorded in the timeline and projected).
    phases: dict[str, CyclePhase] = field(default_factory=dict)
    #: How many times the workflow continued as new.
    runs: int = 0
    #: Kind -> its vote, from the opening of its box on.
    votes: dict[str, BudgetVote] = field(default_factory=dict)
    #: The deliberative type's fields and allocations, in the order they were set.
    fields: list[FieldAllocation] = field(default_factory=list)
    #: Body (`council:<field>`, `square`) -> how it was formed.
    bodies: dict[str, CycleBody] = field(default_factory=dict)
    #: Field -> the council's shortlist at 130 % (final when the shortlist phase ends).
    shortlists: dict[str, list[ShortlistEntry]] = field(default_factory=dict)
    #: Linked forums that joined this year's deliberation, and those that arrived after its
    #: window and went to next year's cycle.
    linked_forums: list[LinkedForum] = field(default_factory=list)
    carried_over: list[LinkedForum] = field(default_factory=list)
    #: The general assembly's approval and the city council's decision, as given.
    assembly: CycleDecision | None = None
    council: CycleDecision | None = None


@dataclass
class BudgetCycleStart:
    year: int
    rules: PinnedRules
    drop_ratio: float
    #: Continue-as-new from this history length on (or when Temporal suggests it).
    max_history_events: int = MAX_HISTORY_EVENTS
    #: Whether Temporal's suggestion (a history over its size or length limits) also continues
    #: the run as new. Off only for a simulated year (`minju simulate`): a run continued as new
    #: leaves its children without a parent, which locks the time-skipping server's clock
    #: (workflows.common.outlive_children).
    follow_suggestion: bool = True
    #: Carried over by continue-as-new; None on the first run.
    state: BudgetCycleState | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: Linked forums handed to this year before the cycle existed (read from the forums'
    #: projections when the cycle is created).
    linked_forums: list[LinkedForum] = field(default_factory=list)
    carried_over: list[LinkedForum] = field(default_factory=list)


@dataclass
class PhaseOverride:
    """An admin moves the end of one type's phase (and the start of the next): audited."""

    actor_role: str
    type: str
    phase: str
    new_end: datetime
    reason: str


@dataclass
class SetFields:
    """The allocation phase's fields and budgets (admin; replaces the previous setting)."""

    actor_role: str
    fields: list[FieldAllocation]


@dataclass
class FormBody:
    """A field's citizen council (active members + a revealed draw of budget-school graduates)
    or the Budget Square (a revealed draw). The API checked the draw; the workflow checks the
    phase, the 5:5 balance and that no draw forms two bodies."""

    actor_role: str
    body: str
    draw_id: str
    active_ids: list[str]
    drawn_ids: list[str]


@dataclass
class SetShortlist:
    """A field's council sets its shortlist (the API checked membership and the projects)."""

    actor_role: str
    field: str
    projects: list[ShortlistEntry]


@dataclass
class RecordDecision:
    """`assembly` (the general assembly's approval) or `council` (the city council's
    decision): recorded as given, never overriding it."""

    actor_role: str
    decision: str
    project_ids: list[str]
    reference: str


@dataclass
class BodyMembers:
    """Members the projection writes (`budget_body_members`), with the entry forming the body."""

    year: int
    body: str
    members: list[tuple[str, str]]


@dataclass
class BudgetCycleProjection:
    state: BudgetCycleState
    entry: TimelineEntry
    members: BodyMembers | None = None


#: The deliberative type's rule (process.md §5): rank order to the 100 % level of each field's
#: allocation (`models.selection.select_to_level`).
TO_LEVEL = "select_to_level"


def select_vote(
    vote: BudgetVote,
    rules: Rulebook,
    drop_ratio: float,
    allocations: Mapping[str, int] | None = None,
) -> tuple[str, dict[str, selection.SelectionResult]]:
    """The rule and, per field, the selection a counted vote gives: candidates ranked by the
    weighted score (`vote.group_weights`), then the kind's rule on each field. The workflow
    decides with it at the close; the results endpoint recomputes it from a recount.

    A deliberative vote selects in rank order to the 100 % level of each field's allocation
    (± `deliberative.level_tolerance`, skipping a project that no longer fits); a
    metropolitan vote applies `drop_lowest` with the cycle's drop ratio (Seoul's rule: the
    rulebook's `greedy` and `equal_shares` are kept for comparison in `models.selection`)."""
    weights: dict[str, selection.Number] = (
        dict(rules.vote.exact_weights()) if rules.vote is not None else {"general": 1}
    )
    deliberative = vote.kind == "deliberative" and rules.deliberative is not None
    rule = TO_LEVEL if deliberative else "drop_lowest"
    projects = [
        selection.Project(id=c.project_id, field=c.field, cost_krw=c.cost_krw, name=c.title)
        for c in vote.candidates
    ]
    if not projects:
        return rule, {}
    counts = selection.Tally(
        approvals={
            (option, group): n
            for option, groups in vote.approvals.items()
            for group, n in groups.items()
        },
        ballots_cast=dict(vote.ballots),
    )
    ranking = selection.rank(projects, counts, weights)
    if deliberative:
        assert rules.deliberative is not None
        tolerance = selection.as_fraction(str(rules.deliberative.level_tolerance))
        return rule, {
            name: selection.select_to_level(
                ranking.for_field(name), (allocations or {}).get(name, 0), tolerance
            )
            for name in ranking.fields
        }
    ratio = selection.as_fraction(str(drop_ratio), name="drop_ratio")
    return rule, selection.select_per_field(rule, ranking, drop_ratio=ratio)


def _decision(decision: CycleDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "project_ids": list(decision.project_ids),
        "reference": decision.reference,
        "recorded_at": decision.recorded_at.isoformat(),
    }


def _forum(forum: LinkedForum) -> dict[str, Any]:
    return {
        "forum_id": forum.forum_id,
        "closed_at": forum.closed_at.isoformat(),
        "carried_over_from": forum.carried_over_from,
    }


def cycle_columns(state: BudgetCycleState) -> dict[str, Any]:
    """The row's projected columns, as JSON (times ISO 8601, UTC)."""
    return {
        "fields": [{"field": f.field, "allocation_krw": f.allocation_krw} for f in state.fields],
        "bodies": {
            name: {
                "draw_id": body.draw_id,
                "active": body.active,
                "drawn": body.drawn,
                "formed_at": body.formed_at.isoformat(),
            }
            for name, body in state.bodies.items()
        },
        "decisions": {
            "shortlists": {
                name: [e.project_id for e in entries] for name, entries in state.shortlists.items()
            },
            "assembly": _decision(state.assembly),
            "council": _decision(state.council),
        },
        "linked_forums": [_forum(f) for f in state.linked_forums]
        + [dict(_forum(f), carried_over_to=state.year + 1) for f in state.carried_over],
        "status": state.status.value,
        "phases": {
            kind: {
                "phase": current.phase,
                "phase_ends_at": None
                if current.phase_ends_at is None
                else current.phase_ends_at.isoformat(),
            }
            for kind, current in state.phases.items()
        },
        "schedules": {
            kind: [
                {
                    "phase": slot.phase,
                    "starts_at": slot.starts_at.isoformat(),
                    "ends_at": slot.ends_at.isoformat(),
                }
                for slot in slots
            ]
            for kind, slots in state.schedules.items()
        },
    }
