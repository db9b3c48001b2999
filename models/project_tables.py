"""SQLModel tables of budget projects: one row per project (`budget_projects`), created by the
API with its workflow and then written by the workflow's projection; and the objections filed
against a vote candidate (`project_objections`), rows written by the API.

The cycle's vote reads `id, year, kind, field, title, cost_krw, status` of this table: `status =
'candidate'` means "on the ballot", and `cost_krw` is the current cost (after any adjustment
made in answer to an objection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class BudgetProject(SQLModel, table=True):
    __tablename__ = "budget_projects"
    __table_args__ = (Index("ix_budget_projects_year_kind_status", "year", "kind", "status"),)

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    year: int
    kind: str
    field: str
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    #: Never shown in public: only the proposer's own withdrawal is checked against it.
    proposer_id: str = Field(index=True)
    event: bool
    districts: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    years: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    linked: bool = False
    submitted_cost_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    rulebook: str
    rulebook_hash: str
    created_at: datetime = _tz(nullable=False)
    # Written by the workflow projection only:
    status: str = "submitted"
    cost_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    eligibility: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    review: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    #: The objections the workflow knows, with their answers: [{objection_id, filed_at, ...}].
    objections: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    vote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    selected: bool | None = None
    #: From the selection on: the execution in Y+1 (models.project.ExecutionRecord).
    execution: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    #: Governance: the evaluation of the December results meeting.
    evaluation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)


class ProjectObjection(SQLModel, table=True):
    __tablename__ = "project_objections"

    id: str = Field(primary_key=True)
    project_id: str = Field(index=True, foreign_key="budget_projects.id")
    #: Never shown in public.
    author_id: str = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)
