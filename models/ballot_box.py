"""The ballot box every vote shares: the data access the API and the activities both use.

A box (`ballot_boxes`) has options (yes/no, or the projects on a budget ballot), the voter
groups it counts apart (for `vote.group_weights`) and how many options one ballot may approve.
Casting writes two kinds of rows in one transaction (design.md, principle 7):

- `ballot_participations` (box, person): who voted, once per box; the primary key makes a
  second ballot by the same person impossible, however many requests race;
- `ballot_choices` (box, receipt, option, group): one row per approved option, under a random
  receipt the voter gets back; no person and no time.

Counting is one SQL statement per box: approvals per option per group, ballots per group, and a
SHA-256 digest of the exact rows counted, so that an auditor holding the rows can recount.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy
from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.proposal import Status, Tally
from models.tables import BallotBox, BallotChoice, BallotParticipation, Proposal

GENERAL = "general"
BUDGET_SCHOOL = "budget_school"
#: The voter groups of `vote.group_weights` (process.md §6a, 003 3-1).
VOTER_GROUPS = (GENERAL, BUDGET_SCHOOL)
PROPOSAL_OPTIONS = ("yes", "no")


def voter_group(*, budget_school: bool) -> str:
    """The group a voter's ballot counts in: budget-school graduates apart from the rest."""
    return BUDGET_SCHOOL if budget_school else GENERAL


def proposal_box_id(proposal_id: str) -> str:
    return f"proposal:{proposal_id}"


def budget_box_id(year: int, kind: str) -> str:
    """The box of one kind of project (deliberative, metro, ...) in the cycle of `year`."""
    return f"budget:{year}:{kind}"


class BallotRefused(Exception):
    """The ballot cannot be cast: `reason` says why. `not_found`: no such box (404);
    `field`: the request named something the box does not take (422); else 409."""

    def __init__(self, reason: str, *, not_found: bool = False, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found
        self.field = field


@dataclass
class BoxTally:
    """A box's count: approvals per option per group, ballots per group, and the digest."""

    approvals: dict[str, dict[str, int]] = field(default_factory=dict)
    ballots: dict[str, int] = field(default_factory=dict)
    digest: str = ""

    @property
    def turnout(self) -> int:
        return sum(self.ballots.values())

    def approvals_of(self, option: str) -> int:
        return sum(self.approvals.get(option, {}).values())


async def open_box(
    session: AsyncSession,
    box_id: str,
    *,
    kind: str,
    case_id: str,
    options: Sequence[str],
    now: datetime,
    groups: Sequence[str] = VOTER_GROUPS,
    max_choices: int | None = None,
) -> None:
    """Create the box if it does not exist and open it; idempotent (an open or closed box is
    left as it is, so a retried activity never reopens a closed box)."""
    await session.execute(
        insert(BallotBox)
        .values(
            id=box_id,
            kind=kind,
            case_id=case_id,
            options=list(options),
            groups=list(groups),
            max_choices=max_choices,
            opened_at=now,
        )
        .on_conflict_do_nothing()
    )


async def close_box(session: AsyncSession, box_id: str, *, now: datetime) -> None:
    """Close the box: no ballot is taken once this commits. Idempotent (the first close stands)."""
    await session.execute(
        select(col(BallotBox.id)).where(col(BallotBox.id) == box_id).with_for_update()
    )
    await session.execute(
        update(BallotBox)
        .where(col(BallotBox.id) == box_id)
        .where(col(BallotBox.closed_at).is_(None))
        .values(closed_at=now)
    )


async def cast(
    session: AsyncSession,
    *,
    box_id: str,
    person_id: str,
    options: Sequence[str],
    group: str,
) -> str:
    """Record one person's ballot approving `options`, or refuse it; returns the receipt.
    The caller owns the transaction."""
    box = (
        await session.execute(
            sqlalchemy.select(
                col(BallotBox.options),
                col(BallotBox.groups),
                col(BallotBox.max_choices),
                col(BallotBox.opened_at),
                col(BallotBox.closed_at),
            )
            .where(col(BallotBox.id) == box_id)
            .with_for_update(read=True)
        )
    ).one_or_none()
    if box is None:
        raise BallotRefused("no such ballot box", not_found=True)
    if box.opened_at is None or box.closed_at is not None:
        raise BallotRefused(
            "the vote is not open" if box.closed_at is None else "the vote is closed"
        )
    chosen = list(dict.fromkeys(options))
    if not chosen:
        raise BallotRefused("a ballot approves at least one option", field="options")
    if len(chosen) != len(options):
        raise BallotRefused("an option is named twice", field="options")
    unknown = [o for o in chosen if o not in box.options]
    if unknown:
        raise BallotRefused(f"not on this ballot: {', '.join(unknown)}", field="options")
    if box.max_choices is not None and len(chosen) > box.max_choices:
        raise BallotRefused(f"a ballot approves at most {box.max_choices}", field="options")
    if group not in box.groups:
        raise BallotRefused(f"voter group {group!r} does not vote here", field="group")
    inserted = await session.execute(
        insert(BallotParticipation)
        .values(box_id=box_id, person_id=person_id)
        .on_conflict_do_nothing()
        .returning(col(BallotParticipation.person_id))
    )
    if inserted.first() is None:
        raise BallotRefused("you have already voted in this ballot")
    receipt = secrets.token_hex(16)
    await session.execute(
        insert(BallotChoice).values(
            [
                {"box_id": box_id, "receipt": receipt, "option": option, "voter_group": group}
                for option in chosen
            ]
        )
    )
    return receipt


#: The digest's lines: `receipt:option:group`, sorted by receipt then option, each ending in a
#: newline. A proposal's yes/no box keeps the lines of its first version, `receipt:choice`
#: sorted by receipt, so recounts of votes closed before the box was shared still match.
_COUNT = text(
    """
    WITH counted AS (
        SELECT receipt, option, voter_group FROM ballot_choices WHERE box_id = :box_id
    )
    SELECT
        (SELECT coalesce(jsonb_object_agg(option, groups), '{}'::jsonb) FROM (
            SELECT option, jsonb_object_agg(voter_group, n) AS groups FROM (
                SELECT option, voter_group, count(*) AS n FROM counted GROUP BY 1, 2
            ) per_group GROUP BY option
        ) per_option) AS approvals,
        (SELECT coalesce(jsonb_object_agg(voter_group, n), '{}'::jsonb) FROM (
            SELECT voter_group, count(DISTINCT receipt) AS n FROM counted GROUP BY 1
        ) per_group) AS ballots,
        encode(sha256(convert_to(coalesce((
            SELECT string_agg(
                CASE WHEN :legacy THEN receipt || ':' || option
                     ELSE receipt || ':' || option || ':' || voter_group END || E'\\n',
                '' ORDER BY receipt, option)
              FROM counted), ''), 'UTF8')), 'hex') AS digest
    """
)


async def count_box(session: AsyncSession, box_id: str) -> BoxTally:
    """Count the box in SQL, with the digest of the exact rows counted."""
    legacy = box_id.startswith("proposal:")
    row = (await session.execute(_COUNT, {"box_id": box_id, "legacy": legacy})).one()
    approvals = {
        option: {group: int(n) for group, n in groups.items()}
        for option, groups in row.approvals.items()
    }
    ballots = {group: int(n) for group, n in row.ballots.items()}
    return BoxTally(approvals=approvals, ballots=ballots, digest="sha256:" + row.digest)


# ---- the proposal vote (process.md §1) on the shared box -----------------------------------


async def cast_proposal_ballot(
    session: AsyncSession,
    *,
    proposal_id: str,
    person_id: str,
    choice: str,
    group: str = GENERAL,
    now: datetime,
) -> str:
    """A yes/no ballot on a proposal in its vote; its box opens with the first ballot while
    the projection shows the proposal voting (the workflow owns the stage)."""
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
    if choice not in PROPOSAL_OPTIONS:
        raise BallotRefused("choice must be yes or no", field="choice")
    box_id = proposal_box_id(proposal_id)
    await open_box(
        session,
        box_id,
        kind="proposal",
        case_id=proposal_id,
        options=PROPOSAL_OPTIONS,
        max_choices=1,
        now=now,
    )
    try:
        return await cast(
            session, box_id=box_id, person_id=person_id, options=[choice], group=group
        )
    except BallotRefused as refused:
        if refused.reason == "you have already voted in this ballot":
            raise BallotRefused("you have already voted on this proposal") from refused
        raise


async def count_proposal_ballots(session: AsyncSession, proposal_id: str) -> Tally:
    """The yes/no count of a proposal's box (every group counts alike in a proposal vote)."""
    tally = await count_box(session, proposal_box_id(proposal_id))
    yes, no = tally.approvals_of("yes"), tally.approvals_of("no")
    return Tally(yes=yes, no=no, turnout=yes + no, digest=tally.digest)
