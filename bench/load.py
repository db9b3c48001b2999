"""HTTP load: `wrk` (Debian's package) when it is installed, an async client otherwise.

Every request carries its own bearer token (one ballot per person), taken in order from a file
the Lua script reads, so no two requests of a run share a voter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench.harness import percentile

_LUA = """
local tokens, body, path, threads = {}, %(body)s, %(path)s, {}
for line in io.lines(%(tokens_file)s) do tokens[#tokens + 1] = line end
local counter = 1
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
function init(args)
  n = 0
  stride = %(threads)d
  created, statuses = 0, {}
end
function request()
  local i = id + n * stride
  n = n + 1
  if i > #tokens then i = #tokens end
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
  }, body)
end
function response(status, headers, body)
  if status >= 200 and status < 300 then created = created + 1 end
end
function done(summary, latency, requests)
  local ok = 0
  for _, thread in ipairs(threads) do ok = ok + thread:get("created") end
  io.write(string.format(
    '{"requests": %%d, "ok": %%d, "seconds": %%f, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d}\\n',
    summary.requests, ok, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int
    #: 2xx answers; everything else is counted in `failed`.
    ok: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: Non-2xx answers and socket errors.
    failed: int

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.per_second:,.0f} ok/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"{self.requests:,} requests, {self.failed:,} failed ({self.generator})"
        )


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for ASCII text


def post_load(
    url: str,
    path: str,
    body: str,
    tokens: Sequence[str],
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
) -> LoadResult:
    """POST `body` to `path` with one token per request, on `connections` connections for
    `seconds`. The tokens must outnumber the requests the run can make."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return asyncio.run(_post_load_async(url, path, body, tokens, connections, seconds))
    with tempfile.TemporaryDirectory(prefix="minju-bench-wrk-") as scratch:
        tokens_file = Path(scratch) / "tokens"
        tokens_file.write_text("\n".join(tokens) + "\n")
        script = Path(scratch) / "post.lua"
        script.write_text(
            _LUA
            % {
                "body": _lua_string(body),
                "path": _lua_string(path),
                "tokens_file": _lua_string(str(tokens_file)),
                "threads": threads,
            }
        )
        argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s"]
        argv += ["--latency", "--timeout", "10s", "-s", str(script), url]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return LoadResult(
        generator=f"wrk, {threads} threads, {connections} connections",
        requests=figures["requests"],
        ok=figures["ok"],
        seconds=figures["seconds"],
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        failed=figures["requests"] - figures["ok"] + figures["errors"],
    )


async def _post_load_async(
    url: str, path: str, body: str, tokens: Sequence[str], connections: int, seconds: float
) -> LoadResult:
    result = await post_each(
        url, ((path, token) for token in tokens), body, connections=connections, seconds=seconds
    )
    return dataclasses.replace(
        result, generator=f"httpx (wrk not installed), {connections} connections"
    )


async def post_each(
    url: str,
    jobs: Iterable[tuple[str, str]],
    body: str = "",
    *,
    connections: int,
    seconds: float | None = None,
) -> LoadResult:
    """POST `body` once per (path, token) of `jobs` from an async client on `connections`
    connections, until the jobs run out (or `seconds` pass)."""
    latencies: list[float] = []
    ok = failed = 0
    pending = iter(jobs)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def connection() -> None:
            nonlocal ok, failed
            for path, token in pending:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                sent = time.perf_counter()
                try:
                    headers = {"Authorization": f"Bearer {token}"}
                    if body:
                        headers["Content-Type"] = "application/json"
                    answer = await http.post(path, content=body, headers=headers)
                    good = 200 <= answer.status_code < 300
                except httpx.HTTPError:
                    good = False
                latencies.append(time.perf_counter() - sent)
                ok, failed = (ok + 1, failed) if good else (ok, failed + 1)

        await asyncio.gather(*(connection() for _ in range(connections)))
    return LoadResult(
        generator=f"httpx, {connections} connections",
        requests=ok + failed,
        ok=ok,
        seconds=time.perf_counter() - started,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        failed=failed,
    )


async def raw_load(
    pool: asyncpg.Pool,
    write: Callable[[asyncpg.Connection], Awaitable[bool]],
    *,
    connections: int,
    generator: str,
) -> LoadResult:
    """A baseline: `connections` writers on `pool`, each calling `write` on its connection
    until it answers False (no more work), every call timed."""
    latencies: list[float] = []
    started = time.perf_counter()

    async def writer() -> None:
        async with pool.acquire() as conn:
            while True:
                sent = time.perf_counter()
                if not await write(conn):
                    return
                latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(writer() for _ in range(connections)))
    return LoadResult(
        generator=generator,
        requests=len(latencies),
        ok=len(latencies),
        seconds=time.perf_counter() - started,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        failed=0,
    )
