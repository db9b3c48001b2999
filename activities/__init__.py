"""Every side effect of the workflows, grouped by the party it talks to.

- `records`: the case records in Postgres (the projection of each transition);
- `ballots`: the ballot box (casting is done by the API, tallying by the workflow);
- `notices`: the notification outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

#: How often a long activity tells Temporal it is alive (its heartbeat timeout is longer).
HEARTBEAT_SECONDS = 2.0


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the block runs, so that a long activity (a count over a million rows)
    may take minutes, yet one whose worker died is retried within its heartbeat timeout."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
