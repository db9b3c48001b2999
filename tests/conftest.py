"""Test harness: the real parts, started once per session or per test.

- one embedded PostgreSQL per session; the migrations run once into a template database, and
  every test gets its own database copied from it (fast, and nothing leaks between tests);
- one Temporal time-skipping test server per test, so each test owns its clock; time is
  locked and moves only through `POST /v1/dev/clock/advance`, exactly as in simulated mode;
- a real worker, and the API served by uvicorn on a free port, called over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

import worker as worker_module
from api.app import create_app
from api.context import AppContext
from minju import stack
from minju.clock import clock_for
from minju.config import ClockMode, Settings
from minju.db import create_engine, migrate, session_factory

TEMPLATE_DB = "minju_template"
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Any:
    data_dir = Path(tempfile.mkdtemp(prefix="minju-test-pg-", dir="/tmp")) / "pg"
    server = stack.start_postgres(data_dir, ephemeral=True)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_database(postgres: stack.EmbeddedPostgres) -> str:
    url = await stack.ensure_database(postgres, TEMPLATE_DB, recreate=True)
    await migrate(Settings(database_url=url))
    return TEMPLATE_DB


@dataclass
class Stack:
    """One test's running system: the HTTP client is the main way in."""

    http: httpx.AsyncClient
    settings: Settings
    temporal: Client
    engine: AsyncEngine
    worker: Worker
    server: stack.TemporalServer

    @property
    def sessions(self) -> Any:
        return session_factory(self.engine)

    def context(self) -> AppContext:
        """The API's context on this stack, for calling the data layer as the API does."""
        return AppContext(
            settings=self.settings,
            engine=self.engine,
            sessions=self.sessions,
            temporal=self.temporal,
            clock=clock_for(self.settings.clock_mode, self.temporal),
        )


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = stack.free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task, port


@contextlib.asynccontextmanager
async def running_stack(
    postgres: stack.EmbeddedPostgres, template_database: str, **overrides: Any
) -> AsyncIterator[Stack]:
    """A fresh database from the template, a time-skipping server, a worker and the API;
    `overrides` change the test defaults (e.g. `worker_cache`)."""
    name = f"minju_test_{next(_database_numbers)}"
    url = await stack.ensure_database(postgres, name, template=template_database, recreate=True)
    temporal_server = await stack.start_test_server()
    settings = Settings(
        database_url=url,
        temporal_address=temporal_server.address,
        task_queue="minju-test",
        jwt_secret="test-only-signing-key-not-for-production-use",
        dev_endpoints=True,
        clock_mode=ClockMode.SIMULATED,
        **overrides,
    )
    client = await stack.connect_temporal(settings)
    engine = create_engine(settings, pool_size=20)
    worker = worker_module.create_worker(client, settings, engine)
    worker_task = asyncio.create_task(worker.run())
    http_server, http_task, port = await _serve(create_app(settings))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        try:
            yield Stack(
                http=http,
                settings=settings,
                temporal=client,
                engine=engine,
                worker=worker,
                server=temporal_server,
            )
        finally:
            http_server.should_exit = True
            await http_task
            if worker.is_running:
                await worker.shutdown()
            await asyncio.gather(worker_task, return_exceptions=True)
            await engine.dispose()
            await temporal_server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def system(postgres: stack.EmbeddedPostgres, template_database: str) -> AsyncIterator[Stack]:
    async with running_stack(postgres, template_database) as running:
        yield running


@pytest.fixture
def api(system: Stack) -> Any:
    from tests.helpers import Api

    return Api(system.http)


HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
def record_history(system: Stack) -> Any:
    """Save a case's history under tests/histories/ when MINJU_RECORD_HISTORIES=1.

    The saved histories are committed and replayed by test_replay.py against the current
    code, so a change that breaks determinism for running cases fails CI.
    """

    async def record(name: str, workflow_id: str) -> None:
        if os.environ.get("MINJU_RECORD_HISTORIES") != "1":
            return
        history = await system.temporal.get_workflow_handle(workflow_id).fetch_history()
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json())

    return record
