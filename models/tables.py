"""SQLModel tables: the data Postgres owns (design.md, principle 1).

The schema is created only by the Alembic migrations in `migrations/`; these classes describe it
for queries. Columns written by the workflow projection are marked as such: nothing else writes
them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class Proposal(SQLModel, table=True):
    __tablename__ = "proposals"
    __table_args__ = (Index("ix_proposals_status_department", "status", "department"),)

    id: str = Field(primary_key=True)
    workflow_id: str = Field(unique=True)
    proposer_id: str = Field(index=True)
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    category: str | None = None
    estimated_cost_krw: int | None = Field(default=None, sa_column=Column(BigInteger))
    rulebook: str
    rulebook_hash: str
    rules: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz(nullable=False)
    support_count: int = 0
    # Written by the workflow projection only:
    status: str = "ripening"
    department: str | None = None
    executing_department: str | None = None
    due_at: datetime | None = _tz(nullable=True)
    overdue: bool = False
    supports_open: bool = True
    decision_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    screening: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    vote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    progress_pct: int | None = None
    agenda: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    projection_seq: int = 0
    updated_at: datetime | None = _tz(nullable=True)
    # Written by the tally activity only: once set, no ballot is accepted.
    tallied_at: datetime | None = _tz(nullable=True)


class Support(SQLModel, table=True):
    __tablename__ = "supports"

    proposal_id: str = Field(primary_key=True, foreign_key="proposals.id")
    person_id: str = Field(primary_key=True, index=True)
    created_at: datetime = _tz(nullable=False)


class Comment(SQLModel, table=True):
    __tablename__ = "comments"

    id: str = Field(primary_key=True)
    proposal_id: str = Field(foreign_key="proposals.id", index=True)
    author_id: str = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _tz(nullable=False)


class TimelineRow(SQLModel, table=True):
    """One transition of a case; (case_id, seq) makes the projection idempotent."""

    __tablename__ = "timeline_entries"

    case_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    at: datetime = _tz(nullable=False)
    stage: str
    event: str
    actor_role: str
    note: str = Field(default="", sa_column=Column(Text, nullable=False))


class Notification(SQLModel, table=True):
    """The notification outbox: one row per (key, recipient), delivered through the channels
    of activities/channels.py by the delivery workflow (activities/notices.py).

    A group recipient (`supporters:<proposal>`, `voters:<box>`, `participants:<case>`) is
    expanded at delivery into rows of its members with the same key, marked `expanded_from`;
    its own row is then `expanded`. Delivery state (migration 0018): `status` is pending,
    delivered, failed, no_contact or expanded; `attempts`, `last_error` and `channel` say how
    it went. No row ever holds a ballot choice (design.md, principle 7)."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True)
    case_id: str = Field(index=True)
    recipient: str = Field(index=True)
    kind: str
    message: str = Field(sa_column=Column(Text, nullable=False))
    due_at: datetime | None = _tz(nullable=True)
    created_at: datetime = _tz(nullable=False)
    delivered_at: datetime | None = _tz(nullable=True)
    status: str = Field(default="pending", sa_column_kwargs={"server_default": "pending"})
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    channel: str | None = None
    expanded_from: str | None = None

    __table_args__ = (UniqueConstraint("key", "recipient", name="uq_notifications_key_recipient"),)


class BallotBox(SQLModel, table=True):
    """One vote's box: a proposal's yes/no, a budget cycle's ballot of projects (design.md, 7).

    `options` are what a ballot may approve, `groups` the voter groups it counts apart (for
    weights), `max_choices` how many options one ballot may approve (None: any number)."""

    __tablename__ = "ballot_boxes"

    id: str = Field(primary_key=True)
    kind: str
    case_id: str = Field(index=True)
    options: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    groups: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    max_choices: int | None = None
    opened_at: datetime | None = _tz(nullable=True)
    closed_at: datetime | None = _tz(nullable=True)


class BallotParticipation(SQLModel, table=True):
    """Who voted in a box. Holds no choice, no receipt and no time: it joins no choice."""

    __tablename__ = "ballot_participations"

    box_id: str = Field(primary_key=True, foreign_key="ballot_boxes.id")
    person_id: str = Field(primary_key=True, index=True)


class BallotChoice(SQLModel, table=True):
    """One option a ballot approved, under the ballot's random receipt, with the voter's group.
    Holds no person and no time."""

    __tablename__ = "ballot_choices"

    box_id: str = Field(primary_key=True, foreign_key="ballot_boxes.id")
    receipt: str = Field(primary_key=True)
    option: str = Field(primary_key=True)
    voter_group: str
    #: Which channel brought the ballot (`online`, or a batch's: models/ballot_batches.py).
    channel: str = Field(default="online", sa_column_kwargs={"server_default": "online"})


class BallotUnmixedParticipation(SQLModel, table=True):
    """A participation not yet rewritten by the mixer (models/ballot_box.py): who only.

    No foreign key: the cast holds the box row locked, and the row lives one batch."""

    __tablename__ = "ballot_unmixed_participations"

    box_id: str = Field(primary_key=True)
    person_id: str = Field(primary_key=True)


class BallotUnmixedChoice(SQLModel, table=True):
    """A ballot whose choice rows the mixer has not yet rewritten: the random `token` the
    ballot's receipt is derived from (`receipt_of`), never the receipt itself nor a person."""

    __tablename__ = "ballot_unmixed_choices"

    box_id: str = Field(primary_key=True)
    token: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))


class PendingSignal(SQLModel, table=True):
    """A signal a case workflow must receive, written in the same transaction as the rows that
    call for it (a support reaching a threshold), deleted once Temporal has taken it."""

    __tablename__ = "pending_signals"

    workflow_id: str = Field(primary_key=True)
    signal: str = Field(primary_key=True)
    created_at: datetime = _tz(nullable=False)


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a creating POST, replayed for a retry with the same key."""

    __tablename__ = "idempotency_keys"

    principal: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    scope: str
    request_hash: str
    status_code: int
    response: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz(nullable=False)


# ---- sortition (models/sortition.py; README, "Verifiable sortition") ---------------------------


class SortitionPool(SQLModel, table=True):
    """People a draw may pick from: loaded by an admin (e.g. a polling agency's list) or
    joined by volunteers. Draws never read it after their commit: they freeze a snapshot."""

    __tablename__ = "sortition_pools"

    name: str = Field(primary_key=True)
    created_by: str
    created_at: datetime = _tz(nullable=False)


class SortitionPoolMember(SQLModel, table=True):
    __tablename__ = "sortition_pool_members"

    pool: str = Field(primary_key=True, foreign_key="sortition_pools.name")
    person_id: str = Field(primary_key=True)
    sex: str
    birth_year: int
    district: str
    budget_school: bool = False
    source: str  # "admin" | "volunteer"
    joined_at: datetime = _tz(nullable=False)


class SortitionDraw(SQLModel, table=True):
    """One commit-reveal draw. Everything the draw depends on is frozen at commit (snapshot,
    population weights, size, strata, groups); `seed` and the result are set once, at reveal."""

    __tablename__ = "sortition_draws"

    id: str = Field(primary_key=True)
    purpose: str
    size: int
    strata: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    groups: int | None = None
    filter: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    pool: str = Field(foreign_key="sortition_pools.name", index=True)
    rulebook: str
    rulebook_hash: str
    reference_year: int
    age_bands: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    population: str
    population_digest: str
    seed_commitment: str
    snapshot: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    snapshot_digest: str
    # [{stratum: {...}, population, available, quota, drawn}]; drawn is null until reveal.
    counts: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = "committed"  # committed | revealed
    seed: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    members: list[str] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    member_groups: list[list[str]] | None = Field(
        default=None, sa_column=Column(JSONB, nullable=True)
    )
    members_digest: str | None = None
    created_by: str
    created_at: datetime = _tz(nullable=False)
    revealed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
