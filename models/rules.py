"""Typed rulebook content (rules.md). Pure dataclasses: they travel inside workflow inputs.

Validation (types, ranges, unknown keys) happens once, when a rulebook file is loaded
(`rulebooks.load`); the `Annotated` bounds below are what it enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, ConfigDict, Field

from models.calendar import CLOSED, NOT_STARTED

_STRICT = ConfigDict(extra="forbid", strict=False)

PositiveInt = Annotated[int, Field(ge=1)]
FractionText = Annotated[str, Field(pattern=r"^\d+/\d+$")]
Share = Annotated[float, Field(ge=0, le=1)]
#: Strictly between 0 and 1.
OpenRatio = Annotated[float, Field(gt=0, lt=1)]
#: A group, calendar type or phase name: lower-case snake_case.
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


def _exact(value: float) -> Fraction:
    """The decimal a rulebook wrote (0.1 is 1/10, not the nearest binary float)."""
    return Fraction(repr(value))


@dataclass(frozen=True)
class ProposalRules:
    __pydantic_config__ = _STRICT

    review_support_threshold: PositiveInt
    dept_review_days: PositiveInt
    appropriateness_days: PositiveInt
    vote_days: PositiveInt
    krw_per_voter: PositiveInt
    min_voters: PositiveInt
    max_voters: PositiveInt
    pass_yes_share: FractionText
    pass_yes_share_strict: bool

    def quorum(self, cost_krw: int) -> int:
        """Required turnout: one voter per `krw_per_voter`, clamped to [min, max]."""
        wanted = math.ceil(max(cost_krw, 0) / self.krw_per_voter)
        return min(max(wanted, self.min_voters), self.max_voters)

    def passes(self, *, yes: int, turnout: int, quorum: int) -> bool:
        """Turnout reaches the quorum and yes is more than (or at least) the share of votes."""
        if turnout < quorum or turnout == 0:
            return False
        share = Fraction(self.pass_yes_share)
        if self.pass_yes_share_strict:
            return Fraction(yes, turnout) > share
        return Fraction(yes, turnout) >= share


@dataclass(frozen=True)
class ExecutionRules:
    __pydantic_config__ = _STRICT

    budget_years_max: Annotated[int, Field(ge=1, le=10)]


@dataclass(frozen=True)
class EscalationRules:
    __pydantic_config__ = _STRICT

    reminder_days: Annotated[int, Field(ge=1, le=365)]


@dataclass(frozen=True)
class MonitoringRules:
    """A selected budget project's execution (process.md §6, §9): its executing department
    reports its progress at least every `report_days` from 1 January of Y+1."""

    __pydantic_config__ = _STRICT

    report_days: Annotated[int, Field(ge=1, le=366)]


@dataclass(frozen=True)
class LinkedRules:
    """The Democracy-Seoul-linked budget path (process.md §4)."""

    __pydantic_config__ = _STRICT

    forum_support_threshold: PositiveInt
    support_window_days: PositiveInt
    agenda_min_days: PositiveInt
    agenda_max_days: PositiveInt
    deliberation_participant_threshold: PositiveInt


@dataclass(frozen=True)
class ForumRules:
    __pydantic_config__ = _STRICT

    days: PositiveInt


@dataclass(frozen=True)
class AskRules:
    """ "Seoul asks" (process.md §2)."""

    __pydantic_config__ = _STRICT

    request_lead_days: PositiveInt
    opinion_days: PositiveInt
    dept_review_days: PositiveInt


MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]


@dataclass(frozen=True)
class BudgetRules:
    """The council's deliberation window, as month-day bounds, inclusive (Seoul time)."""

    __pydantic_config__ = _STRICT

    deliberation_window_start: MonthDay
    deliberation_window_end: MonthDay


@dataclass(frozen=True)
class SortitionRules:
    __pydantic_config__ = _STRICT

    square_size: PositiveInt
    agenda_group_size: PositiveInt
    #: Lower bounds of the age bands, in years; the last band is open-ended.
    age_bands: list[Annotated[int, Field(ge=0, le=120)]]


@dataclass(frozen=True)
class CouncilRules:
    __pydantic_config__ = _STRICT

    random_share: Annotated[float, Field(ge=0, le=1)]


def _weights_sum_to_one(weights: dict[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError("vote.group_weights names no voter group")
    total = sum((_exact(w) for w in weights.values()), Fraction(0))
    if total != 1:
        listed = ", ".join(f"{group} = {weight}" for group, weight in weights.items())
        raise ValueError(f"vote.group_weights must sum to exactly 1, not {float(total)} ({listed})")
    return weights


@dataclass(frozen=True)
class VoteRules:
    """Every project-selection vote of a budget cycle (process.md §6a, 003 3-1)."""

    __pydantic_config__ = _STRICT

    #: Voter group -> its share of a project's final score; shares in [0, 1], summing to 1
    #: exactly (compared as the decimals written, so 0.1 + 0.2 + 0.7 is 1).
    group_weights: Annotated[dict[Name, Share], AfterValidator(_weights_sum_to_one)]

    def exact_weights(self) -> dict[str, Fraction]:
        """The weights as exact fractions, for tallies that must not depend on float rounding."""
        return {group: _exact(weight) for group, weight in self.group_weights.items()}


SelectionRule = Literal["drop_lowest", "greedy", "equal_shares"]
SELECTION_RULES: tuple[str, ...] = get_args(SelectionRule)


@dataclass(frozen=True)
class SelectionRules:
    """How a ranked vote becomes a selection (process.md §6a): `drop_lowest` drops the
    lowest-ranked projects worth the cycle's drop ratio (Seoul's rule); `greedy` funds in rank
    order, skipping what no longer fits; `equal_shares` is the method of equal shares."""

    __pydantic_config__ = _STRICT

    rule: SelectionRule


def _level_bounds(allocation_krw: int, level: Fraction, tolerance: Fraction) -> tuple[int, int]:
    low = math.ceil((level - tolerance) * allocation_krw)
    high = math.floor((level + tolerance) * allocation_krw)
    return max(low, 0), high


@dataclass(frozen=True)
class DeliberativeRules:
    """The deliberative type (process.md §5): a shortlist at `shortlist_ratio` of a field's
    allocation, a selection at 100 %; both are levels (수준), met within `level_tolerance`."""

    __pydantic_config__ = _STRICT

    shortlist_ratio: Annotated[float, Field(ge=1, le=10)]
    level_tolerance: Annotated[float, Field(ge=0, lt=1)]

    def shortlist_bounds_krw(self, allocation_krw: int) -> tuple[int, int]:
        """Inclusive bounds of a shortlist's total: (ratio -/+ tolerance) x allocation."""
        return _level_bounds(
            allocation_krw, _exact(self.shortlist_ratio), _exact(self.level_tolerance)
        )

    def selection_bounds_krw(self, allocation_krw: int) -> tuple[int, int]:
        """Inclusive bounds of a selection's total: (1 -/+ tolerance) x allocation."""
        return _level_bounds(allocation_krw, Fraction(1), _exact(self.level_tolerance))


@dataclass(frozen=True)
class MetroRules:
    """The metropolitan proposal type (process.md §6). Both per-project caps are exclusive
    (미만): a general project must cost less than `cap_general_krw`, a programme or event
    less than `cap_event_krw`."""

    __pydantic_config__ = _STRICT

    cap_general_krw: PositiveInt
    cap_event_krw: PositiveInt
    #: The range a cycle's drop ratio must lie in (the cycle sets the value).
    vote_drop_ratio_min: OpenRatio
    vote_drop_ratio_max: OpenRatio
    total_krw: PositiveInt
    #: A project must benefit at least this many districts.
    min_districts: PositiveInt

    def __post_init__(self) -> None:
        if self.vote_drop_ratio_min > self.vote_drop_ratio_max:
            raise ValueError(
                f"metro.vote_drop_ratio_min ({self.vote_drop_ratio_min}) is greater than "
                f"metro.vote_drop_ratio_max ({self.vote_drop_ratio_max})"
            )

    def cap_krw(self, *, event: bool) -> int:
        return self.cap_event_krw if event else self.cap_general_krw

    def within_cap(self, cost_krw: int, *, event: bool) -> bool:
        """The cap is exclusive: a cost equal to it is over it."""
        return cost_krw < self.cap_krw(event=event)

    def allows_drop_ratio(self, ratio: float) -> bool:
        return self.vote_drop_ratio_min <= ratio <= self.vote_drop_ratio_max


@dataclass(frozen=True)
class ReviewRules:
    __pydantic_config__ = _STRICT

    #: The share of a review score given to social inclusiveness (사회적 포용성).
    inclusiveness_weight: Share


@dataclass(frozen=True)
class GovernanceRules:
    __pydantic_config__ = _STRICT

    #: At most this much a year (이내: the ceiling itself is allowed).
    ceiling_krw: PositiveInt


@dataclass(frozen=True)
class DistrictRules:
    """District plans (process.md §8): every district up to `ceiling_krw`, and the
    `strategic_count_min`..`max` districts chosen for strategic projects up to
    `strategic_ceiling_krw` more."""

    __pydantic_config__ = _STRICT

    district_count: PositiveInt
    ceiling_krw: PositiveInt
    strategic_ceiling_krw: PositiveInt
    strategic_count_min: PositiveInt
    strategic_count_max: PositiveInt

    def __post_init__(self) -> None:
        if self.strategic_count_min > self.strategic_count_max:
            raise ValueError(
                "district.strategic_count_min is greater than district.strategic_count_max"
            )
        if self.strategic_count_max > self.district_count:
            raise ValueError("district.strategic_count_max is greater than district.district_count")


@dataclass(frozen=True)
class NeighbourhoodRules:
    __pydantic_config__ = _STRICT

    #: The city-wide ceiling, shared out per district (이내: the ceiling itself is allowed).
    ceiling_krw: PositiveInt


@dataclass(frozen=True)
class NeighbourhoodCeilingRules:
    """How the city computes each district's neighbourhood ceiling from its counts (process.md
    §6a, 003 1-2-⑤): `krw_per_neighbourhood` for each planning-type and each autonomous
    neighbourhood alike, at most `autonomous_max_per_district` autonomous ones per district; the
    districts' ceilings together stay within `neighbourhood.ceiling_krw`."""

    __pydantic_config__ = _STRICT

    krw_per_neighbourhood: PositiveInt
    autonomous_max_per_district: PositiveInt

    def district_ceiling_krw(self, planning: int, autonomous: int) -> int:
        return self.krw_per_neighbourhood * (planning + autonomous)


def _every_year(month_day: str) -> str:
    month, day = (int(part) for part in month_day.split("-"))
    try:
        date(2001, month, day)  # a common year: 02-29 is not a date of every year
    except ValueError:
        raise ValueError(f"{month_day} is not a date in every year") from None
    return month_day


CalendarDay = Annotated[MonthDay, AfterValidator(_every_year)]
YearOffset = Annotated[int, Field(ge=-1, le=1)]


@dataclass(frozen=True)
class PhaseWindow:
    """One phase of a cycle: [start, end) at 00:00 Seoul time, as month-days of the cycle's
    year plus a year offset (a phase ending on 1 January after the cycle's year ends at
    "01-01" with `end_year_offset = 1`)."""

    __pydantic_config__ = _STRICT

    start: CalendarDay
    end: CalendarDay
    start_year_offset: YearOffset = 0
    end_year_offset: YearOffset = 0

    def start_date(self, year: int) -> date:
        return _on(year + self.start_year_offset, self.start)

    def end_date(self, year: int) -> date:
        return _on(year + self.end_year_offset, self.end)

    def _start_key(self) -> tuple[int, str]:
        return self.start_year_offset, self.start

    def _end_key(self) -> tuple[int, str]:
        return self.end_year_offset, self.end


def _on(year: int, month_day: str) -> date:
    month, day = (int(part) for part in month_day.split("-"))
    return date(year, month, day)


def _shown(year_offset: int, month_day: str) -> str:
    return month_day if year_offset == 0 else f"{month_day} (year {year_offset:+d})"


def _check_calendar(
    calendar: dict[str, dict[str, PhaseWindow]],
) -> dict[str, dict[str, PhaseWindow]]:
    """Each type's phases, in the order written, follow each other without gap or overlap."""
    for kind, phases in calendar.items():
        if not phases:
            raise ValueError(f"calendar.{kind} has no phases")
        previous: tuple[str, PhaseWindow] | None = None
        for name, window in phases.items():
            key = f"calendar.{kind}.{name}"
            if name in (NOT_STARTED, CLOSED):
                raise ValueError(f"{key}: {name!r} is reserved for the time outside every phase")
            if window._end_key() <= window._start_key():
                raise ValueError(
                    f"{key} ends ({_shown(*window._end_key())}) "
                    f"no later than it starts ({_shown(*window._start_key())})"
                )
            if previous is not None and window._start_key() != previous[1]._end_key():
                before = f"calendar.{kind}.{previous[0]}"
                relation = (
                    "overlaps"
                    if window._start_key() < previous[1]._end_key()
                    else "leaves a gap after"
                )
                raise ValueError(
                    f"{key} starts {_shown(*window._start_key())} but {before} ends "
                    f"{_shown(*previous[1]._end_key())}: {key} {relation} it; phases must be "
                    "listed in order, each starting where the previous one ends"
                )
            previous = (name, window)
    return calendar


#: Cycle type (e.g. "metro") -> its phases in order, phase name -> window.
Calendar = Annotated[dict[Name, dict[Name, PhaseWindow]], AfterValidator(_check_calendar)]


#: A participation window may end in the year after the cycle's spending year (Y+2).
ParticipationYearOffset = Annotated[int, Field(ge=0, le=2)]


@dataclass(frozen=True)
class ParticipationWindow(PhaseWindow):
    """A window of whole-budget participation (process.md §9): [start, end) at 00:00 Seoul
    time, as month-days of the cycle's year Y plus a year offset of 0, 1 (Y+1, the year the
    budget is spent and settled) or 2 (a window that ends with Y+1 ends on 01-01 of Y+2)."""

    start_year_offset: ParticipationYearOffset = 0
    end_year_offset: ParticipationYearOffset = 0

    def __post_init__(self) -> None:
        if self._end_key() <= self._start_key():
            raise ValueError(
                f"ends ({_shown(*self._end_key())}) no later than it starts "
                f"({_shown(*self._start_key())})"
            )


@dataclass(frozen=True)
class ParticipationRules:
    """When each record of the whole budget process is accepted (process.md §9, 003 1-3-①):
    citizens' material requests, the departments' explanations, citizens' opinions for the
    opinion statement and the statement itself, waste reports during execution, settlement
    opinions and the departments' answers to them."""

    __pydantic_config__ = _STRICT

    material_requests: ParticipationWindow
    explanations: ParticipationWindow
    drafting_opinions: ParticipationWindow
    opinion_statement: ParticipationWindow
    waste_reports: ParticipationWindow
    settlement_opinions: ParticipationWindow
    settlement_answers: ParticipationWindow


@dataclass(frozen=True)
class Rulebook:
    """One immutable, named version of the rules. `content_hash` is computed on load."""

    __pydantic_config__ = _STRICT

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: str
    source: str
    proposal: ProposalRules | None = None
    execution: ExecutionRules | None = None
    escalation: EscalationRules | None = None
    monitoring: MonitoringRules | None = None
    linked: LinkedRules | None = None
    forum: ForumRules | None = None
    ask: AskRules | None = None
    budget: BudgetRules | None = None
    sortition: SortitionRules | None = None
    council: CouncilRules | None = None
    vote: VoteRules | None = None
    selection: SelectionRules | None = None
    deliberative: DeliberativeRules | None = None
    metro: MetroRules | None = None
    review: ReviewRules | None = None
    governance: GovernanceRules | None = None
    district: DistrictRules | None = None
    neighbourhood: NeighbourhoodRules | None = None
    calendar: Calendar | None = None
    participation: ParticipationRules | None = None
    neighbourhood_ceiling: NeighbourhoodCeilingRules | None = None


@dataclass(frozen=True)
class PinnedRules:
    """What a case pins at start: the rulebook's name, its content hash and its content."""

    name: str
    content_hash: str
    rulebook: Rulebook
