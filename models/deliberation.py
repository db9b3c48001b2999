"""Payloads of public deliberation (process.md §2-4): forums and "Seoul asks".

Both collect one participation per person (a position and, optionally, an opinion post) in
Postgres, counted in SQL at close; the workflows only open and close the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from models.case import Actor
from models.rules import PinnedRules


class ForumKind(StrEnum):
    FOR_AGAINST = "for_against"
    DISCUSSION = "discussion"


class ForumStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class AskStatus(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    DEPT_REVIEW = "dept_review"
    PUBLISHED = "published"


class Position(StrEnum):
    FOR = "for"
    AGAINST = "against"
    OTHER = "other"


@dataclass
class OpinionTally:
    """Counts of one participation box, and a digest of the exact rows counted."""

    participants: int
    for_: int
    against: int
    other: int
    opinions: int
    digest: str


@dataclass
class ForumStart:
    forum_id: str
    kind: ForumKind
    rules: PinnedRules
    origin_proposal_id: str | None = None
    #: A public deliberation (서울의 공론): a forum with a drawn citizen panel, which ends with
    #: a published policy recommendation.
    panel_draw_id: str | None = None


@dataclass
class Recommendation:
    actor_role: str
    text: str


@dataclass
class ForumState:
    forum_id: str
    status: ForumStatus = ForumStatus.OPEN
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    tally: OpinionTally | None = None
    eligible_for_deliberation: bool | None = None
    budget_year: int | None = None
    carried_over: bool | None = None
    recommendation: str | None = None


@dataclass
class AskStart:
    ask_id: str
    department: str
    rules: PinnedRules
    opens_at: datetime
    closes_at: datetime


@dataclass
class AskReview:
    """The asking department's published review of the results: what it makes of them, and
    what it will do (process.md §2)."""

    actor: Actor
    summary: str
    actions: str


@dataclass
class AskState:
    ask_id: str
    status: AskStatus = AskStatus.SCHEDULED
    due_at: datetime | None = None
    overdue: bool = False
    tally: OpinionTally | None = None
    review_summary: str | None = None
    review_actions: str | None = None


@dataclass
class ForumOpening:
    forum_id: str
    title: str
    body: str
    kind: ForumKind
    rules: PinnedRules
    created_by: str
    field: str | None = None
    origin_proposal_id: str | None = None
    panel_draw_id: str | None = None
