"""What every request handler needs, built once per process in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from minju.clock import Clock
from minju.config import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    clock: Clock


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_context(request).sessions() as session:
        yield session


Ctx = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, Depends(get_session)]
