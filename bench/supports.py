"""Supports over HTTP against raw asyncpg inserting the same support rows.

Two loads on `POST /v1/proposals/{id}/supports`, one token (one person) per request, from an
async client on `CONNECTIONS` connections: 20,000 supports spread over 200 proposals (100
each, so every proposal crosses its review threshold of 10), then 5,000 on one proposal,
which must reach the workflow as exactly one `support_threshold_reached` signal (checked in
its Temporal history afterwards). The baseline, in the same run on the same database: asyncpg
on as many connections inserting the same rows (`supports`: proposal, person, time), one
transaction each, with no HTTP, authentication, lock, count or signal.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import asyncpg
from temporalio.api.enums.v1 import EventType

from bench.harness import Bench, Figure, real_stack
from bench.load import LoadResult, post_each, raw_load
from models.ids import proposal_workflow_id

CONNECTIONS = 32
SPREAD_PROPOSALS = 200
SPREAD_SUPPORTS = 20_000
ONE_PROPOSAL_SUPPORTS = 5_000
GOAL = "no goal in the issue beyond exactly one signal; compared with raw inserts"
THRESHOLD_SIGNAL = "support_threshold_reached"


async def _http_supports(bench: Bench, proposal_ids: Sequence[str]) -> LoadResult:
    """One support per entry of `proposal_ids`, each by a new person."""
    jobs = [(f"/v1/proposals/{pid}/supports", bench.token()) for pid in proposal_ids]
    return await post_each(bench.url, jobs, connections=CONNECTIONS)


async def _raw_supports(database_url: str, proposal_ids: Sequence[str], tag: str) -> LoadResult:
    """The same rows written by asyncpg, one transaction each."""
    pool = await asyncpg.create_pool(database_url, min_size=CONNECTIONS, max_size=CONNECTIONS)
    assert pool is not None
    jobs = iter([(pid, f"raw-{tag}-{n}") for n, pid in enumerate(proposal_ids)])

    async def write(conn: asyncpg.Connection) -> bool:
        job = next(jobs, None)
        if job is None:
            return False
        await conn.execute(
            "INSERT INTO supports (proposal_id, person_id, created_at) VALUES ($1, $2, now())",
            *job,
        )
        return True

    try:
        return await raw_load(
            pool,
            write,
            connections=CONNECTIONS,
            generator=f"asyncpg, {CONNECTIONS} connections, one INSERT per transaction",
        )
    finally:
        await pool.close()


async def _threshold_signals(bench: Bench, proposal_id: str) -> int:
    """How many `support_threshold_reached` signals the proposal's workflow received."""
    assert bench.temporal is not None
    history = await bench.temporal.get_workflow_handle(
        proposal_workflow_id(proposal_id)
    ).fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == THRESHOLD_SIGNAL
    )


async def _proposals(bench: Bench, count: int) -> list[str]:
    proposer = await bench.api.citizen()
    ids = []
    for _ in range(count):
        ids.append((await bench.api.propose(proposer))["id"])
    return ids


async def supports(seconds: float) -> list[Figure]:
    """`seconds` is not used: the work is fixed (20,000 and 5,000 supports)."""
    del seconds
    async with real_stack() as bench:
        spread = await _proposals(bench, SPREAD_PROPOSALS)
        per_proposal = SPREAD_SUPPORTS // SPREAD_PROPOSALS
        targets = [pid for pid, _ in itertools.product(spread, range(per_proposal))]
        http_spread = await _http_supports(bench, targets)
        raw_spread = await _raw_supports(bench.database_url, targets, "spread")

        (one,) = await _proposals(bench, 1)
        http_one = await _http_supports(bench, [one] * ONE_PROPOSAL_SUPPORTS)
        raw_one = await _raw_supports(bench.database_url, [one] * ONE_PROPOSAL_SUPPORTS, "one")
        counted = (await bench.api.get(one))["support_count"]
        # The signal is sent after the commit: give the outbox a moment, then read the history.
        await asyncio.sleep(2)
        signals = await _threshold_signals(bench, one)
        spread_signals = [await _threshold_signals(bench, pid) for pid in spread[:5]]

        return [
            Figure(
                what=f"{SPREAD_SUPPORTS:,} supports over {SPREAD_PROPOSALS} proposals, HTTP",
                value=http_spread.per_second,
                unit="supports/s",
                baseline_what="raw asyncpg inserting the same support rows",
                baseline=raw_spread.per_second,
                goal=GOAL,
                details={
                    "HTTP": http_spread.summary(),
                    "raw": raw_spread.summary(),
                    "threshold signals, first 5 proposals": ", ".join(map(str, spread_signals)),
                },
            ),
            Figure(
                what=f"{ONE_PROPOSAL_SUPPORTS:,} supports on one proposal, HTTP",
                value=http_one.per_second,
                unit="supports/s",
                baseline_what="raw asyncpg inserting the same support rows",
                baseline=raw_one.per_second,
                goal="exactly one threshold signal",
                details={
                    "HTTP": http_one.summary(),
                    "raw": raw_one.summary(),
                    "support_count afterwards": f"{counted:,}",
                    "threshold signals in its history": f"{signals}"
                    + (" (ok)" if signals == 1 else " (WRONG: must be exactly 1)"),
                },
            ),
        ]
