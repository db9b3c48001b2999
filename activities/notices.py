"""The notification outbox: one row per recipient, delivered by channels added later."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from models.case import Notice
from models.tables import Notification


class Notices:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="enqueue_notice")
    async def enqueue(self, notice: Notice) -> None:
        created_at = activity.info().current_attempt_scheduled_time
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(Notification)
                .values(
                    [
                        {
                            "key": notice.key,
                            "case_id": notice.case_id,
                            "recipient": recipient,
                            "kind": notice.kind,
                            "message": notice.message,
                            "due_at": notice.due_at,
                            "created_at": created_at,
                        }
                        for recipient in notice.recipients
                    ]
                )
                .on_conflict_do_nothing(constraint="uq_notifications_key_recipient")
            )
