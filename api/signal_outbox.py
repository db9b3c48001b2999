"""The outbox of signals to case workflows (a support reaching a threshold).

A signal is written as a row in the same transaction as what calls for it, then sent right
after the commit; if Temporal is away, the request still succeeds (what it wrote is durable) and
the relay, running in every API process, sends the row when Temporal is back. A sender claims
the rows it sends (locked, skipping those another holds), so a row is sent once; only a crash
between the send and the delete sends it again, which the workflows ignore.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, true, tuple_
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
    keys = [(workflow_id, name) for workflow_id, name, _ in signals]
    return await _send_claimed(
        ctx, tuple_(col(PendingSignal.workflow_id), col(PendingSignal.signal)).in_(keys)
    )


async def _send_claimed(ctx: AppContext, which: Any, limit: int | None = None) -> bool:
    """Claim the pending rows `which` selects (locked, skipping rows another sender holds),
    send their signals and delete the sent rows, in one transaction: the sender right after
    a commit and the relay never both send a row. Only a crash between a send and the commit
    sends one again (harmless: the workflows ignore a repeated threshold)."""
    try:
        async with ctx.sessions() as session, session.begin():
            query = (
                select(PendingSignal)
                .where(which)
                .order_by(col(PendingSignal.created_at))
                .with_for_update(skip_locked=True)
            )
            if limit is not None:
                query = query.limit(limit)
            rows = (await session.exec(query)).all()
            sent: list[tuple[str, str]] = []
            try:
                for row in rows:
                    handle = ctx.temporal.get_workflow_handle(row.workflow_id)
                    await handle.signal(row.signal, row.created_at)
                    sent.append((row.workflow_id, row.signal))
            except Exception as exc:
                log.warning(
                    "signal not sent yet (the relay will retry): %s: %s", type(exc).__name__, exc
                )
            if sent:
                await session.execute(
                    delete(PendingSignal).where(
                        tuple_(col(PendingSignal.workflow_id), col(PendingSignal.signal)).in_(sent)
                    )
                )
            return len(sent) == len(rows)
    except Exception as exc:
        log.warning("pending signals not sent: %s: %s", type(exc).__name__, exc)
        return False


async def relay_once(ctx: AppContext) -> bool:
    """Send what is pending (the oldest RELAY_BATCH rows no other sender holds)."""
    return await _send_claimed(ctx, true(), limit=RELAY_BATCH)


async def relay_forever(ctx: AppContext) -> None:
    """Send what is pending, every RELAY_INTERVAL_SECONDS, for as long as the API runs."""
    while True:
        await asyncio.sleep(RELAY_INTERVAL_SECONDS)
        await relay_once(ctx)
