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
