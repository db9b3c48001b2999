"""SQLModel tables of the budget-year cycle: one row per year, written by its workflow's
projection (the phases of every type) after the API creates it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime
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
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)
