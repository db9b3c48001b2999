"""Forum records: the row a forum's workflow projects into, created before the workflow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from models.deliberation import ForumKind
from models.deliberation_tables import Forum, OpinionBox
from models.ids import forum_workflow_id
from models.rules import PinnedRules


@dataclass
class ForumOpening:
    forum_id: str
    title: str
    body: str
    kind: ForumKind
    rules: PinnedRules
    created_by: str
    field: str | None = None
    origin_proposal_id: str | None = None
    panel_draw_id: str | None = None


async def insert_forum(session: AsyncSession, opening: ForumOpening, now: datetime) -> None:
    """Create the forum's row and its opinion box, open from now on (idempotent)."""
    await session.execute(
        insert(Forum)
        .values(
            id=opening.forum_id,
            workflow_id=forum_workflow_id(opening.forum_id),
            title=opening.title,
            body=opening.body,
            kind=opening.kind.value,
            field=opening.field,
            origin_proposal_id=opening.origin_proposal_id,
            panel_draw_id=opening.panel_draw_id,
            created_by=opening.created_by,
            rulebook=opening.rules.name,
            rulebook_hash=opening.rules.content_hash,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    await session.execute(
        insert(OpinionBox).values(case_id=opening.forum_id, opened_at=now).on_conflict_do_nothing()
    )


class ForumRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="record_forum")
    async def record_forum(self, opening: ForumOpening) -> None:
        """The forum a proposal's agenda selection decided to hold: its row, before its start."""
        async with self._sessions() as session, session.begin():
            await insert_forum(session, opening, activity.info().current_attempt_scheduled_time)
