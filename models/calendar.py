"""The process calendar is Asia/Seoul (UTC+9, no daylight saving), rules.md "Dates".

`zoneinfo` does not work inside the workflow sandbox, hence a fixed offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

SEOUL = timezone(timedelta(hours=9), "Asia/Seoul")


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
