"""What time it is for the engine: the machine's clock, or the Temporal test server's.

In simulated mode the whole stack runs on the time-skipping test server with time locked; the
only way forward is `advance`, which fires every timer due on the way (design.md, "Simulated
clock"). Workflows never read this: they use `workflow.now()`, which is the same server clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf import empty_pb2
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from minju.config import ClockMode

STALLED_SLEEP_RETRY = timedelta(seconds=2)


class ClockError(Exception):
    pass


class Clock(Protocol):
    mode: ClockMode

    async def now(self) -> datetime: ...

    async def advance(self, delta: timedelta) -> datetime: ...


class RealClock:
    mode = ClockMode.REAL

    async def now(self) -> datetime:
        return datetime.now(UTC)

    async def advance(self, delta: timedelta) -> datetime:
        raise ClockError("the clock can be advanced only in simulated mode")


class SimulatedClock:
    mode = ClockMode.SIMULATED

    def __init__(self, client: Client) -> None:
        self._client = client

    async def now(self) -> datetime:
        response = await self._client.test_service.get_current_time(empty_pb2.Empty())
        return response.time.ToDatetime().replace(tzinfo=UTC)

    async def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta`, firing every timer due on the way.

        The test server (1.40) sometimes stops skipping for the rest of a sleep once a
        workflow completes inside it, and then runs at wall speed. So the sleep is asked for
        in attempts of a few seconds each, every one for what remains up to the target.
        """
        if delta <= timedelta(0):
            raise ClockError("the clock only moves forward")
        target = await self.now() + delta
        while (remaining := target - await self.now()) > timedelta(0):
            request = SleepRequest()
            request.duration.FromTimedelta(remaining)
            try:
                await self._client.test_service.unlock_time_skipping_with_sleep(
                    request, timeout=STALLED_SLEEP_RETRY
                )
            except RPCError as exc:
                if exc.status is not RPCStatusCode.DEADLINE_EXCEEDED and "Timeout" not in str(exc):
                    raise
        return await self.now()


def clock_for(mode: ClockMode, client: Client) -> Clock:
    return SimulatedClock(client) if mode is ClockMode.SIMULATED else RealClock()
