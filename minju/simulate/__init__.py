"""`minju simulate`: a whole budget year played through the real API on the simulated clock.

Against a stack it starts (`minju up --clock simulated` in a temporary directory) or the
`--url` of a running one (simulated mode, dev endpoints on). Generated citizens (Seoul's strata
from the population table) propose, support, join forums and vote; caseworkers, the committee
and the operations team decide; councils and the Budget Square are drawn by sortition; ballots
come online and in channel batches; district and neighbourhood plans are negotiated; selected
projects are executed in Y+1, some with missing reports. At the end: a summary table per
section, and the wall time of each phase. The same seed gives the same results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from minju.simulate import aftercare, budget, plans, proposals
from minju.simulate.core import Sim, SimulationError, Sizes, generate_citizens
from models.calendar import SEOUL

#: The parts, in the order their steps run when due at the same moment.
PARTS = {"budget": budget, "proposals": proposals, "plans": plans, "aftercare": aftercare}
#: The share of the metropolitan and governance amount the lowest-ranked projects may lose.
DROP_RATIO = 0.2
#: Workflows the worker of the stack `simulate` starts keeps cached. Simulated mode caches none by
#: default (a restarted worker would never see the cases a dead one had cached on the
#: time-skipping server), so every workflow task replays its whole history: a year's cycle,
#: with hundreds of children, then costs minutes of replay per phase change. A run whose worker
#: dies fails anyway, so the run caches them all.
WORKER_CACHE = "100000"
#: The cycle's run does not continue as new within the year on the stack `simulate` starts,
#: neither at 2,000 events nor at the server's suggestion (at full size its history passes
#: 4 MB by March: each project's start carries its pinned rulebook): on the time-skipping
#: server a child (a project) that closes after the run that started it leaves the clock
#: locked (workflows.common.outlive_children).
CYCLE_HISTORY = "40000"
#: The most years ahead the run looks for a year without a budget cycle (on a `--url` stack).
_YEARS_AHEAD = 10


async def simulate(
    http: httpx.AsyncClient,
    sizes: Sizes,
    *,
    jwt_secret: str | None,
    console: Console | None = None,
    show_progress: bool = True,
    parts: Sequence[str] = tuple(PARTS),
) -> dict[str, Any]:
    """Play one year on the stack `http` points at; the summary, as JSON-ready data."""
    console = console or Console(stderr=True)
    sim = Sim(http, sizes, jwt_secret=jwt_secret, console=console, show_progress=show_progress)
    clock = await sim.get("/v1/clock")
    if clock["mode"] != "simulated":
        raise SimulationError(f"{http.base_url} runs on the {clock['mode']} clock, not simulated")
    sim.year = await _free_year(sim)
    cycle = {"year": sim.year, "drop_ratio": DROP_RATIO}
    await sim.call("POST", "/v1/budget-cycles", await sim.official("admin"), cycle)
    sim.citizens = generate_citizens(
        sizes.citizens, rng=sim.rng("citizens"), year=sim.year, prefix=sim.run_tag
    )
    started = time.monotonic()
    for name, part in PARTS.items():
        if name in parts:
            part.plan(sim)
    async with sim.progress_display():
        await sim.run_steps()
    sim.summary.add("run", what="budget year", value=str(sim.year))
    sim.summary.add("run", what="seed", value=str(sizes.seed))
    sim.summary.add("run", what="citizens", value=sizes.citizens)
    sim.summary.add("run", what="wall time, s", value=round(time.monotonic() - started, 1))
    return sim.summary.as_json()


async def _free_year(sim: Sim) -> int:
    """The first year after the clock's with no budget cycle yet (a fresh stack: next year)."""
    first = (await sim.now()).astimezone(SEOUL).year + 1
    for year in range(first, first + _YEARS_AHEAD):
        response = await sim.http.get(f"/v1/budget-cycles/{year}")
        if response.status_code == 404:
            return year
    raise SimulationError(f"every year from {first} to {first + _YEARS_AHEAD - 1} has a cycle")


def render(summary: dict[str, Any], console: Console) -> None:
    for section, rows in summary.items():
        if not rows:
            continue
        table = Table(title=section, title_justify="left", show_lines=False)
        columns = list(rows[0])
        for column in columns:
            numeric = all(isinstance(row.get(column), int | float) for row in rows)
            table.add_column(column, justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Sizes()
    parser.add_argument("--url", help="a running stack in simulated mode (default: start one)")
    parser.add_argument(
        "--jwt-secret",
        help="the --url stack's MINJU_JWT_SECRET, to sign tokens here (else /v1/dev/tokens)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--citizens", type=int, default=defaults.citizens)
    parser.add_argument("--ballots", type=int, default=defaults.ballots, help="budget ballots")
    parser.add_argument("--proposals", type=int, default=defaults.proposals)
    parser.add_argument("--projects", type=int, default=defaults.projects)
    parser.add_argument(
        "--online-share",
        type=float,
        default=defaults.online_share,
        help="share of budget ballots cast online (the rest come in channel batches)",
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which parts to play, comma-separated (default all: {','.join(PARTS)})",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes(
        citizens=args.citizens,
        ballots=args.ballots,
        proposals=args.proposals,
        projects=args.projects,
        online_share=args.online_share,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    problems = [
        f"--{name.replace('_', '-')} must be at least {least}"
        for name, least in (("citizens", 1_100), ("proposals", 1), ("projects", 6))
        if getattr(sizes, name) < least
    ]
    if not 0 <= sizes.online_share <= 1:
        problems.append("--online-share must be between 0 and 1")
    if sizes.ballots < 0 or sizes.concurrency < 1:
        problems.append("--ballots must be >= 0 and --concurrency >= 1")
    if problems:
        raise SimulationError("; ".join(problems))
    return sizes


def parts_from(args: argparse.Namespace) -> list[str]:
    names = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise SimulationError(f"--parts: choose among {', '.join(PARTS)} (got {args.parts!r})")
    return names


async def _run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    sizes = sizes_from(args)
    if args.url:
        async with _client(args.url, sizes) as http:
            return await simulate(
                http,
                sizes,
                jwt_secret=args.jwt_secret,
                show_progress=not args.no_progress,
                parts=parts_from(args),
            )
    from minju.launcher import minju_up

    secret = secrets.token_urlsafe(48)
    with minju_up(
        clock="simulated",
        env={
            "MINJU_JWT_SECRET": secret,
            "MINJU_ACCESS_LOG": "0",
            "MINJU_WORKER_CACHE": WORKER_CACHE,
            "MINJU_CYCLE_MAX_HISTORY_EVENTS": CYCLE_HISTORY,
            "MINJU_CYCLE_FOLLOW_SUGGESTION": "false",
        },
    ) as launched:
        async with _client(launched.url, sizes) as http:
            return await simulate(
                http,
                sizes,
                jwt_secret=secret,
                show_progress=not args.no_progress,
                parts=parts_from(args),
            )


def _client(url: str, sizes: Sizes) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=sizes.concurrency, max_keepalive_connections=sizes.concurrency
    )
    return httpx.AsyncClient(base_url=url, timeout=300, limits=limits)


#: Columns of the summary when it goes to a file or a pipe (a terminal gives its own width).
PIPED_WIDTH = 140


def main(args: argparse.Namespace) -> int:
    console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        summary = asyncio.run(_run(args, console))
    except SimulationError as exc:
        print(f"minju simulate: {exc}", file=sys.stderr, flush=True)
        return 1
    render(summary, console)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minju simulate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return main(parser.parse_args(argv))
