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
import sys
import time

import httpx

from fuzz import engine
from minju.launcher import minju_up


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
        with minju_up(prefix="minju-fuzz-") as launched:
            report = run(launched.url, args)
    print(report.render(), flush=True)
    short = report.requests < args.requests
    if short:
        print(f"fuzz: only {report.requests} of {args.requests} requests within the time limit")
    return 0 if not report.findings and not report.errors and not short else 1


if __name__ == "__main__":
    sys.exit(main())
