"""Who sits on the budget cycle's bodies (process.md §5): each field's citizen council
(`council:<field>`) and the On-Citizen Budget Square (`square`). The cycle's projection writes
the members; the API asks here whether a caller may act as one."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.budget_tables import BudgetBodyMember

SQUARE = "square"
ACTIVE = "active"
DRAWN = "drawn"


def council_body(field: str) -> str:
    return f"council:{field}"


async def is_member(session: AsyncSession, year: int, body: str, person_id: str) -> bool:
    found = await session.exec(
        select(BudgetBodyMember.person_id).where(
            col(BudgetBodyMember.year) == year,
            col(BudgetBodyMember.body) == body,
            col(BudgetBodyMember.person_id) == person_id,
        )
    )
    return found.first() is not None


async def add_members(
    session: AsyncSession, year: int, body: str, members: Iterable[tuple[str, str]]
) -> None:
    """Add (person_id, origin) pairs to `body`; a member already there stays as they are, so
    that a projection retried after a crash writes nothing twice."""
    rows = [
        {"year": year, "body": body, "person_id": person_id, "origin": origin}
        for person_id, origin in members
    ]
    if rows:
        await session.execute(insert(BudgetBodyMember).values(rows).on_conflict_do_nothing())
