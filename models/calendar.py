"""The process calendar is Asia/Seoul (UTC+9, no daylight saving), rules.md "Dates".

`zoneinfo` does not work inside the workflow sandbox, hence a fixed offset. Pure functions of
their arguments (no I/O, no clock): workflows call them with `workflow.now()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from models.rules import PhaseWindow

SEOUL = timezone(timedelta(hours=9), "Asia/Seoul")
#: The phase of a cycle before its first phase and from the end of its last; no phase of a
#: rulebook calendar may be named so.
NOT_STARTED = "not_started"
CLOSED = "closed"


def in_seoul(moment: datetime) -> datetime:
    return moment.astimezone(SEOUL)


def add_days(moment: datetime, days: int) -> datetime:
    """ "Within N days" counts calendar days from the event that starts it."""
    return moment + timedelta(days=days)


def add_years(moment: datetime, years: int) -> datetime:
    """The same Seoul calendar date `years` later (29 February becomes 28 February)."""
    local = in_seoul(moment)
    try:
        shifted = local.replace(year=local.year + years)
    except ValueError:
        shifted = local.replace(year=local.year + years, day=28)
    return shifted.astimezone(moment.tzinfo or SEOUL)


def deliberation_year(moment: datetime, window_start: str, window_end: str) -> tuple[int, bool]:
    """The budget year whose council deliberates an item that arrives at `moment`.

    The council sits in a yearly window given as inclusive month-day bounds ("03-01" to
    "08-31"), i.e. [YYYY-03-01 00:00, YYYY-09-01 00:00) Seoul time. Before or inside this
    year's window: this year. After it: next year, and the item is carried over.
    Returns (year, carried_over).
    """
    local = in_seoul(moment)
    end_month, end_day = (int(part) for part in window_end.split("-"))
    window_closes = datetime(local.year, end_month, end_day, tzinfo=SEOUL) + timedelta(days=1)
    if local < window_closes:
        return local.year, False
    return local.year + 1, True


class ScheduledPhase(NamedTuple):
    """One phase of one cycle: [starts_at, ends_at), aware datetimes in UTC."""

    phase: str
    starts_at: datetime
    ends_at: datetime


def seoul_midnight(day: date) -> datetime:
    """00:00 Seoul time on `day`, in UTC (03-01 00:00 Seoul is 02-28/29 15:00 UTC)."""
    return datetime(day.year, day.month, day.day, tzinfo=SEOUL).astimezone(UTC)


def phase_schedule(
    calendar: Mapping[str, Mapping[str, PhaseWindow]], kind: str, year: int
) -> list[ScheduledPhase]:
    """The phases of the `kind` cycle (e.g. "metro") of budget year `year`, in order.

    `calendar` is a rulebook's `calendar` section, whose phases follow each other without gap
    or overlap (checked when the rulebook is loaded); each boundary is 00:00 Seoul time.
    """
    phases = calendar.get(kind)
    if phases is None:
        raise ValueError(f"the calendar has no type {kind!r}; it has: {', '.join(calendar)}")
    schedule = [
        ScheduledPhase(
            name, seoul_midnight(window.start_date(year)), seoul_midnight(window.end_date(year))
        )
        for name, window in phases.items()
    ]
    return sorted(schedule, key=lambda scheduled: scheduled.starts_at)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return moment


def current_phase(schedule: Sequence[ScheduledPhase], moment: datetime) -> ScheduledPhase | None:
    """The phase whose [starts_at, ends_at) holds `moment`; None before the first and after the
    last. At exactly a boundary the later phase holds."""
    _aware(moment)
    for scheduled in schedule:
        if scheduled.starts_at <= moment < scheduled.ends_at:
            return scheduled
    return None


def phase_at(schedule: Sequence[ScheduledPhase], moment: datetime) -> str:
    """The phase's name at `moment`: "not_started" before the first phase, "closed" from the end
    of the last."""
    scheduled = current_phase(schedule, moment)
    if scheduled is not None:
        return scheduled.phase
    if not schedule or moment < schedule[0].starts_at:
        return NOT_STARTED
    return CLOSED


def phase_ends_at(schedule: Sequence[ScheduledPhase], moment: datetime) -> datetime | None:
    """When the phase at `moment` gives way to the next: the current phase's end, the first
    phase's start if none has started yet, None once closed (a workflow sleeps until this)."""
    scheduled = current_phase(schedule, moment)
    if scheduled is not None:
        return scheduled.ends_at
    if schedule and moment < schedule[0].starts_at:
        return schedule[0].starts_at
    return None


def move_phase_end(
    schedule: Sequence[ScheduledPhase], phase: str, new_end: datetime
) -> list[ScheduledPhase]:
    """The schedule with `phase` ending at `new_end` and the next phase starting there, so the
    phases still follow each other without gap or overlap (an audited phase override)."""
    _aware(new_end)
    names = [scheduled.phase for scheduled in schedule]
    if phase not in names:
        raise ValueError(f"no phase {phase!r}; the phases are: {', '.join(names)}")
    index = names.index(phase)
    moved = list(schedule)
    current = moved[index]
    if new_end <= current.starts_at:
        raise ValueError(f"{phase} would end before it starts ({current.starts_at.isoformat()})")
    if index + 1 < len(moved):
        following = moved[index + 1]
        if new_end >= following.ends_at:
            raise ValueError(
                f"{phase} would end after {following.phase} ends ({following.ends_at.isoformat()})"
            )
        moved[index + 1] = following._replace(starts_at=new_end.astimezone(UTC))
    moved[index] = current._replace(ends_at=new_end.astimezone(UTC))
    return moved
