"""The tally with digest of a closed box of 1,000,000 ballots against `count(*)` of its rows.

The box is filled with COPY (`copy_records_to_table`), as the casts and the mixer would have
left it: one participation per voter, one choice row per approved option under a receipt
derived as a cast derives it, in no particular order, the box closed, then VACUUM ANALYZE
(what autovacuum does after a day of voting). Two boxes: a proposal's yes/no box (one row per
ballot; its digest keeps the proposal box's first line format) and a budget box whose ballots
approve one to three of twelve projects, in both voter groups. The count is `count_box`, the
SQL the close activity and the recounts run, through SQLAlchemy as the app calls it; the
baseline is `SELECT count(*)` of the same rows on the same session. Each is timed
`REPETITIONS` times, alternating, and the medians compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text

from bench.harness import Figure, median, real_stack
from minju.config import Settings
from minju.db import create_engine, session_factory
from models.ballot_box import (
    BUDGET_SCHOOL,
    GENERAL,
    MIX_BATCH,
    BoxTally,
    budget_box_id,
    cast,
    close_box,
    count_box,
    proposal_box_id,
)

BALLOTS = 1_000_000
REPETITIONS = 7
GOAL = "≤ 3 × the count(*), and ≤ 1 s"
PROJECTS = [f"project-{n:04d}" for n in range(1, 13)]
#: Rows per COPY call.
_CHUNK = 100_000


def _ballots(
    count: int, options: list[str], max_choices: int, seed: int
) -> Iterator[tuple[str, str, list[str], str]]:
    """`count` ballots `(person, receipt, options, group)`, receipts derived as a cast derives
    them (`receipt_of` of 16 random bytes), about one in ten from a budget-school graduate."""
    rng = random.Random(seed)
    for n in range(count):
        receipt = hashlib.sha256(os.urandom(16)).hexdigest()[:32]
        chosen = rng.sample(options, rng.randint(1, max_choices))
        group = BUDGET_SCHOOL if rng.random() < 0.1 else GENERAL
        yield f"bench-voter-{seed}-{n}", receipt, chosen, group


async def fill_box(
    conn: asyncpg.Connection,
    box_id: str,
    *,
    kind: str,
    options: list[str],
    max_choices: int,
    ballots: int = BALLOTS,
    seed: int = 1,
    closed: bool = True,
) -> int:
    """Create the box `box_id` (closed unless `closed` is false) holding `ballots` ballots,
    `_CHUNK` a transaction as channel batches leave them; returns its choice rows."""
    await conn.execute(
        "INSERT INTO ballot_boxes (id, kind, case_id, options, groups, max_choices, opened_at,"
        " closed_at) VALUES ($1, $2, $1, $3::jsonb, $4::jsonb, $5, now(),"
        " CASE WHEN $6 THEN now() END)",
        box_id,
        kind,
        json.dumps(options),
        json.dumps([GENERAL, BUDGET_SCHOOL]),
        max_choices,
        closed,
    )
    # The rows are right by construction: skip the foreign-key triggers (per row, they take
    # most of a COPY's time). The bench connects as the superuser.
    await conn.execute("SET session_replication_role = replica")
    rows = 0
    voters: list[tuple[str, str]] = []
    choices: list[tuple[str, str, str, str]] = []

    async def flush() -> None:
        random.shuffle(voters)
        random.shuffle(choices)
        await conn.copy_records_to_table(
            "ballot_participations", records=voters, columns=["box_id", "person_id"]
        )
        await conn.copy_records_to_table(
            "ballot_choices",
            records=choices,
            columns=["box_id", "receipt", "option", "voter_group"],
        )
        voters.clear()
        choices.clear()

    for person, receipt, chosen, group in _ballots(ballots, options, max_choices, seed):
        voters.append((box_id, person))
        choices.extend((box_id, receipt, option, group) for option in chosen)
        rows += len(chosen)
        if len(voters) >= _CHUNK:
            await flush()
    if voters:
        await flush()
    await conn.execute("RESET session_replication_role")
    return rows


_COUNT_STAR = text("SELECT count(*) FROM ballot_choices WHERE box_id = :box_id")


async def measure(database_url: str, box_id: str, what: str) -> Figure:
    """Time `count_box` of `box_id` against `count(*)` of its rows, `REPETITIONS` times."""
    engine = create_engine(Settings(database_url=database_url), pool_size=1)
    sessions = session_factory(engine)
    tally_times: list[float] = []
    count_times: list[float] = []
    tallies: list[BoxTally] = []
    rows = 0
    try:
        async with sessions() as session:
            for _ in range(REPETITIONS):
                started = time.perf_counter()
                tallies.append(await count_box(session, box_id))
                tally_times.append(time.perf_counter() - started)
                await session.commit()
                started = time.perf_counter()
                rows = (await session.execute(_COUNT_STAR, {"box_id": box_id})).scalar_one()
                count_times.append(time.perf_counter() - started)
                await session.commit()
    finally:
        await engine.dispose()
    assert all(t == tallies[0] for t in tallies), "the tally changed between repetitions"
    tally = tallies[0]
    return Figure(
        what=what,
        value=median(tally_times),
        unit="s",
        baseline_what="count(*) of the same rows",
        baseline=median(count_times),
        goal=GOAL,
        better="lower",
        details={
            "rows": f"{rows:,} choice rows, {tally.turnout:,} ballots",
            "tally runs (s)": ", ".join(f"{t:.3f}" for t in tally_times),
            "count(*) runs (s)": ", ".join(f"{t:.3f}" for t in count_times),
            "digest": tally.digest,
        },
    )


#: Ballots cast online into the box of channel ballots before its close: two mixer batches
#: and a short last one that the close must top up from an earlier batch.
_ONLINE = 2 * MIX_BATCH + 3


async def measure_close(database_url: str, ballots: int = BALLOTS) -> Figure:
    """Time `close_box` of a box of `ballots` channel ballots and `_ONLINE` online ones (the
    close mixes the last few with ballots of an earlier batch) against `count(*)` of its
    rows."""
    box_id = budget_box_id(2098, "metro")
    conn = await asyncpg.connect(database_url)
    try:
        await fill_box(
            conn,
            box_id,
            kind="budget",
            options=PROJECTS,
            max_choices=3,
            ballots=ballots,
            seed=3,
            closed=False,
        )
        await conn.execute("VACUUM ANALYZE ballot_participations, ballot_choices")
    finally:
        await conn.close()
    engine = create_engine(Settings(database_url=database_url), pool_size=1)
    sessions = session_factory(engine)
    try:
        for n in range(_ONLINE):
            async with sessions() as session, session.begin():
                await cast(
                    session,
                    box_id=box_id,
                    person_id=f"bench-online-{n}",
                    options=PROJECTS[: 1 + n % 3],
                    group=GENERAL,
                )
        async with sessions() as session:
            started = time.perf_counter()
            rows = (await session.execute(_COUNT_STAR, {"box_id": box_id})).scalar_one()
            count_seconds = time.perf_counter() - started
            await session.commit()
            started = time.perf_counter()
            async with session.begin():
                await close_box(session, box_id, now=datetime.now(UTC))
            close_seconds = time.perf_counter() - started
            smallest = (await session.execute(_SMALLEST_BATCH, {"box_id": box_id})).scalar_one()
    finally:
        await engine.dispose()
    return Figure(
        what=f"close of a box of {ballots:,} channel ballots and {_ONLINE} online",
        value=close_seconds,
        unit="s",
        baseline_what="count(*) of the same rows",
        baseline=count_seconds,
        goal="≤ 10 × the count(*) (once per box: two scans of each table for the top-up)",
        better="lower",
        details={
            "rows": f"{rows:,} choice rows",
            "smallest batch after the close": f"{smallest} ballots (at least {MIX_BATCH})",
        },
    )


_SMALLEST_BATCH = text(
    "SELECT min(n) FROM (SELECT count(DISTINCT receipt) AS n FROM ballot_choices"
    " WHERE box_id = :box_id GROUP BY xmin::text) batches"
)


async def fill(database_url: str, ballots: int = BALLOTS) -> tuple[str, str]:
    """Fill the two boxes; returns their ids (proposal, budget)."""
    proposal, budget = proposal_box_id("bench-tally"), budget_box_id(2099, "metro")
    conn = await asyncpg.connect(database_url)
    try:
        await fill_box(
            conn,
            proposal,
            kind="proposal",
            options=["yes", "no"],
            max_choices=1,
            ballots=ballots,
            seed=1,
        )
        await fill_box(
            conn,
            budget,
            kind="budget",
            options=PROJECTS,
            max_choices=3,
            ballots=ballots,
            seed=2,
        )
        await conn.execute("VACUUM ANALYZE ballot_participations, ballot_choices")
    finally:
        await conn.close()
    return proposal, budget


async def tally(seconds: float) -> list[Figure]:
    """`seconds` is not used: the work is fixed (1,000,000 ballots per box)."""
    del seconds
    async with real_stack() as bench:
        proposal, budget = await fill(bench.database_url)
        return [
            await measure(
                bench.database_url, proposal, "tally + digest, proposal box (1,000,000 ballots)"
            ),
            await measure(
                bench.database_url, budget, "tally + digest, budget box (1,000,000 ballots)"
            ),
            await measure_close(bench.database_url),
        ]
