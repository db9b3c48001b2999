"""A caseworker's decision against a bare no-op Update, and with 10,000 live cases waiting.

`decisions`: the median (and p90) latency of `POST /v1/proposals/{id}/review` on distinct
proposals in department review (assigned), one at a time, each answer checked against Postgres
(the projection must show the new status when the API answers), against a bare no-op Update
(`execute_update` on a tiny workflow of a worker in this process, on its own task queue of
the same dev server) timed the same number of times, one workflow each.

`live-cases`: the same decision latency once `MINJU_BENCH_LIVE_CASES` (10,000 by default)
proposals wait in the dev server (created over HTTP, each a workflow waiting for supports)
against with none, and the memory (RSS) of the worker and API (`minju up` and its children)
and of the Temporal server, before and after. The cases decided on with them were put in
review before the live ones were created, as a case a caseworker answers days later is: it
has long left the worker's cache, and its Update replays it first.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import httpx
import psutil
from temporalio import workflow
from temporalio.worker import Worker

from bench.harness import Bench, Figure, median, percentile, real_stack
from tests.helpers import auth, expect

DECISIONS = int(os.environ.get("MINJU_BENCH_DECISIONS", "50"))
WARMUP = 5
DEPARTMENT = "parks"
SUPPORTS = 10
#: How many requests prepare cases at once.
CONCURRENCY = 16
#: The live waiting cases of `live-cases` (an environment variable, as `python -m bench` takes
#: only --seconds): creating 10,000 takes about 7 minutes on the shared 2-core machine (about
#: 24 cases/s, the worker's workflow tasks being the bound), the longest part of `make bench`.
LIVE_CASES = int(os.environ.get("MINJU_BENCH_LIVE_CASES", "10000"))
DECISION_GOAL = "≤ 1.5x the bare Update, with Postgres up to date when the API answers"
LIVE_GOAL = "≤ 1.2x the decision latency with none"


@workflow.defn(name="BenchNoop", sandboxed=False)
class NoopWorkflow:
    """Waits until told to stop; its Update does nothing."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    def noop(self) -> None:
        """Nothing."""

    @workflow.signal
    def stop(self) -> None:
        self._done = True


async def _gather_limited(count: int, make: Callable[[int], Awaitable[str]]) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> str:
        async with gate:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _status(db: asyncpg.Connection, proposal_id: str) -> str | None:
    status: str | None = await db.fetchval(
        "SELECT status FROM proposals WHERE id = $1", proposal_id
    )
    return status


async def _wait_status(
    db: asyncpg.Connection, ids: list[str], status: str, within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while True:
        reached = await db.fetchval(
            "SELECT count(*) FROM proposals WHERE id = ANY($1::text[]) AND status = $2",
            ids,
            status,
        )
        if reached == len(ids):
            return
        assert time.monotonic() < deadline, f"{reached} of {len(ids)} reached {status}"
        await asyncio.sleep(0.1)


async def _wait_projected(db: asyncpg.Connection, ids: list[str], within: float = 600) -> None:
    """Until every case's workflow has projected its submission (its first transition)."""
    deadline = time.monotonic() + within
    while True:
        pending = await db.fetchval(
            "SELECT count(*) FROM proposals WHERE id = ANY($1::text[]) AND projection_seq = 0",
            ids,
        )
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} of {len(ids)} never projected"
        await asyncio.sleep(0.5)


async def _propose(bench: Bench, http: httpx.AsyncClient) -> str:
    body = {"title": "Shade trees on Jong-ro", "body": "Plant 200 trees."}
    created = expect(await http.post("/v1/proposals", json=body, headers=auth(bench.token())), 201)
    return str(created["id"])


async def in_review(bench: Bench, db: asyncpg.Connection, count: int) -> list[str]:
    """`count` proposals in department review, assigned to DEPARTMENT."""
    http = bench.api.http
    admin = auth(bench.token("admin"))

    async def ripe(_: int) -> str:
        proposal_id = await _propose(bench, http)
        for _ in range(SUPPORTS):
            path = f"/v1/proposals/{proposal_id}/supports"
            expect(await http.post(path, headers=auth(bench.token())), 201)
        return proposal_id

    ids = await _gather_limited(count, ripe)
    await _wait_status(db, ids, "dept_review")

    async def assigned(i: int) -> str:
        body = {"department": DEPARTMENT, "note": "routed by the bench"}
        path = f"/v1/proposals/{ids[i]}/assign"
        expect(await http.post(path, json=body, headers=admin), 200)
        return ids[i]

    return await _gather_limited(count, assigned)


async def decide(bench: Bench, db: asyncpg.Connection, ids: list[str]) -> list[float]:
    """Accept each proposal in turn; the latency of each answer, checked against Postgres."""
    caseworker = auth(bench.token("caseworker", dept=DEPARTMENT))
    body = {"decision": "accept", "reason": "accept: within the department's remit"}
    latencies = []
    for proposal_id in ids:
        sent = time.perf_counter()
        answer = await bench.api.http.post(
            f"/v1/proposals/{proposal_id}/review", json=body, headers=caseworker
        )
        latencies.append(time.perf_counter() - sent)
        assert expect(answer, 200)["status"] == "committee_screening", answer.text
        projected = await _status(db, proposal_id)
        assert projected == "committee_screening", f"{proposal_id} is {projected} in Postgres"
    return latencies


async def bare_updates(bench: Bench, count: int) -> list[float]:
    """`count` no-op Updates, one on each of as many workflows, on a worker of this process."""
    client = bench.temporal
    assert client is not None
    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[NoopWorkflow]):
        handles = [
            await client.start_workflow(
                NoopWorkflow.run,
                id=f"bench-noop-{uuid.uuid4()}",
                task_queue=queue,
                execution_timeout=timedelta(hours=1),
            )
            for _ in range(count)
        ]
        latencies = []
        for handle in handles:
            sent = time.perf_counter()
            await handle.execute_update(NoopWorkflow.noop)
            latencies.append(time.perf_counter() - sent)
        for handle in handles:
            await handle.signal(NoopWorkflow.stop)
    return latencies


def _summary(latencies: list[float]) -> str:
    return (
        f"median {median(latencies) * 1000:.1f} ms, p90 {percentile(latencies, 90) * 1000:.1f} ms,"
        f" max {max(latencies) * 1000:.1f} ms over {len(latencies)}"
    )


def _tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running())


def _temporal_rss() -> int:
    """The Temporal dev server, a child of this process (like PostgreSQL and `minju up`)."""
    return sum(
        p.memory_info().rss
        for p in psutil.Process().children(recursive=True)
        if p.name() == "temporal" or "start-dev" in " ".join(p.cmdline())
    )


def _mib(rss: int) -> str:
    return f"{rss / 2**20:,.0f} MiB"


async def _connect(bench: Bench) -> asyncpg.Connection:
    return await asyncpg.connect(bench.database_url)


async def decisions(seconds: float) -> list[Figure]:
    async with real_stack() as bench:
        db = await _connect(bench)
        try:
            ids = await in_review(bench, db, WARMUP + DECISIONS)
            await bare_updates(bench, WARMUP)
            await decide(bench, db, ids[:WARMUP])
            bare = await bare_updates(bench, DECISIONS)
            decided = await decide(bench, db, ids[WARMUP:])
        finally:
            await db.close()
    return [
        Figure(
            what="caseworker decision (POST /v1/proposals/{id}/review), median",
            value=median(decided) * 1000,
            unit="ms",
            baseline_what="a bare no-op Update on the same server, median",
            baseline=median(bare) * 1000,
            goal=DECISION_GOAL,
            better="lower",
            details={
                "decision": _summary(decided) + "; every answer's status was in Postgres",
                "bare Update": _summary(bare),
                "p90 ratio": f"{percentile(decided, 90) / percentile(bare, 90):.2f}x",
            },
        )
    ]


async def live_cases(seconds: float) -> list[Figure]:
    async with real_stack() as bench:
        db = await _connect(bench)
        try:
            ids = await in_review(bench, db, WARMUP + 2 * DECISIONS)
            warm, alone, among = ids[:WARMUP], ids[WARMUP : WARMUP + DECISIONS], ids[-DECISIONS:]
            await decide(bench, db, warm)
            without = await decide(bench, db, alone)
            worker_before, temporal_before = _tree_rss(bench.pid), _temporal_rss()

            print(
                f"  creating {LIVE_CASES:,} live cases (about 24/s on 2 cores; "
                "MINJU_BENCH_LIVE_CASES=N for another count)",
                flush=True,
            )
            started = time.monotonic()
            live = await _gather_limited(LIVE_CASES, lambda _: _propose(bench, bench.api.http))
            await _wait_projected(db, live)
            created_in = time.monotonic() - started
            await asyncio.sleep(2)  # let the worker settle after the burst
            worker_after, temporal_after = _tree_rss(bench.pid), _temporal_rss()
            with_them = await decide(bench, db, among)
        finally:
            await db.close()
    return [
        Figure(
            what=f"decision median with {LIVE_CASES:,} live waiting cases",
            value=median(with_them) * 1000,
            unit="ms",
            baseline_what="the same decision with none",
            baseline=median(without) * 1000,
            goal=LIVE_GOAL,
            better="lower",
            details={
                "with them": _summary(with_them),
                "with none": _summary(without),
                "live cases": f"{LIVE_CASES:,} created over HTTP and projected in "
                f"{created_in:.0f} s ({LIVE_CASES / created_in:,.0f}/s); "
                "MINJU_BENCH_LIVE_CASES=N for another count",
                "worker + API RSS (minju up and children)": (
                    f"{_mib(worker_before)} with none, {_mib(worker_after)} with them"
                ),
                "Temporal dev server RSS": (
                    f"{_mib(temporal_before)} with none, {_mib(temporal_after)} with them"
                ),
            },
        )
    ]
