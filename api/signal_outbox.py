"""The outbox of signals to case workflows (a support reaching a threshold).

A signal is written as a row in the same transaction as what calls for it, then sent right
after the commit; if Temporal is away, the request still succeeds (what it wrote is durable) and
the relay, running in every API process, sends the row when Temporal is back. Signals are
idempotent, so a row sent twice (two processes, a crash between send and delete) is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import delete, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.context import AppContext
from models.tables import PendingSignal

log = logging.getLogger("minju.signals")

RELAY_INTERVAL_SECONDS = 2.0
RELAY_BATCH = 200

#: (workflow id, signal name, when what calls for it happened: the signal's argument)
Signal = tuple[str, str, datetime]


async def enqueue(session: AsyncSession, signal: Signal) -> None:
    """Record `signal` inside the caller's transaction; its time is the row's `created_at`."""
    workflow_id, name, at = signal
    await session.execute(
        insert(PendingSignal)
        .values(workflow_id=workflow_id, signal=name, created_at=at)
        .on_conflict_do_nothing()
    )


async def send(ctx: AppContext, signals: list[Signal]) -> bool:
    """Send committed signals and delete their rows; False if Temporal or Postgres refused
    (the rows stay for the relay)."""
    sent: list[tuple[str, str]] = []
    try:
        for workflow_id, name, at in signals:
            await ctx.temporal.get_workflow_handle(workflow_id).signal(name, at)
            sent.append((workflow_id, name))
    except Exception as exc:
        log.warning("signal not sent yet (the relay will retry): %s: %s", type(exc).__name__, exc)
    if sent:
        try:
            async with ctx.sessions() as session, session.begin():
                await session.execute(
                    delete(PendingSignal).where(
                        tuple_(col(PendingSignal.workflow_id), col(PendingSignal.signal)).in_(sent)
                    )
                )
        except Exception as exc:
            log.warning("sent signals not cleared yet: %s: %s", type(exc).__name__, exc)
            return False
    return len(sent) == len(signals)


async def relay_forever(ctx: AppContext) -> None:
    """Send what is pending, every RELAY_INTERVAL_SECONDS, for as long as the API runs."""
    while True:
        await asyncio.sleep(RELAY_INTERVAL_SECONDS)
        try:
            async with ctx.sessions() as session:
                rows = (
                    await session.exec(
                        select(PendingSignal)
                        .order_by(col(PendingSignal.created_at))
                        .limit(RELAY_BATCH)
                    )
                ).all()
            if rows:
                await send(ctx, [(r.workflow_id, r.signal, r.created_at) for r in rows])
        except Exception as exc:
            log.warning("signal relay: %s: %s", type(exc).__name__, exc)
