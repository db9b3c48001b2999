"""Channel ballot batches over HTTP against raw asyncpg COPYing the same rows.

The HTTP side posts a metropolitan vote's ballots as JSON lines, `BATCH` ballots a request, one
request after the other (as a channel uploads its files), through
`POST /v1/budget-cycles/{year}/ballot-batches`: read, checked against the box, one ballot per
person, copied, written apart and recorded. The baseline, in the same run on the same database:
asyncpg COPYing the same rows (the participations and the choices of each ballot) straight
into a box of their own, one transaction per `BATCH`, with no check, no refusal report and no
HTTP: the floor of what Postgres takes.
"""

from __future__ import annotations

import json
import secrets
import time

import asyncpg
import httpx

from bench.ballots import metro_vote
from bench.harness import Figure, simulated_stack
from models.ballot_box import receipt_of

#: Ballots per request, and in all.
BATCH = 10_000
BALLOTS = 100_000
GOAL = "≥ 50 % of raw COPY of the same rows (the intake is COPY-bound, not per ballot)"


def _ballots(prefix: str, ids: list[str]) -> list[tuple[str, str, list[str]]]:
    """(person, group, approved projects): every tenth a budget-school graduate; each ballot
    approves one to three of the projects."""
    return [
        (f"{prefix}-{i}", "budget_school" if i % 10 == 0 else "general", ids[: 1 + i % 3])
        for i in range(BALLOTS)
    ]


async def _raw_copy(database_url: str, ballots: list[tuple[str, str, list[str]]]) -> float:
    """Seconds raw asyncpg takes to COPY the ballots' rows into a box of their own."""
    box_id = f"bench:copy:{secrets.token_hex(4)}"
    connection = await asyncpg.connect(database_url)
    try:
        options = sorted({o for _, _, chosen in ballots for o in chosen})
        await connection.execute(
            "INSERT INTO ballot_boxes (id, kind, case_id, options, groups, opened_at) "
            "VALUES ($1, 'bench', $1, $2::jsonb, '[\"general\", \"budget_school\"]'::jsonb, "
            "now())",
            box_id,
            json.dumps(options),
        )
        started = time.perf_counter()
        for start in range(0, len(ballots), BATCH):
            chunk = ballots[start : start + BATCH]
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "ballot_participations",
                    records=[(box_id, person) for person, _, _ in chunk],
                    columns=("box_id", "person_id"),
                )
                choices = []
                for _, group, chosen in chunk:
                    receipt = receipt_of(secrets.token_bytes(16))
                    choices += [(box_id, receipt, option, group, "paper") for option in chosen]
                await connection.copy_records_to_table(
                    "ballot_choices",
                    records=choices,
                    columns=("box_id", "receipt", "option", "voter_group", "channel"),
                )
        return time.perf_counter() - started
    finally:
        await connection.close()


async def ballot_batches(seconds: float) -> list[Figure]:
    """`seconds` is not used: the figure is the time of a fixed number of ballots."""
    del seconds
    async with simulated_stack() as bench:
        year, projects = await metro_vote(bench)
        ids = [projects[name] for name in "ABC"]
        admin = {"Authorization": f"Bearer {bench.token('admin')}"}
        ballots = _ballots(f"batch-{year}", ids)
        bodies = [
            "\n".join(
                json.dumps({"person_id": person, "group": group, "project_ids": chosen})
                for person, group, chosen in ballots[start : start + BATCH]
            )
            for start in range(0, BALLOTS, BATCH)
        ]
        accepted = 0
        latencies = []
        async with httpx.AsyncClient(base_url=bench.url, timeout=600) as http:
            started = time.perf_counter()
            for body in bodies:
                sent = time.perf_counter()
                answer = await http.post(
                    f"/v1/budget-cycles/{year}/ballot-batches",
                    content=body.encode(),
                    params={"channel": "paper", "kind": "metro"},
                    headers={**admin, "Content-Type": "application/x-ndjson"},
                )
                latencies.append(time.perf_counter() - sent)
                answer.raise_for_status()
                accepted += int(answer.json()["accepted"])
            http_seconds = time.perf_counter() - started
        raw_seconds = await _raw_copy(bench.database_url, _ballots(f"raw-{year}", ids))
    return [
        Figure(
            what=f"channel batches over HTTP ({BALLOTS:,} ballots, {BATCH:,} a request)",
            value=BALLOTS / http_seconds,
            unit="ballots/s",
            baseline_what="raw asyncpg COPY of the same rows, one transaction per batch",
            baseline=BALLOTS / raw_seconds,
            goal=GOAL,
            details={
                "HTTP": f"{http_seconds:.2f} s, {accepted:,} accepted, "
                f"{min(latencies):.2f}-{max(latencies):.2f} s a batch",
                "raw COPY": f"{raw_seconds:.2f} s",
            },
        )
    ]
