"""The Temporal worker: registers every workflow and activity of minju."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.ballots import BallotBoxes
from activities.budget import BudgetRecords
from activities.forums import ForumRecords
from activities.notices import Notices
from activities.opinions import OpinionBoxes
from activities.projects import ProjectRecords
from activities.records import CaseRecords
from minju.config import ClockMode, Settings
from minju.db import create_engine, session_factory
from minju.temporal import connect_temporal
from workflows import WORKFLOWS

log = logging.getLogger("minju.worker")


def activities(engine: AsyncEngine) -> list[Callable[..., Any]]:
    sessions = session_factory(engine)
    records, ballots, notices = CaseRecords(sessions), BallotBoxes(sessions), Notices(sessions)
    opinions, forums = OpinionBoxes(sessions), ForumRecords(sessions)
    budget = BudgetRecords(sessions)
    return [
        records.project_proposal,
        records.project_forum,
        records.project_ask,
        ballots.close_and_tally,
        notices.enqueue,
        opinions.open_box,
        opinions.close_and_count,
        forums.record_forum,
        budget.project_budget_cycle,
        ProjectRecords(sessions).project_budget_project,
        budget.open_budget_ballot,
        budget.close_budget_ballot,
        budget.submitted_projects,
    ]


def create_worker(
    client: Client, settings: Settings, engine: AsyncEngine, **options: Any
) -> Worker:
    if settings.clock_mode is ClockMode.SIMULATED:
        # The time-skipping test server never moves a workflow task off the sticky queue of a
        # worker that died, so a restarted worker would never see the cases the dead one had
        # cached. With no cache a worker asks for no sticky queue: every task goes to the
        # shared queue (each replays its history, which simulated runs can afford).
        options.setdefault("max_cached_workflows", 0)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities(engine),
        **options,
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then finish in-flight tasks and return."""
    client = await connect_temporal(settings)
    engine = create_engine(settings)
    worker = create_worker(client, settings, engine)
    log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_address)
    try:
        async with worker:
            await stop.wait()
        log.info("worker stopped")
    finally:
        await engine.dispose()
