"""Database access: one async engine per process, and the Alembic migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from minju.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """`pool_size` connections (default: MINJU_DB_POOL_SIZE) are kept open.

    No ping on checkout (a round trip per transaction, 8 % of the ballot path's profile):
    after PostgreSQL restarts, the first use of a stale connection fails as "database down"
    (a 503 with Retry-After; an activity is retried) and invalidates the whole pool, so every
    later checkout connects anew."""
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size if pool_size is None else pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_pre_ping=False,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    return config


async def migrate(settings: Settings) -> None:
    """Bring the schema to the newest revision (the only way the schema is ever created)."""
    await asyncio.to_thread(command.upgrade, alembic_config(settings), "head")
