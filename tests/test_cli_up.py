"""`minju up` end to end: the real command in a subprocess, driven over HTTP, stopped by SIGINT."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from minju.stack import free_port

MINJU = Path(sys.executable).parent / "minju"
STARTUP_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp: as root, embedded Postgres needs a data dir every user can traverse to.
    base = Path(tempfile.mkdtemp(prefix="minju-up-test-", dir="/tmp"))
    yield base / "data"  # created by `minju up`; its logs go next to it
    shutil.rmtree(base, ignore_errors=True)


def _leftovers(*markers: str) -> list[psutil.Process]:
    """Live processes whose command line mentions any of `markers` (not the test itself)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if any(m in cmdline for m in markers):
            found.append(proc)
    return found


class Up:
    """A running `minju up`, its output in a log file (free ports unless given)."""

    def __init__(
        self, data_dir: Path, *args: str, port: int | None = None, temporal_port: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.temporal_port = temporal_port or free_port()
        self.log_path = data_dir.parent / f"up-{time.monotonic_ns()}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "MINJU_JWT_SECRET", "MINJU_CLOCK")
        }
        argv = [
            str(MINJU),
            "up",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--temporal-port",
            str(self.temporal_port),
            *args,
        ]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def markers(self) -> tuple[str, ...]:
        """Strings that identify this instance's server processes."""
        return (str(self.data_dir), f"temporal-test-server {self.temporal_port}")

    async def wait_healthy(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"minju up exited with {self.proc.returncode}:\n{self.output()}")
            try:
                resp = await http.get(f"{self.base}/healthz")
                if resp.status_code == 200:
                    return
                last = f"{resp.status_code} {resp.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.25)
        pytest.fail(f"/healthz not 200 within {STARTUP_TIMEOUT}s ({last}):\n{self.output()}")

    async def interrupt(self) -> int:
        """SIGINT, then the exit code (fails the test if it takes longer than EXIT_TIMEOUT)."""
        self.proc.send_signal(signal.SIGINT)
        return await self.wait_exit("after SIGINT")

    async def wait_exit(self, after: str, within: float = EXIT_TIMEOUT) -> int:
        """The exit code, once it exits (fails the test if that takes longer than `within` s)."""
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"minju up still running {within}s {after}:\n{self.output()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def banner_value(self, label: str) -> str:
        for line in self.output().splitlines():
            if line.startswith(f"  {label} "):
                return line[len(label) + 2 :].strip()
        pytest.fail(f"no {label!r} line in the banner:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for proc in _leftovers(*self.markers()):
            proc.kill()
        self.log.close()


@asynccontextmanager
async def minju_up(
    data_dir: Path, *args: str, port: int | None = None, temporal_port: int | None = None
) -> AsyncIterator[Up]:
    up = Up(data_dir, *args, port=port, temporal_port=temporal_port)
    try:
        yield up
    finally:
        up.kill()


async def _assert_clean_exit(up: Up) -> None:
    code = await up.interrupt()
    assert code == 0, up.output()
    # the servers stop with it: nothing that mentions its data dir or its test server remains
    left = _leftovers(*up.markers())
    for _ in range(50):  # a postmaster that just exited may take a moment to be reaped
        if not left:
            break
        await asyncio.sleep(0.1)
        left = _leftovers(*up.markers())
    assert not left, [" ".join(p.cmdline()) for p in left]
    out = up.output()
    for step in ("worker stopped", "API stopped", "Temporal stopped", "PostgreSQL stopped"):
        assert step in out, out
    assert (
        out.index("worker stopped")
        < out.index("Temporal stopped")
        < out.index("PostgreSQL stopped")
    )


async def test_up_simulated_clock(data_dir: Path) -> None:
    async with minju_up(data_dir, "--clock", "simulated") as up, httpx.AsyncClient() as http:
        await up.wait_healthy(http)
        assert "Ctrl-C to stop" in up.output()

        resp = await http.get(f"{up.base}/v1/clock")
        assert resp.status_code == 200, resp.text
        assert resp.json()["mode"] == "simulated"
        before = datetime.fromisoformat(resp.json()["now"])

        resp = await http.post(f"{up.base}/v1/dev/clock/advance", json={"days": 1})
        assert resp.status_code == 200, resp.text
        after = datetime.fromisoformat(resp.json()["now"])
        # exactly one day, plus the wall time between the two requests
        assert timedelta(days=1) <= after - before < timedelta(days=1, seconds=5)

        resp = await http.get(f"{up.base}/v1/clock")
        assert datetime.fromisoformat(resp.json()["now"]) - after < timedelta(seconds=5)

        await _assert_clean_exit(up)
    assert "minju_simulated" in up.output()


async def test_up_real_clock_keeps_data_across_restarts(data_dir: Path) -> None:
    ui_port = free_port()
    async with minju_up(data_dir, "--ui-port", str(ui_port)) as up, httpx.AsyncClient() as http:
        await up.wait_healthy(http)
        resp = await http.get(f"{up.base}/v1/clock")
        assert resp.json()["mode"] == "real"

        ui = await http.get(f"http://127.0.0.1:{ui_port}/")
        assert ui.status_code == 200
        assert up.banner_value("Temporal UI") == f"http://127.0.0.1:{ui_port}"

        database_url = up.banner_value("Database")
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TABLE test_survives (v text)")
            await conn.execute("INSERT INTO test_survives VALUES ('first run')")
        finally:
            await conn.close()
        await _assert_clean_exit(up)

    secret_file = data_dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text()
    assert (data_dir / "temporal" / "temporal.db").exists()
    assert (data_dir / "temporal.log").exists()

    ui_port = free_port()
    async with minju_up(data_dir, "--ui-port", str(ui_port)) as up, httpx.AsyncClient() as http:
        await up.wait_healthy(http)
        conn = await asyncpg.connect(up.banner_value("Database"))
        try:
            assert await conn.fetchval("SELECT v FROM test_survives") == "first run"
        finally:
            await conn.close()
        await _assert_clean_exit(up)
    assert secret_file.read_text() == secret  # tokens survive a restart
