"""Ballot ingest over HTTP against raw asyncpg writing the same rows.

The HTTP side is a real load generator (`bench.load`), one voter per request, on a proposal in
its vote (real clock) and on a metropolitan budget ballot approving two projects (simulated
clock: the vote is in August). The baseline, in the same run on the same database: asyncpg
on as many connections, each ballot one transaction writing what a cast writes (the
participation and the choice rows, both queued for the mixer), in one statement, with no HTTP,
no authentication, no checks and no mixing: the floor of what Postgres takes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta

import asyncpg

from bench.harness import Bench, Figure, real_stack, simulated_stack
from bench.load import LoadResult, post_load, raw_load
from models.ballot_box import receipt_of
from tests.helpers import expect
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_budget_vote import walk_to_ballot

CONNECTIONS = 32
GOAL = "≥ 50 % of the raw baseline, p99 < 100 ms at 32 connections"
#: Tokens per second of load to mint: well above what the API takes, so none is used twice.
TOKENS_PER_SECOND = 4_000

#: The floor: every row of a ballot in one statement.
_RAW_CAST = """
WITH voter AS (
    INSERT INTO ballot_participations (box_id, person_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING RETURNING box_id
), queued_voter AS (
    INSERT INTO ballot_unmixed_participations (box_id, person_id) SELECT box_id, $2 FROM voter
), chosen AS (
    INSERT INTO ballot_choices (box_id, receipt, option, voter_group)
    SELECT box_id, $3, o.option, $4 FROM voter, unnest($5::text[]) AS o(option)
)
INSERT INTO ballot_unmixed_choices (box_id, token) SELECT box_id, $6 FROM voter
"""
#: What a plain implementation sends (and what the issue's table measured): one INSERT per row.
_RAW_ROWS = (
    "INSERT INTO ballot_participations (box_id, person_id) VALUES ($1, $2)",
    "INSERT INTO ballot_unmixed_participations (box_id, person_id) VALUES ($1, $2)",
    "INSERT INTO ballot_choices (box_id, receipt, option, voter_group) "
    "SELECT $1, $2, o.option, $3 FROM unnest($4::text[]) AS o(option)",
    "INSERT INTO ballot_unmixed_choices (box_id, token) VALUES ($1, $2)",
)


async def raw_ballots(
    database_url: str,
    options: list[str],
    *,
    connections: int,
    seconds: float,
    one_statement: bool,
) -> LoadResult:
    """Ballots written by raw asyncpg into a box of their own, for `seconds`: each in one
    transaction, its rows in one statement or one INSERT per row."""
    box_id = f"bench:raw:{secrets.token_hex(4)}"
    pool = await asyncpg.create_pool(database_url, min_size=connections, max_size=connections)
    assert pool is not None
    try:
        await pool.execute(
            "INSERT INTO ballot_boxes (id, kind, case_id, options, groups, opened_at) "
            "VALUES ($1, 'bench', $1, $2::jsonb, '[\"general\"]'::jsonb, now())",
            box_id,
            json.dumps(options),
        )
        deadline = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def write(conn: asyncpg.Connection) -> bool:
            if time.perf_counter() >= deadline:
                return False
            token = secrets.token_bytes(16)
            person, receipt = f"raw-{next(counter)}", receipt_of(token)
            async with conn.transaction():
                if one_statement:
                    await conn.execute(
                        _RAW_CAST, box_id, person, receipt, "general", options, token
                    )
                else:
                    voter, queued, chosen, ballot = _RAW_ROWS
                    await conn.execute(voter, box_id, person)
                    await conn.execute(queued, box_id, person)
                    await conn.execute(chosen, box_id, receipt, "general", options)
                    await conn.execute(ballot, box_id, token)
            return True

        return await raw_load(
            pool,
            write,
            connections=connections,
            generator=f"asyncpg, {connections} connections, "
            + ("one statement" if one_statement else "one INSERT per row"),
        )
    finally:
        await pool.close()


async def _measure(
    bench: Bench,
    what: str,
    path: str,
    body: Mapping[str, object],
    options: list[str],
    seconds: float,
) -> Figure:
    tokens = bench.tokens(int(TOKENS_PER_SECOND * (seconds + 3)))
    warm, measured = tokens[: 2 * CONNECTIONS], tokens[2 * CONNECTIONS :]
    encoded = json.dumps(body)
    await asyncio.to_thread(
        post_load, bench.url, path, encoded, warm, connections=CONNECTIONS, seconds=1
    )
    http = await asyncio.to_thread(
        post_load, bench.url, path, encoded, measured, connections=CONNECTIONS, seconds=seconds
    )
    per_row, floor = [
        await raw_ballots(
            bench.database_url,
            options,
            connections=CONNECTIONS,
            seconds=seconds,
            one_statement=one_statement,
        )
        for one_statement in (False, True)
    ]
    return Figure(
        what=what,
        value=http.per_second,
        unit="ballots/s",
        baseline_what="raw asyncpg writing the same rows, one transaction and one INSERT per row",
        baseline=per_row.per_second,
        goal=GOAL,
        details={
            "HTTP": http.summary(),
            "raw, one INSERT per row": per_row.summary(),
            "raw, all rows in one statement (the floor)": floor.summary(),
            "ratio to the floor": f"{http.per_second / floor.per_second:.2f}x",
        },
    )


async def proposal_ballots(seconds: float) -> list[Figure]:
    async with real_stack() as bench:
        proposal = await bench.api.to_vote()
        path = f"/v1/proposals/{proposal['id']}/ballots"
        return [
            await _measure(
                bench, "proposal ballots over HTTP", path, {"choice": "yes"}, ["yes"], seconds
            )
        ]


async def metro_vote(bench: Bench) -> tuple[int, dict[str, str]]:
    """A new cycle walked to its metropolitan vote: (the year, the ids of projects A-C)."""
    api = bench.api
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    projects = await walk_to_ballot(api, year)
    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")
    return year, {name: project["id"] for name, project in projects.items()}


async def budget_ballots(seconds: float) -> list[Figure]:
    async with simulated_stack() as bench:
        year, ids = await metro_vote(bench)
        chosen = [ids["A"], ids["C"]]
        body = {"kind": "metro", "project_ids": chosen}
        path = f"/v1/budget-cycles/{year}/ballots"
        return [
            await _measure(
                bench, "budget ballots (2 of 3 projects) over HTTP", path, body, chosen, seconds
            )
        ]
