"""A selected budget project's execution in Y+1 (process.md §6, every selected project is
monitored), through HTTP on the simulated clock: it starts on 1 January of Y+1 with the
department the operations team named; progress reports are due every `monitoring.report_days`
(90 in seoul-2021-2) and a missing one is escalated and then reminded (89 vs 91 days); only the
executing department reports; the final report completes the project."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

import rulebooks
from models.calendar import SEOUL
from models.ids import project_workflow_id
from models.project import (
    CouncilReview,
    Evaluation,
    FormExecutionCouncil,
    ProjectExecutionReport,
    ProjectStart,
    ProjectState,
    ProjectStatus,
    ProjectVoteResult,
    ReviewScores,
    Screening,
    YearCost,
)
from tests.helpers import Api, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_budget_vote import walk_to_ballot
from tests.workflow_stubs import stubbed_worker, time_skipping_env
from workflows.project import ProjectWorkflow


async def _project(api: Api, project_id: str, status: str) -> dict[str, Any]:
    project: dict[str, Any] = {}
    for _ in range(200):
        project = expect(await api.http.get(f"/v1/projects/{project_id}"), 200)
        if project["status"] == status:
            return project
        await asyncio.sleep(0.05)
    raise AssertionError(f"{project_id} never became {status}: {project}")


async def _events(api: Api, project_id: str) -> list[str]:
    body = expect(await api.http.get(f"/v1/projects/{project_id}/timeline"), 200)
    return [e["event"] for e in body["items"]]


async def _settled(api: Api, project_id: str, event: str, count: int) -> list[str]:
    for _ in range(100):
        events = await _events(api, project_id)
        if events.count(event) >= count:
            return events
        await asyncio.sleep(0.05)
    return await _events(api, project_id)


async def test_a_selected_project_is_executed_and_monitored_in_the_following_year(
    api: Api,
) -> None:
    admin = await api.official("admin")
    parks = await api.official("caseworker", "parks")
    roads = await api.official("caseworker", "roads")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    projects = await walk_to_ballot(api, year)
    a, b = projects["A"]["id"], projects["B"]["id"]
    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")
    for _ in range(3):
        body = {"kind": "metro", "project_ids": [a, b, projects["C"]["id"]]}
        expect(await api.post(f"/v1/budget-cycles/{year}/ballots", await api.citizen(), body), 201)
    await advance_to(api, seoul(year, 8, 21) + timedelta(seconds=1))
    await _project(api, a, "selected")
    await _project(api, b, "selected")

    reports = f"/v1/projects/{a}/execution-reports"
    progress = {"progress_pct": 10, "note": "design contracted"}
    expect_problem(await api.post(reports, parks, progress), 409)  # not executing yet
    council = {"citizen_members": 5, "official_members": 3}
    expect_problem(await api.post(f"/v1/projects/{a}/execution-council", admin, council), 409)
    department = f"/v1/projects/{a}/executing-department"
    expect_problem(await api.post(department, parks, {"department": "parks"}), 403)
    named = expect(await api.post(department, admin, {"department": "parks"}), 200)
    assert named["execution"]["department"] == "parks"

    # 1 January of Y+1: executing, the first progress report due 90 days on
    await advance_to(api, seoul(year + 1, 1, 1) + timedelta(seconds=1))
    executing = await _project(api, a, "executing")
    # still the vote's selection while executed (the waste reports of Y+1 count on it)
    assert executing["selected"] is True
    assert executing["execution"]["final_due_at"].startswith(f"{year + 1}-12-31T15:00")
    await _project(api, b, "executing")
    # B has no department named: nobody can report for it yet
    expect_problem(await api.post(f"/v1/projects/{b}/execution-reports", parks, progress), 409)

    # day 89 without a report: nothing escalated; day 91: the deadline is missed
    await advance_to(api, seoul(year + 1, 1, 1) + timedelta(days=89))
    assert "deadline_missed" not in await _events(api, a)
    await advance_to(api, seoul(year + 1, 1, 1) + timedelta(days=91))
    events = await _settled(api, a, "deadline_missed", 1)
    assert events.count("deadline_missed") == 1
    overdue = await _project(api, a, "executing")
    assert overdue["execution"]["overdue"] is True
    # three days later, a reminder
    await advance_to(api, seoul(year + 1, 1, 1) + timedelta(days=94, seconds=1))
    assert "reminder_sent" in await _settled(api, a, "reminder_sent", 1)

    # only the executing department reports; the report clears the overdue mark
    expect_problem(await api.post(reports, roads, progress), 403)
    expect_problem(await api.post(reports, parks, {"progress_pct": 101, "note": "x"}), 422)
    reported = expect(await api.post(reports, parks, progress), 201)
    assert reported["execution"]["reports"] == 1 and reported["execution"]["overdue"] is False
    assert reported["execution"]["progress_pct"] == 10

    # the final report needs 100 %, and completes the project
    expect_problem(
        await api.post(reports, parks, {"progress_pct": 90, "note": "nearly", "final": True}),
        422,
        field=None,
    )
    done = expect(
        await api.post(reports, parks, {"progress_pct": 100, "note": "opened", "final": True}),
        201,
    )
    assert done["status"] == "completed" and done["execution"]["completed_at"]
    assert done["selected"] is True
    events = await _events(api, a)
    assert events[-1] == "final_report" and "execution_started" in events
    expect_problem(await api.post(reports, parks, progress), 409)
    # evaluation at the results meeting is the governance type's
    evaluation = {"findings": "on time", "results_meeting_on": f"{year + 1}-12-10"}
    expect_problem(await api.post(f"/v1/projects/{a}/evaluation", admin, evaluation), 409)
    expect_problem(
        await api.post(
            f"/v1/projects/{a}/evaluation", admin, {"findings": "x", "results_meeting_on": "soon"}
        ),
        422,
        field="results_meeting_on",
    )


async def test_a_multi_year_project_owes_its_final_report_at_the_end_of_its_last_year() -> None:
    """At the workflow level, on stubbed activities: a project with a year-by-year plan for
    Y+1 and Y+2 reports its progress every 90 days in both years and owes its final report only
    by the end of Y+2; each missed report is escalated once, then reminded."""
    pinned = rulebooks.load("seoul-2021-2")
    async with time_skipping_env() as env, stubbed_worker(env) as run:
        project_id = run.unique_id("p")
        year = 2031
        start = ProjectStart(
            project_id=project_id,
            year=year,
            kind="governance",
            proposer_id="person-1",
            field="environment",
            cost_krw=3_000_000_000,
            event=False,
            districts=["Jongno-gu", "Mapo-gu"],
            rules=pinned,
            years=[YearCost(year + 1, 1_000_000_000), YearCost(year + 2, 2_000_000_000)],
            department="climate",
        )
        handle = await run.start(ProjectWorkflow.run, start, id=project_workflow_id(project_id))
        await handle.execute_update(
            ProjectWorkflow.screen, Screening(actor_role="admin", eligible=True, reason="")
        )
        scores = ReviewScores(necessity=70, feasibility=70, impact=70, inclusiveness=70)
        await handle.execute_update(
            ProjectWorkflow.review,
            CouncilReview(actor_role="committee", advance=True, scores=scores),
        )
        await handle.signal(
            ProjectWorkflow.vote_result,
            ProjectVoteResult(selected=True, rank=1, score="1", note=""),
        )
        await run.settle(handle)
        starts = datetime(year + 1, 1, 1, tzinfo=SEOUL)
        now = await env.get_current_time()
        await env.sleep(starts - now + timedelta(days=100))
        await run.settle(handle)
        state: ProjectState = await handle.query(ProjectWorkflow.state)
        assert state.status is ProjectStatus.EXECUTING and state.execution is not None
        assert state.execution.department == "climate" and state.execution.overdue
        assert state.execution.final_due_at is not None
        assert state.execution.final_due_at.startswith(f"{year + 2}-12-31T15:00")
        # its public-private council for the execution (governance only), at least one of each
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                ProjectWorkflow.form_execution_council,
                FormExecutionCouncil(actor_role="admin", citizen_members=0, official_members=2),
            )
        formed = await handle.execute_update(
            ProjectWorkflow.form_execution_council,
            FormExecutionCouncil(actor_role="admin", citizen_members=5, official_members=3),
        )
        assert formed.execution is not None and formed.execution.council is not None
        assert formed.execution.council.citizen_members == 5
        report = ProjectExecutionReport(
            actor_role="caseworker", actor_department="climate", progress_pct=40, note="year one"
        )
        reported = await handle.execute_update(ProjectWorkflow.report_execution, report)
        assert reported.execution is not None and not reported.execution.overdue
        # the end of Y+1 is no deadline for it; the end of Y+2 is
        await env.sleep(datetime(year + 2, 12, 30, tzinfo=SEOUL) - await env.get_current_time())
        await run.settle(handle)
        state = await handle.query(ProjectWorkflow.state)
        assert state.status is ProjectStatus.EXECUTING
        missed = [e for e in run.stubs.timeline(project_id) if e.event == "deadline_missed"]
        assert missed and all("progress report" in e.note for e in missed)
        await env.sleep(timedelta(days=3))
        await run.settle(handle)
        missed = [e for e in run.stubs.timeline(project_id) if e.event == "deadline_missed"]
        assert "final report" in missed[-1].note
        final = ProjectExecutionReport(
            actor_role="caseworker",
            actor_department="climate",
            progress_pct=100,
            note="done",
            final=True,
        )
        done = await handle.execute_update(ProjectWorkflow.report_execution, final)
        assert done.status is ProjectStatus.COMPLETED
        # then its evaluation at the December results meeting (a December date, once)
        for held in ("2034-11-30", "not a date"):
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(
                    ProjectWorkflow.evaluate,
                    Evaluation(actor_role="admin", findings="good", results_meeting_on=held),
                )
        evaluated = await handle.execute_update(
            ProjectWorkflow.evaluate,
            Evaluation(
                actor_role="admin", findings="shade doubled", results_meeting_on="2034-12-15"
            ),
        )
        assert evaluated.evaluation is not None
        result: ProjectState = await handle.result()
        assert result.status is ProjectStatus.COMPLETED and result.evaluation is not None
