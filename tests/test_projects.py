"""Metropolitan budget projects (process.md §6, §6a) through the HTTP API, on the cycle's
calendar: the call, eligibility screening (caps, districts, transfers), the council review, an
objection answered with an adjusted cost, withdrawals; and the workflow alone with stubs (a
linked item refusing withdrawal, the vote's result)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

import rulebooks
from models.budget import BudgetCycleStart, BudgetCycleState
from models.calendar import SEOUL
from models.case import Actor, Role
from models.ids import budget_cycle_workflow_id, project_workflow_id
from models.project import (
    CouncilReview,
    ProjectStart,
    ProjectState,
    ProjectStatus,
    ProjectVoteResult,
    ProjectWithdrawal,
    ReviewScores,
    Screening,
)
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.workflow_stubs import stubbed_worker, time_skipping_env
from workflows.budget import BudgetCycleWorkflow
from workflows.project import ProjectWorkflow

GENERAL_CAP = 4_000_000_000
EVENT_CAP = 300_000_000
TWO = ["Mapo-gu", "Jongno-gu"]
SCORES = {"necessity": 80, "feasibility": 70, "impact": 90, "inclusiveness": 60}


def proposal(**fields: Any) -> dict[str, Any]:
    return {
        "title": "Barrier-free riverside paths",
        "body": "Ramps and tactile paving along the Han.",
        "field": "welfare",
        "kind": "metro",
        "cost_krw": 1_000_000_000,
        "event": False,
        "districts": TWO,
        **fields,
    }


async def submit(api: Api, year: int, who: dict[str, str], **fields: Any) -> dict[str, Any]:
    """Submit, and wait for the workflow's first projection: an Update that arrives while it is
    in flight is refused as busy, and on the simulated (uncached) worker such a refusal can
    repeat for good (see the report of this change); decisions come after it here."""
    path = f"/v1/budget-cycles/{year}/projects"
    project: dict[str, Any] = expect(await api.post(path, who, proposal(**fields)), 201)

    async def projected() -> bool:
        body = expect(await api.http.get(f"/v1/projects/{project['id']}/timeline"), 200)
        return bool(body["items"])

    await eventually(projected)
    return project


def screening(eligible: bool = True, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"eligible": eligible, "reason": reason, **extra}


async def test_a_metro_project_from_the_call_to_the_ballot(
    api: Api, system: Stack, record_history: Any
) -> None:
    admin, committee = await api.official("admin"), await api.official("committee")
    caseworker = await api.official("caseworker", "parks")
    proposer, other = await api.citizen(), await api.citizen()
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    submit_path = f"/v1/budget-cycles/{year}/projects"

    # before the call: 409 naming the phase
    early = expect_problem(await api.post(submit_path, proposer, proposal()), 409)
    assert "call" in early["detail"] and "not_started" in early["detail"]

    await advance_to(api, seoul(year, 1, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "call")

    # bad input at the edge: 422 naming the field, nothing written
    refused: list[tuple[dict[str, Any], str]] = [
        (proposal(cost_krw="5"), "cost_krw"),
        (proposal(cost_krw=0), "cost_krw"),
        (proposal(cost_krw=1.5), "cost_krw"),
        (proposal(districts=[]), "districts"),
        (proposal(districts=["Mapo-gu", "Atlantis"]), "districts"),
        (proposal(districts=["Mapo-gu", "Mapo-gu"]), "districts"),
        (proposal(event="yes"), "event"),
        (proposal(kind="governance"), "department"),
        (proposal(kind="lunar"), "kind"),
        (proposal(title=""), "title"),
        (proposal(colour="red"), "colour"),
    ]
    for body, name in refused:
        expect_problem(await api.post(submit_path, proposer, body), 422, field=name)
    # wrong role: officials do not propose metro projects, nor ineligible citizens
    expect_problem(await api.post(submit_path, caseworker, proposal()), 403)
    official = await api.citizen(public_official=True)
    expect_problem(await api.post(submit_path, official, proposal()), 403)
    expect_problem(await api.http.post(submit_path, json=proposal()), 401)
    listed = expect(await api.http.get(submit_path), 200)
    assert listed == {"items": [], "next_cursor": None}

    at_cap = await submit(api, year, proposer, cost_krw=GENERAL_CAP)
    below_cap = await submit(api, year, proposer, cost_krw=GENERAL_CAP - 1)
    event_at_cap = await submit(api, year, proposer, cost_krw=EVENT_CAP, event=True)
    event_below = await submit(api, year, proposer, cost_krw=EVENT_CAP - 1, event=True)
    one_district = await submit(api, year, proposer, districts=["Mapo-gu"])
    two_districts = await submit(api, year, proposer, districts=TWO, field="transport")
    local = await submit(api, year, proposer, districts=["Nowon-gu"])
    leaving = await submit(api, year, proposer)
    assert below_cap["status"] == "submitted" and below_cap["cost_krw"] == GENERAL_CAP - 1
    assert "proposer_id" not in below_cap

    def screen_path(project: dict[str, Any]) -> str:
        return f"/v1/projects/{project['id']}/screening"

    # screening belongs to the screening phase
    wrong = expect_problem(await api.post(screen_path(below_cap), admin, screening()), 409)
    assert "screening" in wrong["detail"] and "call" in wrong["detail"]

    # the proposer withdraws during the call; nobody else may
    withdraw = f"/v1/projects/{leaving['id']}/withdraw"
    expect_problem(await api.post(withdraw, other), 403)
    gone = expect(await api.post(withdraw, proposer), 200)
    assert gone["status"] == "withdrawn"
    expect_problem(await api.post(withdraw, proposer), 409)

    await advance_to(api, seoul(year, 3, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "screening")
    expect_problem(await api.post(submit_path, proposer, proposal()), 409)

    # caps are exclusive: the exact cap is refused naming the rule, one won below is accepted
    refusal = expect_problem(await api.post(screen_path(at_cap), admin, screening()), 422)
    assert "metro.cap_general_krw" in refusal["detail"]
    eligible = expect(await api.post(screen_path(below_cap), admin, screening()), 200)
    assert eligible["status"] == "eligible" and eligible["eligibility"]["eligible"] is True
    refusal = expect_problem(await api.post(screen_path(event_at_cap), admin, screening()), 422)
    assert "metro.cap_event_krw" in refusal["detail"]
    expect(await api.post(screen_path(event_below), admin, screening()), 200)
    # at least two districts
    refusal = expect_problem(await api.post(screen_path(one_district), admin, screening()), 422)
    assert "metro.min_districts" in refusal["detail"]
    expect(await api.post(screen_path(two_districts), admin, screening()), 200)
    # a transfer to a district needs a reason
    transfer = screening(False, transfer_to_district="Nowon-gu")
    expect_problem(await api.post(screen_path(local), admin, transfer), 422, field="reason")
    bad_district = screening(False, "local", transfer_to_district="Atlantis")
    assert (
        "Atlantis"
        in (expect_problem(await api.post(screen_path(local), admin, bad_district), 422)["detail"])
    )
    transfer["reason"] = "benefits Nowon-gu only: a district-level proposal"
    moved = expect(await api.post(screen_path(local), admin, transfer), 200)
    assert moved["status"] == "transferred"
    assert moved["eligibility"]["transfer_to_district"] == "Nowon-gu"
    # an ineligible verdict, with its reason; wrong role; decided twice
    no = screening(False, "over the cap")
    assert expect(await api.post(screen_path(at_cap), admin, no), 200)["status"] == "ineligible"
    expect_problem(await api.post(screen_path(event_at_cap), committee, screening()), 403)
    expect_problem(await api.post(screen_path(below_cap), admin, screening()), 409)

    def review_path(project: dict[str, Any]) -> str:
        return f"/v1/projects/{project['id']}/review"

    review = {"advance": True, "scores": SCORES, "note": "site visit done"}
    expect_problem(await api.post(review_path(below_cap), committee, review), 409)

    await advance_to(api, seoul(year, 4, 15) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "council_review")

    over = {**review, "scores": {**SCORES, "inclusiveness": 101}}
    expect_problem(
        await api.post(review_path(below_cap), committee, over), 422, field="scores.inclusiveness"
    )
    expect_problem(await api.post(review_path(below_cap), admin, review), 403)
    candidate = expect(await api.post(review_path(below_cap), committee, review), 200)
    assert candidate["status"] == "candidate"
    # inclusiveness 0.2 x 60 + (0.8 / 3) x (80 + 70 + 90) = 12 + 64
    assert candidate["scores"]["total"] == "76.00"
    assert candidate["scores"]["scores"] == SCORES
    held = expect(
        await api.post(review_path(event_below), committee, {**review, "advance": False}), 200
    )
    assert held["status"] == "not_advanced"
    expect_problem(await api.post(review_path(one_district), committee, review), 409)

    objections = f"/v1/projects/{below_cap['id']}/objections"
    expect_problem(await api.post(objections, other, {"body": "too dear"}), 409)

    await advance_to(api, seoul(year, 7, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "objections")

    expect_problem(await api.http.post(objections, json={"body": "x"}), 401)
    expect_problem(await api.post(objections, other, {"body": ""}), 422, field="body")
    objection = expect(await api.post(objections, other, {"body": "the ramps cost too much"}), 201)
    assert "author_id" not in objection
    not_candidate = f"/v1/projects/{event_below['id']}/objections"
    expect_problem(await api.post(not_candidate, other, {"body": "and this"}), 409)

    async def told() -> bool:  # the signal's projection first (see `submit`)
        path = f"/v1/projects/{below_cap['id']}/timeline"
        body = expect(await api.http.get(path), 200)
        return "objection_filed" in [e["event"] for e in body["items"]]

    await eventually(told)
    answer_path = f"{objections}/{objection['id']}/answer"
    too_dear = {"answer": "re-costed", "adjusted_cost_krw": GENERAL_CAP}
    refusal = expect_problem(await api.post(answer_path, admin, too_dear), 422)
    assert "metro.cap_general_krw" in refusal["detail"]
    answer = {"answer": "re-costed with cheaper paving", "adjusted_cost_krw": 3_500_000_000}
    expect_problem(await api.post(answer_path, committee, answer), 403)
    expect_problem(await api.post(f"{objections}/nope/answer", admin, answer), 404)
    adjusted = expect(await api.post(answer_path, admin, answer), 200)
    assert adjusted["status"] == "candidate" and adjusted["cost_krw"] == 3_500_000_000
    assert adjusted["submitted_cost_krw"] == GENERAL_CAP - 1
    [shown] = adjusted["objections"]
    assert shown["body"] == "the ramps cost too much"
    assert shown["answer"] == answer["answer"] and shown["adjusted_cost_krw"] == 3_500_000_000
    expect_problem(await api.post(answer_path, admin, answer), 409)

    # the reads: filters, no personal data anywhere
    path = f"/v1/budget-cycles/{year}/projects"
    on_ballot = expect(await api.http.get(path, params={"status": "candidate"}), 200)["items"]
    assert [p["id"] for p in on_ballot] == [below_cap["id"]]
    assert on_ballot[0]["objections"][0]["answer"] == answer["answer"]
    transport = expect(await api.http.get(path, params={"field": "transport"}), 200)["items"]
    assert [p["id"] for p in transport] == [two_districts["id"]]
    everything = expect(await api.http.get(path, params={"kind": "metro", "limit": 3}), 200)
    assert len(everything["items"]) == 3 and everything["next_cursor"] == "3"
    raw = (await api.http.get(path, params={"limit": 50})).text
    assert "proposer_id" not in raw and "author_id" not in raw
    entries = expect(await api.http.get(f"/v1/projects/{below_cap['id']}/timeline"), 200)["items"]
    assert [e["event"] for e in entries] == [
        "submitted",
        "screened",
        "reviewed",
        "objection_filed",
        "objection_answered",
    ]
    assert entries[-1]["actor_role"] == "admin" and "3,500,000,000" in entries[-1]["note"]

    # what the vote reads: on the ballot, at the current cost
    async with system.sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT id, year, kind, field, title, cost_krw, status FROM budget_projects "
                    "WHERE year = :year AND status = 'candidate'"
                ),
                {"year": year},
            )
        ).all()
    assert [(r.id, r.kind, r.cost_krw) for r in rows] == [(below_cap["id"], "metro", 3_500_000_000)]

    # a candidate's proposer may still withdraw before the vote
    await record_history("project_candidate_adjusted", project_workflow_id(below_cap["id"]))
    withdrawn = expect(await api.post(f"/v1/projects/{below_cap['id']}/withdraw", proposer), 200)
    assert withdrawn["status"] == "withdrawn"
    expect_problem(await api.http.get("/v1/projects/nope"), 404)


# ---- the workflow alone, with stubbed activities -----------------------------------------------


async def test_a_linked_item_cannot_be_withdrawn_and_the_vote_decides() -> None:
    pinned = rulebooks.load("seoul-2021")
    async with time_skipping_env() as env, stubbed_worker(env) as run:
        project_id = run.unique_id("p")
        start = ProjectStart(
            project_id=project_id,
            year=2031,
            kind="metro",
            proposer_id="person-1",
            field="welfare",
            cost_krw=1_000_000_000,
            event=False,
            districts=TWO,
            rules=pinned,
            linked=True,
        )
        handle = await run.start(ProjectWorkflow.run, start, id=project_workflow_id(project_id))
        await handle.execute_update(
            ProjectWorkflow.screen, Screening(actor_role="admin", eligible=True, reason="")
        )
        scores = ReviewScores(necessity=50, feasibility=50, impact=50, inclusiveness=100)
        reviewed = await handle.execute_update(
            ProjectWorkflow.review,
            CouncilReview(actor_role="committee", advance=True, scores=scores),
        )
        assert reviewed.status is ProjectStatus.CANDIDATE
        assert reviewed.review is not None and reviewed.review.total == "60.00"
        proposer = Actor(role=Role.CITIZEN, person_id="person-1")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ProjectWorkflow.withdraw, ProjectWithdrawal(proposer))
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "Conflict" and "linked" in refused.value.cause.message
        await handle.signal(
            ProjectWorkflow.vote_result,
            ProjectVoteResult(selected=True, rank=1, score="1234.5", note="top of welfare"),
        )
        # selected, it goes on to its execution in Y+1 (tests/test_project_execution.py)
        await run.settle(handle)
        result: ProjectState = await handle.query(ProjectWorkflow.state)
        assert result.status is ProjectStatus.SELECTED and result.vote is not None
    assert run.stubs.events(project_id) == ["submitted", "screened", "reviewed", "vote_counted"]
    last = run.stubs.timeline(project_id)[-1]
    assert last.stage == "selected" and "rank 1" in last.note


async def test_each_project_is_a_child_of_the_cycle_and_outlives_its_continue_as_new() -> None:
    """The cycle starts each project as its child (process.md §6); a project entered before the
    cycle continues as new keeps running after it, and one is refused for a type not started."""
    pinned = rulebooks.load("seoul-2021")
    async with time_skipping_env() as env, stubbed_worker(env) as run:
        year = (await env.get_current_time()).astimezone(SEOUL).year + 1
        cycle_id = run.unique_id(budget_cycle_workflow_id(year))
        start = BudgetCycleStart(year=year, rules=pinned, drop_ratio=0.1, max_history_events=40)
        cycle = await run.start(BudgetCycleWorkflow.run, start, id=cycle_id)

        def project(kind: str) -> ProjectStart:
            return ProjectStart(
                project_id=run.unique_id("p"),
                year=year,
                kind=kind,
                proposer_id="person-1",
                field="welfare",
                cost_krw=1_000_000_000,
                event=False,
                districts=TWO,
                rules=pinned,
            )

        with pytest.raises(WorkflowUpdateFailedError) as early:
            await cycle.execute_update(BudgetCycleWorkflow.enter_project, project("metro"))
        assert isinstance(early.value.cause, ApplicationError)
        assert early.value.cause.type == "Conflict" and "not_started" in early.value.cause.message

        now = await env.get_current_time()
        await env.sleep((seoul(year, 1, 2) - now).total_seconds())
        entered = project("metro")
        child_id = await cycle.execute_update(BudgetCycleWorkflow.enter_project, entered)
        assert child_id == project_workflow_id(entered.project_id)
        described = await env.client.get_workflow_handle(child_id).describe()
        assert described.parent_id == cycle_id
        first_run = (await cycle.describe()).run_id

        await env.sleep((seoul(year, 3, 2) - seoul(year, 1, 2)).total_seconds())
        state: BudgetCycleState = await cycle.query(BudgetCycleWorkflow.state)
        assert state.runs >= 1 and (await cycle.describe()).run_id != first_run
        still = await env.client.get_workflow_handle(child_id).describe()
        assert still.status == WorkflowExecutionStatus.RUNNING
        # the project still takes decisions after its parent's run closed
        screened = await env.client.get_workflow_handle(child_id).execute_update(
            ProjectWorkflow.screen, Screening(actor_role="admin", eligible=True, reason="")
        )
        assert screened.status is ProjectStatus.ELIGIBLE
