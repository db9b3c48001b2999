"""Typed rulebook content (rules.md). Pure dataclasses: they travel inside workflow inputs.

Validation (types, ranges, unknown keys) happens once, when a rulebook file is loaded
(`rulebooks.load`); the `Annotated` bounds below are what it enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated

from pydantic import ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", strict=False)

PositiveInt = Annotated[int, Field(ge=1)]
FractionText = Annotated[str, Field(pattern=r"^\d+/\d+$")]


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
    linked: LinkedRules | None = None
    forum: ForumRules | None = None
    ask: AskRules | None = None
    budget: BudgetRules | None = None
    sortition: SortitionRules | None = None
    council: CouncilRules | None = None


@dataclass(frozen=True)
class PinnedRules:
    """What a case pins at start: the rulebook's name, its content hash and its content."""

    name: str
    content_hash: str
    rulebook: Rulebook
