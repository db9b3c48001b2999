"""The ballot box every vote shares: the data access the API and the activities both use.

A box (`ballot_boxes`) has options (yes/no, or the projects on a budget ballot), the voter
groups it counts apart (for `vote.group_weights`) and how many options one ballot may approve.
Casting writes two kinds of rows in one transaction (design.md, principle 7):

- `ballot_participations` (box, person): who voted, once per box; the primary key makes a
  second ballot by the same person impossible, however many requests race;
- `ballot_choices` (box, receipt, option, group): one row per approved option, under a random
  receipt the voter gets back; no person and no time.

Both are written where they stay, so a count always sees every ballot cast, mixed or not. But
rows written by one transaction share its id (`xmin`) and lie next to each other in the heap in
the order they were cast, so the cast also queues the ballot (`ballot_unmixed_participations`:
who; `ballot_unmixed_choices`: the token its receipt derives from) and the mixer rewrites queued
rows in batches: it deletes them and inserts them again in a random order, the participations
and the choices of at least `MIX_BATCH` ballots in one transaction. A cast that finds the
box's queue full mixes it, unless another transaction is mixing it (an advisory lock); the close
mixes whatever is left, with ballots of the smallest earlier batch if fewer than `MIX_BATCH` are
left (`_top_up`). Then
every live row shares its transaction id and its stretch of the heap with at least `MIX_BATCH`
ballots (or the whole box, if it has fewer), in no order of casting. What still shows (dead
tuples until VACUUM, the WAL): README.md, "Secret ballot, in every table".

Counting is one SQL statement per box: approvals per option per group, ballots per group, and a
SHA-256 digest of the exact rows counted, so that an auditor holding the rows can recount.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import sqlalchemy
from sqlalchemy import TextClause, text, update
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.proposal import Status, Tally
from models.tables import BallotBox, Proposal

GENERAL = "general"
BUDGET_SCHOOL = "budget_school"
#: The voter groups of `vote.group_weights` (process.md §6a, 003 3-1).
VOTER_GROUPS = (GENERAL, BUDGET_SCHOOL)
PROPOSAL_OPTIONS = ("yes", "no")
#: The fewest ballots the mixer rewrites in one transaction: each transaction id and each
#: stretch of the heap a mixed row shares with at least this many ballots.
MIX_BATCH = 32


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
    """Close the box: no ballot is taken once this commits, and the ballots still queued are
    mixed. Idempotent (the first close stands). The lock on the box waits for the casts in
    flight, so no mixer runs alongside."""
    await session.execute(
        select(col(BallotBox.id)).where(col(BallotBox.id) == box_id).with_for_update()
    )
    await session.execute(
        update(BallotBox)
        .where(col(BallotBox.id) == box_id)
        .where(col(BallotBox.closed_at).is_(None))
        .values(closed_at=now)
    )
    await _mix(session, box_id, least=1, top_up=True)


def receipt_of(token: bytes) -> str:
    """The receipt of the ballot queued under `token` (`_RECEIPT` is the same in SQL): the
    queue holds the token, so no table but `ballot_choices` holds a receipt."""
    return hashlib.sha256(token).hexdigest()[:32]


_RECEIPT = "left(encode(sha256(token), 'hex'), 32)"
#: The first key of the transaction-scoped advisory lock a box's mixer holds (the second is a
#: hash of the box id; two boxes sharing it only mix one after the other).
_MIXER_LOCK = 0x6D6978

#: The ballot's rows, for a `gate` CTE that yields the box's id once if the ballot may be cast
#: (and locks what a close must wait for): the participation (whose primary key refuses a
#: second ballot), the choice rows only if it was new, both queued for the mixer, and whether
#: this cast mixes: the queue is full and no other transaction is mixing the box (it would hold
#: the advisory lock, and the queued rows it took still count, so trying alongside it would
#: find them locked). One statement, one round trip.
_CAST_ROWS = """
    , voter AS (
        INSERT INTO ballot_participations (box_id, person_id)
        SELECT id, :person_id FROM gate
        ON CONFLICT DO NOTHING RETURNING box_id
    ), queued_voter AS (
        INSERT INTO ballot_unmixed_participations (box_id, person_id)
        SELECT box_id, :person_id FROM voter
    ), chosen AS (
        INSERT INTO ballot_choices (box_id, receipt, option, voter_group)
        SELECT box_id, :receipt, o.option, :voter_group
          FROM voter, unnest(CAST(:options AS text[])) WITH ORDINALITY AS o(option, n)
         ORDER BY o.n
    ), queued_ballot AS (
        INSERT INTO ballot_unmixed_choices (box_id, token) SELECT box_id, :token FROM voter
    )
    SELECT EXISTS (SELECT 1 FROM gate) AS open,
           EXISTS (SELECT 1 FROM voter) AS taken,
           CASE WHEN EXISTS (SELECT 1 FROM voter)
                 AND (SELECT count(*) FROM ballot_unmixed_choices WHERE box_id = :box_id)
                     >= :batch - 1
                THEN pg_try_advisory_xact_lock(:mixer, hashtext(:box_id))
                ELSE false END AS mix
"""
#: A box open for ballots that takes this one (its options, the voter's group, how many
#: choices), held against its close (which locks it for update) until commit.
_CAST = text(
    """
    WITH gate AS (
        SELECT id FROM ballot_boxes
         WHERE id = :box_id AND opened_at IS NOT NULL AND closed_at IS NULL
           AND options @> CAST(:options_json AS jsonb) AND groups ? :voter_group
           AND (max_choices IS NULL OR max_choices >= :choices)
           FOR SHARE
    )
    """
    + _CAST_ROWS
)
#: A proposal in its vote, held against its tally (which locks it for update) until commit; its
#: box is created with the first ballot (the row is seen by the foreign keys at the statement's
#: end).
_CAST_PROPOSAL = text(
    """
    WITH voting AS (
        SELECT id FROM proposals
         WHERE id = :proposal_id AND status = :voting AND tallied_at IS NULL
           FOR SHARE
    ), opened AS (
        INSERT INTO ballot_boxes (id, kind, case_id, options, groups, max_choices, opened_at)
        SELECT :box_id, 'proposal', id, CAST(:box_options AS jsonb), CAST(:box_groups AS jsonb),
               1, :now
          FROM voting
        ON CONFLICT DO NOTHING
    ), gate AS (SELECT CAST(:box_id AS text) AS id FROM voting)
    """
    + _CAST_ROWS
)


@dataclass(frozen=True)
class BoxRules:
    """What a box takes (fixed when it is created, never updated)."""

    options: tuple[str, ...]
    groups: tuple[str, ...]
    max_choices: int | None


def _distinct(options: Sequence[str]) -> list[str]:
    """The options a ballot approves: at least one, each once."""
    chosen = list(dict.fromkeys(options))
    if not chosen:
        raise BallotRefused("a ballot approves at least one option", field="options")
    if len(chosen) != len(options):
        raise BallotRefused("an option is named twice", field="options")
    return chosen


def check_choices(rules: BoxRules, options: Sequence[str], group: str) -> list[str]:
    chosen = _distinct(options)
    unknown = [o for o in chosen if o not in rules.options]
    if unknown:
        raise BallotRefused(f"not on this ballot: {', '.join(unknown)}", field="options")
    if rules.max_choices is not None and len(chosen) > rules.max_choices:
        raise BallotRefused(f"a ballot approves at most {rules.max_choices}", field="options")
    if group not in rules.groups:
        raise BallotRefused(f"voter group {group!r} does not vote here", field="group")
    return chosen


async def _cast_rows(
    session: AsyncSession,
    statement: TextClause,
    *,
    box_id: str,
    person_id: str,
    chosen: Sequence[str],
    group: str,
    **gate: object,
) -> tuple[bool, str]:
    """Run a cast statement; (whether its gate let the ballot in, the receipt). A second
    ballot by the same person is refused; a full queue is mixed in the caller's transaction."""
    token = secrets.token_bytes(16)
    receipt = receipt_of(token)
    params = {
        "box_id": box_id,
        "person_id": person_id,
        "receipt": receipt,
        "options": list(chosen),
        "voter_group": group,
        "token": token,
        "batch": MIX_BATCH,
        "mixer": _MIXER_LOCK,
        **gate,
    }
    driver: asyncpg.Connection | None = session.info.get(AUTOCOMMIT)
    if driver is not None:
        sql, names = _positional(statement)
        record = await driver.fetchrow(sql, *(params[name] for name in names))
        assert record is not None
        opened, taken, mix = record["open"], record["taken"], record["mix"]
    else:
        row = (await session.execute(statement, params)).one()
        opened, taken, mix = row.open, row.taken, row.mix
    if not opened:
        return False, receipt
    if not taken:
        raise BallotRefused("you have already voted in this ballot")
    if mix:
        if driver is not None:
            await _mix_alone((await session.connection()).engine, box_id)
        else:
            await _mix(session, box_id, least=MIX_BATCH)
    return True, receipt


#: The isolation level of a connection that commits each statement by itself, and the key of
#: `Session.info` holding such a connection's asyncpg driver connection: a cast is then one
#: round trip sent by the driver itself (`api.context.AppContext.statement_session`; through
#: the session the same statement cost 2.6 times the CPU, 410 against 155 µs), and a full
#: queue is mixed apart.
AUTOCOMMIT = "AUTOCOMMIT"


_ASYNCPG_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


@functools.cache
def _positional(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """`statement` as asyncpg takes it: its SQL with `$n` placeholders and the names of
    the parameters in their order."""
    compiled = statement.compile(dialect=_ASYNCPG_DIALECT)
    return str(compiled), tuple(compiled.positiontup or ())


async def _mix_alone(engine: AsyncEngine, box_id: str) -> None:
    """Mix a full queue in a transaction of its own (after a cast that committed alone),
    unless another transaction is mixing the box."""
    async with AsyncSession(engine) as session, session.begin():
        await mix_if_free(session, box_id)


async def mix_if_free(session: AsyncSession, box_id: str) -> None:
    """Mix the box's queue in the session's transaction if it is full, unless another
    transaction is mixing the box."""
    free = (
        await session.execute(
            text("SELECT pg_try_advisory_xact_lock(:mixer, hashtext(:box_id))"),
            {"mixer": _MIXER_LOCK, "box_id": box_id},
        )
    ).scalar_one()
    if free:
        await _mix(session, box_id, least=MIX_BATCH)


def _dequeue() -> TextClause:
    """Take the box's queued ballots (those no other mixer holds) if there are at least
    `:least` of them, and delete their rows, returned to be written again."""
    return text(
        f"""
        WITH queued_voters AS (
            SELECT person_id FROM ballot_unmixed_participations WHERE box_id = :box_id
            FOR UPDATE SKIP LOCKED
        ), queued_ballots AS (
            SELECT token, {_RECEIPT} AS receipt FROM ballot_unmixed_choices
             WHERE box_id = :box_id FOR UPDATE SKIP LOCKED
        ), dequeued_voters AS (
            DELETE FROM ballot_unmixed_participations u USING queued_voters q
             WHERE u.box_id = :box_id AND u.person_id = q.person_id
               AND (SELECT count(*) FROM queued_voters) >= :least
            RETURNING u.person_id
        ), dequeued_ballots AS (
            DELETE FROM ballot_unmixed_choices u USING queued_ballots q
             WHERE u.box_id = :box_id AND u.token = q.token
               AND (SELECT count(*) FROM queued_ballots) >= :least
            RETURNING q.receipt
        ), taken_voters AS (
            DELETE FROM ballot_participations p USING dequeued_voters v
             WHERE p.box_id = :box_id AND p.person_id = v.person_id
            RETURNING p.person_id
        ), taken_choices AS (
            DELETE FROM ballot_choices c USING dequeued_ballots b
             WHERE c.box_id = :box_id AND c.receipt = b.receipt
            RETURNING c.receipt, c.option, c.voter_group, c.channel
        )
        SELECT (SELECT array_agg(person_id) FROM taken_voters) AS voters,
               (SELECT array_agg(ARRAY[receipt, option, voter_group, channel])
                  FROM taken_choices)
                   AS choices
        """
    )


_DEQUEUE = _dequeue()


def _top_up(table: str, key: str, *columns: str) -> TextClause:
    """Take ballots of one earlier batch of `table` (the rows of one transaction id) and
    delete their rows, returned to be written again with a short last batch: the smallest
    batch, whole if it has fewer than twice `:batch` ballots, else `:batch` of them (the rest
    keep their transaction with at least `:batch`). Run after the queue's rows were deleted
    in the same transaction, so it sees only rows that are not queued. Two scans of the box's
    rows, whatever their number; every step is materialized, so no plan can rescan the box
    per row (a close after a million ballots takes about a second)."""
    return text(
        f"""
        WITH smallest AS MATERIALIZED (
            SELECT xmin AS tx FROM {table} WHERE box_id = :box_id
             GROUP BY xmin ORDER BY count(*), xmin::text LIMIT 1
        ), batch_keys AS MATERIALIZED (
            SELECT DISTINCT {key} FROM {table}
             WHERE box_id = :box_id AND xmin = (SELECT tx FROM smallest)
        ), chosen AS MATERIALIZED (
            SELECT {key} FROM batch_keys ORDER BY {key}
             LIMIT (SELECT CASE WHEN count(*) >= 2 * :batch THEN :batch ELSE count(*) END
                      FROM batch_keys)
        ), taken AS (
            DELETE FROM {table} t USING chosen
             WHERE t.box_id = :box_id AND t.{key} = chosen.{key}
            RETURNING {", ".join(f"t.{column}" for column in columns)}
        )
        SELECT array_agg(ARRAY[{", ".join(columns)}]) AS taken FROM taken
        """
    )


_TOP_UP_VOTERS = _top_up("ballot_participations", "person_id", "person_id")
_TOP_UP_CHOICES = _top_up(
    "ballot_choices", "receipt", "receipt", "option", "voter_group", "channel"
)

#: The taken rows written again, in the order given (the heap keeps it).
_REWRITE = text(
    """
    WITH voters AS (
        INSERT INTO ballot_participations (box_id, person_id)
        SELECT :box_id, v.person_id
          FROM unnest(CAST(:voters AS text[])) WITH ORDINALITY AS v(person_id, n)
         ORDER BY v.n
    )
    INSERT INTO ballot_choices (box_id, receipt, option, voter_group, channel)
    SELECT :box_id, c.receipt, c.option, c.voter_group, c.channel
      FROM unnest(CAST(:receipts AS text[]), CAST(:options AS text[]), CAST(:groups AS text[]),
                  CAST(:channels AS text[]))
           WITH ORDINALITY AS c(receipt, option, voter_group, channel, n)
     ORDER BY c.n
    """
)


async def _mix(session: AsyncSession, box_id: str, *, least: int, top_up: bool = False) -> None:
    """Rewrite the box's queued ballots in a random order, in the caller's transaction, if at
    least `least` are free to take; at close (`top_up`) all of them, with ballots of an earlier
    batch if they are fewer than `MIX_BATCH`."""
    params = {"box_id": box_id, "least": least, "batch": MIX_BATCH}
    taken = (await session.execute(_DEQUEUE, params)).one()
    voters: list[str] = list(taken.voters or [])
    choices: list[list[str]] = list(taken.choices or [])
    if not voters and not choices:
        return
    if top_up and 0 < len(voters) < MIX_BATCH:
        extra = (await session.execute(_TOP_UP_VOTERS, params)).scalar_one()
        voters += [row[0] for row in extra or []]
    if top_up and 0 < len({c[0] for c in choices}) < MIX_BATCH:
        choices += (await session.execute(_TOP_UP_CHOICES, params)).scalar_one() or []
    shuffle = secrets.SystemRandom().shuffle
    shuffle(voters)
    shuffle(choices)
    await session.execute(
        _REWRITE,
        {
            "box_id": box_id,
            "voters": voters,
            "receipts": [c[0] for c in choices],
            "options": [c[1] for c in choices],
            "groups": [c[2] for c in choices],
            "channels": [c[3] for c in choices],
        },
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
    The caller owns the transaction. One statement when the box takes the ballot (a refusal
    reads the box to say why); a cast that finds the box's queue full mixes it in that
    transaction (two more round trips, about once per `MIX_BATCH` casts)."""
    chosen = _distinct(options)
    taken, receipt = await _cast_rows(
        session,
        _CAST,
        box_id=box_id,
        person_id=person_id,
        chosen=chosen,
        group=group,
        options_json=json.dumps(chosen),
        choices=len(chosen),
    )
    if not taken:
        await _refusal(session, box_id, options, group)
    return receipt


async def _refusal(session: AsyncSession, box_id: str, options: Sequence[str], group: str) -> None:
    """Why the box did not take the ballot (always raises)."""
    box = (
        await session.execute(
            sqlalchemy.select(
                col(BallotBox.options),
                col(BallotBox.groups),
                col(BallotBox.max_choices),
                col(BallotBox.opened_at),
                col(BallotBox.closed_at),
            ).where(col(BallotBox.id) == box_id)
        )
    ).one_or_none()
    if box is None:
        raise BallotRefused("no such ballot box", not_found=True)
    if box.opened_at is None or box.closed_at is not None:
        raise BallotRefused(
            "the vote is not open" if box.closed_at is None else "the vote is closed"
        )
    check_choices(BoxRules(tuple(box.options), tuple(box.groups), box.max_choices), options, group)
    raise BallotRefused("the vote is not open")


#: The digest's lines: `receipt:option:group`, sorted by receipt then option, each ending in a
#: newline. A proposal's yes/no box keeps the lines of its first version, `receipt:choice`
#: sorted by receipt, so recounts of votes closed before the box was shared still match.
#:
#: Nothing is sorted: the primary key of `ballot_choices` is (box, receipt, option) and
#: carries the voter group (migration 0011), so one index-only scan reads the box's rows in
#: the digest's order, with every column a line needs, and the ordered `string_agg` takes
#: them as they come. The approvals are a hash aggregate of the same rows; the ballots per
#: group are the approvals per group when a ballot approves at most one option (a proposal),
#: else the receipts of each group, counted off the same ordered scan (a ballot's rows share
#: its group: a cast writes them so).
def _count(*, legacy: bool, of_channel: bool = False) -> TextClause:
    """The general count; `of_channel`: of the ballots one channel (`:channel`) brought."""
    line = "receipt || ':' || option" + ("" if legacy else " || ':' || voter_group")
    box = "box_id = :box_id" + (" AND channel = :channel" if of_channel else "")
    return text(
        f"""
        WITH per_pair AS (
            SELECT option, voter_group, count(*) AS n FROM ballot_choices
             WHERE {box} GROUP BY 1, 2
        ), single AS (
            SELECT coalesce((SELECT max_choices = 1 FROM ballot_boxes WHERE id = :box_id), false)
                AS one
        )
        SELECT
            (SELECT coalesce(jsonb_object_agg(option, groups), '{{}}'::jsonb) FROM (
                SELECT option, jsonb_object_agg(voter_group, n) AS groups FROM per_pair
                 GROUP BY option
            ) per_option) AS approvals,
            (SELECT coalesce(jsonb_object_agg(voter_group, n), '{{}}'::jsonb) FROM (
                SELECT voter_group, sum(n) AS n FROM per_pair
                 WHERE (SELECT one FROM single) GROUP BY 1
                UNION ALL
                SELECT voter_group, count(*) AS n FROM (
                    SELECT min(voter_group) AS voter_group FROM ballot_choices
                     WHERE {box} AND NOT (SELECT one FROM single)
                     GROUP BY receipt
                ) per_ballot GROUP BY 1
            ) per_group) AS ballots,
            encode(sha256(convert_to(coalesce((
                SELECT string_agg({line}, E'\\n' ORDER BY receipt, option) || E'\\n'
                  FROM ballot_choices WHERE {box}), ''), 'UTF8')), 'hex') AS digest
        """
    )


_COUNT = _count(legacy=False)
_COUNT_LEGACY = _count(legacy=True)
_COUNT_OF_CHANNEL = _count(legacy=False, of_channel=True)

_DIGEST = "encode(sha256(convert_to(coalesce(string_agg({line}, E'\\n' ORDER BY receipt, option)"
_DIGEST += " || E'\\n', ''), 'UTF8')), 'hex') AS digest"
_PAIRS = tuple((option, group) for option in PROPOSAL_OPTIONS for group in VOTER_GROUPS)

#: A proposal's box in ONE ordered index-only scan: the digest's `string_agg` takes the rows
#: in the key's order, and the same pass counts each (option, group) pair a proposal box can
#: hold (yes/no by the two voter groups: the cast takes no other) and every row, which says
#: whether that was all of them; if not, `_COUNT_LEGACY` counts the box.
_COUNT_PROPOSAL = text(
    "SELECT "
    + _DIGEST.format(line="receipt || ':' || option")
    + ", count(*) AS rows, "
    + ", ".join(
        f"count(*) FILTER (WHERE option = '{option}' AND voter_group = '{group}') AS n{i}"
        for i, (option, group) in enumerate(_PAIRS)
    )
    + " FROM ballot_choices WHERE box_id = :box_id"
)

#: Any other box: the approvals per (option, group) off one hash aggregate of the box's rows,
#: and, in one ordered index-only scan, the digest with the ballots of each voter group, the
#: distinct receipts of the group (distinct over input already in receipt order: no sort), and
#: the rows in no known group (none unless a box takes other groups: then `_COUNT` counts it).
_COUNT_BOX = text(
    "SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(option, voter_group, n)), '[]'::jsonb)"
    " FROM (SELECT option, voter_group, count(*) AS n FROM ballot_choices"
    " WHERE box_id = :box_id GROUP BY 1, 2) per_pair) AS pairs, "
    + _DIGEST.format(line="receipt || ':' || option || ':' || voter_group")
    + ", "
    + ", ".join(
        f"count(DISTINCT receipt) FILTER (WHERE voter_group = '{group}') AS b{i}"
        for i, group in enumerate(VOTER_GROUPS)
    )
    + ", count(*) FILTER (WHERE voter_group NOT IN ("
    + ", ".join(f"'{group}'" for group in VOTER_GROUPS)
    + ")) AS other FROM ballot_choices WHERE box_id = :box_id"
)


async def count_box(session: AsyncSession, box_id: str) -> BoxTally:
    """Count the box in SQL, with the digest of the exact rows counted. Mixing moves no ballot
    out of `ballot_choices`, so an open box counts whole too, and a mix changes no digest.

    The tally and the digest are what `_COUNT` / `_COUNT_LEGACY` give (pairs and groups with
    no ballot are left out, as there); the statements here read the box in fewer passes."""
    approvals: dict[str, dict[str, int]] = {}
    ballots: dict[str, int] = {}
    params = {"box_id": box_id}
    if box_id.startswith("proposal:"):
        row = (await session.execute(_COUNT_PROPOSAL, params)).one()
        counts = [int(getattr(row, f"n{i}")) for i in range(len(_PAIRS))]
        if sum(counts) == row.rows:
            for (option, group), n in zip(_PAIRS, counts, strict=True):
                if n:
                    approvals.setdefault(option, {})[group] = n
                    ballots[group] = ballots.get(group, 0) + n
            return _tally(approvals, ballots, row.digest)
        return await _count_whole(session, _COUNT_LEGACY, box_id)
    row = (await session.execute(_COUNT_BOX, params)).one()
    if row.other:
        return await _count_whole(session, _COUNT, box_id)
    for option, group, n in row.pairs:
        approvals.setdefault(option, {})[group] = int(n)
    for i, group in enumerate(VOTER_GROUPS):
        if n := int(getattr(row, f"b{i}")):
            ballots[group] = n
    return _tally(approvals, ballots, row.digest)


def _jsonb_order(counts: dict[str, int]) -> dict[str, int]:
    """`counts` with its keys in the order a jsonb object keeps them (shorter first)."""
    return {key: counts[key] for key in sorted(counts, key=lambda key: (len(key), key))}


def _tally(approvals: dict[str, dict[str, int]], ballots: dict[str, int], digest: str) -> BoxTally:
    """The tally as `_count_whole` would have built it from `_count`'s jsonb, keys in order."""
    options = _jsonb_order({option: 0 for option in approvals})
    return BoxTally(
        approvals={option: _jsonb_order(approvals[option]) for option in options},
        ballots=_jsonb_order(ballots),
        digest="sha256:" + digest,
    )


async def _count_whole(
    session: AsyncSession, statement: TextClause, box_id: str, **params: str
) -> BoxTally:
    """The general count (`_count`), for a box the statements above do not cover."""
    row = (await session.execute(statement, {"box_id": box_id, **params})).one()
    approvals = {
        option: {group: int(n) for group, n in groups.items()}
        for option, groups in row.approvals.items()
    }
    ballots = {group: int(n) for group, n in row.ballots.items()}
    return BoxTally(approvals=approvals, ballots=ballots, digest="sha256:" + row.digest)


async def count_box_by_channel(session: AsyncSession, box_id: str) -> dict[str, BoxTally]:
    """The box counted apart for each channel its ballots came through (online, mvoting,
    onsite, paper), each with the digest of its own rows: the tallies add up to the box's."""
    channels = await session.execute(
        text("SELECT DISTINCT channel FROM ballot_choices WHERE box_id = :box_id ORDER BY 1"),
        {"box_id": box_id},
    )
    return {
        channel: await _count_whole(session, _COUNT_OF_CHANNEL, box_id, channel=channel)
        for channel in channels.scalars()
    }


# ---- the proposal vote (process.md §1) on the shared box -----------------------------------


#: A proposal's box: yes or no, one choice, every voter in one group.
_PROPOSAL_RULES = BoxRules(PROPOSAL_OPTIONS, VOTER_GROUPS, 1)


async def cast_proposal_ballot(
    session: AsyncSession,
    *,
    proposal_id: str,
    person_id: str,
    choice: str,
    group: str = GENERAL,
    now: datetime,
) -> str:
    """A yes/no ballot on a proposal in its vote, in one statement; its box opens with the
    first ballot while the projection shows the proposal voting (the workflow owns the
    stage)."""
    if choice not in PROPOSAL_OPTIONS:
        raise BallotRefused("choice must be yes or no", field="choice")
    chosen = check_choices(_PROPOSAL_RULES, [choice], group)
    try:
        taken, receipt = await _cast_rows(
            session,
            _CAST_PROPOSAL,
            box_id=proposal_box_id(proposal_id),
            person_id=person_id,
            chosen=chosen,
            group=group,
            proposal_id=proposal_id,
            voting=Status.VOTING.value,
            box_options=json.dumps(list(_PROPOSAL_RULES.options)),
            box_groups=json.dumps(list(_PROPOSAL_RULES.groups)),
            now=now,
        )
    except BallotRefused as refused:
        raise BallotRefused("you have already voted on this proposal") from refused
    if not taken:
        status = (
            await session.execute(
                select(col(Proposal.status)).where(col(Proposal.id) == proposal_id)
            )
        ).scalar_one_or_none()
        if status is None:
            raise BallotRefused("no such proposal", not_found=True)
        raise BallotRefused(f"the vote is not open (the proposal is {status})")
    return receipt


async def count_proposal_ballots(session: AsyncSession, proposal_id: str) -> Tally:
    """The yes/no count of a proposal's box (every group counts alike in a proposal vote)."""
    tally = await count_box(session, proposal_box_id(proposal_id))
    yes, no = tally.approvals_of("yes"), tally.approvals_of("no")
    return Tally(yes=yes, no=no, turnout=yes + no, digest=tally.digest)
