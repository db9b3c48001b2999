"""What every request handler needs, built once per process in the app's lifespan."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from minju.clock import Clock
from minju.config import Settings
from models.ballot_box import AUTOCOMMIT

#: Something to do once a unit's transaction has committed (e.g. send the signals it queued),
#: called with the process's context, not the unit's.
AfterCommit = Callable[["AppContext"], Awaitable[object]]


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    clock: Clock
    #: Set inside `unit()`: what waits for its commit. None outside a unit.
    pending_after_commit: list[AfterCommit] | None = None

    async def after_commit(self, action: AfterCommit) -> None:
        """Run `action` once what this context wrote is committed: now outside a unit."""
        if self.pending_after_commit is None:
            await action(self)
        else:
            self.pending_after_commit.append(action)

    @asynccontextmanager
    async def statement_session(self) -> AsyncIterator[AsyncSession]:
        """A session for a write that is one statement: outside a unit, on a connection where
        each statement commits by itself (no BEGIN and COMMIT round trips: a ballot); inside
        a unit, a session of the unit's transaction. Outside a unit the session's `info`
        holds the connection's asyncpg driver (`models.ballot_box.AUTOCOMMIT`) for the
        statement to be sent by it directly."""
        if self.pending_after_commit is not None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level=AUTOCOMMIT)
            async with AsyncSession(bind=connection, expire_on_commit=False) as session:
                raw = await connection.get_raw_connection()
                session.info[AUTOCOMMIT] = raw.driver_connection
                yield session

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[tuple[AppContext, AsyncConnection]]:
        """One transaction for everything a request writes.

        Yields a context whose `sessions()` all join one connection's transaction (each
        session's own `begin()` is a savepoint in it) and that connection, for statements of
        the caller's own. It commits when the block ends, or rolls back if it raises: nothing
        written in the block is committed without the rest. Then what was deferred with
        `after_commit` runs.
        """
        async with self.engine.connect() as connection:
            async with connection.begin():
                unit = dataclasses.replace(
                    self,
                    sessions=async_sessionmaker(
                        bind=connection,
                        class_=AsyncSession,
                        expire_on_commit=False,
                        join_transaction_mode="create_savepoint",
                    ),
                    pending_after_commit=[],
                )
                yield unit, connection
        assert unit.pending_after_commit is not None
        for action in unit.pending_after_commit:
            await action(self)


def _context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> AppContext:
    """Async, as every dependency here: FastAPI runs a plain `def` in its thread pool, a
    thread hop per request that showed in the ballot path's profile."""
    return _context_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with _context_of(request).sessions() as session:
        yield session


Ctx = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, Depends(get_session)]
