"""The ballot box of a proposal's decision vote (design.md, principles 2 and 7).

Who voted (`ballot_participations`) and what was chosen (`ballot_choices`, under a random
receipt) are separate rows written in one transaction; neither holds a time, so nothing joins a
person to a choice. Casting is called by the API; closing and tallying by the workflow, as an
activity; recounting by auditors. All three share `count_ballots`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import heartbeating
from models.proposal import Status, Tally
from models.tables import BallotChoice, BallotParticipation, Proposal

CHOICES = ("yes", "no")


class BallotRefused(Exception):
    """The ballot cannot be cast: `reason` says why (not open, already voted)."""

    def __init__(self, reason: str, *, not_found: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found


@dataclass
class Receipt:
    receipt: str


async def cast_ballot(
    session: AsyncSession, *, proposal_id: str, person_id: str, choice: str
) -> Receipt:
    """Record one person's ballot, or refuse it; the caller owns the transaction."""
    if choice not in CHOICES:
        raise ValueError("choice must be yes or no")
    row = (
        await session.execute(
            select(col(Proposal.status), col(Proposal.tallied_at))
            .where(col(Proposal.id) == proposal_id)
            .with_for_update(read=True)
        )
    ).one_or_none()
    if row is None:
        raise BallotRefused("no such proposal", not_found=True)
    if row.status != Status.VOTING.value or row.tallied_at is not None:
        raise BallotRefused(f"the vote is not open (the proposal is {row.status})")
    inserted = await session.execute(
        insert(BallotParticipation)
        .values(proposal_id=proposal_id, person_id=person_id)
        .on_conflict_do_nothing()
        .returning(col(BallotParticipation.person_id))
    )
    if inserted.first() is None:
        raise BallotRefused("you have already voted on this proposal")
    receipt = secrets.token_hex(16)
    session.add(BallotChoice(receipt=receipt, proposal_id=proposal_id, choice=choice))
    return Receipt(receipt=receipt)


async def count_ballots(session: AsyncSession, proposal_id: str) -> Tally:
    """Count in SQL, with a digest of the exact rows counted.

    The digest is SHA-256 over the `receipt:choice` lines sorted by receipt, each ending in a
    newline: anyone holding the published rows can recompute it.
    """
    row = (
        await session.execute(
            text(
                """
                SELECT count(*) FILTER (WHERE choice = 'yes') AS yes,
                       count(*) FILTER (WHERE choice = 'no') AS no,
                       encode(sha256(convert_to(coalesce(string_agg(
                           receipt || ':' || choice || E'\\n', '' ORDER BY receipt), ''),
                           'UTF8')), 'hex') AS digest
                  FROM ballot_choices
                 WHERE proposal_id = :proposal_id
                """
            ),
            {"proposal_id": proposal_id},
        )
    ).one()
    return Tally(yes=row.yes, no=row.no, turnout=row.yes + row.no, digest="sha256:" + row.digest)


class BallotBox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="close_and_tally")
    async def close_and_tally(self, proposal_id: str) -> Tally:
        """Close the box (no ballot after this commits) and count it; idempotent."""
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
            return await count_ballots(session, proposal_id)
