"""The FastAPI application: one router per audience, problem+json errors, a health check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import (
    asks,
    auditors,
    ballot_batches,
    budget,
    citizens,
    codec,
    dev,
    district_plans,
    errors,
    forums,
    me,
    notifications,
    officials,
    open_data,
    openapi,
    participation,
    projects,
    signal_outbox,
    sortition,
)
from api.context import AppContext, Ctx
from api.schemas import ClockResponse, Health
from minju.clock import clock_for
from minju.config import Settings
from minju.db import create_engine, session_factory
from minju.temporal import connect_temporal

log = logging.getLogger("minju.api")


def create_app(settings: Settings) -> FastAPI:
    if not settings.jwt_secret:
        raise ValueError("MINJU_JWT_SECRET must be set")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        client = await connect_temporal(settings)
        app.state.ctx = AppContext(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            temporal=client,
            clock=clock_for(settings.clock_mode, client),
        )
        relay = asyncio.create_task(signal_outbox.relay_forever(app.state.ctx))
        try:
            yield
        finally:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title="minju",
        version="1",
        summary="Citizen proposals, forums and budget cycles as durable processes.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(errors.reject_unwritable_parameters)],
    )
    errors.install(app)
    app.include_router(me.router)
    app.include_router(citizens.router)
    app.include_router(officials.router)
    app.include_router(forums.router)
    app.include_router(asks.router)
    app.include_router(budget.router)
    app.include_router(ballot_batches.router)
    app.include_router(projects.router)
    app.include_router(participation.router)
    app.include_router(district_plans.router)
    app.include_router(sortition.router)
    app.include_router(notifications.router)
    app.include_router(open_data.router)
    app.include_router(auditors.router)
    app.include_router(codec.router)
    if settings.dev_endpoints:
        app.include_router(dev.router)

    @app.get("/v1/clock", response_model=ClockResponse, tags=["development"])
    async def clock(ctx: Ctx) -> ClockResponse:
        return ClockResponse(now=await ctx.clock.now(), mode=ctx.clock.mode.value)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz(ctx: Ctx) -> JSONResponse:
        database = temporal = "ok"
        try:
            async with ctx.engine.connect() as connection:
                await asyncio.wait_for(connection.execute(text("SELECT 1")), 5)
        except Exception as exc:
            database = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(ctx.temporal.service_client.check_health(), 5)
        except Exception as exc:
            temporal = f"error: {type(exc).__name__}"
        healthy = database == temporal == "ok"
        body = Health(status="ok" if healthy else "degraded", temporal=temporal, database=database)
        return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)

    openapi.install(app)
    return app
