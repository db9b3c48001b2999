"""SQLModel tables of the budget-year cycle: one row per year, written by its workflow's
projection (the phases of every type, the fields, the bodies, the decisions) after the API
creates it; the members of its bodies (`budget_body_members`: each field's citizen council and
the Budget Square), written by the same projection; and the opinions the Budget Square gives on
deliberative projects (`project_opinions`), rows written by the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class BudgetCycle(SQLModel, table=True):
    __tablename__ = "budget_cycles"

    #: The case id: the workflow id `budget-cycle-{year}` (timeline entries are keyed by it).
    id: str = Field(primary_key=True)
    year: int = Field(unique=True)
    workflow_id: str = Field(unique=True)
    rulebook: str
    rulebook_hash: str
    drop_ratio: float
    created_by: str
    created_at: datetime = _tz(nullable=False)
    # Written by the workflow projection only:
    status: str = "running"
    #: Type -> {phase, phase_ends_at}.
    phases: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    #: Type -> [{phase, starts_at, ends_at}], overrides applied.
    schedules: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    #: [{field, allocation_krw}] as the allocation phase set them (deliberative type).
    fields: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    #: {"councils": {field: {active, drawn, draw_id}}, "square": {draw_id, size}}.
    bodies: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    #: {"shortlists": {field: [project ids]}, "assembly": {...}, "council": {...}}.
    decisions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    #: Linked forums that joined this cycle's deliberation: [{forum_id, field, arrived_at,
    #: carried_over_from}].
    linked_forums: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)


class BudgetBodyMember(SQLModel, table=True):
    """A member of one of the cycle's bodies: `council:<field>` or `square`. `origin` is
    `active` (an active citizen the committee named) or `drawn` (from a revealed draw)."""

    __tablename__ = "budget_body_members"

    year: int = Field(primary_key=True)
    body: str = Field(primary_key=True)
    person_id: str = Field(primary_key=True, index=True)
    origin: str


class ProjectOpinion(SQLModel, table=True):
    """An opinion of a Budget Square member on a deliberative project (process.md §5)."""

    __tablename__ = "project_opinions"

    id: str = Field(primary_key=True)
    project_id: str = Field(index=True)
    author_id: str = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)
