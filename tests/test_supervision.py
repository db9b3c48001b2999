"""`minju up` keeps its parts running: kill -9 a server and it comes back with its data, or,
for the stateless time-skipping test server, everything stops loudly; ports of a stopped run
can be used again at once."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from minju import cli, stack
from minju.cli import RESTART_BACKOFF, RESTART_WINDOW, _RestartBudget
from minju.config import Settings
from tests.test_cli_up import Up, _assert_clean_exit, _leftovers, minju_up
from tests.test_cli_up import data_dir as data_dir  # the fixture

RECOVERY_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


async def _citizen(http: httpx.AsyncClient, up: Up) -> dict[str, str]:
    resp = await http.post(
        f"{up.base}/v1/dev/tokens",
        json={"sub": "citizen-1", "role": "citizen", "residency": "resident"},
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


async def _propose(
    http: httpx.AsyncClient, up: Up, auth: dict[str, str], title: str
) -> dict[str, str]:
    resp = await http.post(
        f"{up.base}/v1/proposals", json={"title": title, "body": "a bench"}, headers=auth
    )
    assert resp.status_code == 201, resp.text
    proposal: dict[str, str] = resp.json()
    return proposal


async def _wait_submitted(http: httpx.AsyncClient, up: Up, proposal_id: str) -> None:
    """Until the proposal's workflow has recorded its "submitted" timeline entry."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    events: list[str] = []
    while time.monotonic() < deadline:
        resp = await http.get(f"{up.base}/v1/proposals/{proposal_id}/timeline")
        if resp.status_code == 200:
            events = [item["event"] for item in resp.json()["items"]]
            if "submitted" in events:
                return
        await asyncio.sleep(0.2)
    pytest.fail(f"no 'submitted' entry within {RECOVERY_TIMEOUT}s ({events}):\n{up.output()}")


async def _wait_health(http: httpx.AsyncClient, up: Up, status: int, within: float) -> float:
    """Until /healthz answers `status`; the seconds that took."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < within:
        if up.proc.poll() is not None:
            pytest.fail(f"minju up exited with {up.proc.returncode}:\n{up.output()}")
        try:
            resp = await http.get(f"{up.base}/healthz")
            if resp.status_code == status:
                return time.monotonic() - started
            last = f"{resp.status_code} {resp.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    pytest.fail(f"/healthz not {status} within {within}s (last: {last}):\n{up.output()}")


async def _wait_output(up: Up, text: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while text not in up.output():
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in the output within {within}s:\n{up.output()}")
        await asyncio.sleep(0.1)


def _process(*markers: str) -> psutil.Process:
    """The one live process whose command line holds all `markers`."""
    found = [p for p in _leftovers(markers[0]) if all(m in " ".join(p.cmdline()) for m in markers)]
    assert len(found) == 1, [" ".join(p.cmdline()) for p in found]
    return found[0]


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])


def _plain_bind_fails(port: int) -> bool:
    """Whether binding without SO_REUSEADDR fails (as the port checks of old did)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@pytest.fixture
def time_wait_port() -> Iterator[int]:
    """A port whose only socket is a closed server-side connection in TIME_WAIT."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port: int = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: it is the one in TIME_WAIT
        client.recv(1)
        client.close()
    yield port


# --------------------------------------------------------------------------------------------
# the restart policy and the port checks
# --------------------------------------------------------------------------------------------


def test_restart_budget_backs_off_then_gives_up() -> None:
    budget = _RestartBudget()
    delays = [budget.next_delay(100.0 + i) for i in range(len(RESTART_BACKOFF))]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert budget.next_delay(110.0) is None  # a sixth restart within the window: give up
    # a restart older than the window no longer counts
    assert budget.next_delay(100.0 + RESTART_WINDOW + 0.5) == 16.0
    assert budget.next_delay(10_000.0) == 1.0  # after a quiet while, the backoff starts over


def _supervised(monkeypatch: pytest.MonkeyPatch) -> cli._Up:
    """A `minju up` with no servers, quick to poll and to restart (two restarts allowed)."""
    monkeypatch.setattr(cli, "POLL_INTERVAL", 0.01)
    monkeypatch.setattr(cli, "RESTART_BACKOFF", (0.01, 0.02))
    args = argparse.Namespace(data_dir="/tmp/unused", clock="real")
    return cli._Up(args)


async def test_supervisor_restarts_a_dead_worker_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = _supervised(monkeypatch)
    starts = 0

    async def crashes() -> None:
        raise RuntimeError("worker crashed")

    async def start_worker(settings: Settings) -> None:
        nonlocal starts
        starts += 1
        up.tasks["worker"] = asyncio.create_task(crashes())

    monkeypatch.setattr(up, "_start_worker", start_worker)
    await start_worker(Settings())
    up.tasks["API"] = api = asyncio.create_task(asyncio.sleep(60))
    try:
        failure = await asyncio.wait_for(up._supervise(Settings(), lambda: None), 10)
    finally:
        api.cancel()
    assert starts == 3  # the first start and two restarts
    assert failure == "the worker keeps dying (more than 2 restarts within 300s)"


async def test_supervisor_stops_everything_when_a_restart_keeps_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = _supervised(monkeypatch)
    attempts = 0

    async def start() -> None:
        nonlocal attempts
        attempts += 1
        raise stack.StackError("port 7233 is already in use")

    failure = await asyncio.wait_for(up._restart("the Temporal dev server", start), 10)
    assert attempts == 2
    assert failure == (
        "the Temporal dev server cannot be restarted (2 restarts within 300s; "
        "last error: port 7233 is already in use)"
    )


async def test_supervisor_stops_everything_when_the_api_dies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = _supervised(monkeypatch)

    async def fails() -> None:
        raise OSError("cannot bind")

    up.tasks["API"] = asyncio.create_task(fails())
    up.tasks["worker"] = worker = asyncio.create_task(asyncio.sleep(60))
    try:
        failure = await asyncio.wait_for(up._supervise(Settings(), lambda: None), 10)
    finally:
        worker.cancel()
    assert failure == "the API failed: cannot bind"
    # a part that ends because `stop` was set is no failure
    up.stop.set()
    assert await up._check_parts(Settings()) is None


def test_time_wait_does_not_count_as_in_use(time_wait_port: int) -> None:
    assert _plain_bind_fails(time_wait_port)  # the old check said "already in use"
    assert not stack._port_in_use(time_wait_port)


async def test_port_check_waits_for_a_port_being_released() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        assert not await stack.wait_port_free(port, patience=0.5)
        asyncio.get_running_loop().call_later(1.0, listener.close)
        started = time.monotonic()
        assert await stack.wait_port_free(port, patience=10)
        assert 0.8 < time.monotonic() - started < 5
    finally:
        listener.close()


# --------------------------------------------------------------------------------------------
# minju up, real clock
# --------------------------------------------------------------------------------------------


async def test_killed_postgres_is_restarted_with_its_data(data_dir: Path) -> None:
    ui = ("--ui-port", str(stack.free_port()))
    async with minju_up(data_dir, *ui) as up, httpx.AsyncClient(timeout=10) as http:
        await up.wait_healthy(http)
        auth = await _citizen(http, up)
        before = await _propose(http, up, auth, "made before postgres died")
        await _wait_submitted(http, up, before["id"])

        postmaster = _postmaster_pid(data_dir)
        os.kill(postmaster, signal.SIGKILL)
        await _wait_health(http, up, 503, within=10)
        await _wait_health(http, up, 200, within=RECOVERY_TIMEOUT)
        assert _postmaster_pid(data_dir) != postmaster
        await _wait_output(up, "PostgreSQL restarted")

        resp = await http.get(f"{up.base}/v1/proposals/{before['id']}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["title"] == "made before postgres died"
        # and the worker writes to the restarted server too
        after = await _propose(http, up, auth, "made after the restart")
        await _wait_submitted(http, up, after["id"])
        await _assert_clean_exit(up)


async def test_killed_temporal_dev_server_is_restarted_with_its_workflows(
    data_dir: Path,
) -> None:
    ui = ("--ui-port", str(stack.free_port()))
    async with minju_up(data_dir, *ui) as up, httpx.AsyncClient(timeout=10) as http:
        await up.wait_healthy(http)
        auth = await _citizen(http, up)
        before = await _propose(http, up, auth, "started before temporal died")
        await _wait_submitted(http, up, before["id"])

        server = _process("server start-dev", str(data_dir))
        server.kill()
        await _wait_health(http, up, 503, within=10)
        await _wait_health(http, up, 200, within=RECOVERY_TIMEOUT)
        await _wait_output(up, "the Temporal dev server restarted")
        assert _process("server start-dev", str(data_dir)).pid != server.pid

        # the SQLite file kept the workflow started before
        client = await Client.connect(f"127.0.0.1:{up.temporal_port}")
        described = await client.get_workflow_handle(before["workflow_id"]).describe()
        assert described.status is WorkflowExecutionStatus.RUNNING
        # and a new one runs on the restarted server
        after = await _propose(http, up, auth, "started after the restart")
        await _wait_submitted(http, up, after["id"])
        await _assert_clean_exit(up)


async def test_restart_right_after_a_stop_on_the_same_ports(data_dir: Path) -> None:
    port, temporal_port, ui_port = stack.free_port(), stack.free_port(), stack.free_port()
    ports = {"port": port, "temporal_port": temporal_port}
    ui = ("--ui-port", str(ui_port))
    async with minju_up(data_dir, *ui, **ports) as up, httpx.AsyncClient() as http:
        await up.wait_healthy(http)  # a kept-alive connection the API closes when it stops
        assert (await http.get(f"http://127.0.0.1:{ui_port}/")).status_code == 200
        await _assert_clean_exit(up)
    assert _plain_bind_fails(port)  # TIME_WAIT on the API port: the old check refused

    async with minju_up(data_dir, *ui, **ports) as up, httpx.AsyncClient() as http:
        await up.wait_healthy(http)  # fails at once if it exits with "port already in use"
        await _assert_clean_exit(up)


# --------------------------------------------------------------------------------------------
# minju up, simulated clock
# --------------------------------------------------------------------------------------------


async def test_killed_test_server_stops_everything_and_data_is_archived(data_dir: Path) -> None:
    async with (
        minju_up(data_dir, "--clock", "simulated") as up,
        httpx.AsyncClient(timeout=10) as http,
    ):
        await up.wait_healthy(http)
        auth = await _citizen(http, up)
        proposal = await _propose(http, up, auth, "accepted before the test server died")
        await _wait_submitted(http, up, proposal["id"])

        _process(f"temporal-test-server {up.temporal_port}").kill()
        assert await up.wait_exit("after its test server was killed", within=60) == 1
        out = up.output()
        assert "the Temporal time-skipping test server died" in out, out
        assert "the workflows of this run are gone with it, so it is not restarted" in out
        assert "The database minju_simulated is kept" in out
        assert "minju up stopped: the Temporal time-skipping test server died" in out
        assert out.index("test server died") < out.index("PostgreSQL stopped")
        assert await _gone(up), [" ".join(p.cmdline()) for p in _leftovers(*up.markers())]

    async with (
        minju_up(data_dir, "--clock", "simulated") as up,
        httpx.AsyncClient(timeout=10) as http,
    ):
        await up.wait_healthy(http)
        found = re.search(r"database minju_simulated as (minju_simulated_\d{14}\S*);", up.output())
        assert found, up.output()
        archive = found.group(1)
        resp = await http.get(f"{up.base}/v1/proposals")
        assert resp.status_code == 200, resp.text
        assert resp.json()["items"] == []  # a fresh minju_simulated

        database_url = up.banner_value("Database")
        assert "/minju_simulated?" in database_url
        conn = await asyncpg.connect(database_url.replace("/minju_simulated?", f"/{archive}?"))
        try:
            titles = await conn.fetchval("SELECT array_agg(title) FROM proposals")
        finally:
            await conn.close()
        assert titles == ["accepted before the test server died"]
        await _assert_clean_exit(up)


async def _gone(up: Up) -> bool:
    """Whether the servers of `up` are gone within 5 s (a postmaster may take a moment)."""
    for _ in range(50):
        if not _leftovers(*up.markers()):
            return True
        await asyncio.sleep(0.1)
    return False
