"""The forum a proposal's agenda selection decided to hold: its row, written as an activity."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from models.deliberation import ForumOpening
from models.forum_records import insert_forum

__all__ = ["ForumOpening", "ForumRecords"]


class ForumRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="record_forum")
    async def record_forum(self, opening: ForumOpening) -> None:
        """The forum a proposal's agenda selection decided to hold: its row, before its start."""
        async with self._sessions() as session, session.begin():
            await insert_forum(session, opening, activity.info().current_attempt_scheduled_time)
