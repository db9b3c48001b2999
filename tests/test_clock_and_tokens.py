"""The simulated clock under load and when its RPCs fail, and what a bearer token must carry.

Clock (issue 6, defect 5): an advance completes to its target or answers 503 naming where it
stopped, never 500, and is safe to repeat with an absolute target. Tokens (issue 6, defects 3
and 9): `exp`, `iat`, `iss` and `aud` are required and checked, and text claims holding control
characters are refused with 401, never a 500 further down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from google.protobuf import empty_pb2
from temporalio.api.testservice.v1 import (
    GetCurrentTimeResponse,
    LockTimeSkippingRequest,
    SleepRequest,
    SleepResponse,
    UnlockTimeSkippingRequest,
)
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from api.auth import issue_token
from api.context import AppContext
from minju import stack
from minju.clock import SimulatedClock
from minju.config import Settings
from tests.conftest import Stack
from tests.helpers import Api, auth, expect, expect_problem
from tests.test_forums import create_forum, wait_forum

_people = itertools.count()


# ---- helpers -------------------------------------------------------------------------------


class StatusLog:
    """Every response seen in a scenario: the test fails on any 5xx."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []

    def __call__(self, response: httpx.Response) -> httpx.Response:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            request = response.request
            self.server_errors.append(f"{request.method} {request.url.path}: {response.text}")
        return response


def citizen_token(system: Stack) -> dict[str, str]:
    claims = {"sub": f"clock-citizen-{next(_people)}", "role": "citizen", "residency": "resident"}
    return auth(issue_token(system.settings.jwt_secret, claims))


async def server_now(system: Stack) -> datetime:
    response = await system.temporal.test_service.get_current_time(empty_pb2.Empty())
    return response.time.ToDatetime().replace(tzinfo=UTC)


class FlakyTestService:
    """A test double at the RPC boundary: the real test server's RPCs, except that sleeps fail
    as told. `forward` says whether a failing sleep still reaches the server (its answer is
    lost on the way back, as with a dropped HTTP/2 connection) or never leaves the client."""

    def __init__(
        self,
        system: Stack,
        *,
        failures: int,
        error: RPCError,
        forward: bool = False,
    ) -> None:
        self._real = system.temporal.test_service
        self.failures = failures
        self.error = error
        self.forward = forward
        self.sleep_calls = 0
        self.forwarded: list[asyncio.Task[SleepResponse]] = []

    async def get_current_time(
        self,
        req: empty_pb2.Empty,
        *,
        timeout: timedelta | None = None,  # noqa: ASYNC109 - mirrors the RPC signature
    ) -> GetCurrentTimeResponse:
        return await self._real.get_current_time(req, timeout=timeout)

    async def unlock_time_skipping_with_sleep(
        self,
        req: SleepRequest,
        *,
        timeout: timedelta | None = None,  # noqa: ASYNC109 - mirrors the RPC signature
    ) -> SleepResponse:
        self.sleep_calls += 1
        if self.failures > 0:
            self.failures -= 1
            if self.forward:
                call = self._real.unlock_time_skipping_with_sleep(req, timeout=timedelta(hours=1))
                self.forwarded.append(asyncio.create_task(call))
                await asyncio.sleep(0.1)  # the server has it, the answer never comes back
            raise self.error
        return await self._real.unlock_time_skipping_with_sleep(req, timeout=timeout)


def unavailable() -> RPCError:
    return RPCError("tcp connect error: Connection refused", RPCStatusCode.UNAVAILABLE, b"")


def h2_error() -> RPCError:
    return RPCError("h2 protocol error: http2 error", RPCStatusCode.INTERNAL, b"")


@asynccontextmanager
async def app_with_clock(system: Stack, clock: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process over ASGI with `clock` in its context (the rest is the test's
    stack), for clocks whose RPCs are doubled."""
    app = create_app(system.settings)
    app.state.ctx = AppContext(
        settings=system.settings,
        engine=system.engine,
        sessions=system.sessions,
        temporal=system.temporal,
        clock=clock,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://minju.test") as http:
        yield http


async def is_locked(system: Stack) -> bool:
    """Whether the server's clock runs at wall speed (locked) rather than skipping."""
    before, wall = await server_now(system), time.monotonic()
    await asyncio.sleep(0.5)
    gained = (await server_now(system) - before).total_seconds()
    return gained < time.monotonic() - wall + 0.5


# ---- the clock under load --------------------------------------------------------------------


async def test_advancing_while_5000_participations_are_cast_has_no_server_errors(
    api: Api, system: Stack
) -> None:
    """Issue 6's scenario: 5,000 forum participations over HTTP, 100 at a time, while two
    clients advance the clock an hour at a time and another reads it; then the close."""
    seen = StatusLog()
    forum = await create_forum(api)
    fid = forum["id"]
    casting_done = asyncio.Event()
    advances: list[str] = []

    async def cast(index: int) -> None:
        body = {"position": "for" if index % 2 else "against"}
        seen(
            await system.http.post(
                f"/v1/forums/{fid}/participations", json=body, headers=citizen_token(system)
            )
        )

    async def casting() -> None:
        for start in range(0, 5_000, 100):
            await asyncio.gather(*(cast(i) for i in range(start, start + 100)))
        casting_done.set()

    async def reading() -> None:
        while not casting_done.is_set():
            expect(seen(await system.http.get("/v1/clock")), 200)
            await asyncio.sleep(0.01)

    async def advancing() -> None:
        for _ in range(24):  # at most 2 x 24 hours: the forum stays open
            if casting_done.is_set():
                return
            response = seen(await system.http.post("/v1/dev/clock/advance", json={"hours": 1}))
            advances.append(expect(response, 200)["now"])

    await asyncio.gather(casting(), reading(), advancing(), advancing())
    # the forum is open 30 days from its creation (rulebook seoul-2020)
    close = datetime.fromisoformat(forum["created_at"]) + timedelta(days=30, seconds=10)
    response = seen(await system.http.post("/v1/dev/clock/advance", json={"to": close.isoformat()}))
    assert datetime.fromisoformat(expect(response, 200)["now"]) >= close
    closed = await wait_forum(api, fid, "closed")
    assert (closed["participants"], closed["for"], closed["against"]) == (5_000, 2_500, 2_500)
    assert seen.server_errors == [], seen.server_errors[:5]
    assert seen.statuses[201] == 5_000 and len(advances) >= 2, dict(seen.statuses)
    assert await is_locked(system)


async def test_concurrent_advances_are_serialized_and_all_land(api: Api, system: Stack) -> None:
    """Ten advances of 6 hours at once, with proposals being created and supported (workflow
    tasks and activities holding the server's time lock) and the clock read all along."""
    seen = StatusLog()
    wall = time.monotonic()  # before the first read and after the last: bounds the drift
    start = datetime.fromisoformat(await api.now())
    stop_reading = asyncio.Event()

    async def reading() -> None:
        while not stop_reading.is_set():
            expect(seen(await system.http.get("/v1/clock")), 200)
            await asyncio.sleep(0.01)

    async def proposing() -> None:
        proposer = await api.citizen()
        proposal = expect(
            seen(
                await system.http.post(
                    "/v1/proposals", json={"title": "Benches", "body": "More."}, headers=proposer
                )
            ),
            201,
        )
        for _ in range(3):
            supported = await system.http.post(
                f"/v1/proposals/{proposal['id']}/supports", headers=citizen_token(system)
            )
            expect(seen(supported), 201)

    async def advancing() -> str:
        response = seen(await system.http.post("/v1/dev/clock/advance", json={"hours": 6}))
        return str(expect(response, 200)["now"])

    reader = asyncio.create_task(reading())
    results = await asyncio.gather(
        *(advancing() for _ in range(10)), *(proposing() for _ in range(10))
    )
    stop_reading.set()
    await reader
    now = datetime.fromisoformat(await api.now())
    elapsed = timedelta(seconds=time.monotonic() - wall)
    ends = sorted(datetime.fromisoformat(r) for r in results if isinstance(r, str))
    assert len(ends) == 10
    # one after another: every advance ended at least 6 hours after the one before it
    assert all(later - earlier >= timedelta(hours=6) for earlier, later in itertools.pairwise(ends))
    # exactly 60 hours skipped; beyond that the locked clock ran at wall speed only
    assert start + timedelta(hours=60) <= now <= start + timedelta(hours=60) + elapsed
    assert seen.server_errors == [], seen.server_errors[:5]
    assert await is_locked(system)


async def test_repeated_advances_with_concurrent_reads(api: Api, system: Stack) -> None:
    seen = StatusLog()
    done = asyncio.Event()

    async def reading() -> list[datetime]:
        times = []
        while not done.is_set():
            times.append(
                datetime.fromisoformat(expect(seen(await system.http.get("/v1/clock")), 200)["now"])
            )
        return times

    readers = [asyncio.create_task(reading()) for _ in range(4)]
    start = datetime.fromisoformat(await api.now())
    for _ in range(30):
        expect(seen(await system.http.post("/v1/dev/clock/advance", json={"days": 1})), 200)
    done.set()
    reads = await asyncio.gather(*readers)
    assert datetime.fromisoformat(await api.now()) - start >= timedelta(days=30)
    for times in reads:  # each reader saw the clock only go forward
        assert times == sorted(times) and len(times) > 10
    assert seen.server_errors == [], seen.server_errors[:5]


# ---- an absolute target ----------------------------------------------------------------------


async def test_an_advance_to_a_target_repeated_moves_nothing(api: Api, system: Stack) -> None:
    start = datetime.fromisoformat(await api.now())
    target = start + timedelta(days=2, hours=3)
    body = {"to": target.isoformat()}
    first = datetime.fromisoformat(
        expect(await system.http.post("/v1/dev/clock/advance", json=body), 200)["now"]
    )
    wall = time.monotonic()
    second = datetime.fromisoformat(
        expect(await system.http.post("/v1/dev/clock/advance", json=body), 200)["now"]
    )
    between = timedelta(seconds=time.monotonic() - wall)
    # the first stops at the target (the locked clock then runs at wall speed); the second
    # finds it passed and moves nothing: the same `now`, up to the wall time between the reads
    assert target <= first < target + timedelta(seconds=1)
    assert first <= second <= first + between + timedelta(milliseconds=50)
    # a target in the past, in another offset: 200, nothing moved
    past = (start - timedelta(days=1)).astimezone(UTC).isoformat()
    third = datetime.fromisoformat(
        expect(await system.http.post("/v1/dev/clock/advance", json={"to": past}), 200)["now"]
    )
    assert third - second < timedelta(seconds=1)
    # the relative form of api.md still works
    relative = datetime.fromisoformat(await api.advance(hours=1))
    assert relative - third >= timedelta(hours=1)


async def test_an_advance_target_is_validated(api: Api, system: Stack) -> None:
    now = datetime.fromisoformat(await api.now())
    advance = "/v1/dev/clock/advance"
    to = (now + timedelta(days=1)).isoformat()
    expect_problem(await system.http.post(advance, json={"to": to, "days": 1}), 422, field="to")
    naive = (now + timedelta(days=1)).replace(tzinfo=None).isoformat()
    expect_problem(await system.http.post(advance, json={"to": naive}), 422, field="to")
    far = (now + timedelta(days=3661)).isoformat()
    expect_problem(await system.http.post(advance, json={"to": far}), 422, field="to")
    expect_problem(await system.http.post(advance, json={}), 422, field="days")
    expect_problem(await system.http.post(advance, json={"days": -1}), 422, field="days")
    spec = expect(await system.http.get("/openapi.json"), 200)
    operation = spec["paths"]["/v1/dev/clock/advance"]["post"]
    assert '"to"' in operation["description"] and "503" in operation["description"]
    assert "Retry-After" in operation["responses"]["503"]["headers"]


# ---- when the sleep RPC fails ----------------------------------------------------------------


async def test_a_sleep_that_fails_once_is_retried_to_its_target(system: Stack) -> None:
    flaky = FlakyTestService(system, failures=1, error=unavailable())
    clock = SimulatedClock(system.temporal, test_service=flaky)
    async with app_with_clock(system, clock) as http:
        start = datetime.fromisoformat(expect(await http.get("/v1/clock"), 200)["now"])
        now = datetime.fromisoformat(
            expect(await http.post("/v1/dev/clock/advance", json={"days": 3}), 200)["now"]
        )
    assert start + timedelta(days=3) <= now < start + timedelta(days=3, seconds=2)
    assert flaky.sleep_calls == 2
    assert await is_locked(system)


async def test_a_sleep_that_keeps_failing_answers_503_with_now_and_target(system: Stack) -> None:
    flaky = FlakyTestService(system, failures=10_000, error=unavailable())
    clock = SimulatedClock(system.temporal, test_service=flaky, budget=timedelta(seconds=3))
    async with app_with_clock(system, clock) as http:
        before = datetime.fromisoformat(expect(await http.get("/v1/clock"), 200)["now"])
        response = await http.post("/v1/dev/clock/advance", json={"days": 1})
        problem = expect_problem(response, 503)
        assert int(response.headers["Retry-After"]) > 0
        now, target = (datetime.fromisoformat(problem[k]) for k in ("now", "target"))
        assert before <= now < before + timedelta(seconds=10)
        assert target - now > timedelta(hours=23)
        assert problem["retry_with"] == {"to": problem["target"]}
        assert problem["target"] in problem["detail"] and '"to"' in problem["detail"]
        assert flaky.sleep_calls >= 2  # retried within the budget
        # once the RPC works again, repeating with the target it named finishes the advance
        flaky.failures = 0
        for _ in range(2):
            done = expect(await http.post("/v1/dev/clock/advance", json=problem["retry_with"]), 200)
            assert target <= datetime.fromisoformat(done["now"]) < target + timedelta(seconds=2)
    assert await is_locked(system)


async def test_a_sleep_whose_answer_is_lost_is_never_asked_twice(system: Stack) -> None:
    """The failure the server may not have seen: the sleep reached it (it unlocked time) and
    only the answer was lost. A second sleep now would release a lock that a busy worker holds
    (simulated here by a lock of the test's own): the clock must wait for the first instead."""
    await system.temporal.test_service.lock_time_skipping(LockTimeSkippingRequest())
    flaky = FlakyTestService(system, failures=1, error=h2_error(), forward=True)
    clock = SimulatedClock(system.temporal, test_service=flaky)
    start = await server_now(system)
    target = start + timedelta(days=5)
    advancing = asyncio.create_task(clock.advance_to(target))
    await asyncio.sleep(3)
    # still held at wall speed by the "busy worker": nobody released its lock
    assert not advancing.done()
    assert await server_now(system) < start + timedelta(seconds=10)
    await system.temporal.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    now = await asyncio.wait_for(advancing, 30)
    assert target <= now < target + timedelta(seconds=1)
    assert flaky.sleep_calls == 1
    await asyncio.gather(*flaky.forwarded)
    assert await is_locked(system)


async def test_an_advance_past_its_budget_answers_503_and_repeating_continues_it(
    system: Stack,
) -> None:
    """A worker busy past the budget: 503 with where the clock is; the sleep goes on, and
    repeating the advance to the same target waits for it instead of starting another."""
    await system.temporal.test_service.lock_time_skipping(LockTimeSkippingRequest())
    flaky = FlakyTestService(system, failures=0, error=h2_error())
    clock = SimulatedClock(system.temporal, test_service=flaky, budget=timedelta(seconds=2))
    async with app_with_clock(system, clock) as http:
        target = (await server_now(system) + timedelta(days=7)).isoformat()
        response = await http.post("/v1/dev/clock/advance", json={"to": target})
        problem = expect_problem(response, 503)
        assert response.headers["Retry-After"]
        assert datetime.fromisoformat(problem["target"]) == datetime.fromisoformat(target)
        assert datetime.fromisoformat(problem["now"]) < datetime.fromisoformat(target)
        expect_problem(await http.post("/v1/dev/clock/advance", json={"to": target}), 503)
        await system.temporal.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
        done = expect(await http.post("/v1/dev/clock/advance", json={"to": target}), 200)
        assert datetime.fromisoformat(done["now"]) >= datetime.fromisoformat(target)
    assert flaky.sleep_calls == 1
    assert await is_locked(system)


async def test_a_lost_sleep_is_asked_again_once_the_clock_shows_nobody_has_it(
    system: Stack,
) -> None:
    flaky = FlakyTestService(system, failures=1, error=h2_error(), forward=False)
    clock = SimulatedClock(system.temporal, test_service=flaky, lost_after=timedelta(seconds=2))
    target = await server_now(system) + timedelta(days=2)
    now = await clock.advance_to(target)
    assert target <= now < target + timedelta(seconds=1)
    assert flaky.sleep_calls == 2
    assert await is_locked(system)


async def test_the_clock_with_temporal_unreachable_is_503(system: Stack) -> None:
    server = await stack.start_test_server()
    client = await stack.connect_temporal(Settings(temporal_address=server.address))
    await server.stop()
    clock = SimulatedClock(client, budget=timedelta(seconds=2))
    async with app_with_clock(system, clock) as http:
        response = await http.get("/v1/clock")
        expect_problem(response, 503)
        assert response.headers["Retry-After"]
        response = await http.post("/v1/dev/clock/advance", json={"days": 1})
        problem = expect_problem(response, 503)
        assert response.headers["Retry-After"] and problem["now"] is None
        assert "Temporal" in problem["detail"]


# ---- tokens ----------------------------------------------------------------------------------


def signed(system: Stack, **overrides: Any) -> dict[str, str]:
    """A token signed with the right key: valid unless `overrides` say otherwise (a value of
    None drops the claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": f"token-{next(_people)}",
        "role": "citizen",
        "residency": "resident",
        "iss": system.settings.jwt_issuer,
        "aud": system.settings.jwt_audience,
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return auth(jwt.encode(claims, system.settings.jwt_secret, algorithm="HS256"))


async def assert_refused(system: Stack, headers: dict[str, str], *words: str) -> None:
    """401 problem+json on a read and on a write, never anything else."""
    for response in (
        await system.http.get("/v1/me/activity", headers=headers),
        await system.http.post(
            "/v1/proposals", json={"title": "Trees", "body": "Plant them."}, headers=headers
        ),
    ):
        detail = expect_problem(response, 401)["detail"]
        assert detail.startswith("invalid token"), detail
        for word in words:
            assert word.lower() in detail.lower(), detail


async def test_a_valid_token_is_accepted(system: Stack) -> None:
    expect(await system.http.get("/v1/me/activity", headers=signed(system)), 200)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"exp": None}, ("exp",)),
        ({"iat": None}, ("iat",)),
        ({"iss": None}, ("iss",)),
        ({"aud": None}, ("aud",)),
        ({"exp": int(time.time()) - 3600}, ("expired",)),
        ({"iss": "someone-else"}, ("issuer",)),
        ({"aud": "another-api"}, ("audience",)),
        ({"sub": "\u0000"}, ("sub", "U+0000")),
        ({"sub": "person\u0000x"}, ("sub", "U+0000")),
        ({"sub": "evil\u202eexe"}, ("sub", "U+202E")),
        ({"sub": "a" * 201}, ("sub", "200")),
        ({"sub": 12345}, ("string",)),
        ({"dept": "parks\u0007"}, ("dept",)),
        ({"district": "Jongno\u2066"}, ("district",)),
        ({"residency": "resident\n"}, ("residency",)),
        ({"sex": ["female"]}, ("sex",)),
        ({"role": "citizen\u0000"}, ("role",)),
    ],
    ids=lambda v: repr(v)[:40],
)
async def test_a_token_is_refused(
    system: Stack, overrides: dict[str, Any], words: tuple[str, ...]
) -> None:
    await assert_refused(system, signed(system, **overrides), *words)


async def test_tokens_signed_otherwise_are_refused(system: Stack) -> None:
    now = int(time.time())
    claims = {
        "sub": "x",
        "role": "admin",
        "iss": system.settings.jwt_issuer,
        "aud": system.settings.jwt_audience,
        "iat": now,
        "exp": now + 3600,
    }
    unsigned = jwt.encode(claims, "", algorithm="none")
    await assert_refused(system, auth(unsigned))
    other_key = jwt.encode(claims, "a-different-key-of-32-bytes-length!", algorithm="HS256")
    await assert_refused(system, auth(other_key), "Signature")


async def test_dev_tokens_carry_iss_aud_iat_exp(api: Api, system: Stack) -> None:
    token = await api.token("dev-person")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == system.settings.jwt_issuer == "minju"
    assert claims["aud"] == system.settings.jwt_audience == "minju-api"
    assert claims["iat"] <= time.time() < claims["exp"]
    expect(await system.http.get("/v1/me/activity", headers=auth(token)), 200)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sub", "\u0000"),
        ("sub", "ab\u0000cd"),
        ("sub", "person\u202e"),
        ("sub", "tab\there"),
        ("dept", "par\u0085ks"),
    ],
)
async def test_dev_tokens_are_not_issued_for_unusable_claims(
    system: Stack, field: str, value: str
) -> None:
    body = {"sub": "someone", "role": "caseworker", "dept": "parks", field: value}
    expect_problem(await system.http.post("/v1/dev/tokens", json=body), 422, field=field)


async def test_issuer_and_audience_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MINJU_JWT_ISSUER", raising=False)
    monkeypatch.delenv("MINJU_JWT_AUDIENCE", raising=False)
    defaults = Settings.from_env()
    assert (defaults.jwt_issuer, defaults.jwt_audience) == ("minju", "minju-api")
    monkeypatch.setenv("MINJU_JWT_ISSUER", "https://id.seoul.example")
    monkeypatch.setenv("MINJU_JWT_AUDIENCE", "democracy-seoul")
    city = Settings.from_env()
    assert (city.jwt_issuer, city.jwt_audience) == ("https://id.seoul.example", "democracy-seoul")
