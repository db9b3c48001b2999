"""Payloads of a budget project (process.md §5, §6, §6a): its start, the decisions on it, its state.

A metropolitan project (광역제안형) is proposed in the cycle's call, screened for eligibility,
reviewed by the public-private budget council, objected to while it is a vote candidate, and
finally selected or dropped by the vote (a `vote_result` signal from the cycle). The proposer
may withdraw it until the vote; a linked (forum-centred) item may not be withdrawn (§6a).

A governance project (광역협치형, §7) takes the metropolitan path (the same two-stage review,
objections and vote, §6a), proposed jointly by citizens and a department; no per-project cap
applies, the type's yearly ceiling (`governance.ceiling_krw`) bounds its candidates.

A deliberative project (숙의형, §5) is an existing programme a department's caseworker enters,
or a new item a member of the field's citizen council enters. The cycle's shortlist
(`shortlist_result` signal) puts it on the field's deliberation list or not; the council then
continues, resizes or ends it (`deliberate` Update), and the vote selects or drops it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from models.case import Actor, TimelineEntry
from models.rules import PinnedRules

METRO = "metro"
DELIBERATIVE = "deliberative"
GOVERNANCE = "governance"
#: The kinds a project workflow runs.
SUPPORTED_KINDS = (METRO, DELIBERATIVE, GOVERNANCE)
#: The kinds with the two-stage review (eligibility screening, then the public-private budget
#: council), objections and the drop rule of the citizen vote (process.md §6a).
TWO_STAGE_KINDS = (METRO, GOVERNANCE)
#: Each review score is 0..100.
SCORE_MAX = 100
SCORE_NAMES = ("necessity", "feasibility", "impact", "inclusiveness")


class ProjectStatus(StrEnum):
    SUBMITTED = "submitted"
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    TRANSFERRED = "transferred"
    #: On the ballot: the cycle's vote opens with the projects in this status.
    CANDIDATE = "candidate"
    NOT_ADVANCED = "not_advanced"
    #: Deliberative: on the field's deliberation list; the vote opens with these
    #: (`models.budget.BALLOT_STATUS`).
    SHORTLISTED = "shortlisted"
    #: Deliberative: left off the field's shortlist.
    NOT_SHORTLISTED = "not_shortlisted"
    #: Deliberative: the council ended it in deliberation.
    ENDED = "ended"
    SELECTED = "selected"
    DROPPED = "dropped"
    WITHDRAWN = "withdrawn"
    #: Selected, in its execution year(s) from 1 January of Y+1.
    EXECUTING = "executing"
    #: The executing department's final report is in.
    COMPLETED = "completed"


#: Where the project's workflow ends.
FINAL = frozenset(
    {
        ProjectStatus.INELIGIBLE,
        ProjectStatus.TRANSFERRED,
        ProjectStatus.NOT_ADVANCED,
        ProjectStatus.SELECTED,
        ProjectStatus.DROPPED,
        ProjectStatus.WITHDRAWN,
        ProjectStatus.NOT_SHORTLISTED,
        ProjectStatus.ENDED,
    }
)
#: The proposer may withdraw until the vote (§6: "the project leaves review"), by kind.
WITHDRAWABLE = {
    METRO: frozenset({ProjectStatus.SUBMITTED, ProjectStatus.ELIGIBLE, ProjectStatus.CANDIDATE}),
    GOVERNANCE: frozenset(
        {ProjectStatus.SUBMITTED, ProjectStatus.ELIGIBLE, ProjectStatus.CANDIDATE}
    ),
    DELIBERATIVE: frozenset({ProjectStatus.SUBMITTED, ProjectStatus.SHORTLISTED}),
}
#: What the field's citizen council may do with a project on its deliberation list (§5).
DELIBERATION_ACTIONS = ("continue", "resize", "end")


@dataclass
class YearCost:
    year: int
    cost_krw: int


@dataclass
class ProjectStart:
    project_id: str
    year: int
    kind: str
    #: A person id (never a name): the proposer is the only one who may withdraw.
    proposer_id: str
    field: str
    cost_krw: int
    event: bool
    districts: list[str]
    rules: PinnedRules
    #: A linked, forum-centred item (§6a): the proposer's withdrawal does not stop it.
    linked: bool = False
    years: list[YearCost] = dataclasses.field(default_factory=list)
    #: Deliberative: the department of the existing programme its caseworker entered; None
    #: for a new item a council member entered. Governance: the department that proposes and
    #: runs the project with the citizens (process.md §7).
    department: str | None = None
    #: Deliberative: a new item the council adds during deliberation starts on its list.
    shortlisted: bool = False


@dataclass
class Screening:
    """The eligibility screening (admin): eligible, ineligible, or transferred to a district."""

    actor_role: str
    eligible: bool
    reason: str
    transfer_to_district: str | None = None


@dataclass
class ReviewScores:
    necessity: int
    feasibility: int
    impact: int
    inclusiveness: int


@dataclass
class CouncilReview:
    """The public-private budget council's review (committee): advance to the vote or not."""

    actor_role: str
    advance: bool
    scores: ReviewScores
    note: str = ""


def weighted_total(scores: ReviewScores, inclusiveness_weight: float) -> str:
    """The review's weighted total (0..100, two decimals, half up): inclusiveness counts
    `review.inclusiveness_weight`, and the rest is split evenly between necessity,
    feasibility and impact. Decimal arithmetic on the weight's shortest text, so the same
    scores always give the same total."""
    weight = Decimal(repr(inclusiveness_weight))
    others = Decimal(scores.necessity + scores.feasibility + scores.impact)
    total = weight * scores.inclusiveness + (1 - weight) * others / 3
    return str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass
class ObjectionFiled:
    """Signal: an objection row was written (its text stays in Postgres)."""

    objection_id: str
    at: datetime


@dataclass
class ObjectionAnswer:
    actor_role: str
    objection_id: str
    answer: str
    adjusted_cost_krw: int | None = None


@dataclass
class ProjectWithdrawal:
    actor: Actor


@dataclass
class ShortlistResult:
    """Signal from the cycle at the end of its shortlist phase, to each deliberative project
    of the year still submitted: on the field's deliberation list or not."""

    shortlisted: bool
    note: str


@dataclass
class Deliberation:
    """The field's citizen council continues, resizes (`cost_krw`, the new cost) or ends a
    project on its deliberation list; the API has checked that `actor` sits on the council."""

    actor: Actor
    action: str
    note: str
    cost_krw: int | None = None


@dataclass
class DeliberationRecord:
    action: str
    old_cost_krw: int
    new_cost_krw: int
    note: str
    decided_at: datetime


@dataclass
class ProjectVoteResult:
    """Signal from the cycle once its vote is counted: selected or dropped, with the rank."""

    selected: bool
    rank: int
    score: str
    note: str


@dataclass
class ExecutionRecord:
    """A selected project's execution (process.md §6: every selected project is monitored):
    from 1 January of Y+1, the executing department reports its progress at least every
    `monitoring.report_days` and its final report by the end of the project's last year (Y+1,
    or the last year of its year-by-year plan); a missing report is escalated and reminded."""

    department: str | None
    started_at: str | None = None
    progress_pct: int = 0
    reports: int = 0
    last_report_at: str | None = None
    next_report_due_at: str | None = None
    final_due_at: str | None = None
    overdue: bool = False
    completed_at: str | None = None
    #: Governance (process.md §7): the project's public-private council for its execution.
    council: ExecutionCouncil | None = None


@dataclass
class ExecutionCouncil:
    """A governance project's public-private council (민관협의체) in execution: how many
    citizens and officials sit on it (no names: the members are not the engine's to publish),
    and when it was formed."""

    citizen_members: int
    official_members: int
    note: str
    formed_at: str | None = None


@dataclass
class FormExecutionCouncil:
    actor_role: str
    citizen_members: int
    official_members: int
    note: str = ""


@dataclass
class Evaluation:
    """A governance project's evaluation and feedback, presented at the December results
    meeting (성과공유회, process.md §7) after its final report."""

    actor_role: str
    findings: str
    results_meeting_on: str
    recorded_at: str | None = None


@dataclass
class ProjectExecutionReport:
    """A progress or final report by a caseworker of the executing department."""

    actor_role: str
    actor_department: str | None
    progress_pct: int
    note: str
    final: bool = False


@dataclass
class ExecutingDepartment:
    """The operations team names the department that executes a selected project."""

    actor_role: str
    department: str
    reason: str = ""


@dataclass
class Eligibility:
    eligible: bool
    reason: str
    transfer_to_district: str | None
    decided_at: datetime


@dataclass
class ReviewRecord:
    advance: bool
    scores: ReviewScores
    #: The weighted total, 0..100, as a decimal string with two places.
    total: str
    note: str
    decided_at: datetime


@dataclass
class ObjectionRecord:
    objection_id: str
    filed_at: datetime
    answer: str | None = None
    adjusted_cost_krw: int | None = None
    answered_at: datetime | None = None


@dataclass
class ProjectState:
    project_id: str
    year: int
    kind: str
    field: str
    cost_krw: int
    event: bool
    districts: list[str]
    status: ProjectStatus = ProjectStatus.SUBMITTED
    eligibility: Eligibility | None = None
    review: ReviewRecord | None = None
    objections: list[ObjectionRecord] = dataclasses.field(default_factory=list)
    vote: ProjectVoteResult | None = None
    #: Deliberative: the programme's department (None for a council's new item), the
    #: shortlist's result, and the council's deliberation decisions in order.
    department: str | None = None
    shortlist: ShortlistResult | None = None
    deliberations: list[DeliberationRecord] = dataclasses.field(default_factory=list)
    #: From the selection on (None before, and for cases that predate execution).
    execution: ExecutionRecord | None = None
    #: Governance: the evaluation recorded at the December results meeting.
    evaluation: Evaluation | None = None

    def objection(self, objection_id: str) -> ObjectionRecord | None:
        return next((o for o in self.objections if o.objection_id == objection_id), None)


@dataclass
class ProjectProjection:
    state: ProjectState
    entry: TimelineEntry
