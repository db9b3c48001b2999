"""Payloads of the citizen-proposal process (process.md §1), shared by api, workflow, activities.

Plain dataclasses so Temporal's default converter carries them and the workflow sandbox can
import them. They hold ids, never personal data (design.md, principle 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from models.case import Actor, TimelineEntry
from models.rules import PinnedRules


class Status(StrEnum):
    RIPENING = "ripening"
    AGENDA_SELECTION = "agenda_selection"
    FORUM = "forum"
    NOT_SELECTED = "not_selected"
    DEPT_REVIEW = "dept_review"
    REJECTED = "rejected"
    COMMITTEE_SCREENING = "committee_screening"
    PLANNING = "planning"
    APPROPRIATENESS_CHECK = "appropriateness_check"
    REVISING = "revising"
    DISCARDED = "discarded"
    DROPPED = "dropped"
    VOTING = "voting"
    NOT_PASSED = "not_passed"
    EXECUTING = "executing"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


TERMINAL = frozenset(
    {
        Status.FORUM,
        Status.NOT_SELECTED,
        Status.REJECTED,
        Status.DISCARDED,
        Status.DROPPED,
        Status.NOT_PASSED,
        Status.COMPLETED,
        Status.WITHDRAWN,
    }
)
#: The proposer may withdraw until the decision vote opens.
WITHDRAWABLE = frozenset(
    {
        Status.RIPENING,
        Status.AGENDA_SELECTION,
        Status.DEPT_REVIEW,
        Status.COMMITTEE_SCREENING,
        Status.PLANNING,
        Status.APPROPRIATENESS_CHECK,
        Status.REVISING,
    }
)


class ReviewDecision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class ScreeningDecision(StrEnum):
    ADVANCE = "advance"
    DROP = "drop"


class Verdict(StrEnum):
    """The appropriateness check's answer (process.md §1)."""

    APPROPRIATE = "appropriate"
    REVISE = "revise"
    DISCARD = "discard"


@dataclass
class ProposalStart:
    proposal_id: str
    proposer_id: str
    rules: PinnedRules


@dataclass
class Assignment:
    actor: Actor
    department: str
    note: str = ""


@dataclass
class ReviewAnswer:
    actor: Actor
    decision: ReviewDecision
    reason: str


@dataclass
class Screening:
    actor: Actor
    decision: ScreeningDecision
    scores: dict[str, int]
    note: str = ""


@dataclass
class ExecutionPlan:
    actor: Actor
    summary: str
    executing_department: str
    cost_krw: int


@dataclass
class AppropriatenessVerdict:
    actor: Actor
    verdict: Verdict
    reason: str


@dataclass
class ExecutionReport:
    actor: Actor
    progress_pct: int
    note: str
    final: bool = False


@dataclass
class Withdrawal:
    actor: Actor


@dataclass
class Tally:
    """Counts of the ballots of one vote, and a digest of the exact rows counted."""

    yes: int
    no: int
    turnout: int
    digest: str


@dataclass
class VoteState:
    opens_at: datetime
    closes_at: datetime
    quorum: int
    yes: int | None = None
    no: int | None = None
    turnout: int | None = None
    passed: bool | None = None
    digest: str | None = None


@dataclass
class ScreeningResult:
    decision: str
    scores: dict[str, int]
    note: str = ""


@dataclass
class PlanSummary:
    summary: str
    executing_department: str
    cost_krw: int
    revision: int = 0


@dataclass
class AgendaPlan:
    """The agenda planning group's shaping of a popular proposal into a forum agenda."""

    actor: Actor
    agenda_title: str
    summary: str
    forum_kind: str  # for_against | discussion
    selection_draw_id: str | None = None
    selection_members: int | None = None


@dataclass
class AgendaDecision:
    """The agenda selection group's decision, entered by the committee secretariat."""

    actor: Actor
    hold_forum: bool
    votes_for: int
    votes_against: int
    reason: str


@dataclass
class AgendaState:
    threshold_at: datetime
    decision_from: datetime
    due_at: datetime
    agenda_title: str | None = None
    summary: str | None = None
    forum_kind: str | None = None
    selection_draw_id: str | None = None
    selection_members: int | None = None
    hold_forum: bool | None = None
    votes_for: int | None = None
    votes_against: int | None = None
    reason: str | None = None
    forum_id: str | None = None


@dataclass
class ProposalState:
    """Where a case stands: the workflow's own state, projected to Postgres at every step."""

    proposal_id: str
    status: Status = Status.RIPENING
    department: str | None = None
    executing_department: str | None = None
    due_at: datetime | None = None
    overdue: bool = False
    supports_open: bool = True
    decision_reason: str | None = None
    screening: ScreeningResult | None = None
    plan: PlanSummary | None = None
    vote: VoteState | None = None
    progress_pct: int | None = None
    agenda: AgendaState | None = None


@dataclass
class Projection:
    """One transition, written idempotently (case id + seq) to Postgres."""

    state: ProposalState
    entry: TimelineEntry
