"""A forum's row and its opinion box, created before its workflow by the API or by the
workflow of the proposal that decided to hold it (the same insert, idempotent)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deliberation import ForumOpening
from models.deliberation_tables import Forum, OpinionBox
from models.ids import forum_workflow_id


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
