"""Auditors: history export, replay (recorded histories of every path too), recount."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Worker
from temporalio.workflow import NondeterminismError

import worker as worker_module
from api.auditors import replay_histories, replayer
from tests.conftest import HISTORIES, Stack
from tests.helpers import Api, expect, expect_problem
from tests.reordered_workflow import ReorderedProposalWorkflow
from tests.test_proposal_paths import cast_many

#: One recorded history per path of the proposal process; re-record with
#: `MINJU_RECORD_HISTORIES=1 make test` after a deliberate, patched change.
RECORDED_PATHS = {
    "ripening_to_review",
    "review_rejected",
    "review_overdue_then_accepted",
    "screening_dropped",
    "plan_discarded",
    "withdrawn",
    "vote_not_passed",
    "completed_non_budget",
    "completed_budget_late",
    "ask_published_late",
    "forum_eligible_handed_off",
    "linked_forum_decided",
    "budget_cycle_overridden",
    "project_candidate_adjusted",
    "project_deliberative_resized",
    "budget_cycle_metro_voted",
    "budget_cycle_deliberative_voted",
    "notification_delivery_retried",
}


def recorded_histories() -> list[WorkflowHistory]:
    return [
        WorkflowHistory.from_json(path.stem, path.read_text())
        for path in sorted(Path(HISTORIES).glob("*.json"))
    ]


def test_every_path_has_a_recorded_history() -> None:
    assert {p.stem for p in Path(HISTORIES).glob("*.json")} == RECORDED_PATHS


async def test_recorded_histories_replay_against_the_current_code() -> None:
    """All of them in one batch, as an auditor's replay runs (the worker's sandbox)."""
    histories = recorded_histories()
    assert histories
    assert await replay_histories(histories) == {}


async def test_replay_reports_a_non_deterministic_change() -> None:
    history = next(h for h in recorded_histories() if h.workflow_id == "review_rejected")
    result = await replayer([ReorderedProposalWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError)


async def test_a_batch_replay_reports_every_diverging_history() -> None:
    """A batch does not stop at, or hide, a divergence: with the reordered code every proposal
    history fails, each one reported."""
    proposals = [
        h
        for h in recorded_histories()
        if h.events[0].workflow_execution_started_event_attributes.workflow_type.name
        == "ProposalWorkflow"
    ]
    assert len(proposals) > 1
    results = await replayer([ReorderedProposalWorkflow]).replay_workflows(
        _each(proposals), raise_on_replay_failure=False
    )
    assert set(results.replay_failures) == {h.run_id for h in proposals}
    assert all(isinstance(f, NondeterminismError) for f in results.replay_failures.values())


async def test_replay_finds_the_one_history_that_diverges_among_many() -> None:
    """The auditors' path (`replay_histories`): a history whose recorded commands differ from
    what the code does now (an activity of another type) is reported, by workflow id, while
    the rest of the batch replays."""
    histories = recorded_histories()
    tampered = next(h for h in histories if h.workflow_id == "review_rejected")
    scheduled = next(
        e for e in tampered.events if e.HasField("activity_task_scheduled_event_attributes")
    )
    scheduled.activity_task_scheduled_event_attributes.activity_type.name = "not_what_runs_now"
    divergences = await replay_histories(histories)
    assert set(divergences) == {"review_rejected"}
    assert divergences["review_rejected"].startswith("NondeterminismError")


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def test_audit_endpoints_export_replay_and_recount(api: Api, system: Stack) -> None:
    voting = await api.to_vote()
    await cast_many(system, voting["id"], yes=600, no=400)
    await api.advance(days=31)
    closed = await api.wait_status(voting["id"], "executing")
    auditor = await api.official("auditor")
    wid = closed["workflow_id"]

    history = expect(await system.http.get(f"/v1/audit/cases/{wid}/history", headers=auditor), 200)
    kinds = [e["eventType"] for e in history["events"]]
    assert kinds[0] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    start_input = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    assert start_input["rules"]["name"] == "seoul-2018"  # the pinned rulebook is in the history
    assert start_input["rules"]["content_hash"] == closed["rulebook_hash"]

    replay = expect(await system.http.post(f"/v1/audit/cases/{wid}/replay", headers=auditor), 200)
    assert replay == {
        "workflow_id": wid,
        "replayed": True,
        "events": len(history["events"]),
        "divergence": None,
    }

    recount = expect(
        await system.http.get(f"/v1/audit/ballots/{voting['id']}/recount", headers=auditor), 200
    )
    assert (recount["yes"], recount["no"], recount["turnout"]) == (600, 400, 1_000)
    assert recount["digest"] == closed["vote"]["digest"]
    assert recount["matches_recorded_tally"] is True

    citizen = await api.citizen()
    expect_problem(await system.http.get(f"/v1/audit/cases/{wid}/history", headers=citizen), 403)
    expect_problem(
        await system.http.get("/v1/audit/cases/proposal-nope/history", headers=auditor), 404
    )


async def test_a_restarted_worker_resumes_waiting_cases(api: Api, system: Stack) -> None:
    """Cases wait in Temporal, not in a process: a new worker picks them up from history.

    The workers here keep no workflow cache (no sticky queue), so the replacement must rebuild
    each case by replaying its history, exactly as after a crash.
    """
    await system.worker.shutdown()

    def uncached_worker() -> Worker:
        return worker_module.create_worker(
            system.temporal, system.settings, system.engine, max_cached_workflows=0
        )

    first = uncached_worker()
    first_run = asyncio.create_task(first.run())
    pid = (await api.to_review())["id"]
    await api.assign(pid, "parks")
    await first.shutdown()
    await first_run

    replacement = uncached_worker()
    replacement_run = asyncio.create_task(replacement.run())
    try:
        await api.advance(days=21)
        overdue = await api.wait_for(pid, lambda p: p["overdue"])
        assert overdue["status"] == "dept_review"
        accepted = expect(await api.review(pid, "parks", "accept"), 200)
        assert accepted["status"] == "committee_screening"
    finally:
        await replacement.shutdown()
        await replacement_run
