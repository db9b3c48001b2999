"""The long fuzz run: `python -m fuzz` (what `make fuzz` runs).

Without --url it starts the whole system with `minju up --clock simulated` (embedded
PostgreSQL, the Temporal test server, the worker and the API) on free local ports and a
temporary data directory, fuzzes it, and stops it with SIGINT. With --url it fuzzes an API
already running there (it needs the dev endpoints, i.e. dev or simulated mode, for tokens).

It sends at least --requests requests (default 10,000), split between a citizen's and an
admin's token, prints the count of requests and of failures by kind, each distinct failure with
its request and response, and exits 1 if there was any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fuzz import engine
from minju.stack import free_port

STARTUP_TIMEOUT = 180.0
EXIT_TIMEOUT = 60.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="fuzz the API running there instead of starting one")
    parser.add_argument("--requests", type=int, default=10_000, help="at least this many")
    parser.add_argument(
        "--examples", type=int, default=25, help="cases per operation, variant and round"
    )
    parser.add_argument("--time-limit", type=float, default=3_000.0, help="seconds (overall)")
    parser.add_argument("--seed", type=int, help="replay a run (the report prints its seed)")
    return parser.parse_args(argv)


@contextmanager
def minju_up() -> Iterator[str]:
    """`minju up --clock simulated` on free ports in a temporary directory; its base URL."""
    base = Path(tempfile.mkdtemp(prefix="minju-fuzz-", dir="/tmp"))
    port, temporal_port = free_port(), free_port()
    log_path = base / "up.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "MINJU_JWT_SECRET", "MINJU_CLOCK")
    }
    minju = Path(sys.executable).parent / "minju"
    argv = [str(minju), "up", "--clock", "simulated", "--port", str(port)]
    argv += ["--temporal-port", str(temporal_port), "--data-dir", str(base / "data")]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log_path)
            print(f"fuzz: minju up is serving {url} (log: {log_path})", flush=True)
            yield url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    if process.returncode == 0:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"fuzz: minju up exited with {process.returncode}; kept {base}", flush=True)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"minju up exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise SystemExit(f"/healthz not 200 within {STARTUP_TIMEOUT:.0f}s ({last})")


async def _prepare(url: str) -> tuple[dict[str, object], list[engine.Identity], engine.Seeds]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        document = (await http.get("/openapi.json")).raise_for_status().json()
        seeds = await engine.seed(http)
        people = await engine.identities(http)
    return document, people, seeds


def run(url: str, args: argparse.Namespace) -> engine.Report:
    document, people, seeds = asyncio.run(_prepare(url))
    for note in seeds.notes:
        print(f"fuzz: seed: {note}", flush=True)
    schema = engine.load_schema(dict(document))
    last_print = [time.monotonic()]

    def progress(report: engine.Report) -> None:
        if time.monotonic() - last_print[0] >= 30:
            last_print[0] = time.monotonic()
            print(
                f"fuzz: ... {report.requests} requests, {len(report.findings)} failures, "
                f"{report.seconds:.0f} s",
                flush=True,
            )

    return engine.fuzz(
        schema,
        url,
        people,
        seeds,
        examples=args.examples,
        target_requests=args.requests,
        time_limit=args.time_limit,
        seed=args.seed,
        progress=progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.url:
        report = run(args.url.rstrip("/"), args)
    else:
        with minju_up() as url:
            report = run(url, args)
    print(report.render(), flush=True)
    short = report.requests < args.requests
    if short:
        print(f"fuzz: only {report.requests} of {args.requests} requests within the time limit")
    return 0 if not report.findings and not report.errors and not short else 1


if __name__ == "__main__":
    sys.exit(main())
