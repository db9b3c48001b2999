"""Payloads of the budget-year cycle (process.md §5-8): its start, phases, overrides and state.

A cycle for year Y is deliberated in Y and spent in Y+1. Each type of the rulebook calendar
(`deliberative`, `metro`, ...) moves through its phases on the calendar, Seoul time; the
workflow keeps the schedule (with any audited override) and projects every change.
"""

from __future__ import annotations

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


@dataclass
class BudgetCycleStart:
    year: int
    rules: PinnedRules
    drop_ratio: float
    #: Continue-as-new from this history length on (or when Temporal suggests it).
    max_history_events: int = MAX_HISTORY_EVENTS
    #: Carried over by continue-as-new; None on the first run.
    state: BudgetCycleState | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)


@dataclass
class PhaseOverride:
    """An admin moves the end of one type's phase (and the start of the next): audited."""

    actor_role: str
    type: str
    phase: str
    new_end: datetime
    reason: str


@dataclass
class BudgetCycleProjection:
    state: BudgetCycleState
    entry: TimelineEntry


def select_vote(
    vote: BudgetVote, rules: Rulebook, drop_ratio: float
) -> tuple[str, dict[str, selection.SelectionResult]]:
    """The rule and, per field, the selection a counted vote gives: candidates ranked by the
    weighted score (`vote.group_weights`), then `selection.rule` on each field. The workflow
    decides with it at the close; the results endpoint recomputes it from a recount.

    `drop_lowest` (Seoul's) is the only rule a cycle applies yet: `greedy` and `equal_shares`
    need each field's allocation, which the cycle does not hold yet."""
    weights: dict[str, selection.Number] = (
        dict(rules.vote.exact_weights()) if rules.vote is not None else {"general": 1}
    )
    rule = "drop_lowest"
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
    ratio = selection.as_fraction(str(drop_ratio), name="drop_ratio")
    return rule, selection.select_per_field(rule, ranking, drop_ratio=ratio)


def cycle_columns(state: BudgetCycleState) -> dict[str, Any]:
    """The row's projected columns, as JSON (times ISO 8601, UTC)."""
    return {
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
