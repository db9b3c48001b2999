"""Payloads of a budget project (process.md §6, §6a): its start, the decisions on it, its state.

A metropolitan project (광역제안형) is proposed in the cycle's call, screened for eligibility,
reviewed by the public-private budget council, objected to while it is a vote candidate, and
finally selected or dropped by the vote (a `vote_result` signal from the cycle). The proposer
may withdraw it until the vote; a linked (forum-centred) item may not be withdrawn (§6a).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from models.case import Actor, TimelineEntry
from models.rules import PinnedRules

#: The only kind a project workflow runs for now (api.md: `deliberative`, `governance` later).
SUPPORTED_KINDS = ("metro",)
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
    SELECTED = "selected"
    DROPPED = "dropped"
    WITHDRAWN = "withdrawn"


#: Where the project's workflow ends.
FINAL = frozenset(
    {
        ProjectStatus.INELIGIBLE,
        ProjectStatus.TRANSFERRED,
        ProjectStatus.NOT_ADVANCED,
        ProjectStatus.SELECTED,
        ProjectStatus.DROPPED,
        ProjectStatus.WITHDRAWN,
    }
)
#: The proposer may withdraw until the vote (§6: "the project leaves review").
WITHDRAWABLE = frozenset({ProjectStatus.SUBMITTED, ProjectStatus.ELIGIBLE, ProjectStatus.CANDIDATE})


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
class ProjectVoteResult:
    """Signal from the cycle once its vote is counted: selected or dropped, with the rank."""

    selected: bool
    rank: int
    score: str
    note: str


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

    def objection(self, objection_id: str) -> ObjectionRecord | None:
        return next((o for o in self.objections if o.objection_id == objection_id), None)


@dataclass
class ProjectProjection:
    state: ProjectState
    entry: TimelineEntry
