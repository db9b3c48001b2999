"""The opinion box of a forum or an ask: the data access the API and the activities share.

One participation per person (the primary key decides races), an optional opinion post, and a
count in SQL with a digest of the rows counted. A forum's positions are public deliberation,
not a secret ballot: the digest lines name the participant (`person_id:position`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deliberation import OpinionTally, Position
from models.deliberation_tables import OpinionBox, Participation, Post


class ParticipationRefused(Exception):
    def __init__(self, reason: str, *, not_found: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found


@dataclass
class Participated:
    post_id: str | None


async def participate(
    session: AsyncSession,
    *,
    case_id: str,
    person_id: str,
    position: Position | None,
    opinion: str | None,
    now: datetime,
) -> Participated:
    """Record one person's participation (and opinion post); the caller owns the transaction."""
    box = (
        await session.exec(
            select(OpinionBox).where(col(OpinionBox.case_id) == case_id).with_for_update(read=True)
        )
    ).one_or_none()
    if box is None:
        raise ParticipationRefused("no such case", not_found=True)
    if box.opened_at is None or box.closed_at is not None:
        state = "not open yet" if box.opened_at is None else "closed"
        raise ParticipationRefused(f"participation is {state}")
    inserted = await session.execute(
        insert(Participation)
        .values(case_id=case_id, person_id=person_id, position=position, created_at=now)
        .on_conflict_do_nothing()
        .returning(col(Participation.person_id))
    )
    if inserted.first() is None:
        raise ParticipationRefused("you have already taken part")
    post_id = None
    if opinion:
        post_id = str(uuid.uuid4())
        session.add(
            Post(id=post_id, case_id=case_id, author_id=person_id, body=opinion, created_at=now)
        )
    return Participated(post_id=post_id)


async def count_opinions(session: AsyncSession, case_id: str) -> OpinionTally:
    """Counts in SQL; the digest is SHA-256 over the sorted `person_id:position` lines."""
    row = (
        await session.execute(
            text(
                """
                SELECT count(*) AS participants,
                       count(*) FILTER (WHERE position = 'for') AS for_,
                       count(*) FILTER (WHERE position = 'against') AS against,
                       count(*) FILTER (WHERE position = 'other') AS other,
                       (SELECT count(*) FROM posts WHERE case_id = :case_id) AS opinions,
                       encode(sha256(convert_to(coalesce(string_agg(
                           person_id || ':' || coalesce(position, '') || E'\\n', ''
                           ORDER BY person_id), ''), 'UTF8')), 'hex') AS digest
                  FROM participations
                 WHERE case_id = :case_id
                """
            ),
            {"case_id": case_id},
        )
    ).one()
    return OpinionTally(
        participants=row.participants,
        for_=row.for_,
        against=row.against,
        other=row.other,
        opinions=row.opinions,
        digest="sha256:" + row.digest,
    )
