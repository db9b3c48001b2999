"""Ballots other channels bring in bulk: mVoting, on-site e-voting and paper (issue 9; api.md
`POST /v1/budget-cycles/{year}/ballot-batches`).

A batch is taken in one transaction on the box's open vote, at the speed of `COPY`: the
ballots are copied into a temporary table, then one statement writes the participations that
are new (the primary key refuses a person who voted already, online or through any channel:
that line is reported back, never counted) and one writes the choices of those ballots, each
under a random receipt and tagged with the channel, so a box can be recounted per channel.
Participation stays apart from choice as it does online (models/ballot_box.py): participations
are written in the order of the person ids and choices in the order of their random receipts,
so the heap joins neither to the other, and every row of the batch shares its transaction id
with the whole batch. A batch of fewer than `MIX_BATCH` accepted ballots is queued for the
mixer as an online ballot is, so that no transaction id is shared by fewer.

What each batch received, accepted and refused (by line, with the reason) is a row of
`ballot_batches`, with the digest of the content submitted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy
from sqlalchemy import Column, DateTime, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.ballot_box import (
    MIX_BATCH,
    BallotRefused,
    BoxRules,
    check_choices,
    mix_if_free,
    receipt_of,
)
from models.tables import BallotBox
from models.text import unwritable_reason

#: The channels that submit batches; the API's own ballots are `ONLINE`.
CHANNELS = ("mvoting", "onsite", "paper")
ONLINE = "online"
#: The formats a batch may come in, by media type.
JSON_FORMAT = "json"
CSV_FORMAT = "csv"
JSON_LINES_FORMAT = "jsonl"
#: Separators of the project ids in a CSV line's `project_ids` column.
CSV_ID_SEPARATORS = (";", "|", " ")
MAX_PERSON_ID_LENGTH = 200


class BallotBatch(SQLModel, table=True):
    """What one batch of a channel held: the digest of its content, how many ballots it
    received and accepted, and each refused line with the reason. No person and no choice."""

    __tablename__ = "ballot_batches"

    id: str = Field(primary_key=True)
    box_id: str = Field(foreign_key="ballot_boxes.id")
    channel: str
    submitted_by: str
    submitted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    format: str = Field(sa_column=Column(String, nullable=False))
    content_digest: str
    received: int
    accepted: int
    refused: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))


class BatchUnreadable(ValueError):
    """The batch as a whole cannot be read (not JSON, no CSV header, ...): nothing is taken.
    `field` names what is wrong."""

    def __init__(self, reason: str, *, field: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class BatchBallot:
    """One ballot of a batch as the channel sent it, with its line (1-based: the JSON array's
    position, or the line of the file, the CSV header being line 1)."""

    line: int
    person_id: str
    group: str
    options: list[str]


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


@dataclass
class ReadBatch:
    """A batch read from its content: the ballots that could be read, and the lines that
    could not (refused before anything is written)."""

    ballots: list[BatchBallot] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    received: int = 0


def content_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _ballot_from(line: int, item: object, read: ReadBatch) -> None:
    """Add the ballot `item` (a mapping `{person_id, group?, project_ids}`) or its refusal."""
    read.received += 1
    if not isinstance(item, dict):
        read.refused.append(Refusal(line, "a ballot is an object {person_id, group, project_ids}"))
        return
    person_id, group, options = (
        item.get("person_id"),
        item.get("group", "general"),
        item.get("project_ids"),
    )
    if not isinstance(person_id, str) or not person_id.strip():
        read.refused.append(Refusal(line, "person_id must be a non-empty string"))
        return
    if len(person_id) > MAX_PERSON_ID_LENGTH:
        read.refused.append(Refusal(line, f"person_id is longer than {MAX_PERSON_ID_LENGTH}"))
        return
    if (reason := unwritable_reason(person_id, single_line=True)) is not None:
        read.refused.append(Refusal(line, f"person_id {reason}"))
        return
    if not isinstance(group, str):
        read.refused.append(Refusal(line, "group must be a string"))
        return
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        read.refused.append(Refusal(line, "project_ids must be a list of project ids"))
        return
    read.ballots.append(BatchBallot(line, person_id, group, options))


def read_json(content: bytes) -> tuple[ReadBatch, dict[str, Any]]:
    """`{channel?, kind?, ballots: [...]}`: the ballots, and the other members of the object."""
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BatchUnreadable(f"the body is not JSON: {exc}", field="body") from exc
    if not isinstance(document, dict) or not isinstance(document.get("ballots"), list):
        raise BatchUnreadable(
            "a JSON batch is an object with a list of ballots", field="body.ballots"
        )
    read = ReadBatch()
    for position, item in enumerate(document["ballots"], start=1):
        _ballot_from(position, item, read)
    return read, {k: v for k, v in document.items() if k != "ballots"}


def read_json_lines(content: bytes) -> ReadBatch:
    """One ballot object per line; blank lines are skipped (but counted as lines)."""
    read = ReadBatch()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchUnreadable(f"the body is not UTF-8: {exc}", field="body") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as exc:
            read.received += 1
            read.refused.append(Refusal(number, f"not a JSON object: {exc}"))
            continue
        _ballot_from(number, item, read)
    return read


def read_csv(content: bytes) -> ReadBatch:
    """A header line naming `person_id`, `project_ids` and optionally `group`, then a ballot
    per line; a line's project ids are separated by `;`, `|` or spaces."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchUnreadable(f"the body is not UTF-8: {exc}", field="body") from exc
    rows = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in ("person_id", "project_ids") if name not in header]
    if missing:
        raise BatchUnreadable(
            f"the CSV header must name person_id, project_ids and optionally group "
            f"(missing: {', '.join(missing)})",
            field="body.header",
        )
    column = {
        name: header.index(name) for name in ("person_id", "project_ids", "group") if name in header
    }
    read = ReadBatch()
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            read.received += 1
            read.refused.append(
                Refusal(number, f"{len(row)} columns, the header has {len(header)}")
            )
            continue
        ids = row[column["project_ids"]]
        for separator in CSV_ID_SEPARATORS[:-1]:
            ids = ids.replace(separator, " ")
        item = {
            "person_id": row[column["person_id"]].strip(),
            "project_ids": ids.split(),
            "group": row[column["group"]].strip() if "group" in column else "general",
        }
        _ballot_from(number, item, read)
    return read


@dataclass(frozen=True)
class _Box:
    rules: BoxRules
    open: bool


async def _open_box(session: AsyncSession, box_id: str) -> _Box | None:
    """The box, locked against its close until the batch commits; None if there is none.
    Read through the session: its first statement begins the transaction on the connection
    (SQLAlchemy's asyncpg adapter begins lazily), which the driver's statements then join."""
    row = (
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
    if row is None:
        return None
    rules = BoxRules(tuple(row.options), tuple(row.groups), row.max_choices)
    return _Box(rules, row.opened_at is not None and row.closed_at is None)


_COLUMNS = ("line", "person_id", "voter_group", "options", "token", "receipt")

_TAKE_VOTERS = """
WITH taken AS (
    INSERT INTO ballot_participations (box_id, person_id)
    SELECT $1, person_id FROM batch_ballots ORDER BY person_id
    ON CONFLICT DO NOTHING RETURNING person_id
)
DELETE FROM batch_ballots b WHERE NOT EXISTS (
    SELECT 1 FROM taken t WHERE t.person_id = b.person_id
) RETURNING b.line
"""
_TAKE_CHOICES = """
INSERT INTO ballot_choices (box_id, receipt, option, voter_group, channel)
SELECT $1, b.receipt, o.option, b.voter_group, $2
  FROM batch_ballots b, unnest(b.options) AS o(option)
 ORDER BY b.receipt, o.option
"""
_QUEUE = """
WITH voters AS (
    INSERT INTO ballot_unmixed_participations (box_id, person_id)
    SELECT $1, person_id FROM batch_ballots ORDER BY person_id
)
INSERT INTO ballot_unmixed_choices (box_id, token) SELECT $1, token FROM batch_ballots
 ORDER BY receipt
"""


class BoxNotOpen(Exception):
    """The box takes no ballot now: there is none yet, or it is not open."""


async def take_batch(
    session: AsyncSession, box_id: str, channel: str, read: ReadBatch
) -> tuple[int, list[Refusal]]:
    """Take the readable ballots of a batch in the session's transaction; (how many were
    accepted, every refused line in line order). Raises BoxNotOpen, and writes nothing, if the
    box does not take ballots now."""
    box = await _open_box(session, box_id)
    if box is None or not box.open:
        raise BoxNotOpen("the box is not open")
    raw = await (await session.connection()).get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    assert driver.is_in_transaction(), "a batch is taken in one transaction"
    refused = list(read.refused)
    records: list[tuple[int, str, str, list[str], bytes, str]] = []
    seen: dict[str, int] = {}
    for ballot in read.ballots:
        try:
            chosen = check_choices(box.rules, ballot.options, ballot.group)
        except BallotRefused as refusal:
            refused.append(Refusal(ballot.line, refusal.reason))
            continue
        if ballot.person_id in seen:
            refused.append(
                Refusal(
                    ballot.line, f"a second ballot by this person (line {seen[ballot.person_id]})"
                )
            )
            continue
        seen[ballot.person_id] = ballot.line
        token = secrets.token_bytes(16)
        records.append(
            (ballot.line, ballot.person_id, ballot.group, chosen, token, receipt_of(token))
        )
    accepted = 0
    if records:
        # One table per connection, emptied at each commit: dropped and created again, it
        # would have a new OID, which asyncpg's cached COPY introspection does not follow.
        await driver.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS batch_ballots (line int, person_id text,"
            " voter_group text, options text[], token bytea, receipt text) ON COMMIT DELETE ROWS"
        )
        await driver.execute("TRUNCATE batch_ballots")
        await driver.copy_records_to_table(
            "batch_ballots", records=records, columns=_COLUMNS, schema_name="pg_temp"
        )
        voted = await driver.fetch(_TAKE_VOTERS, box_id)
        refused += [
            Refusal(r["line"], "this person has voted already in this ballot") for r in voted
        ]
        accepted = len(records) - len(voted)
        if accepted:
            await driver.execute(_TAKE_CHOICES, box_id, channel)
            if accepted < MIX_BATCH:
                await driver.execute(_QUEUE, box_id)
        await driver.execute("TRUNCATE batch_ballots")
    if 0 < accepted < MIX_BATCH:
        await mix_if_free(session, box_id)
    refused.sort(key=lambda refusal: refusal.line)
    return accepted, refused


def refused_json(refused: Sequence[Refusal]) -> list[dict[str, Any]]:
    return [refusal.as_json() for refusal in refused]
