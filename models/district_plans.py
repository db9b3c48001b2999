"""District plans (구단위계획형) and neighbourhood plans (동단위계획형), process.md §8, §6a,
003 1-2-④⑤: the payloads of a district plan's workflow, the rules both check, and the tables.

A district plan (`district-plan-{id}`, a child workflow of the cycle `budget-cycle-{year}`):

    submitted   -> (negotiation round 1, admin)  negotiating
    negotiating -> (negotiation round 2, admin)  negotiated
    negotiated  -> (the funding decision, admin) funded | not_funded
    funded      -> (the agreement, admin)        agreed

Each round may adjust the cost, which stays within the plan's ceiling (`[district]`
`ceiling_krw`, plus `strategic_ceiling_krw` for a district chosen for strategic projects; 이내:
the ceiling itself is allowed). Which phase of the cycle's `district` type a write belongs to is
checked by the API against Postgres, as for projects; the plan's workflow owns its stage.

Neighbourhood agendas are rows written by the API (no workflow: each set is submitted once and
reviewed once, each write a single transaction): the city announces each district's ceiling
(`[neighbourhood_ceiling]`), each district submits its neighbourhoods' ranked agendas with the
residents' assembly's minutes, within its ceiling, and the city reviews each set on
quantitative indicators and selects within the district's ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.case import TimelineEntry
from models.rules import DistrictRules, PinnedRules

#: The cycle's calendar types (rulebook `[calendar.district]`, `[calendar.neighbourhood]`).
DISTRICT = "district"
NEIGHBOURHOOD = "neighbourhood"
#: The district type's phase of each write.
APPLICATION_PHASES = ("applications",)
SELECTION_PHASES = ("selection",)
SUBMISSION_PHASES = ("submission",)
NEGOTIATION_PHASES = ("negotiation",)
DECISION_PHASES = ("decision",)
AGREEMENT_PHASES = ("council",)
#: The neighbourhood type's phase of each write.
CEILING_PHASES = ("ceilings",)
AGENDA_PHASES = ("agendas",)
REVIEW_PHASES = ("review",)
#: Exactly this many rounds of negotiation (7~8월 1차~2차 협의조정).
NEGOTIATION_ROUNDS = 2
#: A district caseworker's `dept` is this prefix and the district's name.
DISTRICT_DEPT = "district:"
#: Indicator scores of the neighbourhood review are 0..100.
INDICATOR_MAX = 100


def district_plan_workflow_id(plan_id: str) -> str:
    return f"district-plan-{plan_id}"


def _krw(amount: int) -> str:
    return f"{amount:,} KRW"


def district_ceiling_krw(rules: DistrictRules, strategic: bool) -> int:
    return rules.ceiling_krw + (rules.strategic_ceiling_krw if strategic else 0)


def district_ceiling_refusal(
    rules: DistrictRules, strategic: bool, cost_krw: int, name: str = "cost_krw"
) -> str | None:
    """Why `cost_krw` is over the plan's ceiling (None if within it: 이내, the ceiling itself
    is allowed), naming `name` and the ceiling."""
    ceiling = district_ceiling_krw(rules, strategic)
    if 0 < cost_krw <= ceiling:
        return None
    what = (
        f"district.ceiling_krw {_krw(rules.ceiling_krw)} + district.strategic_ceiling_krw "
        f"{_krw(rules.strategic_ceiling_krw)}"
        if strategic
        else "district.ceiling_krw"
    )
    return (
        f"{name}: a {'strategic ' if strategic else ''}district plan costs a positive amount "
        f"within {_krw(ceiling)} ({what}); this one costs {_krw(cost_krw)}"
    )


class PlanStatus(StrEnum):
    SUBMITTED = "submitted"
    NEGOTIATING = "negotiating"
    NEGOTIATED = "negotiated"
    FUNDED = "funded"
    NOT_FUNDED = "not_funded"
    AGREED = "agreed"


#: Where a plan's workflow ends.
FINAL = frozenset({PlanStatus.NOT_FUNDED, PlanStatus.AGREED})


# ---- the workflow's payloads -----------------------------------------------------------------


@dataclass
class DistrictPlanStart:
    plan_id: str
    year: int
    district: str
    strategic: bool
    cost_krw: int
    rules: PinnedRules
    submitted_by: str


@dataclass
class Negotiation:
    actor_role: str
    notes: str
    adjusted_cost_krw: int | None = None


@dataclass
class FundingDecision:
    actor_role: str
    funded: bool
    note: str


@dataclass
class Agreement:
    actor_role: str
    #: The city council's approval the agreement follows (its resolution).
    council_reference: str
    note: str = ""


@dataclass
class NegotiationRecord:
    round: int
    notes: str
    old_cost_krw: int
    new_cost_krw: int
    at: datetime


@dataclass
class DecisionRecord:
    funded: bool
    note: str
    cost_krw: int
    at: datetime


@dataclass
class AgreementRecord:
    council_reference: str
    note: str
    at: datetime


@dataclass
class DistrictPlanState:
    plan_id: str
    year: int
    district: str
    strategic: bool
    cost_krw: int
    status: PlanStatus = PlanStatus.SUBMITTED
    negotiations: list[NegotiationRecord] = field(default_factory=list)
    decision: DecisionRecord | None = None
    agreement: AgreementRecord | None = None


@dataclass
class DistrictPlanProjection:
    state: DistrictPlanState
    entry: TimelineEntry


# ---- tables ----------------------------------------------------------------------------------


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class DistrictApplication(SQLModel, table=True):
    """A district's application of February (2월 사업 접수): for the plan type, and, where
    `strategic`, apart for strategic projects. Written once by the API."""

    __tablename__ = "district_applications"

    year: int = Field(primary_key=True, foreign_key="budget_cycles.year")
    district: str = Field(primary_key=True)
    strategic: bool
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    applied_by: str
    applied_at: datetime = _tz(nullable=False)


class StrategicSelection(SQLModel, table=True):
    """The districts chosen for strategic projects in a cycle (3월 초), written once by the API."""

    __tablename__ = "district_strategic_selections"

    year: int = Field(primary_key=True, foreign_key="budget_cycles.year")
    districts: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    selected_at: datetime = _tz(nullable=False)


class DistrictPlan(SQLModel, table=True):
    """A district plan: the row the API writes with its workflow, then the workflow's
    projection; one per district and cycle."""

    __tablename__ = "district_plans"
    __table_args__ = (UniqueConstraint("year", "district", name="uq_district_plans_year_district"),)

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    year: int = Field(foreign_key="budget_cycles.year")
    district: str
    strategic: bool
    strategy: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    plan: str = Field(sa_column=Column(Text, nullable=False))
    submitted_cost_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: The plan's ceiling under the pinned rulebook (with the strategic part if strategic).
    ceiling_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: Never shown in public.
    submitted_by: str
    rulebook: str
    rulebook_hash: str
    created_at: datetime = _tz(nullable=False)
    # Written by the workflow projection only:
    status: str = PlanStatus.SUBMITTED.value
    cost_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    negotiations: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    agreement: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)


class NeighbourhoodCeiling(SQLModel, table=True):
    """A district's neighbourhood ceiling as the city announced it, from its counts."""

    __tablename__ = "neighbourhood_ceilings"

    year: int = Field(primary_key=True, foreign_key="budget_cycles.year")
    district: str = Field(primary_key=True)
    planning_neighbourhoods: int
    autonomous_neighbourhoods: int
    ceiling_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    announced_at: datetime = _tz(nullable=False)


class NeighbourhoodAgendaSet(SQLModel, table=True):
    """One neighbourhood's agendas, ranked by its residents' assembly, submitted by its
    district; reviewed once by the city. One per neighbourhood and cycle."""

    __tablename__ = "neighbourhood_agendas"
    __table_args__ = (
        UniqueConstraint(
            "year", "district", "neighbourhood", name="uq_neighbourhood_agendas_neighbourhood"
        ),
        Index("ix_neighbourhood_agendas_year_district", "year", "district"),
    )

    id: str = Field(primary_key=True)
    year: int = Field(foreign_key="budget_cycles.year")
    district: str
    neighbourhood: str
    #: [{title, rank, cost_krw}] in rank order; after the review each also has `scores`,
    #: `total` and `selected`.
    agendas: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    assembly_minutes: str = Field(sa_column=Column(Text, nullable=False))
    cost_krw: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: Never shown in public.
    submitted_by: str
    created_at: datetime = _tz(nullable=False)
    status: str = "submitted"
    selected_krw: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    review_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reviewed_at: datetime | None = _tz(nullable=True)
