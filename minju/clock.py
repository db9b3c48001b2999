"""What time it is for the engine: the machine's clock, or the Temporal test server's.

In simulated mode the whole stack runs on the time-skipping test server with time locked; the
only way forward is `advance`, which fires every timer due on the way (design.md, "Simulated
clock"). Workflows never read this: they use `workflow.now()`, which is the same server clock.

How the test server moves its clock (sdk-java, temporal-test-server `TestService` and
`SelfAdvancingTimerImpl`): time skipping is governed by one lock *counter*. Its base lock keeps
time at wall speed; every workflow task and activity in progress holds one more.
`unlockTimeSkippingWithSleep(d)` schedules a timer at now + d whose callback takes a lock back,
then releases one lock and blocks until that timer fires. A client that gives up on the call does
not undo it: the server thread keeps blocking, its lock is still released, and it comes back only
at the target. So a second sleep while the first is still outstanding releases a lock held by
somebody else (the clock then skips while a workflow task or activity is running), and when that
holder lets go the counter goes below zero: "Unbalanced lock and unlock calls". The old loop of
2-second attempts did exactly that whenever the worker was busy past two seconds.

Hence the rules here:

- one sleep at a time per process (an asyncio lock), and never a second sleep while one that
  may have reached the server has not come back or reached its target;
- the sleep is not cancelled: it runs on its own connection without HTTP/2 keep-alive pings
  (the Java server answers a call that has been quiet for 90 s of 30-s pings with GOAWAY
  "too_many_pings", which the client reports as "transport error" / "h2 protocol error") and
  with an explicit deadline (the client's default is 30 s);
- an advance waits at most `budget`; then it raises ClockStalled with where the clock is and
  where it is going, and the sleep carries on in the background, so repeating the advance to the
  same absolute target continues it instead of starting another;
- a sleep that fails in transport is retried only when the server cannot have it: the failure
  says the call was never delivered (UNAVAILABLE, no connection) and the clock shows no
  skipping, or the clock has run at wall speed for `lost_after` since (nobody is skipping it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf import empty_pb2
from temporalio.api.testservice.v1 import GetCurrentTimeResponse, SleepRequest, SleepResponse
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode, ServiceClient

from minju.config import ClockMode

log = logging.getLogger("minju.clock")

#: How long one advance may take before it answers where it stopped (below the 60 s that many
#: HTTP clients and proxies give a request).
ADVANCE_BUDGET = timedelta(seconds=50)
#: After a sleep failed in a way that may have reached the server: how long the clock must run at
#: no more than wall speed before the sleep is taken to be lost and asked for again.
LOST_AFTER = timedelta(seconds=60)
#: The same for a failure that says the call was never delivered (UNAVAILABLE, no connection).
NOT_DELIVERED_AFTER = timedelta(seconds=1)
#: Deadline of one sleep call: long enough never to cut a real one short.
SLEEP_DEADLINE = timedelta(hours=1)
#: Deadline of one read of the server's clock.
READ_DEADLINE = timedelta(seconds=5)
#: Server time gained over wall time that proves somebody is skipping the clock.
SKIP_EVIDENCE = timedelta(seconds=1)
POLL_SECONDS = 0.2
BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)


class ClockError(Exception):
    """The request cannot be done in this mode or with these values (a 409 / 422)."""


class ClockUnavailable(Exception):
    """The server's clock cannot be read or moved right now; trying again later may work."""

    def __init__(self, message: str, *, now: datetime | None = None) -> None:
        super().__init__(message)
        self.now = now


class ClockStalled(ClockUnavailable):
    """An advance stopped short of its target within its time budget (or could not start)."""

    def __init__(self, message: str, *, now: datetime | None, target: datetime | None) -> None:
        super().__init__(message, now=now)
        self.target = target


class Clock(Protocol):
    mode: ClockMode

    async def now(self) -> datetime: ...

    async def advance(self, delta: timedelta) -> datetime: ...

    async def advance_to(self, target: datetime) -> datetime: ...


class RealClock:
    mode = ClockMode.REAL

    async def now(self) -> datetime:
        return datetime.now(UTC)

    async def advance(self, delta: timedelta) -> datetime:
        raise ClockError("the clock can be advanced only in simulated mode")

    async def advance_to(self, target: datetime) -> datetime:
        raise ClockError("the clock can be advanced only in simulated mode")


class TimeSkippingRPCs(Protocol):
    """The two test-service RPCs the simulated clock uses (temporalio's `TestService`, whose
    signatures take the RPC deadline as `timeout`)."""

    async def get_current_time(
        self,
        req: empty_pb2.Empty,
        *,
        timeout: timedelta | None = None,  # noqa: ASYNC109 - the RPC deadline
    ) -> GetCurrentTimeResponse: ...

    async def unlock_time_skipping_with_sleep(
        self,
        req: SleepRequest,
        *,
        timeout: timedelta | None = None,  # noqa: ASYNC109 - the RPC deadline
    ) -> SleepResponse: ...


@dataclasses.dataclass
class _Sleep:
    """One unlock-with-sleep the server may have: it ends at `target`, when the server relocks."""

    target: datetime
    task: asyncio.Task[SleepResponse] | None
    #: Once the call failed: when (monotonic), the server time then, and how long to wait for
    #: proof that the server has it before asking again.
    failed_at: float = 0.0
    server_time_then: datetime | None = None
    give_up_after: timedelta = LOST_AFTER
    confirmed: bool = False


def _server_time(response: GetCurrentTimeResponse) -> datetime:
    return response.time.ToDatetime().replace(tzinfo=UTC)


def _never_delivered(exc: BaseException) -> bool:
    """Whether a failed call cannot have reached the server (no connection at all)."""
    if isinstance(exc, RPCError):
        return exc.status is RPCStatusCode.UNAVAILABLE
    return isinstance(exc, RuntimeError | ConnectionError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class SimulatedClock:
    mode = ClockMode.SIMULATED

    def __init__(
        self,
        client: Client,
        *,
        test_service: TimeSkippingRPCs | None = None,
        budget: timedelta = ADVANCE_BUDGET,
        lost_after: timedelta = LOST_AFTER,
    ) -> None:
        """`test_service` replaces the RPCs to the server (reads and sleeps), for tests."""
        self._client = client
        self._reads: TimeSkippingRPCs = test_service or client.test_service
        self._sleeps: TimeSkippingRPCs | None = test_service
        self._budget = budget
        self._lost_after = lost_after
        self._advancing = asyncio.Lock()
        self._sleep: _Sleep | None = None

    async def now(self) -> datetime:
        try:
            response = await self._reads.get_current_time(empty_pb2.Empty(), timeout=READ_DEADLINE)
        except (RPCError, RuntimeError) as exc:
            raise ClockUnavailable(
                f"the Temporal test server's clock cannot be read ({_describe(exc)})"
            ) from exc
        return _server_time(response)

    async def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` from now, firing every timer due on the way."""
        if delta <= timedelta(0):
            raise ClockError("the clock only moves forward")
        return await self._advance(lambda now: now + delta)

    async def advance_to(self, target: datetime) -> datetime:
        """Move the clock to `target`; a target already passed moves nothing. Repeating it after
        ClockStalled continues the same advance."""
        if target.tzinfo is None:
            raise ClockError("the target needs a UTC offset")
        return await self._advance(lambda _: target)

    async def _advance(self, target_from: Callable[[datetime], datetime]) -> datetime:
        deadline = time.monotonic() + self._budget.total_seconds()
        now: datetime | None = None
        target: datetime | None = None
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self._left(deadline)):
                await self._advancing.acquire()
        except TimeoutError:
            now = await self._now_or_none()
            raise ClockStalled(
                "another advance of the clock is still running; retry when it has finished",
                now=now,
                target=target_from(now) if now is not None else None,
            ) from None
        try:
            now = await self._read(deadline)
            target = target_from(now)
            while True:
                if now >= target:
                    self._forget_passed(now)
                    return now
                if time.monotonic() >= deadline:
                    raise ClockStalled(
                        "the clock did not reach its target within "
                        f"{self._budget.total_seconds():.0f} s; it keeps moving there",
                        now=now,
                        target=target,
                    )
                await self._step(now, target, deadline)
                now = await self._read(deadline)
        except ClockStalled as stalled:
            if stalled.target is None and target is not None:
                stalled.target = target
            if stalled.now is None:
                stalled.now = now
            raise
        finally:
            self._advancing.release()

    def _forget_passed(self, now: datetime) -> None:
        """Drop the sleep once the server is done with it (its target passed, call over). One
        still under way (a longer advance that stalled earlier) is left to finish."""
        sleep = self._sleep
        if sleep is not None and now >= sleep.target:
            if sleep.task is None or sleep.task.done():
                self._sleep = None

    async def _step(self, now: datetime, target: datetime, deadline: float) -> None:
        """One move towards `target`: start a sleep, wait on the one under way, or retry."""
        sleep = self._sleep
        if sleep is None:
            if now >= target:
                return
            self._sleep = _Sleep(target=target, task=self._start_sleep(target - now))
            return
        if sleep.server_time_then is not None and now < sleep.server_time_then:
            log.warning("the test server's clock went back (restarted?): its sleeps are gone")
            self._sleep = None
            return
        if sleep.task is not None:
            if not sleep.task.done():
                await asyncio.wait(
                    {sleep.task}, timeout=min(POLL_SECONDS * 5, self._left(deadline))
                )
                return
            failure: BaseException | None = (
                asyncio.CancelledError() if sleep.task.cancelled() else sleep.task.exception()
            )
            if failure is None:
                self._sleep = None  # came back: the server relocked at its target
                return
            log.warning(
                "the test server's sleep to %s failed: %s", sleep.target, _describe(failure)
            )
            sleep.task = None
            sleep.failed_at = time.monotonic()
            sleep.server_time_then = now
            sleep.give_up_after = (
                NOT_DELIVERED_AFTER if _never_delivered(failure) else self._lost_after
            )
            return
        # The call failed: the server may still carry it out (it relocks at its target).
        assert sleep.server_time_then is not None
        waited = timedelta(seconds=time.monotonic() - sleep.failed_at)
        if now - sleep.server_time_then > waited + SKIP_EVIDENCE:
            sleep.confirmed = True  # the clock skips: the server has the sleep
        if not sleep.confirmed and waited >= sleep.give_up_after:
            log.warning(
                "no sign for %.0f s that the server has the sleep to %s: asking again",
                waited.total_seconds(),
                sleep.target,
            )
            self._sleep = None
            return
        await asyncio.sleep(min(POLL_SECONDS, self._left(deadline)))

    def _start_sleep(self, duration: timedelta) -> asyncio.Task[SleepResponse]:
        async def call() -> SleepResponse:
            request = SleepRequest()
            request.duration.FromTimedelta(duration)
            sleeps = await self._sleep_service()
            return await sleeps.unlock_time_skipping_with_sleep(request, timeout=SLEEP_DEADLINE)

        task = asyncio.create_task(call(), name="minju clock sleep")
        task.add_done_callback(_retrieve)
        return task

    async def _sleep_service(self) -> TimeSkippingRPCs:
        """The test service on a connection of its own without keep-alive pings (see above)."""
        if self._sleeps is None:
            config = dataclasses.replace(
                self._client.service_client.config, keep_alive_config=None, lazy=False
            )
            self._sleeps = (await ServiceClient.connect(config)).test_service
        return self._sleeps

    async def _read(self, deadline: float) -> datetime:
        """The server's time, retrying transport errors with a short backoff until `deadline`."""
        for attempt in itertools.count():
            try:
                return await self.now()
            except ClockUnavailable as exc:
                pause = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                if time.monotonic() + pause >= deadline:
                    raise ClockStalled(str(exc), now=None, target=None) from exc
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover - count() never ends

    async def _now_or_none(self) -> datetime | None:
        with contextlib.suppress(ClockUnavailable):
            return await self.now()
        return None

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())


def _retrieve(task: asyncio.Task[SleepResponse]) -> None:
    """Mark a finished sleep's failure as seen: the advance that waits for it reports it."""
    if not task.cancelled():
        task.exception()


def clock_for(mode: ClockMode, client: Client) -> Clock:
    return SimulatedClock(client) if mode is ClockMode.SIMULATED else RealClock()
