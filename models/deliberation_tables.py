"""SQLModel tables of public deliberation: forums, "Seoul asks", and their opinion boxes.

Forums and asks share one participation model: an `opinion_boxes` row says whether a case
takes participations now; `participations` holds one row per person per case (unique), and
`posts` the opinions, moderated but never deleted (hidden posts are kept for audit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class OpinionCounts(SQLModel):
    """The counts of a closed opinion box, projected by the case's workflow (null until close)."""

    participants: int | None = None
    for_count: int | None = None
    against_count: int | None = None
    other_count: int | None = None
    opinions: int | None = None
    digest: str | None = None


class Forum(OpinionCounts, table=True):
    __tablename__ = "forums"

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    kind: str
    field: str | None = None
    origin_proposal_id: str | None = Field(default=None, index=True)
    panel_draw_id: str | None = None
    created_by: str
    rulebook: str
    rulebook_hash: str
    created_at: datetime = _tz(nullable=False)
    # Written by the workflow projection only:
    status: str = "open"
    opens_at: datetime | None = _tz(nullable=True)
    closes_at: datetime | None = _tz(nullable=True)
    eligible_for_deliberation: bool | None = None
    budget_year: int | None = Field(default=None, index=True)
    carried_over: bool | None = None
    recommendation: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)


class Ask(OpinionCounts, table=True):
    """A "Seoul asks" case: a department asks citizens (process.md §2)."""

    __tablename__ = "asks"

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    department: str = Field(index=True)
    created_by: str
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    rulebook: str
    rulebook_hash: str
    created_at: datetime = _tz(nullable=False)
    opens_at: datetime = _tz(nullable=False)
    closes_at: datetime = _tz(nullable=False)
    # Written by the workflow projection only:
    status: str = "scheduled"
    due_at: datetime | None = _tz(nullable=True)
    overdue: bool = False
    review_summary: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    review_actions: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)


class OpinionBox(SQLModel, table=True):
    """Whether a forum or ask takes participations: opened and closed by its workflow only."""

    __tablename__ = "opinion_boxes"

    case_id: str = Field(primary_key=True)
    opened_at: datetime | None = _tz(nullable=True)
    closed_at: datetime | None = _tz(nullable=True)


class Participation(SQLModel, table=True):
    __tablename__ = "participations"

    case_id: str = Field(primary_key=True)
    person_id: str = Field(primary_key=True, index=True)
    position: str | None = None
    created_at: datetime = _tz(nullable=False)


class Post(SQLModel, table=True):
    __tablename__ = "posts"

    id: str = Field(primary_key=True)
    case_id: str = Field(index=True)
    author_id: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)
    hidden: bool = False
    reports: int = 0


class PostReport(SQLModel, table=True):
    __tablename__ = "post_reports"

    post_id: str = Field(primary_key=True, foreign_key="posts.id")
    reporter_id: str = Field(primary_key=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)


class ModerationAction(SQLModel, table=True):
    """Every hide and restore, with who, when and why: the published moderation record."""

    __tablename__ = "moderation_actions"

    id: int | None = Field(default=None, primary_key=True)
    post_id: str = Field(foreign_key="posts.id", index=True)
    action: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    actor_id: str
    at: datetime = _tz(nullable=False)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
