"""The Temporal worker: registers every workflow and activity of minju."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.ballots import BallotBoxes
from activities.budget import BudgetRecords
from activities.district_plans import DistrictPlanRecords
from activities.forums import ForumRecords
from activities.notices import Notices
from activities.opinions import OpinionBoxes
from activities.projects import ProjectRecords
from activities.records import CaseRecords
from minju.config import ClockMode, Settings
from minju.db import create_engine, session_factory
from minju.temporal import connect_temporal
from workflows.registry import WORKFLOWS

log = logging.getLogger("minju.worker")

#: Our own modules a workflow imports that are the same for every run, passed through the
#: sandbox rather than imported again per run. Deterministic and side-effect free on import:
#: `models` are dataclasses, enums, constants and pure functions (no module state a run could
#: change: no caches, no mutated globals); `activities` only define the activity classes a
#: workflow names (their bodies, with the database, never run in a workflow). The workflows
#: import them under `imports_passed_through()` already; naming them here also covers what
#: they import later. The workflow modules themselves (`workflows.*`) are NOT passed
#: through: the sandbox imports them afresh for every run, which is what isolates runs.
PASSTHROUGH_MODULES = ("models", "activities")
#: How long a cached workflow's task waits for this worker on the simulated clock.
STICKY_TIMEOUT = timedelta(days=3650)


@dataclasses.dataclass(frozen=True)
class ValidatedOnceRunner(SandboxedWorkflowRunner):
    """The sandbox, unchanged for every run, validating each workflow class once per process.

    A `Worker` or a `Replayer.replay_*` call validates every workflow it is given by creating
    a throwaway sandboxed instance of it (the class's modules imported afresh, about 10 ms
    each): an auditor's replay of one history paid for five. The same class validates the
    same way every time in one process (its code and these restrictions do not change), so
    a class validated once is not validated again; one that fails is tried again next time.
    """

    _validated: set[type] = dataclasses.field(
        default_factory=set, init=False, repr=False, compare=False
    )

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        if defn.cls in self._validated:
            return
        super().prepare_workflow(defn)
        self._validated.add(defn.cls)


#: The sandbox every workflow of minju runs in, in the worker and in every replay (auditors,
#: tests, `python -m bench replay`): replays check the code under the worker's restrictions.
WORKFLOW_RUNNER = ValidatedOnceRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
)


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
        notices.deliver,
        opinions.open_box,
        opinions.close_and_count,
        forums.record_forum,
        budget.project_budget_cycle,
        ProjectRecords(sessions).project_budget_project,
        budget.open_budget_ballot,
        budget.close_budget_ballot,
        budget.submitted_projects,
        DistrictPlanRecords(sessions).project_district_plan,
    ]


def create_worker(
    client: Client, settings: Settings, engine: AsyncEngine, **options: Any
) -> Worker:
    if settings.worker_cache is not None:
        options.setdefault("max_cached_workflows", settings.worker_cache)
        if settings.clock_mode is ClockMode.SIMULATED:
            # A sticky task not started within this time goes back to the shared queue, and
            # on the time-skipping server that time may be skipped. A precaution: the stalls
            # `minju simulate` met came from children closing after their parents
            # (workflows.common.outlive_children), not from this timeout.
            options.setdefault("sticky_queue_schedule_to_start_timeout", STICKY_TIMEOUT)
    elif settings.clock_mode is ClockMode.SIMULATED:
        # The time-skipping test server never moves a workflow task off the sticky queue of a
        # worker that died, so a restarted worker would never see the cases the dead one had
        # cached. With no cache a worker asks for no sticky queue: every task goes to the
        # shared queue (each replays its history, which simulated runs can afford).
        options.setdefault("max_cached_workflows", 0)
    options.setdefault("workflow_runner", WORKFLOW_RUNNER)
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
