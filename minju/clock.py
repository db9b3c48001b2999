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

from minju.config import ClockMode


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
        if delta <= timedelta(0):
            raise ClockError("the clock only moves forward")
        request = SleepRequest()
        request.duration.FromTimedelta(delta)
        await self._client.test_service.unlock_time_skipping_with_sleep(request)
        return await self.now()


def clock_for(mode: ClockMode, client: Client) -> Clock:
    return SimulatedClock(client) if mode is ClockMode.SIMULATED else RealClock()
