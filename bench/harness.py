"""The stack a benchmark runs against, and how figures are printed.

`real_stack()` starts PostgreSQL (embedded) and the Temporal dev server in this process and
`minju up` (the worker and the API, as a user starts them) against both, so a benchmark can
reach the database and Temporal directly for its baselines. `simulated_stack()` is the same
with `minju up --clock simulated` (its own time-skipping server), for what only happens at a
calendar date (a budget vote in August).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import temporalio.client

from api.auth import issue_token
from minju import stack
from minju.launcher import minju_up
from tests.helpers import Api


@dataclass
class Bench:
    """What a benchmark needs: the API, its database and Temporal, and tokens it signs itself
    (a million ballots need a million voters; the dev token endpoint would be the bottleneck)."""

    url: str
    database_url: str
    secret: str
    temporal: temporalio.client.Client | None
    api: Api
    base: Path
    #: The `minju up` process serving `url`.
    pid: int
    _people: int = 0

    def token(self, role: str = "citizen", sub: str | None = None, **claims: Any) -> str:
        if sub is None:
            self._people += 1
            sub = f"bench-{role}-{self._people}"
        if role == "citizen":
            claims.setdefault("residency", "resident")
        return issue_token(self.secret, {"sub": sub, "role": role, **claims})

    def tokens(self, count: int, **claims: Any) -> list[str]:
        return [self.token(**claims) for _ in range(count)]


@contextlib.asynccontextmanager
async def _stack(clock: str) -> AsyncIterator[Bench]:
    base = Path(tempfile.mkdtemp(prefix=f"minju-bench-{clock}-", dir="/tmp"))
    secret = secrets.token_urlsafe(48)
    pg = await asyncio.to_thread(stack.start_postgres, base / "pg", ephemeral=True)
    temporal = None
    try:
        database_url = await stack.ensure_database(pg, "minju")
        env = {"DATABASE_URL": database_url, "MINJU_JWT_SECRET": secret}
        client = None
        if clock == "real":
            temporal = await stack.start_dev_server(
                base / "temporal",
                port=stack.free_port(),
                ui_port=stack.free_port(),
                log_file=base / "temporal.log",
            )
            env["TEMPORAL_ADDRESS"] = temporal.address
            client = await temporalio.client.Client.connect(temporal.address)
        with minju_up(clock=clock, env=env, prefix="minju-bench-up-") as launched:
            async with httpx.AsyncClient(base_url=launched.url, timeout=60) as http:
                yield Bench(
                    url=launched.url,
                    database_url=database_url,
                    secret=secret,
                    temporal=client,
                    api=Api(http),
                    base=base,
                    pid=launched.pid,
                )
    finally:
        if temporal is not None:
            await temporal.stop()
        await asyncio.to_thread(pg.stop)


def real_stack() -> contextlib.AbstractAsyncContextManager[Bench]:
    return _stack("real")


def simulated_stack() -> contextlib.AbstractAsyncContextManager[Bench]:
    return _stack("simulated")


@dataclass
class Figure:
    """One measured figure beside its baseline from the same run."""

    what: str
    value: float
    unit: str
    baseline_what: str
    baseline: float
    goal: str
    #: How the figure compares: "higher" (throughput) or "lower" (latency, time) is better.
    better: str = "higher"
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def render(self) -> str:
        lines = [
            f"  {self.what}: {self.value:,.2f} {self.unit}",
            f"    baseline ({self.baseline_what}): {self.baseline:,.2f} {self.unit}",
            f"    ratio {self.ratio:.2f}x ({self.better} is better); goal: {self.goal}",
        ]
        lines += [f"    {k}: {v}" for k, v in self.details.items()]
        return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
