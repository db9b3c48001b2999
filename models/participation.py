"""Whole-budget participation (process.md §9, 003 1-3-① 예산 전과정): the records of a budget
cycle beside its workflow, each accepted only in its window of the cycle's rulebook
(`[participation]`, models/rules.py `ParticipationRules`).

- drafting, year Y: citizens' material requests (`material_requests`), the departments'
  explanations in answer (`explanations`), citizens' opinions for the opinion statement
  (`drafting_opinions`) and the statement the operations team sends to the city council
  (`opinion_statement`, one per cycle);
- execution, Y+1: citizens' waste reports against a selected project (`waste_reports`);
- settlement, Y+1: citizens' settlement opinions (`settlement_opinions`) and the departments'
  answers (`settlement_answers`).

The records are rows written by the API (`budget_participation`, answers in
`budget_participation_answers`); the workflow neither holds nor needs them. Who filed a record
or an answer (`author_id`) is never shown in public.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models.calendar import in_seoul, seoul_midnight
from models.rules import ParticipationRules, ParticipationWindow

Stage = Literal["drafting", "execution", "settlement"]
#: Citizens file opinions, material requests and waste reports; the operations team records the
#: citizens' opinion statement sent to the council.
Kind = Literal["opinion", "material_request", "waste_report", "opinion_statement"]
DRAFTING, EXECUTION, SETTLEMENT = get_args(Stage)
OPINION, MATERIAL_REQUEST, WASTE_REPORT, OPINION_STATEMENT = get_args(Kind)

#: (stage, kind) -> the `[participation]` window it is filed in; no other pair is a record.
FILING_WINDOWS: dict[tuple[str, str], str] = {
    (DRAFTING, MATERIAL_REQUEST): "material_requests",
    (DRAFTING, OPINION): "drafting_opinions",
    (DRAFTING, OPINION_STATEMENT): "opinion_statement",
    (EXECUTION, WASTE_REPORT): "waste_reports",
    (SETTLEMENT, OPINION): "settlement_opinions",
}
#: (stage, kind) of the records the departments answer -> the window of their answers.
ANSWER_WINDOWS: dict[tuple[str, str], str] = {
    (DRAFTING, MATERIAL_REQUEST): "explanations",
    (SETTLEMENT, OPINION): "settlement_answers",
}
#: How a message names each kind of record.
WHAT = {
    OPINION: "an opinion",
    MATERIAL_REQUEST: "a material request",
    WASTE_REPORT: "a waste report",
    OPINION_STATEMENT: "the opinion statement",
}


def filing_refusal(stage: str, kind: str) -> str | None:
    """Why `kind` cannot be filed at `stage` (None if it can), naming what can."""
    if (stage, kind) in FILING_WINDOWS:
        return None
    here = [k for s, k in FILING_WINDOWS if s == stage]
    elsewhere = [s for s, k in FILING_WINDOWS if k == kind]
    return (
        f"kind: at the {stage} stage the records are {', '.join(here)}; "
        f"{kind} is filed at the {' or '.join(elsewhere)} stage"
    )


@dataclass(frozen=True)
class Window:
    """One `[participation]` window of one cycle: [opens_at, closes_at), aware, in UTC."""

    name: str
    opens_at: datetime
    closes_at: datetime

    def holds(self, moment: datetime) -> bool:
        return self.opens_at <= moment < self.closes_at

    def shown(self) -> str:
        opens, closes = in_seoul(self.opens_at), in_seoul(self.closes_at)
        return f"participation.{self.name} [{opens.isoformat()}, {closes.isoformat()})"


def window(rules: ParticipationRules, name: str, year: int) -> Window:
    """The window `name` of the cycle of budget year `year`: 00:00 Seoul on its dates."""
    bounds: ParticipationWindow = getattr(rules, name)
    return Window(
        name, seoul_midnight(bounds.start_date(year)), seoul_midnight(bounds.end_date(year))
    )


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class ParticipationRecord(SQLModel, table=True):
    """A record of the cycle's whole-budget participation, as filed."""

    __tablename__ = "budget_participation"
    __table_args__ = (
        Index("ix_budget_participation_year_created", "year", "created_at", "id"),
        # the operations team records one opinion statement per cycle
        Index(
            "uq_budget_participation_statement",
            "year",
            unique=True,
            postgresql_where=text("kind = 'opinion_statement'"),
        ),
    )

    id: str = Field(primary_key=True)
    year: int = Field(foreign_key="budget_cycles.year")
    stage: str
    kind: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    #: The project a waste report (or an opinion or request) is about.
    project_id: str | None = Field(default=None, foreign_key="budget_projects.id", index=True)
    #: The department a citizen addresses: only its caseworkers answer then.
    department: str | None = None
    #: Never shown in public: only the filer's own listing reads it.
    author_id: str = Field(index=True)
    author_role: str
    created_at: datetime = _tz(nullable=False)


class ParticipationAnswer(SQLModel, table=True):
    """A department's answer to a record: an explanation answering a material request, or the
    answer to a settlement opinion; one per department and record."""

    __tablename__ = "budget_participation_answers"
    __table_args__ = (
        UniqueConstraint(
            "record_id", "department", name="uq_budget_participation_answers_department"
        ),
    )

    id: str = Field(primary_key=True)
    record_id: str = Field(foreign_key="budget_participation.id", index=True)
    department: str
    #: Never shown in public.
    author_id: str = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)
