"""The opinion box of a forum or an ask (models/opinion_box.py), as workflow activities.

Participating is called by the API; opening, closing and counting by the case's workflow.
High-volume input never reaches the workflow one event at a time (design.md, principle 2):
the workflow learns the counts once, at close, with a digest of the rows counted.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import heartbeating
from models.deliberation import OpinionTally
from models.deliberation_tables import OpinionBox
from models.opinion_box import count_opinions


class OpinionBoxes:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="open_opinion_box")
    async def open_box(self, case_id: str) -> None:
        opened_at = activity.info().current_attempt_scheduled_time
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(OpinionBox)
                .values(case_id=case_id, opened_at=opened_at)
                .on_conflict_do_update(
                    index_elements=[col(OpinionBox.case_id)],
                    set_={"opened_at": opened_at},
                    where=col(OpinionBox.opened_at).is_(None),
                )
            )

    @activity.defn(name="close_and_count_opinions")
    async def close_and_count(self, case_id: str) -> OpinionTally:
        """Close the box (no participation after this commits) and count it; idempotent."""
        closed_at = activity.info().current_attempt_scheduled_time
        async with heartbeating(), self._sessions() as session, session.begin():
            await session.execute(
                update(OpinionBox)
                .where(col(OpinionBox.case_id) == case_id)
                .where(col(OpinionBox.closed_at).is_(None))
                .values(closed_at=closed_at)
            )
            return await count_opinions(session, case_id)
