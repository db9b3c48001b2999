"""Request and response bodies of the HTTP contract (api.md). Times are Seoul time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

from models.calendar import in_seoul
from models.text import unwritable_reason

SeoulTime = Annotated[datetime, PlainSerializer(lambda v: in_seoul(v).isoformat(), return_type=str)]


def seoul_times(value: Any) -> Any:
    """`value` (JSON from a projection) with every `*_at` time shown in Seoul time, as the
    typed fields (`SeoulTime`) are."""
    if isinstance(value, list):
        return [seoul_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    shown: dict[str, Any] = {}
    for key, item in value.items():
        if key.endswith("_at") and isinstance(item, str):
            try:
                item = in_seoul(datetime.fromisoformat(item)).isoformat()
            except ValueError:
                pass
        shown[key] = seoul_times(item)
    return shown


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Department = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^\S.*$")
]
KRW = Annotated[int, Field(ge=0, le=10**15)]
Score = Annotated[int, Field(ge=0, le=10)]

T = TypeVar("T")


#: A time with its offset, as ISO 8601 text: strict bodies still parse times from JSON strings.
IsoTime = Annotated[AwareDatetime, Field(strict=False)]
RulebookName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$"),
    Field(description="The name of a published rulebook, e.g. `seoul-2018`."),
]


def _reject_unwritable(value: Any) -> None:
    if isinstance(value, str):
        reason = unwritable_reason(value)
        if reason is not None:
            raise ValueError(reason)
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_unwritable(key)
            _reject_unwritable(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _reject_unwritable(item)


class Body(BaseModel):
    """Every request body: unknown fields are refused, types are strict (`true` is not a
    number, `"5"` is not an integer), and no string anywhere in it holds a character that
    cannot be stored (models.text): the 422 names the field."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _writable(cls, value: Any) -> Any:
        _reject_unwritable(value)
        return value


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


# ---- dev -------------------------------------------------------------------------------------


class TokenRequest(Body):
    sub: ShortText
    role: Literal["citizen", "caseworker", "committee", "auditor", "admin"]
    dept: ShortText | None = None
    residency: Literal["resident", "worker", "student", "organisation"] | None = None
    public_official: bool = False
    sex: Literal["female", "male"] | None = None
    birth_year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    district: ShortText | None = None
    budget_school: bool = False


class TokenResponse(BaseModel):
    token: str


class ClockResponse(BaseModel):
    now: SeoulTime
    mode: str


class ClockAdvance(Body):
    days: Annotated[float, Field(ge=0, le=3660)] = 0
    hours: Annotated[float, Field(ge=0, le=87_840)] = 0
    seconds: Annotated[float, Field(ge=0, le=316_224_000)] = 0


class Health(BaseModel):
    status: str
    temporal: str
    database: str


# ---- proposals -------------------------------------------------------------------------------


class ProposalCreate(Body):
    title: ShortText
    body: Text
    category: ShortText | None = None
    estimated_cost_krw: KRW | None = None
    rulebook: RulebookName | None = None


class VoteOut(BaseModel):
    opens_at: SeoulTime
    closes_at: SeoulTime
    quorum: int
    yes: int | None = None
    no: int | None = None
    turnout: int | None = None
    passed: bool | None = None
    digest: str | None = None


class ProposalOut(BaseModel):
    id: str
    workflow_id: str
    title: str
    body: str
    category: str | None
    estimated_cost_krw: int | None
    status: str
    support_count: int
    supports_open: bool
    department: str | None
    executing_department: str | None
    rulebook: str
    rulebook_hash: str
    created_at: SeoulTime
    due_at: SeoulTime | None
    overdue: bool
    vote: VoteOut | None
    decision_reason: str | None
    screening: dict[str, Any] | None
    plan: dict[str, Any] | None
    progress_pct: int | None


class TimelineItem(BaseModel):
    seq: int
    at: SeoulTime
    stage: str
    event: str
    actor_role: str
    note: str


class Timeline(BaseModel):
    items: list[TimelineItem]


class CommentCreate(Body):
    body: Text


class CommentOut(BaseModel):
    id: str
    proposal_id: str
    body: str
    created_at: SeoulTime


class SupportOut(BaseModel):
    proposal_id: str
    support_count: int


class AssignRequest(Body):
    department: Department
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)] = ""


class ReviewRequest(Body):
    decision: Literal["accept", "reject"]
    reason: Text


class Scores(Body):
    necessity: Score
    changeability: Score
    feasibility: Score
    impact: Score


class ScreeningRequest(Body):
    decision: Literal["advance", "drop"]
    scores: Scores
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)] = ""


class PlanRequest(Body):
    summary: Text
    executing_department: Department
    cost_krw: KRW


class AppropriatenessRequest(Body):
    verdict: Literal["appropriate", "revise", "discard"]
    reason: Text


class BallotRequest(Body):
    choice: Literal["yes", "no"]


class BallotReceipt(BaseModel):
    receipt: str


class ExecutionReportRequest(Body):
    progress_pct: Annotated[int, Field(ge=0, le=100)]
    note: Text
    final: bool = False


class InboxItem(BaseModel):
    proposal_id: str
    title: str
    status: str
    waiting_for: str
    due_at: SeoulTime | None
    overdue: bool


class MyProposal(BaseModel):
    id: str
    title: str
    status: str


# ---- auditors --------------------------------------------------------------------------------


class ReplayResult(BaseModel):
    workflow_id: str
    replayed: bool
    events: int
    divergence: str | None


class Recount(BaseModel):
    """A closed box counted again: `yes`/`no` for a proposal vote, `approvals` per option per
    voter group and `ballots` per group (and `per_channel`) for a budget ballot, `positions`
    for a forum or an ask; `recorded` is the tally the case's history holds and
    `matches_recorded_tally` whether the recount equals it, digest included."""

    kind: str
    ballot_id: str
    box_id: str
    workflow_id: str
    yes: int | None = None
    no: int | None = None
    turnout: int
    digest: str
    approvals: dict[str, dict[str, int]] | None = None
    ballots: dict[str, int] | None = None
    positions: dict[str, int] | None = None
    per_channel: dict[str, Any] | None = None
    recorded: dict[str, Any] | None = None
    matches_recorded_tally: bool | None


class AuditCase(BaseModel):
    kind: str
    case_id: str
    workflow_id: str
    status: str


class AuditCases(BaseModel):
    items: list[AuditCase]
    next_after: str | None


class BulkReplayResult(BaseModel):
    kind: str
    cases: int
    replayed: int
    divergences: dict[str, str]


class TransitionOut(BaseModel):
    """One transition a case's history recorded, and what made it: `timer`, `update` (a
    person's decision), `signal`, `start` or `child`."""

    seq: int
    at: str
    stage: str
    event: str
    actor_role: str
    trigger: str
    note: str


class CaseTransitions(BaseModel):
    workflow_id: str
    items: list[TransitionOut]


class AuditLogEntry(BaseModel):
    id: int
    at: datetime
    auditor: str
    role: str
    action: str
    target: str
    outcome: str


class AuditLogPage(BaseModel):
    items: list[AuditLogEntry]
    next_after: int | None


# ---- forums and asks -------------------------------------------------------------------------


class ForumCreate(Body):
    title: ShortText
    body: Text
    kind: Literal["for_against", "discussion"]
    origin_proposal_id: ShortText | None = None
    field: ShortText | None = None
    rulebook: RulebookName | None = None
    panel_draw_id: ShortText | None = None


class ForumOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    workflow_id: str
    title: str
    body: str
    kind: str
    field: str | None
    status: str
    origin_proposal_id: str | None
    panel_draw_id: str | None
    rulebook: str
    rulebook_hash: str
    created_at: SeoulTime
    opens_at: SeoulTime | None
    closes_at: SeoulTime | None
    participants: int | None
    for_: int | None = Field(alias="for")
    against: int | None
    other: int | None
    opinions: int | None
    digest: str | None
    eligible_for_deliberation: bool | None
    budget_year: int | None
    carried_over: bool | None
    recommendation: str | None


class RecommendationRequest(Body):
    text: Text


class ParticipationCreate(Body):
    position: Literal["for", "against", "other"] | None = None
    opinion: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)] | None = (
        None
    )


class ParticipationOut(BaseModel):
    id: str
    post_id: str | None


class PostOut(BaseModel):
    id: str
    body: str
    created_at: SeoulTime
    reports: int


class ReportCreate(Body):
    reason: Text


class ReportOut(BaseModel):
    post_id: str
    reports: int


class ModerationRequest(Body):
    action: Literal["hide", "restore"]
    reason: Text


class ModerationOut(BaseModel):
    post_id: str
    hidden: bool
    action: str
    reason: str
    at: SeoulTime


class AskCreate(Body):
    title: ShortText
    body: Text
    opens_at: IsoTime
    closes_at: IsoTime
    rulebook: RulebookName | None = None


class AskOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    workflow_id: str
    department: str
    title: str
    body: str
    status: str
    rulebook: str
    rulebook_hash: str
    created_at: SeoulTime
    opens_at: SeoulTime
    closes_at: SeoulTime
    participants: int | None
    for_: int | None = Field(alias="for")
    against: int | None
    other: int | None
    opinions: int | None
    digest: str | None
    due_at: SeoulTime | None
    overdue: bool
    review_summary: str | None
    review_actions: str | None


class AskReviewRequest(Body):
    summary: Text
    actions: Text


# ---- agenda selection (linked path) ----------------------------------------------------------


class AgendaPlanRequest(Body):
    agenda_title: ShortText
    summary: Text
    forum_kind: Literal["for_against", "discussion"]
    selection_draw_id: ShortText | None = None


class AgendaDecisionRequest(Body):
    hold_forum: bool
    votes_for: Annotated[int, Field(ge=0, le=1_000)]
    votes_against: Annotated[int, Field(ge=0, le=1_000)]
    reason: Text


class PlanningGroupOut(BaseModel):
    agenda_title: str
    summary: str
    forum_kind: str


class SelectionGroupOut(BaseModel):
    draw_id: str | None
    members_count: int | None


class AgendaDecisionOut(BaseModel):
    hold_forum: bool
    votes_for: int
    votes_against: int
    reason: str


class AgendaOut(BaseModel):
    proposal_id: str
    status: str
    threshold_at: SeoulTime
    decision_from: SeoulTime
    due_at: SeoulTime
    overdue: bool
    planning_group: PlanningGroupOut | None
    selection_group: SelectionGroupOut
    decision: AgendaDecisionOut | None
    forum_id: str | None
