"""The ballot box every vote shares (models/ballot_box.py), on a real PostgreSQL.

One ballot per person per box however many requests race, a ballot approving several options
under one receipt, refusals that name what was wrong and write nothing, and a tally per option
per group whose digest anyone holding the rows can recompute. Mixing: once a box is closed, no
row shares its transaction id with fewer than `MIX_BATCH` ballots and the heap holds them in no
order of casting; no ballot is lost or counted twice whether or when mixing happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from models.ballot_batches import BatchBallot, ReadBatch, take_batch
from models.ballot_box import (
    BUDGET_SCHOOL,
    GENERAL,
    MIX_BATCH,
    BallotRefused,
    BoxTally,
    budget_box_id,
    cast,
    close_box,
    count_box,
    open_box,
)
from tests.conftest import Stack

PROJECTS = ("p1", "p2", "p3", "p4")


class Crash(Exception):
    """Stands for the process dying inside a transaction: the transaction rolls back."""


async def _open(system: Stack, box_id: str, *, max_choices: int | None = None) -> None:
    async with system.sessions() as session, session.begin():
        await open_box(
            session,
            box_id,
            kind="budget",
            case_id="cycle-2027",
            options=PROJECTS,
            max_choices=max_choices,
            now=datetime.now(UTC),
        )


async def _cast(
    system: Stack,
    box_id: str,
    person: str,
    options: list[str],
    group: str,
    *,
    alone: bool = False,
) -> str:
    """A cast in a transaction of its own, or (`alone`) as the API casts: one statement that
    commits by itself, a full queue mixed apart."""
    if alone:
        async with system.context().statement_session() as session:
            return await cast(
                session, box_id=box_id, person_id=person, options=options, group=group
            )
    async with system.sessions() as session, session.begin():
        return await cast(session, box_id=box_id, person_id=person, options=options, group=group)


async def _rows(system: Stack, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with system.sessions() as session:
        return [tuple(r) for r in await session.execute(text(sql), params)]


async def test_one_ballot_per_person_under_20_concurrent_requests(system: Stack) -> None:
    box = budget_box_id(2027, "metro")
    await _open(system, box)
    results = await asyncio.gather(
        *(_cast(system, box, "racer", ["p1", "p3"], GENERAL) for _ in range(20)),
        return_exceptions=True,
    )
    receipts = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, BallotRefused)]
    assert len(receipts) == 1, results
    assert len(refused) == 19
    assert all(r.reason == "you have already voted in this ballot" for r in refused)
    participations = await _rows(
        system, "SELECT person_id FROM ballot_participations WHERE box_id = :b", b=box
    )
    assert participations == [("racer",)]
    choices = await _rows(
        system,
        "SELECT receipt, option FROM ballot_choices WHERE box_id = :b ORDER BY option",
        b=box,
    )
    assert choices == [(receipts[0], "p1"), (receipts[0], "p3")]


@pytest.mark.parametrize(
    ("options", "group", "field", "reason"),
    [
        ([], GENERAL, "options", "at least one"),
        (["p1", "p1"], GENERAL, "options", "named twice"),
        (["p1", "p9"], GENERAL, "options", "not on this ballot: p9"),
        (["p1", "p2", "p3"], GENERAL, "options", "at most 2"),
        (["p1"], "observers", "group", "does not vote here"),
    ],
)
async def test_a_refused_ballot_names_what_is_wrong_and_writes_nothing(
    system: Stack, options: list[str], group: str, field: str, reason: str
) -> None:
    box = budget_box_id(2028, f"refusal-{field}-{len(options)}-{group}")
    await _open(system, box, max_choices=2)
    with pytest.raises(BallotRefused) as refused:
        await _cast(system, box, "citizen-1", options, group)
    assert refused.value.field == field
    assert reason in refused.value.reason
    for table in ("ballot_participations", "ballot_choices"):
        assert await _rows(system, f"SELECT 1 FROM {table} WHERE box_id = :b", b=box) == []
    # the same person may still vote, correctly
    assert await _cast(system, box, "citizen-1", ["p1"], GENERAL)


async def test_no_ballot_before_the_box_opens_or_after_it_closes(system: Stack) -> None:
    with pytest.raises(BallotRefused) as missing:
        await _cast(system, budget_box_id(2029, "nowhere"), "citizen-1", ["p1"], GENERAL)
    assert missing.value.not_found
    box = budget_box_id(2029, "metro")
    await _open(system, box)
    await _cast(system, box, "early", ["p1"], GENERAL)
    async with system.sessions() as session, session.begin():
        await close_box(session, box, now=datetime.now(UTC))
    with pytest.raises(BallotRefused, match="closed"):
        await _cast(system, box, "late", ["p1"], GENERAL)
    # reopening is not a thing: a retried open leaves the box closed
    await _open(system, box)
    with pytest.raises(BallotRefused, match="closed"):
        await _cast(system, box, "late", ["p1"], GENERAL)


async def test_the_tally_counts_per_option_per_group_with_a_recomputable_digest(
    system: Stack,
) -> None:
    box = budget_box_id(2030, "metro")
    await _open(system, box)
    ballots = {
        "g1": (["p1", "p2"], GENERAL),
        "g2": (["p1"], GENERAL),
        "g3": (["p3"], GENERAL),
        "s1": (["p2", "p3", "p4"], BUDGET_SCHOOL),
        "s2": (["p2"], BUDGET_SCHOOL),
    }
    for person, (options, group) in ballots.items():
        await _cast(system, box, person, options, group)
    async with system.sessions() as session:
        tally = await count_box(session, box)
    assert tally.ballots == {GENERAL: 3, BUDGET_SCHOOL: 2}
    assert tally.turnout == 5
    assert tally.approvals == {
        "p1": {GENERAL: 2},
        "p2": {GENERAL: 1, BUDGET_SCHOOL: 2},
        "p3": {GENERAL: 1, BUDGET_SCHOOL: 1},
        "p4": {BUDGET_SCHOOL: 1},
    }
    rows = await _rows(
        system, "SELECT receipt, option, voter_group FROM ballot_choices WHERE box_id = :b", b=box
    )
    lines = "".join(f"{r}:{o}:{g}\n" for r, o, g in sorted(rows))
    assert tally.digest == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    # an empty box counts to nothing, with the digest of no rows
    await _open(system, budget_box_id(2030, "empty"))
    async with system.sessions() as session:
        empty = await count_box(session, budget_box_id(2030, "empty"))
    assert (empty.approvals, empty.ballots, empty.turnout) == ({}, {}, 0)
    assert empty.digest == "sha256:" + hashlib.sha256(b"").hexdigest()


#: Fixed rows and the digests every version of the count has given them: recounts of closed
#: votes (recorded in their histories) must keep matching whatever the SQL becomes.
_FIXED_ROWS = [
    ("ff01", "yes", BUDGET_SCHOOL),
    ("00aa", "yes", GENERAL),
    ("a0c4", "yes", GENERAL),
    ("0b11", "no", BUDGET_SCHOOL),
    ("a0c3", "no", GENERAL),
]
_FIXED_DIGESTS = {
    # a proposal's box: `receipt:choice` lines
    "proposal:fixed": "sha256:d3a8b5c6cc7cc86ece5eb290cad67b7299e1333bda68d858231e2ed5e0a9e949",
    # any other box: `receipt:option:group` lines
    "budget:2031:fixed": "sha256:2c960fbdce54eeb96ce2b6f0ca0ccf01637bd09221f5c26bfcb1cf83a5b22a0b",
}


@pytest.mark.parametrize("box", sorted(_FIXED_DIGESTS))
@pytest.mark.parametrize("max_choices", [1, None])
async def test_the_digest_of_fixed_rows_never_changes(
    system: Stack, box: str, max_choices: int | None
) -> None:
    box = f"{box}:{max_choices}"
    async with system.sessions() as session, session.begin():
        await open_box(
            session,
            box,
            kind="proposal" if box.startswith("proposal:") else "budget",
            case_id="fixed",
            options=["yes", "no"],
            max_choices=max_choices,
            now=datetime.now(UTC),
        )
        for receipt, option, group in _FIXED_ROWS:
            await session.execute(
                text(
                    "INSERT INTO ballot_choices (box_id, receipt, option, voter_group)"
                    " VALUES (:b, :r, :o, :g)"
                ),
                {"b": box, "r": receipt, "o": option, "g": group},
            )
    tally = await _count(system, box)
    assert tally.digest == _FIXED_DIGESTS[box.rsplit(":", 1)[0]]
    # one option per ballot: the ballots per group are the approvals per group, counted
    # either way (from the approvals when the box says so, else per receipt)
    assert tally.ballots == {GENERAL: 3, BUDGET_SCHOOL: 2}
    assert tally.approvals == {
        "yes": {GENERAL: 2, BUDGET_SCHOOL: 1},
        "no": {GENERAL: 1, BUDGET_SCHOOL: 1},
    }


async def test_the_primary_key_of_the_choices_carries_the_group(system: Stack) -> None:
    """The count reads a box off the primary key alone (migration 0011): the key is the same
    (box, receipt, option), with the voter group included."""
    (definition,) = await _rows(
        system, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ballot_choices_pkey'"
    )
    assert str(definition[0]).endswith("(box_id, receipt, option) INCLUDE (voter_group)")


# ---- mixing -------------------------------------------------------------------------------


def _ballot(n: int) -> tuple[list[str], str]:
    """The n-th test ballot: one to three options, in either group."""
    options = [p for i, p in enumerate(PROJECTS) if (n >> i) % 2] or ["p4"]
    return options[:3], BUDGET_SCHOOL if n % 3 == 0 else GENERAL


async def _close_and_count(system: Stack, box: str) -> BoxTally:
    async with system.sessions() as session, session.begin():
        await close_box(session, box, now=datetime.now(UTC))
        return await count_box(session, box)


async def _count(system: Stack, box: str) -> BoxTally:
    async with system.sessions() as session:
        return await count_box(session, box)


async def _queued(system: Stack, box: str) -> tuple[object, ...]:
    (row,) = await _rows(
        system,
        "SELECT (SELECT count(*) FROM ballot_unmixed_participations WHERE box_id = :b), "
        "(SELECT count(*) FROM ballot_unmixed_choices WHERE box_id = :b)",
        b=box,
    )
    return row


def _digest_of(rows: list[tuple[object, ...]]) -> str:
    lines = "".join(f"{r}:{o}:{g}\n" for r, o, g in sorted(tuple(map(str, r)) for r in rows))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


async def _assert_mixed(system: Stack, box: str, ballots: int) -> None:
    """Every live row of the box shares its transaction id with at least `MIX_BATCH` ballots
    (all of them if the box has fewer), and so does every participation-to-choice join on it."""
    least = min(ballots, MIX_BATCH)
    voters = await _rows(
        system,
        "SELECT xmin::text, count(*) FROM ballot_participations WHERE box_id = :b GROUP BY 1",
        b=box,
    )
    assert sum(int(str(n)) for _, n in voters) == ballots
    assert all(int(str(n)) >= least for _, n in voters), voters
    choices = await _rows(
        system,
        "SELECT xmin::text, count(DISTINCT receipt) FROM ballot_choices WHERE box_id = :b "
        "GROUP BY 1",
        b=box,
    )
    assert sum(int(str(n)) for _, n in choices) == ballots
    assert all(int(str(n)) >= least for _, n in choices), choices
    joined = await _rows(
        system,
        "SELECT p.xmin::text, count(DISTINCT p.person_id), count(DISTINCT c.receipt) "
        "FROM ballot_participations p JOIN ballot_choices c ON c.xmin = p.xmin "
        "WHERE p.box_id = :b AND c.box_id = :b GROUP BY 1",
        b=box,
    )
    assert all(int(str(p)) >= least and int(str(c)) >= least for _, p, c in joined), joined
    assert await _queued(system, box) == (0, 0)


def _runs(order: list[int]) -> int:
    """How many neighbours in `order` were cast one after the other (a cast order of n rows
    has n - 1; a random one about 1 in any number)."""
    return sum(1 for a, b in itertools.pairwise(order) if b == a + 1)


@pytest.mark.parametrize("alone", [False, True], ids=["in-a-transaction", "one-statement"])
async def test_mixed_rows_share_their_transaction_and_keep_no_cast_order(
    system: Stack, alone: bool
) -> None:
    box = budget_box_id(2031, "metro")
    await _open(system, box)
    count = 3 * MIX_BATCH + 5
    receipts: list[str] = []
    for n in range(count):
        options, group = _ballot(n)
        receipts.append(await _cast(system, box, f"voter-{n:03}", options, group, alone=alone))
        if n == MIX_BATCH - 1:
            # the cast that filled the queue mixed it: one transaction id for the first batch
            assert await _queued(system, box) == (0, 0)
            await _assert_mixed(system, box, MIX_BATCH)
    assert await _queued(system, box) == (count % MIX_BATCH,) * 2
    before = await _count(system, box)
    assert before.turnout == count

    tally = await _close_and_count(system, box)
    assert tally == before
    rows = await _rows(
        system, "SELECT receipt, option, voter_group FROM ballot_choices WHERE box_id = :b", b=box
    )
    assert tally.digest == _digest_of(rows)
    await _assert_mixed(system, box, count)

    # the heap order of the rows is not the cast order, for the choices nor for the voters
    cast_order = {receipt: n for n, receipt in enumerate(receipts)}
    heap = await _rows(
        system,
        "SELECT DISTINCT ON (receipt) receipt, ctid FROM ballot_choices WHERE box_id = :b "
        "ORDER BY receipt, ctid",
        b=box,
    )
    by_position = sorted(heap, key=lambda r: tuple(map(int, str(r[1]).strip("()").split(","))))
    choice_order = [cast_order[str(r)] for r, _ in by_position]
    voter_order = [
        int(str(p).removeprefix("voter-"))
        for (p,) in await _rows(
            system,
            "SELECT person_id FROM ballot_participations WHERE box_id = :b ORDER BY ctid",
            b=box,
        )
    ]
    for order in (choice_order, voter_order):
        assert sorted(order) == list(range(count))
        assert _runs(order) < count // 4, order


@pytest.mark.parametrize("alone", [False, True], ids=["in-a-transaction", "one-statement"])
async def test_exactly_once_while_batches_are_mixed_under_concurrent_casts(
    system: Stack, alone: bool
) -> None:
    box = budget_box_id(2032, "metro")
    await _open(system, box)
    for n in range(MIX_BATCH - 2):
        await _cast(system, box, f"early-{n}", *_ballot(n))
    # 20 requests of one person and 20 of twenty people race across the batch boundary
    racing = [("racer", ["p1", "p2"], GENERAL)] * 20 + [
        (f"late-{n}", *_ballot(n)) for n in range(20)
    ]
    results = await asyncio.gather(
        *(
            _cast(system, box, person, options, group, alone=alone)
            for person, options, group in racing
        ),
        return_exceptions=True,
    )
    racer = results[:20]
    assert len([r for r in racer if isinstance(r, str)]) == 1, racer
    assert all(
        isinstance(r, BallotRefused) and r.reason == "you have already voted in this ballot"
        for r in racer
        if not isinstance(r, str)
    )
    assert all(isinstance(r, str) for r in results[20:]), results[20:]
    handed_out = {r for r in results if isinstance(r, str)}
    ballots = MIX_BATCH - 2 + 21
    voters = await _rows(
        system,
        "SELECT count(*), count(DISTINCT person_id) FROM ballot_participations WHERE box_id = :b",
        b=box,
    )
    assert voters == [(ballots, ballots)]
    choices = {
        str(receipt): options
        for receipt, options in await _rows(
            system,
            "SELECT receipt, array_agg(option ORDER BY option) FROM ballot_choices "
            "WHERE box_id = :b GROUP BY receipt",
            b=box,
        )
    }
    assert len(choices) == ballots
    assert handed_out <= set(choices)
    racer_receipt = next(r for r in racer if isinstance(r, str))
    assert choices[racer_receipt] == ["p1", "p2"]
    for n, receipt in enumerate(results[20:]):
        assert choices[str(receipt)] == sorted(_ballot(n)[0])

    tally = await _close_and_count(system, box)
    assert tally.turnout == ballots
    await _assert_mixed(system, box, ballots)


async def test_a_crash_before_or_during_a_mix_loses_and_doubles_nothing(system: Stack) -> None:
    box = budget_box_id(2033, "metro")
    await _open(system, box)
    for n in range(MIX_BATCH - 1):
        await _cast(system, box, f"voter-{n}", *_ballot(n))
    # the cast that would mix dies before its commit: its ballot and the mix roll back
    with pytest.raises(Crash):
        async with system.sessions() as session, session.begin():
            await cast(session, box_id=box, person_id="unlucky", options=["p1"], group=GENERAL)
            assert (
                await session.execute(
                    text("SELECT count(*) FROM ballot_unmixed_choices WHERE box_id = :b"),
                    {"b": box},
                )
            ).scalar_one() == 0
            raise Crash
    assert await _queued(system, box) == (MIX_BATCH - 1,) * 2
    before = await _count(system, box)
    assert before.turnout == MIX_BATCH - 1
    # ballots cast and never mixed (the process died after each commit) are counted at close
    tally = await _close_and_count(system, box)
    assert tally == before
    await _assert_mixed(system, box, MIX_BATCH - 1)
    # a second close (a retried activity) mixes nothing more and counts the same
    assert await _close_and_count(system, box) == tally


async def test_a_short_last_batch_is_mixed_with_a_whole_earlier_one(system: Stack) -> None:
    box = budget_box_id(2034, "metro")
    await _open(system, box)
    count = MIX_BATCH + 3
    for n in range(count):
        await _cast(system, box, f"voter-{n}", *_ballot(n))
    before = await _count(system, box)
    tally = await _close_and_count(system, box)
    assert tally == before
    rows = await _rows(
        system, "SELECT receipt, option, voter_group FROM ballot_choices WHERE box_id = :b", b=box
    )
    assert tally.digest == _digest_of(rows)
    await _assert_mixed(system, box, count)


async def test_a_short_last_batch_takes_only_a_share_of_a_large_earlier_batch(
    system: Stack,
) -> None:
    """A channel batch of 200 ballots, then 3 online: the close tops the 3 up with
    `MIX_BATCH` ballots of the channel batch, not all of it (a batch of 50,000 lines rewritten
    at a close took minutes), and the rest of the batch keeps its transaction."""
    box = budget_box_id(2035, "metro")
    await _open(system, box)
    channel = 200
    read = ReadBatch(
        ballots=[
            BatchBallot(n + 1, f"channel-{n}", _ballot(n)[1], _ballot(n)[0]) for n in range(channel)
        ]
    )
    async with system.sessions() as session, session.begin():
        assert (await take_batch(session, box, "paper", read))[0] == channel
    for n in range(3):
        await _cast(system, box, f"online-{n}", *_ballot(n))
    before = await _count(system, box)
    assert await _close_and_count(system, box) == before
    await _assert_mixed(system, box, channel + 3)
    voters = await _rows(
        system,
        "SELECT count(*) FROM ballot_participations WHERE box_id = :b GROUP BY xmin ORDER BY 1",
        b=box,
    )
    assert voters == [(MIX_BATCH + 3,), (channel - MIX_BATCH,)]
    ballots = await _rows(
        system,
        "SELECT count(DISTINCT receipt) FROM ballot_choices WHERE box_id = :b GROUP BY xmin::text "
        "ORDER BY 1",
        b=box,
    )
    assert ballots == [(MIX_BATCH + 3,), (channel - MIX_BATCH,)]
