"""Replay of the recorded histories (`tests/histories/*.json`) against the current code.

The auditors' Replayer (`api.auditors.replayer`: every workflow type the worker runs, in the
worker's own sandbox, `worker.WORKFLOW_RUNNER`) replays all the recorded histories in one
`replay_workflows` call, round after round for the time given; the figure is histories per
second per core (histories over the CPU time of this process, which replays on one thread:
the sandbox and the workflow code are Python). The baseline is the same Replayer replaying a
trivial history (a workflow started and given its first task, with nothing to do), as many
times: the fixed cost of one replay, without any of the app's workflow code. A detail gives
the same histories with the sandbox off (`UnsandboxedWorkflowRunner`, never used by the
product): what the SDK's replay of these histories costs without any sandbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from google.protobuf import json_format
from temporalio import workflow
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

# The sandbox re-imports this module for `Trivial`: the rest passes through.
with workflow.unsafe.imports_passed_through():
    from api.auditors import replayer
    from bench.harness import Figure
    from workflows.registry import WORKFLOWS

GOAL = "≥ 100 histories per second per core"


@workflow.defn(name="BenchTrivial", sandboxed=True)
class Trivial:
    @workflow.run
    async def run(self) -> None:
        return None


def recorded() -> list[WorkflowHistory]:
    histories = Path(__file__).resolve().parent.parent / "tests" / "histories"
    return [
        WorkflowHistory.from_json(path.stem, path.read_text())
        for path in sorted(histories.glob("*.json"))
    ]


def trivial_history(workflow_id: str) -> WorkflowHistory:
    """A workflow of type `BenchTrivial` started and given its first workflow task."""
    at = "2026-01-01T00:00:00Z"
    history = json_format.ParseDict(
        {
            "events": [
                {
                    "eventId": "1",
                    "eventTime": at,
                    "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
                    "workflowExecutionStartedEventAttributes": {
                        "workflowType": {"name": "BenchTrivial"},
                        "taskQueue": {"name": "bench"},
                        "attempt": 1,
                        "originalExecutionRunId": "00000000-0000-0000-0000-000000000001",
                        "firstExecutionRunId": "00000000-0000-0000-0000-000000000001",
                    },
                },
                {
                    "eventId": "2",
                    "eventTime": at,
                    "eventType": "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED",
                    "workflowTaskScheduledEventAttributes": {
                        "taskQueue": {"name": "bench"},
                        "attempt": 1,
                    },
                },
                {
                    "eventId": "3",
                    "eventTime": at,
                    "eventType": "EVENT_TYPE_WORKFLOW_TASK_STARTED",
                    "workflowTaskStartedEventAttributes": {"scheduledEventId": "2"},
                },
            ]
        },
        History(),
    )
    return WorkflowHistory(workflow_id, history.events)


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def _replay_rounds(
    replayer: Replayer, histories: list[WorkflowHistory], seconds: float
) -> tuple[int, float, float]:
    """Replay `histories` in rounds for about `seconds`; (histories replayed, wall s, CPU s)."""
    replayed = 0
    wall, cpu = time.perf_counter(), time.process_time()
    deadline = wall + seconds
    while True:
        results = await replayer.replay_workflows(_each(histories), raise_on_replay_failure=False)
        failures = {run: str(failure) for run, failure in results.replay_failures.items()}
        if failures:
            raise AssertionError(f"replay failed: {json.dumps(failures)[:2000]}")
        replayed += len(histories)
        if time.perf_counter() >= deadline:
            break
    return replayed, time.perf_counter() - wall, time.process_time() - cpu


async def replay(seconds: float) -> list[Figure]:
    histories = recorded()
    events = sum(len(h.events) for h in histories)
    app = replayer()
    await _replay_rounds(app, histories, 0)  # warm: imports, validates each workflow once
    done, wall, cpu = await _replay_rounds(app, histories, seconds)

    trivial = [trivial_history(f"bench-trivial-{n}") for n in range(len(histories))]
    plain = replayer([Trivial])
    await _replay_rounds(plain, trivial, 0)
    base_done, _, base_cpu = await _replay_rounds(plain, trivial, seconds / 2)

    bare = Replayer(workflows=list(WORKFLOWS), workflow_runner=UnsandboxedWorkflowRunner())
    await _replay_rounds(bare, histories, 0)
    bare_done, _, bare_cpu = await _replay_rounds(bare, histories, seconds / 2)

    return [
        Figure(
            what=f"replay of the {len(histories)} recorded histories",
            value=done / cpu,
            unit="histories/s/core",
            baseline_what="the same Replayer replaying a trivial 3-event history",
            baseline=base_done / base_cpu,
            goal=GOAL,
            details={
                "replayed": f"{done:,} histories, {done // len(histories) * events:,} events, "
                f"in {wall:.1f} s wall, {cpu:.1f} s CPU",
                "events per history": f"{events / len(histories):.0f} on average "
                f"({min(len(h.events) for h in histories)}-"
                f"{max(len(h.events) for h in histories)})",
                "events/s/core": f"{done // len(histories) * events / cpu:,.0f}",
                "CPU per history": f"{cpu / done * 1000:.1f} ms",
                "same histories, sandbox off (the SDK's replay alone)": (
                    f"{bare_done / bare_cpu:.1f} histories/s/core, "
                    f"{bare_cpu / bare_done * 1000:.1f} ms per history"
                ),
            },
        )
    ]
