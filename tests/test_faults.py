"""Issue 6: the worker, the API, Postgres and the Temporal server killed mid-flow.

Each test runs its own stack (its database, its Temporal server, its worker and API) so that
it can SIGKILL one part while supports, ballots and decisions are in flight, start it again,
and check that:

- every request that got a success is reflected exactly once;
- every request that failed left nothing, or (in doubt: killed after its commit) a retry with
  the same Idempotency-Key returns the first result instead of writing a second row;
- no request got a 500: a backend that is down is a 503 with Retry-After;
- the case goes on afterwards.

The moment of each kill is made deterministic with locks held by the test: a row lock keeps
requests (or a projection) waiting before their commit, and the part is killed while they
wait; a request held until its client gives up, then let through, is committed with no one to
answer (in doubt). Clients re-send what failed with the same Idempotency-Key for up to
RETRY_PATIENCE_SECONDS, honouring Retry-After (capped at RETRY_AFTER_CAP to keep the tests
short). An idempotency record commits with its request's work or not at all, so no claim is
ever left behind by a request that died.

Each test prints one line (`pytest -s` shows it): `FAULTS <test>: faults injected, requests
sent` (the scenario's requests and retries, not the setup walking the cases to their stage),
`successes` (2xx), `failures` (anything else, expected 503s included), `rows lost` (2xx not
reflected in Postgres), `rows without a success` (rows no client got a 2xx for).

The time-skipping test server dying in simulated mode is `minju up`'s business
(tests/test_supervision.py): its workflows are gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest
import uvicorn
from temporalio.client import Client

import worker as worker_module
from api.app import create_app
from minju import stack
from minju.config import ClockMode, Settings
from minju.db import create_engine, migrate
from tests.helpers import Api, auth
from workflows.proposal import ProposalWorkflow

REPO = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-only-signing-key-not-for-production-use"
#: How long a part that was started again may take to carry a pending decision through.
RECOVERY_SECONDS = 30.0
#: How long a client keeps retrying a request that answered 503 or "still in progress".
RETRY_PATIENCE_SECONDS = 30.0
#: Retry-After is honoured up to this many seconds (to keep the tests short).
RETRY_AFTER_CAP = 1.0

_names = itertools.count()


# --------------------------------------------------------------------------------------------
# what a test counts and checks
# --------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What a test injected and sent, and what it found; printed as one line."""

    test: str
    faults: int = 0
    sent: int = 0
    successes: int = 0
    failures: int = 0
    lost: int = 0
    ghosts: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def outcome(self, result: httpx.Response | BaseException) -> None:
        self.sent += 1
        if isinstance(result, httpx.Response):
            name = str(result.status_code)
            if result.is_success:
                self.successes += 1
            else:
                self.failures += 1
        else:
            name = type(result).__name__
            self.failures += 1
        self.statuses[name] = self.statuses.get(name, 0) + 1

    def check(self, ok: bool, problem: str) -> bool:
        """Record a failed check and go on, so one run reports every defect it meets."""
        if not ok:
            self.problems.append(problem)
        return ok

    def verify(self) -> None:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        print(
            f"\nFAULTS {self.test}: faults injected {self.faults}, requests sent {self.sent}, "
            f"successes {self.successes}, failures {self.failures} ({outcomes}), "
            f"rows lost {self.lost}, rows without a success {self.ghosts}, "
            f"failed checks {len(self.problems)}"
        )
        assert not self.problems, "\n".join(f"- {p}" for p in self.problems)


@dataclass
class Call:
    """One client's creating request, sent with an Idempotency-Key and re-sent with it."""

    person: str
    headers: dict[str, str]
    path: str
    body: Any = None
    results: list[str] = field(default_factory=list)
    answer: httpx.Response | None = None  # the last 2xx

    @property
    def succeeded(self) -> bool:
        return self.answer is not None

    async def send(
        self, http: httpx.AsyncClient, ledger: Ledger, *, give_up_after: float = 60
    ) -> httpx.Response | None:
        result: httpx.Response | BaseException
        try:
            result = await http.post(
                self.path, json=self.body, headers=self.headers, timeout=give_up_after
            )
        except httpx.HTTPError as exc:
            result = exc
        ledger.outcome(result)
        if isinstance(result, httpx.Response):
            self.results.append(str(result.status_code))
            if result.is_success:
                self.answer = result
            elif result.status_code >= 500:
                _check_unavailable(ledger, result, f"POST {self.path} for {self.person}")
            return result
        self.results.append(type(result).__name__)
        return None

    async def settle(
        self, http: httpx.AsyncClient, ledger: Ledger, *, patience: float = RETRY_PATIENCE_SECONDS
    ) -> httpx.Response | None:
        """Re-send until a final answer: 503 and "still in progress" are worth waiting for."""
        deadline = time.monotonic() + patience
        while True:
            left = max(deadline - time.monotonic(), 1.0)
            response = await self.send(http, ledger, give_up_after=min(left, 60.0))
            if response is not None and not _retryable(response):
                return response
            if time.monotonic() > deadline:
                return response
            await asyncio.sleep(_retry_after(response))


def _retryable(response: httpx.Response) -> bool:
    if response.status_code == 503:
        return True
    return response.status_code == 409 and "in progress" in response.text


def _retry_after(response: httpx.Response | None) -> float:
    if response is None:
        return 0.2
    try:
        return min(float(response.headers.get("retry-after", RETRY_AFTER_CAP)), RETRY_AFTER_CAP)
    except ValueError:
        return RETRY_AFTER_CAP


def _runs(results: list[str]) -> str:
    """["409", "409", "409"] -> "409 x3"."""
    runs: list[tuple[str, int]] = []
    for r in results:
        if runs and runs[-1][0] == r:
            runs[-1] = (r, runs[-1][1] + 1)
        else:
            runs.append((r, 1))
    return ", ".join(r if n == 1 else f"{r} x{n}" for r, n in runs)


def _check_unavailable(ledger: Ledger, response: httpx.Response, what: str) -> None:
    """A failure while a backend is down must be a 503 problem with Retry-After, never a 500."""
    ok = (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and bool(response.headers.get("retry-after"))
    )
    ledger.check(
        ok,
        f"{what}: expected 503 problem+json with Retry-After, got {response.status_code} "
        f"{dict(response.headers)} {response.text[:300]}",
    )


async def _send_all(
    calls: Iterable[Call], http: httpx.AsyncClient, ledger: Ledger, *, give_up_after: float = 60
) -> None:
    await asyncio.gather(*(c.send(http, ledger, give_up_after=give_up_after) for c in calls))


async def _until(
    check: Callable[[], Awaitable[Any]], what: str, within: float, *, child: Child | None = None
) -> Any:
    """Poll `check` until it returns something true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if child is not None and child.proc.returncode is not None:
            raise AssertionError(
                f"{child.name} exited ({child.proc.returncode}):\n{child.log_tail()}"
            )
        assert time.monotonic() < deadline, f"{what} did not happen within {within:.0f}s"
        await asyncio.sleep(0.1)


async def _within(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    """Whether `check` holds within `within` seconds (errors count as "not yet")."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(Exception):
            if await check():
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------------------
# the parts: Temporal, worker and API, in this process or as killable processes
# --------------------------------------------------------------------------------------------


@dataclass
class Rig:
    """One test's Temporal server and settings; the database is the caller's."""

    settings: Settings
    temporal: Client
    server: stack.TemporalServer
    log_dir: Path


@contextlib.asynccontextmanager
async def rig(database_url: str, clock: ClockMode) -> AsyncIterator[Rig]:
    """The Temporal server of a `minju up` in that clock mode: the time-skipping test server
    (simulated), or the dev server on a SQLite file that survives a restart (real)."""
    log_dir = Path(tempfile.mkdtemp(prefix="minju-faults-", dir="/tmp"))
    if clock is ClockMode.SIMULATED:
        server = await stack.start_test_server(log_file=log_dir / "temporal.log")
    else:
        server = await stack.start_dev_server(
            log_dir / "temporal",
            port=stack.free_port(),
            ui_port=stack.free_port(),
            log_file=log_dir / "temporal.log",
        )
    settings = Settings(
        database_url=database_url,
        temporal_address=server.address,
        task_queue="minju-faults",
        jwt_secret=JWT_SECRET,
        dev_endpoints=True,
        clock_mode=clock,
    )
    try:
        client = await stack.connect_temporal(settings)
        yield Rig(settings=settings, temporal=client, server=server, log_dir=log_dir)
    finally:
        await server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


async def _test_database(postgres: stack.EmbeddedPostgres, template: str) -> str:
    name = f"minju_faults_{os.getpid()}_{next(_names)}"
    return await stack.ensure_database(postgres, name, template=template, recreate=True)


@contextlib.asynccontextmanager
async def in_process_worker(r: Rig) -> AsyncIterator[asyncio.Task[None]]:
    engine = create_engine(r.settings)
    worker = worker_module.create_worker(r.temporal, r.settings, engine)
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        if worker.is_running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.shutdown(), 15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()


@contextlib.asynccontextmanager
async def in_process_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API on uvicorn in this process. A request still hanging at the end does not hold
    up the teardown (graceful shutdown is bounded, then forced)."""
    port = stack.free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclass
class Child:
    """A part of minju run as its own process (`minju worker`, `minju api`), to be killed."""

    name: str
    proc: asyncio.subprocess.Process
    log_file: Path
    log: IO[bytes]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:]

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook, no `finally`, nothing flushed."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()
        self.log.close()


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "MINJU_TASK_QUEUE": settings.task_queue,
        "MINJU_JWT_SECRET": settings.jwt_secret,
        "MINJU_DEV_ENDPOINTS": "1" if settings.dev_endpoints else "0",
        "MINJU_CLOCK": settings.clock_mode.value,
    }


def _open_log(path: Path) -> IO[bytes]:
    return open(path, "ab")  # closed by Child.stop


@contextlib.asynccontextmanager
async def children(r: Rig) -> AsyncIterator[Callable[[str, list[str]], Awaitable[Child]]]:
    """Start `minju <args>` processes with the rig's settings; all stopped at the end."""
    started: list[Child] = []

    async def spawn(name: str, args: list[str]) -> Child:
        log_file = r.log_dir / f"{name}.log"
        log = _open_log(log_file)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "minju.cli",
            *args,
            cwd=REPO,
            env=_env(r.settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=stack._pdeathsig_preexec(),
        )
        child = Child(name, proc, log_file, log)
        started.append(child)
        return child

    try:
        yield spawn
    finally:
        for child in started:
            await child.stop()


async def start_worker(spawn: Callable[[str, list[str]], Awaitable[Child]], name: str) -> Child:
    """`minju worker`, as in production; returns once it polls."""
    child = await spawn(name, ["worker"])

    async def polling() -> bool:
        return "worker polling task queue" in child.log_tail()

    await _until(polling, f"{name} polling", 30, child=child)
    return child


async def start_api(
    spawn: Callable[[str, list[str]], Awaitable[Child]], name: str, port: int
) -> Child:
    """`minju api --port PORT`, as in production; returns once it answers."""
    child = await spawn(name, ["api", "--port", str(port)])

    async def answering() -> bool:
        async with httpx.AsyncClient() as http:
            try:
                await http.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except httpx.TransportError:
                return False
        return True

    await _until(answering, f"{name} answering", 30, child=child)
    return child


# --------------------------------------------------------------------------------------------
# Postgres: what the rows say, and locks that hold requests at a chosen point
# --------------------------------------------------------------------------------------------


async def _rows(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _value(url: str, sql: str, *args: Any) -> Any:
    rows = await _rows(url, sql, *args)
    return rows[0][0]


async def _lock_waiters(conn: asyncpg.Connection, event: str | None = None) -> int:
    """Backends of this database waiting for a lock (of kind `event`, e.g. 'advisory').

    Activity statistics are a snapshot taken once per transaction: take a fresh one."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND ($1::text IS NULL OR wait_event = $1)"
    )
    return int(await conn.fetchval(sql, event))


async def _supporters(url: str, proposal_id: str) -> list[str]:
    rows = await _rows(url, "SELECT person_id FROM supports WHERE proposal_id = $1", proposal_id)
    return [r[0] for r in rows]


async def _voters(url: str, proposal_id: str) -> list[str]:
    rows = await _rows(
        url,
        "SELECT person_id FROM ballot_participations WHERE box_id = $1",
        f"proposal:{proposal_id}",
    )
    return [r[0] for r in rows]


async def _choices(url: str, proposal_id: str) -> dict[str, str]:
    rows = await _rows(
        url,
        "SELECT receipt, option FROM ballot_choices WHERE box_id = $1",
        f"proposal:{proposal_id}",
    )
    return {r[0]: r[1] for r in rows}


async def _support_count(url: str, proposal_id: str) -> int:
    return int(await _value(url, "SELECT support_count FROM proposals WHERE id = $1", proposal_id))


# --------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------


async def _people(api: Api, prefix: str, n: int) -> list[tuple[str, dict[str, str]]]:
    subs = [f"{prefix}-{i:02d}" for i in range(n)]
    tokens = await asyncio.gather(*(api.token(sub) for sub in subs))
    return [(sub, auth(token)) for sub, token in zip(subs, tokens, strict=True)]


def _supports(people: list[tuple[str, dict[str, str]]], proposal_id: str, tag: str) -> list[Call]:
    return [
        Call(
            person=sub,
            headers={**who, "Idempotency-Key": f"support-{tag}-{sub}"},
            path=f"/v1/proposals/{proposal_id}/supports",
        )
        for sub, who in people
    ]


def _ballots(people: list[tuple[str, dict[str, str]]], proposal_id: str, tag: str) -> list[Call]:
    return [
        Call(
            person=sub,
            headers={**who, "Idempotency-Key": f"ballot-{tag}-{sub}"},
            path=f"/v1/proposals/{proposal_id}/ballots",
            body={"choice": "yes" if i % 3 else "no"},
        )
        for i, (sub, who) in enumerate(people)
    ]


async def _assigned(api: Api, department: str = "parks") -> dict[str, Any]:
    proposal = await api.to_review()
    await api.assign(proposal["id"], department)
    return proposal


def _events(timeline: list[dict[str, Any]]) -> list[str]:
    return [t["event"] for t in timeline]


async def _check_accepted_once(ledger: Ledger, api: Api, proposal_id: str) -> None:
    """The review decision is in the timeline once, and so is the stage it leads to."""
    timeline = await api.timeline(proposal_id)
    events = _events(timeline)
    ledger.check(events.count("review_accepted") == 1, f"review_accepted not once: {events}")
    stages = [t["stage"] for t in timeline]
    ledger.check(
        stages.count("committee_screening") == 1, f"committee_screening not once: {stages}"
    )


async def _check_rows(
    ledger: Ledger,
    url: str,
    *,
    supports: tuple[str, list[Call]] | None = None,
    ballots: tuple[str, list[Call]] | None = None,
) -> None:
    """Every success reflected exactly once, nothing else: one support / one participation per
    person who got a 2xx, none for the others; one choice per receipt handed out, no other."""
    if supports is not None:
        pid, calls = supports
        rows = await _supporters(url, pid)
        ok = {c.person for c in calls if c.succeeded}
        lost = ok - set(rows)
        ledger.lost += len(lost)
        ledger.check(not lost, f"supports answered 2xx but not in the table: {sorted(lost)}")
        ghosts = set(rows) - ok
        ledger.ghosts += len(ghosts)
        ledger.check(not ghosts, f"supports in the table that no client got a 2xx for: {ghosts}")
        ledger.check(len(rows) == len(set(rows)), f"a person supports twice: {sorted(rows)}")
        count = await _support_count(url, pid)
        ledger.check(count == len(rows), f"support_count {count} != {len(rows)} support rows")
        answered = [c.answer.json()["support_count"] for c in calls if c.answer is not None]
        ledger.check(
            len(answered) == len(set(answered)),
            f"two supports were answered with the same count: {sorted(answered)}",
        )
    if ballots is not None:
        pid, calls = ballots
        voters = await _voters(url, pid)
        choices = await _choices(url, pid)
        ok = {c.person for c in calls if c.succeeded}
        lost = ok - set(voters)
        ledger.lost += len(lost)
        ledger.check(not lost, f"ballots answered 201 but no participation row: {sorted(lost)}")
        ghosts = set(voters) - ok
        ledger.ghosts += len(ghosts)
        ledger.check(not ghosts, f"participations no client got a 201 for: {sorted(ghosts)}")
        ledger.check(
            len(voters) == len(choices),
            f"{len(voters)} participations but {len(choices)} choices",
        )
        receipts = {c.answer.json()["receipt"]: c for c in calls if c.answer is not None}
        missing = set(receipts) - set(choices)
        ledger.lost += len(missing)
        ledger.check(not missing, f"receipts handed out with no choice row: {sorted(missing)}")
        orphans = set(choices) - set(receipts)
        ledger.check(not orphans, f"choices whose receipt no client holds: {len(orphans)}")
        wrong = [r for r, c in receipts.items() if r in choices and choices[r] != c.body["choice"]]
        ledger.check(not wrong, f"choices that differ from what was cast: {wrong}")


# --------------------------------------------------------------------------------------------
# 1. the worker
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clock", [ClockMode.SIMULATED, ClockMode.REAL], ids=lambda c: c.value)
async def test_worker_killed_between_decisions(
    postgres: stack.EmbeddedPostgres, template_database: str, clock: ClockMode
) -> None:
    """`minju worker` is SIGKILLed after a case's assignment; a review decision is sent while no
    worker runs; a fresh worker is started. The decision completes, once, and the case goes on.
    """
    ledger = Ledger(f"worker_killed_between_decisions[{clock.value}]")
    url = await _test_database(postgres, template_database)
    async with (
        rig(url, clock) as r,
        children(r) as spawn,
        in_process_api(r.settings) as http,
    ):
        api = Api(http)
        first_worker = await start_worker(spawn, "worker-1")
        proposal = await _assigned(api)
        pid = proposal["id"]
        handle = r.temporal.get_workflow_handle(proposal["workflow_id"])

        await first_worker.kill()
        ledger.faults += 1
        caseworker = await api.official("caseworker", "parks")
        review = Call(
            person="caseworker",
            headers={**caseworker, "Idempotency-Key": "review-after-worker-death"},
            path=f"/v1/proposals/{pid}/review",
            body={"decision": "accept", "reason": "meets the criteria"},
        )
        # No worker: the decision cannot be taken; the client gives up after 5 s.
        await review.send(http, ledger, give_up_after=5)
        ledger.check(not review.succeeded, "a decision succeeded with no worker running")
        ledger.check(
            (await api.get(pid))["status"] == "dept_review", "the status moved with no worker"
        )

        await start_worker(spawn, "worker-2")
        started = time.monotonic()
        await review.settle(http, ledger, patience=RECOVERY_SECONDS)
        took = time.monotonic() - started
        if ledger.check(
            review.succeeded,
            f"with a fresh worker the pending decision did not complete within "
            f"{RECOVERY_SECONDS:.0f}s (client saw {_runs(review.results)})",
        ):
            ledger.check(
                review.answer is not None
                and review.answer.json()["status"] == "committee_screening",
                f"the decision answered {review.answer and review.answer.text[:200]}",
            )
            await _check_accepted_once(ledger, api, pid)
            state = await asyncio.wait_for(handle.query(ProposalWorkflow.state), 10)
            ledger.check(
                state.status.value == (await api.get(pid))["status"],
                f"workflow {state.status} != row {(await api.get(pid))['status']}",
            )
            # The case goes on with the fresh worker.
            screened = await api.screen(pid)
            ledger.outcome(screened)
            ledger.check(screened.status_code == 200, f"screening: {screened.text[:300]}")
        print(f"\nworker_killed_between_decisions[{clock.value}]: recovered in {took:.1f}s")
    ledger.verify()


async def test_worker_killed_while_a_decision_is_recorded(
    postgres: stack.EmbeddedPostgres, template_database: str
) -> None:
    """`minju worker` is SIGKILLed while the projection of an accepted review decision is
    running (a row lock held by the test keeps it waiting); a fresh worker is started. The
    decision's projection lands, the client retrying with the same Idempotency-Key gets 200,
    the timeline holds the decision once, and the case goes on. On the dev server (real clock),
    so that this is not also the simulated case of the test above."""
    ledger = Ledger("worker_killed_while_a_decision_is_recorded")
    url = await _test_database(postgres, template_database)
    async with (
        rig(url, ClockMode.REAL) as r,
        children(r) as spawn,
        in_process_api(r.settings) as http,
    ):
        api = Api(http)
        first_worker = await start_worker(spawn, "worker-1")
        proposal = await _assigned(api)
        pid = proposal["id"]
        handle = r.temporal.get_workflow_handle(proposal["workflow_id"])
        caseworker = await api.official("caseworker", "parks")
        review = Call(
            person="caseworker",
            headers={**caseworker, "Idempotency-Key": "review-during-worker-death"},
            path=f"/v1/proposals/{pid}/review",
            body={"decision": "accept", "reason": "meets the criteria"},
        )
        lock = await asyncpg.connect(url)
        try:
            hold = lock.transaction()
            await hold.start()
            await lock.execute("SELECT id FROM proposals WHERE id = $1 FOR UPDATE", pid)
            first = asyncio.create_task(review.send(http, ledger))

            async def accepted_and_recording() -> bool:
                state = await handle.query(ProposalWorkflow.state)
                return state.status.value == "committee_screening" and (
                    await _lock_waiters(lock) >= 1
                )

            await _until(accepted_and_recording, "the decision accepted, its projection held", 20)
            await first_worker.kill()
            ledger.faults += 1
            await hold.rollback()
        finally:
            await lock.close()
        ledger.check(
            (await api.get(pid))["status"] == "dept_review",
            "the killed worker's projection landed anyway",
        )

        await start_worker(spawn, "worker-2")
        started = time.monotonic()

        async def recorded() -> bool:
            return bool((await api.get(pid))["status"] == "committee_screening")

        landed = await _within(recorded, RECOVERY_SECONDS)
        took = time.monotonic() - started
        ledger.check(
            landed,
            f"the accepted decision was not recorded within {RECOVERY_SECONDS:.0f}s of a fresh "
            "worker starting",
        )
        first_answer = await asyncio.wait_for(first, 60)
        if first_answer is not None and first_answer.status_code == 503:
            detail = first_answer.json().get("detail", "")
            ledger.check(
                "nothing was changed" not in detail,
                f"an accepted decision answered 503 saying {detail!r}: it was taken, only not "
                "recorded yet",
            )
        if landed:
            await review.settle(http, ledger)
            ledger.check(
                review.answer is not None
                and review.answer.json()["status"] == "committee_screening",
                f"the retried decision answered {_runs(review.results)}",
            )
            await _check_accepted_once(ledger, api, pid)
            state = await asyncio.wait_for(handle.query(ProposalWorkflow.state), 10)
            row = await api.get(pid)
            ledger.check(state.status.value == row["status"], f"{state.status} != {row}")
            screened = await api.screen(pid)
            ledger.outcome(screened)
            ledger.check(screened.status_code == 200, f"screening: {screened.text[:300]}")
        print(f"\nworker_killed_while_a_decision_is_recorded: recorded after {took:.1f}s")
    ledger.verify()


# --------------------------------------------------------------------------------------------
# 2. the API
# --------------------------------------------------------------------------------------------


async def test_api_killed_with_supports_and_ballots_in_flight(
    postgres: stack.EmbeddedPostgres, template_database: str
) -> None:
    """`minju api` is SIGKILLed with supports and ballots in flight: some answered, some
    committed but not answered (held by a row lock until their clients gave up), some not
    committed (held by a row lock at the kill), more sent while it is down. It is started again
    on the same database, and every client re-sends what failed with the same Idempotency-Key:
    in the end every person has exactly one support and one ballot, each 2xx is reflected
    once, and each receipt handed out names exactly one choice row."""
    ledger = Ledger("api_killed_with_supports_and_ballots_in_flight")
    url = await _test_database(postgres, template_database)
    async with (
        rig(url, ClockMode.SIMULATED) as r,
        in_process_worker(r),
        in_process_api(r.settings) as setup_http,
        children(r) as spawn,
    ):
        api = Api(setup_http)
        supported = (await api.propose(await api.citizen()))["id"]
        voted = (await api.to_vote())["id"]
        port = stack.free_port()
        api_process = await start_api(spawn, "api-1", port)
        # At most 16 requests held at once: the API's pool has 20 connections.
        people = await _people(api, "person", 24)
        answered = _supports(people[:12], supported, "a") + _ballots(people[:8], voted, "a")
        committed = _supports(people[12:16], supported, "b") + _ballots(people[8:12], voted, "b")
        uncommitted = _supports(people[16:20], supported, "c") + _ballots(people[12:16], voted, "c")
        while_down = _supports(people[20:], supported, "d") + _ballots(people[16:20], voted, "d")
        everyone = answered + committed + uncommitted + while_down

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            await _send_all(answered, http, ledger)
            assert all(c.succeeded for c in answered), [c.results for c in answered]
            # The 10th support crossed the threshold: wait for its transition to be recorded,
            # so that no projection competes for the locks below.
            await api.wait_status(supported, "dept_review")

            lock = await asyncpg.connect(url)
            try:
                # In doubt: held by a row lock until their clients give up, then committed
                # with no one to answer. Only a retry with the same key can tell them apart.
                hold = lock.transaction()
                await hold.start()
                await lock.execute(
                    "SELECT id FROM proposals WHERE id = ANY($1::text[]) FOR UPDATE",
                    [supported, voted],
                )
                await _send_all(committed, http, ledger, give_up_after=2)
                await hold.rollback()
                ledger.check(
                    not any(c.succeeded for c in committed),
                    "a request held past its client's patience was answered",
                )

                async def committed_unanswered() -> bool:
                    supporters = set(await _supporters(url, supported))
                    voters = set(await _voters(url, voted))
                    return all(
                        c.person in (supporters if c.path.endswith("/supports") else voters)
                        for c in committed
                    )

                await _until(committed_unanswered, "the unanswered requests to commit", 20)
                hold = lock.transaction()
                await hold.start()
                await lock.execute(
                    "SELECT id FROM proposals WHERE id = ANY($1::text[]) FOR UPDATE",
                    [supported, voted],
                )
                phase_c = [asyncio.create_task(c.send(http, ledger)) for c in uncommitted]

                async def settled_before_commit() -> bool:
                    held = await _lock_waiters(lock)
                    return held + sum(t.done() for t in phase_c) == len(uncommitted)

                await _until(settled_before_commit, "requests held before their commit", 20)
                held_before = await _lock_waiters(lock)
                await api_process.kill()
                ledger.faults += 1
                await asyncio.gather(*phase_c)
                await _send_all(while_down, http, ledger, give_up_after=5)
                await hold.rollback()
            finally:
                await lock.close()
            failed = [c for c in everyone if not c.succeeded]
            await _until(lambda: _no_lock_waiters(url), "the killed API's sessions to end", 20)

            # Nothing of what was not committed is there.
            supporters = set(await _supporters(url, supported))
            voters = set(await _voters(url, voted))
            for c in uncommitted + while_down:
                rows = supporters if c.path.endswith("/supports") else voters
                ledger.check(
                    c.succeeded or c.person not in rows,
                    f"{c.path} for {c.person} failed before its commit but left a row",
                )
            claims = await _value(
                url, "SELECT count(*) FROM idempotency_keys WHERE status_code = 0"
            )
            ledger.check(claims == 0, f"{claims} idempotency claims left by the dead process")

            await start_api(spawn, "api-2", port)
            await asyncio.gather(*(c.settle(http, ledger) for c in failed))
            for c in failed:
                ledger.check(
                    c.succeeded,
                    f"re-sent with its Idempotency-Key after the restart, {c.path} for "
                    f"{c.person} never succeeded within {RETRY_PATIENCE_SECONDS:.0f}s: "
                    f"{_runs(c.results)}",
                )
            await _check_rows(
                ledger,
                url,
                supports=(supported, [c for c in everyone if c.path.endswith("/supports")]),
                ballots=(voted, [c for c in everyone if c.path.endswith("/ballots")]),
            )
            events = _events(await api.timeline(supported))
            ledger.check(
                events.count("support_threshold_reached") == 1,
                f"threshold not crossed exactly once: {events}",
            )
            # The case goes on, through the restarted API.
            admin = await api.official("admin")
            assigned = await http.post(
                f"/v1/proposals/{supported}/assign",
                json={"department": "parks", "note": "after the restart"},
                headers=admin,
            )
            ledger.outcome(assigned)
            ledger.check(assigned.status_code == 200, f"assign: {assigned.text[:300]}")
        print(
            f"\napi_killed: {len(answered)} answered before the kill, {len(committed)} "
            f"committed after their clients gave up; at the kill {held_before} held before "
            "their commit; "
            f"{len(while_down)} sent while it was down; {len(failed)} failed and were re-sent; "
            f"in-progress idempotency claims left by the dead process: {claims}"
        )
    ledger.verify()


async def _no_lock_waiters(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return await _lock_waiters(conn) == 0
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# 3. Postgres
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def dedicated_postgres() -> AsyncIterator[tuple[stack.EmbeddedPostgres, str]]:
    """An embedded Postgres of the test's own (to be killed), with a migrated database."""
    data_dir = Path(tempfile.mkdtemp(prefix="minju-faults-pg-", dir="/tmp")) / "pg"
    pg = await asyncio.to_thread(stack.start_postgres, data_dir, ephemeral=True)
    try:
        url = await stack.ensure_database(pg, "minju_faults")
        await migrate(Settings(database_url=url))
        yield pg, url
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def _get(http: httpx.AsyncClient, path: str, ledger: Ledger) -> httpx.Response | None:
    try:
        response = await http.get(path)
    except httpx.HTTPError as exc:
        ledger.outcome(exc)
        ledger.check(False, f"GET {path}: {type(exc).__name__}")
        return None
    ledger.outcome(response)
    return response


async def test_postgres_killed_mid_flow() -> None:
    """The postmaster of the stack's Postgres is SIGKILLed while a review decision's
    projection and supports and ballots wait on row locks. While it is down, supports, ballots,
    reads, a new proposal and a decision answer 503 with Retry-After (never 500). It is started
    again on the same data dir: nothing that failed left a row, every client's retry with its
    Idempotency-Key succeeds once, the pending decision's projection lands and agrees with the
    workflow, and the cases go on."""
    ledger = Ledger("postgres_killed_mid_flow")
    async with (
        dedicated_postgres() as (pg, url),
        rig(url, ClockMode.SIMULATED) as r,
        in_process_worker(r),
        in_process_api(r.settings) as http,
    ):
        api = Api(http)
        decided = await _assigned(api)
        did = decided["id"]
        supported = (await api.propose(await api.citizen()))["id"]
        voted = (await api.to_vote())["id"]
        people = await _people(api, "person", 13)
        before = _supports(people[:3], supported, "a") + _ballots(people[:3], voted, "a")
        in_flight = _supports(people[3:6], supported, "b") + _ballots(people[3:6], voted, "b")
        while_down = _supports(people[6:9], supported, "c") + _ballots(people[6:9], voted, "c")
        after = _supports(people[9:], supported, "d") + _ballots(people[9:], voted, "d")
        citizen = await api.citizen()
        created = Call(
            person="proposer",
            headers={**citizen, "Idempotency-Key": "proposal-while-postgres-is-down"},
            path="/v1/proposals",
            body={"title": "Made while Postgres was down", "body": "A bench."},
        )
        review = Call(
            person="caseworker",
            headers={
                **await api.official("caseworker", "parks"),
                "Idempotency-Key": "review-while-postgres-dies",
            },
            path=f"/v1/proposals/{did}/review",
            body={"decision": "accept", "reason": "meets the criteria"},
        )
        committee = await api.official("committee")
        screening = Call(
            person="committee",
            headers={**committee, "Idempotency-Key": "screening-while-postgres-is-down"},
            path=f"/v1/proposals/{did}/screening",
            body={
                "decision": "advance",
                "scores": {"necessity": 8, "changeability": 7, "feasibility": 6, "impact": 9},
                "note": "first review",
            },
        )
        await _send_all(before, http, ledger)
        assert all(c.succeeded for c in before), [c.results for c in before]
        handle = r.temporal.get_workflow_handle(decided["workflow_id"])

        lock = await asyncpg.connect(url)
        monitor = await asyncpg.connect(url)
        hold = lock.transaction()
        await hold.start()
        await lock.execute(
            "SELECT id FROM proposals WHERE id = ANY($1::text[]) FOR UPDATE",
            [did, supported, voted],
        )
        first = asyncio.create_task(review.send(http, ledger))

        async def accepted_and_recording() -> bool:
            state = await handle.query(ProposalWorkflow.state)
            return state.status.value == "committee_screening" and (
                await _lock_waiters(monitor) == 1
            )

        await _until(accepted_and_recording, "the decision accepted, its projection held", 20)
        held = [asyncio.create_task(c.send(http, ledger)) for c in in_flight]

        async def all_held() -> bool:
            waiting = await _lock_waiters(monitor) - 1
            return waiting + sum(t.done() for t in held) == len(in_flight)

        await _until(all_held, "supports and ballots held before their commit", 20)
        assert pg.pid is not None
        os.kill(pg.pid, signal.SIGKILL)
        ledger.faults += 1
        killed_at = time.monotonic()
        for conn in (lock, monitor):
            conn.terminate()
        await asyncio.gather(*held)
        for c in in_flight:
            ledger.check(not c.succeeded, f"{c.path} for {c.person} succeeded after the kill")

        # While it is down: everything that needs Postgres is a 503 with Retry-After.
        outage = [
            _send_all(while_down, http, ledger),
            created.send(http, ledger),
            screening.send(http, ledger),
        ]
        reads = [
            f"/v1/proposals/{supported}",
            f"/v1/proposals/{supported}/timeline",
            "/v1/proposals?limit=5",
            "/healthz",
        ]
        read_answers = await asyncio.gather(*(_get(http, path, ledger) for path in reads), *outage)
        for path, response in zip(reads, read_answers, strict=False):
            if response is not None and path != "/healthz":
                _check_unavailable(ledger, response, f"GET {path} while Postgres is down")
            elif response is not None:
                ledger.check(response.status_code == 503, f"/healthz: {response.text}")
        for c in [*while_down, created, screening]:
            ledger.check(not c.succeeded, f"{c.path} succeeded while Postgres was down")
        down_for = time.monotonic() - killed_at

        await asyncio.to_thread(pg.restart)

        # Nothing that failed left a row.
        supporters = set(await _supporters(url, supported))
        voters = set(await _voters(url, voted))
        for c in in_flight + while_down:
            rows = supporters if c.path.endswith("/supports") else voters
            ledger.check(
                c.succeeded or c.person not in rows,
                f"{c.path} for {c.person} failed but left a row",
            )
        ledger.check(
            await _value(
                url, "SELECT count(*) FROM proposals WHERE title = $1", created.body["title"]
            )
            == 0,
            "the proposal that failed while Postgres was down left a row",
        )
        claims = await _value(url, "SELECT count(*) FROM idempotency_keys WHERE status_code = 0")
        ledger.check(claims == 0, f"{claims} idempotency claims left by failed requests")

        # The decision accepted before the kill: its projection lands and agrees with the
        # workflow; its request, retried with the same key, returns it.
        first_answer = await asyncio.wait_for(first, 60)
        if first_answer is not None and first_answer.status_code == 503:
            detail = first_answer.json().get("detail", "")
            ledger.check(
                "nothing was changed" not in detail,
                f"an accepted decision answered 503 saying {detail!r}: it was taken, only not "
                "recorded yet",
            )
        await review.settle(http, ledger)
        ledger.check(
            review.answer is not None and review.answer.json()["status"] == "committee_screening",
            f"the decision's retry: {_runs(review.results)}",
        )
        await _check_accepted_once(ledger, api, did)
        # A decision the workflow took while Postgres was away (its request answered 503,
        # "accepted but not recorded yet") lands at the projection's next retry (at most 10 s
        # of backoff): from then on the row and the workflow agree.
        names = ("status", "department", "decision_reason", "supports_open", "overdue")

        async def disagreements() -> list[str]:
            state = await handle.query(ProposalWorkflow.state)
            row = await api.get(did)
            found = []
            for name in names:
                ours = getattr(state, name)
                ours = ours.value if name == "status" else ours
                if ours != row[name]:
                    found.append(f"workflow {name} {ours!r} != row {row[name]!r}")
            return found

        async def agree() -> bool:
            return not await disagreements()

        if not await _within(agree, RECOVERY_SECONDS):
            for problem in await disagreements():
                ledger.check(False, f"{RECOVERY_SECONDS:.0f}s after the restart: {problem}")

        # Every client re-sends what failed, with its key; new requests succeed.
        await asyncio.gather(*(c.settle(http, ledger) for c in [*in_flight, *while_down]))
        await created.settle(http, ledger)
        await screening.settle(http, ledger)
        for c in [*in_flight, *while_down, created, screening]:
            ledger.check(
                c.succeeded,
                f"re-sent with its Idempotency-Key after the restart, {c.path} for {c.person} "
                f"never succeeded within {RETRY_PATIENCE_SECONDS:.0f}s: {_runs(c.results)}",
            )
        await _send_all(after, http, ledger)
        for c in after:
            ledger.check(c.succeeded, f"{c.path} after the restart: {_runs(c.results)}")
        for path in reads[:3]:
            response = await _get(http, path, ledger)
            ledger.check(response is not None and response.status_code == 200, f"GET {path} after")
        await _check_rows(
            ledger,
            url,
            supports=(
                supported,
                [c for c in before + in_flight + while_down + after if "sup" in c.path],
            ),
            ballots=(
                voted,
                [c for c in before + in_flight + while_down + after if "ball" in c.path],
            ),
        )
        ledger.check(
            await _value(
                url, "SELECT count(*) FROM proposals WHERE title = $1", created.body["title"]
            )
            == (1 if created.succeeded else 0),
            "the retried proposal is not there exactly once",
        )
        # The case goes on: 13 supports crossed the threshold after the restart.
        if all(c.succeeded for c in in_flight + while_down if "sup" in c.path):

            async def reviewed() -> bool:
                return bool((await api.get(supported))["status"] == "dept_review")

            ledger.check(await _within(reviewed, 20), "the supported proposal did not go on")
        print(
            f"\npostgres_killed: down for {down_for:.1f}s; in-progress idempotency claims left "
            f"by requests that failed: {claims}"
        )
    ledger.verify()


# --------------------------------------------------------------------------------------------
# 4. the Temporal server
# --------------------------------------------------------------------------------------------


async def test_temporal_server_killed_mid_flow(
    postgres: stack.EmbeddedPostgres, template_database: str
) -> None:
    """The Temporal dev server (as `minju up` runs it, on a SQLite file) is SIGKILLed. While it
    is down, a new proposal and a decision answer 503 with Retry-After and write nothing;
    supports still succeed, the one crossing the threshold included, and ballots too. Once it
    is restarted on the same file, the relay delivers the threshold's signal (the proposal
    reaches dept_review with no further request), retries with the same Idempotency-Key
    succeed once, and the cases go on."""
    ledger = Ledger("temporal_server_killed_mid_flow")
    url = await _test_database(postgres, template_database)
    async with (
        rig(url, ClockMode.REAL) as r,
        in_process_worker(r) as worker_task,
        in_process_api(r.settings) as http,
    ):
        api = Api(http)
        decided = await _assigned(api)
        did = decided["id"]
        supported = await api.propose(await api.citizen())
        sid = supported["id"]
        voted = (await api.to_vote())["id"]
        people = await _people(api, "person", 12)
        before = _supports(people[:9], sid, "a")
        during = _supports(people[9:], sid, "b") + _ballots(people[:6], voted, "b")
        after = _ballots(people[6:], voted, "c")
        await _send_all(before, http, ledger)
        assert all(c.succeeded for c in before), [c.results for c in before]
        created = Call(
            person="proposer",
            headers={**await api.citizen(), "Idempotency-Key": "proposal-while-temporal-is-down"},
            path="/v1/proposals",
            body={"title": "Made while Temporal was down", "body": "A bench."},
        )
        review = Call(
            person="caseworker",
            headers={
                **await api.official("caseworker", "parks"),
                "Idempotency-Key": "review-while-temporal-is-down",
            },
            path=f"/v1/proposals/{did}/review",
            body={"decision": "accept", "reason": "meets the criteria"},
        )
        timeline_before = await api.timeline(did)
        proposals_before = await _value(url, "SELECT count(*) FROM proposals")

        r.server.kill_now()
        ledger.faults += 1
        await _until(
            lambda: asyncio.sleep(0, r.server.exit_code is not None), "the server to die", 10
        )
        killed_at = time.monotonic()
        await asyncio.gather(
            created.send(http, ledger),
            review.send(http, ledger),
            _send_all(during, http, ledger),
        )
        outage_answers = time.monotonic() - killed_at
        for c in (created, review):
            ledger.check(not c.succeeded, f"{c.path} succeeded while Temporal was down")
        for c in during:
            ledger.check(
                c.succeeded, f"{c.path} for {c.person} needs only Postgres: {_runs(c.results)}"
            )
        for path in (f"/v1/proposals/{sid}", f"/v1/proposals/{did}/timeline"):
            response = await _get(http, path, ledger)
            ledger.check(response is not None and response.status_code == 200, f"GET {path}")
        ledger.check(
            await _value(url, "SELECT count(*) FROM proposals") == proposals_before,
            "a proposal row was written while its workflow could not be started",
        )
        ledger.check(await api.timeline(did) == timeline_before, "the decision left a trace")
        ledger.check(
            (await api.get(sid))["support_count"] == 12, "the supports are not all counted"
        )
        pending = await _value(
            url, "SELECT count(*) FROM pending_signals WHERE workflow_id = $1", f"proposal-{sid}"
        )
        ledger.check(pending == 1, f"{pending} pending signals for the threshold")

        await r.server.restart()
        restarted_at = time.monotonic()

        async def reviewed() -> bool:
            return bool((await api.get(sid))["status"] == "dept_review")

        delivered = await _within(reviewed, RECOVERY_SECONDS)
        relay_took = time.monotonic() - restarted_at
        ledger.check(delivered, "the threshold's signal was not delivered after the restart")
        events = _events(await api.timeline(sid))
        ledger.check(
            events.count("support_threshold_reached") == 1,
            f"threshold not crossed exactly once: {events}",
        )
        ledger.check(
            await _value(url, "SELECT count(*) FROM pending_signals") == 0,
            "a pending signal is left after its delivery",
        )
        await created.settle(http, ledger)
        await review.settle(http, ledger)
        ledger.check(created.succeeded, f"the proposal's retry: {_runs(created.results)}")
        ledger.check(
            review.answer is not None and review.answer.json()["status"] == "committee_screening",
            f"the decision's retry: {_runs(review.results)}",
        )
        ledger.check(
            await _value(
                url, "SELECT count(*) FROM proposals WHERE title = $1", created.body["title"]
            )
            == 1,
            "the retried proposal is not there exactly once",
        )
        if created.answer is not None:
            new_id = created.answer.json()["id"]

            async def submitted() -> bool:
                return "submitted" in _events(await api.timeline(new_id))

            ledger.check(await _within(submitted, 20), "the new proposal's workflow is not running")
        await _check_accepted_once(ledger, api, did)
        # The cases go on.
        await _send_all(after, http, ledger)
        screened = await api.screen(did)
        ledger.outcome(screened)
        ledger.check(screened.status_code == 200, f"screening after: {screened.text[:300]}")
        assigned = await api.post(
            f"/v1/proposals/{sid}/assign", await api.official("admin"), {"department": "roads"}
        )
        ledger.outcome(assigned)
        ledger.check(assigned.status_code == 200, f"assign after: {assigned.text[:300]}")
        ledger.check(not worker_task.done(), "the worker did not survive the outage")
        await _check_rows(
            ledger,
            url,
            supports=(sid, before + [c for c in during if "sup" in c.path]),
            ballots=(voted, [c for c in during + after if "ball" in c.path]),
        )
        print(
            f"\ntemporal_killed: outage requests answered in {outage_answers:.1f}s; the relay "
            f"delivered the threshold {relay_took:.1f}s after the restart"
        )
    ledger.verify()
