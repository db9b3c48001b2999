"""Closing and counting ballot boxes (models/ballot_box.py), as activities of the workflows.

Casting is done by the API, recounting by auditors; both use the same data access.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import heartbeating
from models.ballot_box import close_box, count_proposal_ballots, proposal_box_id
from models.proposal import Tally
from models.tables import Proposal


class BallotBoxes:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="close_and_tally")
    async def close_and_tally(self, proposal_id: str) -> Tally:
        """Close a proposal's box (no ballot after this commits) and count it; idempotent."""
        closed_at: datetime = activity.info().current_attempt_scheduled_time
        async with heartbeating(), self._sessions() as session, session.begin():
            await session.execute(
                select(col(Proposal.id)).where(col(Proposal.id) == proposal_id).with_for_update()
            )
            await session.execute(
                update(Proposal)
                .where(col(Proposal.id) == proposal_id)
                .where(col(Proposal.tallied_at).is_(None))
                .values(tallied_at=closed_at)
            )
            await close_box(session, proposal_box_id(proposal_id), now=closed_at)
            return await count_proposal_ballots(session, proposal_id)
