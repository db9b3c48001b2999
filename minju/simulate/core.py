"""What every part of `minju simulate` shares: the API it drives, the tokens it carries, the
simulated clock, the generated citizens, the calendar of steps, progress bars and the summary.

A part (`proposals`, `budget`, `plans`, `aftercare`) registers steps at moments of the year
with `Sim.at`; the driver runs them in the order of their moments, moving the simulated clock
to each step's moment before it runs (every timer due on the way fires: deadlines pass, phases
change). A step may register further steps. Everything a step does goes through the HTTP API,
as a client's calls; nothing reaches into the database or Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from api.auth import issue_token
from models.calendar import SEOUL
from rulebooks.populations import DEFAULT_POPULATION, load_population

T = TypeVar("T")
Headers = dict[str, str]

#: Residency of generated citizens: live, work or study in Seoul (api.auth.RESIDENCIES).
RESIDENCY_SHARES = (("resident", 0.90), ("worker", 0.06), ("student", 0.04))
#: The share of generated citizens who are budget-school graduates (시민예산학교 수료자).
BUDGET_SCHOOL_SHARE = 0.03
#: Age bands of the population table, as (lowest, highest) age.
_AGE_SPANS = {"19-29": (19, 29), "30-39": (30, 39), "40-49": (40, 49), "50-59": (50, 59)}
_OLDEST = 89
#: Wall time not spent in a part's own phases: moving the clock (every timer due fires).
CLOCK_PHASE = "clock: advancing (timers firing)"
#: The longest one move of the clock may take, seconds.
CLOCK_TIMEOUT = 1_800


class SimulationError(Exception):
    """A call the simulation needed was answered otherwise: the run stops, naming it."""


@dataclass(frozen=True)
class Sizes:
    citizens: int = 3_000
    ballots: int = 20_000
    proposals: int = 40
    projects: int = 40
    #: The share of budget ballots cast through the online endpoint (the rest: channel batches).
    online_share: float = 0.05
    #: Requests in flight at once.
    concurrency: int = 16
    seed: int = 1


@dataclass(frozen=True)
class Citizen:
    person_id: str
    sex: str
    birth_year: int
    district: str
    residency: str
    budget_school: bool

    def claims(self) -> dict[str, Any]:
        return {
            "sub": self.person_id,
            "role": "citizen",
            "residency": self.residency,
            "sex": self.sex,
            "birth_year": self.birth_year,
            "district": self.district,
            "budget_school": self.budget_school,
        }

    @property
    def group(self) -> str:
        """The voter group of budget ballots (rules.md `vote.group_weights`)."""
        return "budget_school" if self.budget_school else "general"


def generate_citizens(count: int, *, rng: random.Random, year: int, prefix: str) -> list[Citizen]:
    """`count` citizens drawn from the population table (district x sex x age band, weighted
    by population), so a sortition pool of them has Seoul's strata."""
    rows = load_population(DEFAULT_POPULATION).rows
    weights = [row.population for row in rows]
    residencies = [name for name, _ in RESIDENCY_SHARES]
    residency_weights = [share for _, share in RESIDENCY_SHARES]
    people = []
    for number, row in enumerate(rng.choices(rows, weights=weights, k=count)):
        low, high = _AGE_SPANS.get(row.age_band, (60, _OLDEST))
        people.append(
            Citizen(
                person_id=f"{prefix}-c{number:07d}",
                sex=row.sex,
                birth_year=year - rng.randint(low, high),
                district=row.district,
                residency=rng.choices(residencies, weights=residency_weights)[0],
                budget_school=rng.random() < BUDGET_SCHOOL_SHARE,
            )
        )
    return people


@dataclass
class Summary:
    """What the run did, by section: each a list of rows (dicts with the same keys)."""

    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Wall time per phase, seconds.
    phases: dict[str, float] = field(default_factory=dict)

    def add(self, section: str, **row: Any) -> None:
        self.sections.setdefault(section, []).append(row)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.sections,
            "phases": [{"phase": k, "wall_s": round(v, 2)} for k, v in self.phases.items()],
        }


@dataclass(order=True)
class _Step:
    at: datetime
    order: int
    name: str = field(compare=False)
    run: Callable[[], Awaitable[None]] = field(compare=False)


class Phase:
    """A progress bar for one phase; `advance()` per unit of work."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)


class Sim:
    """One run: the API client, the tokens, the clock, the citizens, the steps and the summary."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        sizes: Sizes,
        *,
        jwt_secret: str | None,
        console: Console,
        show_progress: bool = True,
    ) -> None:
        self.http = http
        self.sizes = sizes
        self.console = console
        self.summary = Summary()
        #: What one part leaves for another (e.g. the selected projects, for their execution).
        self.shared: dict[str, Any] = {}
        self.year = 0
        self.citizens: list[Citizen] = []
        #: Distinguishes this run's people and names from another run's on the same stack.
        self.run_tag = f"s{sizes.seed}"
        self._secret = jwt_secret
        self._tokens: dict[str, str] = {}
        self._steps: list[_Step] = []
        self._order = itertools.count()
        self._limit = asyncio.Semaphore(sizes.concurrency)
        self._show_progress = show_progress
        self._progress: Progress | None = None

    # ---- randomness: one stream per part, so a part's choices do not depend on another's ----

    def rng(self, part: str) -> random.Random:
        digest = hashlib.sha256(f"{self.sizes.seed}:{part}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def seed_text(self, purpose: str) -> str:
        """A sortition seed of this run (the same seed gives the same draws)."""
        return f"minju simulate seed {self.sizes.seed}: {purpose}"

    # ---- tokens ----------------------------------------------------------------------------

    async def token(self, claims: dict[str, Any]) -> Headers:
        sub = str(claims["sub"])
        token = self._tokens.get(sub)
        if token is None:
            if self._secret is not None:
                token = issue_token(self._secret, claims)
            else:
                answer = await self.call("POST", "/v1/dev/tokens", None, claims, expect=(200,))
                token = str(answer["token"])
            self._tokens[sub] = token
        return {"Authorization": f"Bearer {token}"}

    async def citizen(self, person: Citizen) -> Headers:
        return await self.token(person.claims())

    async def official(self, role: str, dept: str | None = None) -> Headers:
        claims: dict[str, Any] = {"sub": f"{self.run_tag}-{role}-{dept or 'city'}", "role": role}
        if dept is not None:
            claims["dept"] = dept
        return await self.token(claims)

    # ---- calls -----------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        who: Headers | None,
        body: Any = None,
        *,
        expect: Sequence[int] = (200, 201),
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: Headers | None = None,
        retries: int = 20,
    ) -> Any:
        """One API call; any answer outside `expect` stops the run, naming the call. A 503
        (a box between the phase change and its opening) is retried after its Retry-After."""
        all_headers = {**(who or {}), **(headers or {})}
        for _ in range(retries):
            async with self._limit:
                response = await self.http.request(
                    method,
                    path,
                    json=body if content is None else None,
                    content=content,
                    params=params,
                    headers=all_headers,
                )
            if response.status_code != 503:
                break
            await asyncio.sleep(min(float(response.headers.get("Retry-After", "0.2")), 1.0))
        if response.status_code not in expect:
            raise SimulationError(
                f"{method} {path}: expected {'/'.join(map(str, expect))}, "
                f"got {response.status_code}: {response.text[:2000]}"
            )
        return response.json() if response.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, None, params=params or None, expect=(200,))

    async def poll(
        self, check: Callable[[], Awaitable[bool]], what: str, *, within: float = 120.0
    ) -> None:
        """Wait until `check` holds (a projection written by an activity after a transition)."""
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise SimulationError(f"waited {within:.0f} s, but never: {what}")
            await asyncio.sleep(0.05)

    async def each(
        self, items: Iterable[T], work: Callable[[T], Awaitable[Any]], phase: Phase | None = None
    ) -> list[Any]:
        """`work` on every item, `sizes.concurrency` at a time, advancing `phase` per item."""

        async def one(item: T) -> Any:
            result = await work(item)
            if phase is not None:
                phase.advance()
            return result

        results: list[Any] = []
        batch: list[Awaitable[Any]] = []
        for item in items:
            batch.append(one(item))
            if len(batch) >= 4 * self.sizes.concurrency:
                results += await asyncio.gather(*batch)
                batch = []
        results += await asyncio.gather(*batch)
        return results

    async def each_in_phase(
        self, name: str, items: Sequence[T], work: Callable[[T], Awaitable[Any]]
    ) -> list[Any]:
        """`each` under its own phase: a bar of `len(items)` and the phase's wall time."""
        async with self.phase(name, total=len(items)) as bar:
            return await self.each(items, work, bar)

    # ---- the clock -------------------------------------------------------------------------

    async def now(self) -> datetime:
        return datetime.fromisoformat((await self.get("/v1/clock"))["now"])

    def seoul(self, month: int, day: int, *, year_offset: int = 0, hours: float = 0) -> datetime:
        """A moment of the cycle's year Y (or Y + `year_offset`) in Seoul time."""
        midnight = datetime(self.year + year_offset, month, day, tzinfo=SEOUL)
        return midnight + timedelta(hours=hours)

    async def advance_to(self, moment: datetime) -> None:
        """Move the clock to `moment` (never back). A move that needs longer than one request
        (every timer on the way fires, and the workflows they wake do their work first) is
        answered 503 while the clock keeps moving there: asked again with the same target
        until it is reached."""
        started = time.monotonic()
        if moment > await self.now():
            target = {"to": moment.isoformat()}
            deadline = started + CLOCK_TIMEOUT
            while True:
                answer = await self.call(
                    "POST", "/v1/dev/clock/advance", None, target, expect=(200, 503), retries=1
                )
                if "retry_with" not in answer:
                    break
                if time.monotonic() > deadline:
                    raise SimulationError(f"the clock did not reach {moment} in {CLOCK_TIMEOUT} s")
                await asyncio.sleep(1)
        self._add_wall(CLOCK_PHASE, time.monotonic() - started)

    def _add_wall(self, phase: str, seconds: float) -> None:
        self.summary.phases[phase] = self.summary.phases.get(phase, 0.0) + seconds

    async def advance(self, **delta: float) -> datetime:
        answer = await self.call("POST", "/v1/dev/clock/advance", None, delta)
        return datetime.fromisoformat(answer["now"])

    # ---- the calendar of steps -------------------------------------------------------------

    def at(self, moment: datetime, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` once the clock has reached `moment` (steps at one moment run in the order
        they were registered)."""
        heapq.heappush(self._steps, _Step(moment.astimezone(UTC), next(self._order), name, run))

    async def run_steps(self) -> None:
        while self._steps:
            step = heapq.heappop(self._steps)
            await self.advance_to(step.at)
            started = time.monotonic()
            try:
                await step.run()
                took = time.monotonic() - started
                self.console.print(f"{seoul_date(step.at)}  {step.name}  ({took:.1f} s)")
            except SimulationError as exc:
                at = f"{step.at:%Y-%m-%d %H:%M} UTC"
                raise SimulationError(f"{step.name} (at {at}): {exc}") from exc

    # ---- progress and wall time ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def progress_display(self) -> AsyncIterator[None]:
        if not self._show_progress:
            yield
            return
        columns = (
            TextColumn("{task.description:<44}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            self._progress = progress
            try:
                yield
            finally:
                self._progress = None

    @contextlib.asynccontextmanager
    async def phase(self, name: str, total: int | None = None) -> AsyncIterator[Phase]:
        """Time a phase (wall times add up when a phase is entered again) with its bar."""
        task = None
        if self._progress is not None:
            task = self._progress.add_task(name, total=total)
        started = time.monotonic()
        try:
            yield Phase(self._progress, task)
        finally:
            self.summary.phases[name] = self.summary.phases.get(name, 0.0) + (
                time.monotonic() - started
            )
            if self._progress is not None and task is not None:
                shown = self._progress.tasks[task]
                self._progress.update(
                    task, total=shown.completed or 1, completed=shown.completed or 1
                )


def seoul_date(moment: datetime) -> date:
    return moment.astimezone(SEOUL).date()
