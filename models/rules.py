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
class Rulebook:
    """One immutable, named version of the rules. `content_hash` is computed on load."""

    __pydantic_config__ = _STRICT

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: str
    source: str
    proposal: ProposalRules | None = None
    execution: ExecutionRules | None = None
    escalation: EscalationRules | None = None


@dataclass(frozen=True)
class PinnedRules:
    """What a case pins at start: the rulebook's name, its content hash and its content."""

    name: str
    content_hash: str
    rulebook: Rulebook
