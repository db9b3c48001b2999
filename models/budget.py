"""Payloads of the budget-year cycle (process.md §5-8): its start, phases, overrides and state.

A cycle for year Y is deliberated in Y and spent in Y+1. Each type of the rulebook calendar
(`deliberative`, `metro`, ...) moves through its phases on the calendar, Seoul time; the
workflow keeps the schedule (with any audited override) and projects every change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from models.calendar import ScheduledPhase
from models.case import TimelineEntry
from models.rules import PinnedRules

#: Continue-as-new once the history holds this many events (Temporal suggests it at 4,096).
MAX_HISTORY_EVENTS = 2_000


class CycleStatus(StrEnum):
    RUNNING = "running"
    CLOSED = "closed"


@dataclass
class PhaseSlot:
    """One phase of one type: [starts_at, ends_at), UTC."""

    phase: str
    starts_at: datetime
    ends_at: datetime

    @staticmethod
    def of(scheduled: ScheduledPhase) -> PhaseSlot:
        return PhaseSlot(scheduled.phase, scheduled.starts_at, scheduled.ends_at)

    def scheduled(self) -> ScheduledPhase:
        return ScheduledPhase(self.phase, self.starts_at, self.ends_at)


@dataclass
class CyclePhase:
    """Where one type stands: its phase and when that phase gives way (None once closed)."""

    phase: str
    phase_ends_at: datetime | None


@dataclass
class BudgetCycleState:
    year: int
    status: CycleStatus = CycleStatus.RUNNING
    #: Type -> its phases in order, overrides applied.
    schedules: dict[str, list[PhaseSlot]] = field(default_factory=dict)
    #: Type -> the phase last announced (recorded in the timeline and projected).
    phases: dict[str, CyclePhase] = field(default_factory=dict)
    #: How many times the workflow continued as new.
    runs: int = 0


@dataclass
class BudgetCycleStart:
    year: int
    rules: PinnedRules
    drop_ratio: float
    #: Continue-as-new from this history length on (or when Temporal suggests it).
    max_history_events: int = MAX_HISTORY_EVENTS
    #: Carried over by continue-as-new; None on the first run.
    state: BudgetCycleState | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)


@dataclass
class PhaseOverride:
    """An admin moves the end of one type's phase (and the start of the next): audited."""

    actor_role: str
    type: str
    phase: str
    new_end: datetime
    reason: str


@dataclass
class BudgetCycleProjection:
    state: BudgetCycleState
    entry: TimelineEntry
