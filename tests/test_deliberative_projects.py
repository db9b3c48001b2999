"""Deliberative budget projects (숙의형, process.md §5) through the HTTP API, on the cycle's
calendar: a caseworker's existing programme and a council member's new item, the cycle's
shortlist (the `shortlist_result` signal, sent here as the cycle would), the council's
deliberation (continue, resize, end), the Budget Square's opinions, withdrawal, and the vote
selecting a resized project. Each rule is walked on both sides; refused input writes nothing.
Then the workflow alone with stubbed activities: the same path, and the other ends."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

import rulebooks
from models.budget_bodies import SQUARE, add_members, council_body
from models.case import Actor, Role
from models.ids import budget_cycle_workflow_id, project_workflow_id
from models.project import (
    Deliberation,
    ProjectStart,
    ProjectState,
    ProjectStatus,
    ProjectVoteResult,
    ProjectWithdrawal,
    Screening,
    ShortlistResult,
)
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_projects import proposal as metro_proposal
from tests.workflow_stubs import stubbed_worker, time_skipping_env
from workflows.project import ProjectWorkflow

FIELDS = [
    {"field": "welfare", "allocation_krw": 10_000_000_000},
    {"field": "transport", "allocation_krw": 8_000_000_000},
]


def item(**fields: Any) -> dict[str, Any]:
    return {
        "title": "Care for people living alone",
        "body": "Visits and meals for elderly people living alone.",
        "field": "welfare",
        "kind": "deliberative",
        "cost_krw": 2_000_000_000,
        **fields,
    }


async def set_fields(api: Api, system: Stack, year: int, fields: list[dict[str, Any]]) -> None:
    """The cycle's fields, in its allocation phase: through `PUT .../fields` where the cycle
    serves it (the cycle's projection then keeps them), else on its row directly."""
    admin = await api.official("admin")
    put = await api.http.put(
        f"/v1/budget-cycles/{year}/fields", json={"fields": fields}, headers=admin
    )
    if put.status_code not in (404, 405):
        expect(put, 200)
        return
    async with system.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE budget_cycles SET fields = CAST(:fields AS jsonb) WHERE year = :year"),
            {"fields": json.dumps(fields), "year": year},
        )


async def seat(system: Stack, year: int, body: str, *people: str) -> None:
    """What the cycle's projection writes when a council or the Square is formed."""
    async with system.sessions() as session, session.begin():
        await add_members(session, year, body, [(person, "active") for person in people])


async def events(api: Api, project_id: str) -> list[str]:
    body = expect(await api.http.get(f"/v1/projects/{project_id}/timeline"), 200)
    return [e["event"] for e in body["items"]]


async def entered(api: Api, year: int, who: dict[str, str], **fields: Any) -> dict[str, Any]:
    """Enter a project and wait for its first projection (see tests/test_projects.py)."""
    path = f"/v1/budget-cycles/{year}/projects"
    project: dict[str, Any] = expect(await api.post(path, who, item(**fields)), 201)

    async def projected() -> bool:
        return bool(await events(api, project["id"]))

    await eventually(projected)
    return project


async def wait_project(api: Api, project_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update(expect(await api.http.get(f"/v1/projects/{project_id}"), 200))
        return bool(seen["status"] == status)

    await eventually(reached)
    return seen


async def test_a_deliberative_project_from_its_entry_to_the_vote(
    api: Api, system: Stack, record_history: Any
) -> None:
    admin, committee = await api.official("admin"), await api.official("committee")
    caseworker = await api.official("caseworker", "welfare-policy")
    welfare_member = await api.citizen("welfare-member")
    transport_member = await api.citizen("transport-member")
    square_member = await api.citizen("square-member")
    citizen = await api.citizen()
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    await advance_to(api, seoul(year, 1, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "deliberative", "allocation")
    await set_fields(api, system, year, FIELDS)
    await seat(system, year, council_body("welfare"), "welfare-member")
    await seat(system, year, council_body("transport"), "transport-member")
    await seat(system, year, SQUARE, "square-member")
    path = f"/v1/budget-cycles/{year}/projects"

    async def listed() -> list[dict[str, Any]]:
        body = expect(await api.http.get(path, params={"kind": "deliberative"}), 200)
        return list(body["items"])

    # before the bodies are formed: 409 naming the phase, for both ways in
    early = expect_problem(await api.post(path, caseworker, item()), 409)
    assert "deliberative forming or shortlist" in early["detail"]
    assert "now allocation" in early["detail"]
    early = expect_problem(await api.post(path, welfare_member, item()), 409)
    assert "deliberation" in early["detail"] and "now allocation" in early["detail"]

    await advance_to(api, seoul(year, 2, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "deliberative", "forming")

    # bad input and wrong callers: problem+json naming the field, nothing written
    wrong_field = expect_problem(
        await api.post(path, caseworker, item(field="fishing")), 422, field="field"
    )
    assert "'fishing'" in wrong_field["detail"]
    assert "welfare, transport" in wrong_field["detail"]
    for body, name in [
        (item(cost_krw=0), "cost_krw"),
        (item(cost_krw="5"), "cost_krw"),
        (item(title=""), "title"),
        (item(districts=["Atlantis"]), "districts"),
        (item(shortlisted=True), "shortlisted"),
    ]:
        expect_problem(await api.post(path, caseworker, body), 422, field=name)
    expect_problem(await api.post(path, welfare_member, item(field="fishing")), 422, field="field")
    stranger = expect_problem(await api.post(path, citizen, item()), 403)
    assert "welfare citizen council" in stranger["detail"]
    other_field = expect_problem(await api.post(path, transport_member, item()), 403)
    assert "welfare" in other_field["detail"]
    expect_problem(await api.post(path, committee, item()), 403)
    expect_problem(await api.post(path, admin, item()), 403)
    expect_problem(await api.http.post(path, json=item()), 401)
    assert await listed() == []

    # the two ways in: an existing programme (its department recorded) and a new item
    programme = await entered(api, year, caseworker)
    assert (programme["status"], programme["kind"], programme["districts"]) == (
        "submitted",
        "deliberative",
        [],
    )
    assert programme["opinions"] == 0 and "proposer_id" not in programme
    left_out = await entered(api, year, caseworker, title="Senior centre", cost_krw=900_000_000)
    new_item = await entered(api, year, welfare_member, title="Night buses", cost_krw=500_000_000)
    leaving = await entered(api, year, caseworker, title="Withdrawn one")
    assert new_item["status"] == "submitted"
    first = expect(await api.http.get(f"/v1/projects/{programme['id']}/timeline"), 200)["items"]
    assert (first[0]["actor_role"], first[0]["stage"]) == ("caseworker", "submitted")
    assert "existing programme of the department welfare-policy" in first[0]["note"]
    new_first = expect(await api.http.get(f"/v1/projects/{new_item['id']}/timeline"), 200)
    assert "new item of the welfare citizen council" in new_first["items"][0]["note"]
    # a metropolitan project of the same cycle (the metro call is open), for the kind checks
    metro = expect(await api.post(path, citizen, metro_proposal()), 201)
    assert metro["opinions"] == 0

    # metropolitan steps are refused for a deliberative project, saying so
    steps: list[tuple[str, dict[str, str], dict[str, Any]]] = [
        ("screening", admin, {"eligible": True, "reason": ""}),
        ("objections", citizen, {"body": "too dear"}),
        ("objections/none/answer", admin, {"answer": "no"}),
    ]
    for step, who, body in steps:
        refused = expect_problem(
            await api.post(f"/v1/projects/{programme['id']}/{step}", who, body), 409
        )
        assert "metropolitan and governance projects" in refused["detail"]
    scores = {"necessity": 1, "feasibility": 2, "impact": 3, "inclusiveness": 4}
    review = {"advance": True, "scores": scores, "note": ""}
    refused = expect_problem(
        await api.post(f"/v1/projects/{programme['id']}/review", committee, review), 409
    )
    assert "metropolitan and governance projects" in refused["detail"]

    # withdrawal: the proposer only
    withdraw = f"/v1/projects/{leaving['id']}/withdraw"
    expect_problem(await api.post(withdraw, welfare_member), 403)
    gone = expect(await api.post(withdraw, caseworker), 200)
    assert gone["status"] == "withdrawn"
    expect_problem(await api.post(withdraw, caseworker), 409)

    # opinions belong to the shortlist, deliberation and vote phases
    opinions = f"/v1/projects/{programme['id']}/opinions"
    wrong_phase = expect_problem(await api.post(opinions, square_member, {"body": "yes"}), 409)
    assert "deliberative shortlist or deliberation or vote" in wrong_phase["detail"]

    await advance_to(api, seoul(year, 3, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "deliberative", "shortlist")

    # the Budget Square gives opinions; nobody else does; idempotent with a key
    expect_problem(await api.post(opinions, welfare_member, {"body": "mine"}), 403)
    expect_problem(await api.post(opinions, citizen, {"body": "mine"}), 403)
    expect_problem(await api.http.post(opinions, json={"body": "x"}), 401)
    expect_problem(await api.post(opinions, square_member, {"body": " "}), 422, field="body")
    metro_opinion = f"/v1/projects/{metro['id']}/opinions"
    refused = expect_problem(await api.post(metro_opinion, square_member, {"body": "x"}), 409)
    assert "deliberative projects" in refused["detail"]
    assert expect(await api.http.get(opinions), 200) == {"items": [], "next_cursor": None}
    keyed = {**square_member, "Idempotency-Key": "opinion-1"}
    body = {"body": "Meals matter more than visits."}
    opinion = expect(await api.http.post(opinions, json=body, headers=keyed), 201)
    again = expect(await api.http.post(opinions, json=body, headers=keyed), 201)
    assert again == opinion and "author_id" not in opinion
    assert opinion["project_id"] == programme["id"] and opinion["body"] == body["body"]
    shown = expect(await api.http.get(opinions), 200)
    assert shown["items"] == [opinion] and "square-member" not in json.dumps(shown)
    assert expect(await api.http.get(f"/v1/projects/{programme['id']}"), 200)["opinions"] == 1
    assert {p["id"]: p["opinions"] for p in await listed()}[programme["id"]] == 1

    # a caseworker may still enter a programme in the shortlist phase
    late_programme = await entered(api, year, caseworker, title="Late programme")
    # deliberation belongs to the deliberation phase
    deliberation = f"/v1/projects/{programme['id']}/deliberation"
    resize = {"action": "resize", "cost_krw": 2_500_000_000, "note": "more meals"}
    too_early = expect_problem(await api.post(deliberation, welfare_member, resize), 409)
    assert "deliberative deliberation phase" in too_early["detail"]
    assert "shortlist" in too_early["detail"]

    # the cycle's shortlist result, as it sends it (JSON): true -> shortlisted, false -> not
    def handle(project: dict[str, Any]) -> Any:
        return system.temporal.get_workflow_handle(project_workflow_id(project["id"]))

    await handle(programme).signal(
        "shortlist_result", {"shortlisted": True, "note": "welfare shortlist"}
    )
    await handle(new_item).signal(
        ProjectWorkflow.shortlist_result, ShortlistResult(shortlisted=True, note="")
    )
    await handle(left_out).signal(
        ProjectWorkflow.shortlist_result, ShortlistResult(shortlisted=False, note="over 130 %")
    )
    await handle(late_programme).signal(
        ProjectWorkflow.shortlist_result, ShortlistResult(shortlisted=False, note="")
    )
    await wait_project(api, programme["id"], "shortlisted")
    await wait_project(api, new_item["id"], "shortlisted")
    await wait_project(api, left_out["id"], "not_shortlisted")
    await wait_project(api, late_programme["id"], "not_shortlisted")
    # a repeated or stray result changes nothing (also on a metropolitan project)
    await handle(programme).signal(
        ProjectWorkflow.shortlist_result, ShortlistResult(shortlisted=False, note="again")
    )
    await handle(metro).signal(
        ProjectWorkflow.shortlist_result, ShortlistResult(shortlisted=True, note="stray")
    )
    before = await events(api, programme["id"])
    assert before == ["submitted", "shortlist_result"]
    assert await events(api, metro["id"]) == ["submitted"]
    left_timeline = expect(await api.http.get(f"/v1/projects/{left_out['id']}/timeline"), 200)
    last = left_timeline["items"][-1]
    assert (last["event"], last["stage"], last["actor_role"]) == (
        "shortlist_result",
        "not_shortlisted",
        "system",
    )
    assert "over 130 %" in last["note"]

    await advance_to(api, seoul(year, 4, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "deliberative", "deliberation")

    # entries in deliberation: a caseworker's is too late, a council member's goes on the list
    too_late = expect_problem(await api.post(path, caseworker, item()), 409)
    assert "forming or shortlist" in too_late["detail"] and "deliberation" in too_late["detail"]
    added = await entered(api, year, welfare_member, title="Added in deliberation")
    assert added["status"] == "shortlisted"
    added_first = expect(await api.http.get(f"/v1/projects/{added['id']}/timeline"), 200)
    assert added_first["items"][0]["stage"] == "shortlisted"

    # deliberation: the field's council only; input checked, nothing written when refused
    expect_problem(await api.post(deliberation, square_member, resize), 403)
    other = expect_problem(await api.post(deliberation, transport_member, resize), 403)
    assert "welfare citizen council" in other["detail"]
    expect_problem(await api.http.post(deliberation, json=resize), 401)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"action": "resize", "note": "no cost"}, "cost_krw"),
        ({**resize, "cost_krw": 2_000_000_000}, "cost_krw"),
        ({**resize, "cost_krw": 0}, "cost_krw"),
        ({"action": "continue", "cost_krw": 1, "note": "x"}, "cost_krw"),
        ({"action": "end", "cost_krw": 1, "note": "x"}, "cost_krw"),
        ({"action": "grow", "note": "x"}, "action"),
        ({"action": "continue", "note": ""}, "note"),
    ]
    for body, name in bad:
        expect_problem(await api.post(deliberation, welfare_member, body), 422, field=name)
    metro_deliberation = f"/v1/projects/{metro['id']}/deliberation"
    refused = expect_problem(await api.post(metro_deliberation, welfare_member, resize), 409)
    assert "deliberative projects" in refused["detail"]
    off_list = f"/v1/projects/{left_out['id']}/deliberation"
    refused = expect_problem(
        await api.post(off_list, welfare_member, {"action": "continue", "note": "x"}), 409
    )
    assert "shortlisted" in refused["detail"]
    assert await events(api, programme["id"]) == before

    resized = expect(await api.post(deliberation, welfare_member, resize), 200)
    assert (resized["status"], resized["cost_krw"], resized["submitted_cost_krw"]) == (
        "shortlisted",
        2_500_000_000,
        2_000_000_000,
    )
    entries = expect(await api.http.get(f"/v1/projects/{programme['id']}/timeline"), 200)
    last = entries["items"][-1]
    assert (last["event"], last["actor_role"]) == ("deliberated", "citizen")
    assert "from 2,000,000,000 KRW to 2,500,000,000 KRW" in last["note"]
    assert "more meals" in last["note"]
    kept = {"action": "continue", "note": "keep it"}
    continued = expect(
        await api.post(f"/v1/projects/{new_item['id']}/deliberation", welfare_member, kept), 200
    )
    assert (continued["status"], continued["cost_krw"]) == ("shortlisted", 500_000_000)

    # ended by the council: final; deliberation again is 409
    end_path = f"/v1/projects/{added['id']}/deliberation"
    ended = expect(
        await api.post(end_path, welfare_member, {"action": "end", "note": "duplicate"}), 200
    )
    assert ended["status"] == "ended"
    again_refused = expect_problem(await api.post(end_path, welfare_member, kept), 409)
    assert "ended" in again_refused["detail"]

    # a shortlisted project's proposer (a council member) withdraws it
    expect_problem(await api.post(f"/v1/projects/{new_item['id']}/withdraw", caseworker), 403)
    out = expect(await api.post(f"/v1/projects/{new_item['id']}/withdraw", welfare_member), 200)
    assert out["status"] == "withdrawn"

    # the vote: opinions still, deliberation and withdrawal no longer
    await advance_to(api, seoul(year, 7, 20) + timedelta(seconds=1))
    await wait_phase(api, year, "deliberative", "vote")
    expect(await api.post(opinions, square_member, {"body": "Vote for it."}), 201)
    expect_problem(await api.post(deliberation, welfare_member, kept), 409)
    expect_problem(await api.post(f"/v1/projects/{programme['id']}/withdraw", caseworker), 409)
    ballots = f"/v1/budget-cycles/{year}/ballots"
    ballot = {"kind": "deliberative", "project_ids": [programme["id"]]}
    expect(await api.post(ballots, await api.citizen(), ballot), 201)
    off_ballot = {"kind": "deliberative", "project_ids": [left_out["id"]]}
    expect_problem(await api.post(ballots, await api.citizen(), off_ballot), 422)

    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    selected = await wait_project(api, programme["id"], "selected")
    assert selected["selected"] is True and selected["cost_krw"] == 2_500_000_000
    assert selected["opinions"] == 2
    assert await events(api, programme["id"]) == [
        "submitted",
        "shortlist_result",
        "deliberated",
        "vote_counted",
    ]
    await record_history("project_deliberative_resized", project_workflow_id(programme["id"]))

    # the results recount the box and select again to each field's level, as the cycle did
    results_path = f"/v1/budget-cycles/{year}/results"
    results = expect(await api.http.get(results_path, params={"kind": "deliberative"}), 200)
    assert results["rule"] == "select_to_level"
    assert results["matches_recorded_tally"] is True
    assert results["matches_recorded_selection"] is True
    outcome = {p["project_id"]: p for p in results["fields"]["welfare"]["projects"]}
    assert outcome[programme["id"]]["status"] == "selected"
    pabulib = await api.http.get(f"{results_path}.pb", params={"kind": "deliberative"})
    assert pabulib.status_code == 200, pabulib.text
    # to the level: greedy by rank within the allocation + 5 % (deliberative.level_tolerance)
    assert programme["id"] in pabulib.text and "selection.rule=greedy" in pabulib.text
    assert "\nbudget;10500000000\n" in pabulib.text
    await record_history("budget_cycle_deliberative_voted", budget_cycle_workflow_id(year))


# ---- the workflow alone, with stubbed activities (tests/workflow_stubs.py) ----------------------


def deliberative_start(project_id: str, **fields: Any) -> ProjectStart:
    start = ProjectStart(
        project_id=project_id,
        year=2031,
        kind="deliberative",
        proposer_id="caseworker-1",
        field="welfare",
        cost_krw=2_000_000_000,
        event=False,
        districts=[],
        rules=rulebooks.load("seoul-2021"),
        department="welfare-policy",
    )
    return dataclasses.replace(start, **fields)


async def refusal(call: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await call
    assert isinstance(failed.value.cause, ApplicationError), repr(failed.value.cause)
    return failed.value.cause


async def test_the_deliberative_path_shortlisted_resized_selected_and_the_other_ends() -> None:
    member = Actor(role=Role.CITIZEN, person_id="council-member-1")

    def deliberation(action: str, cost_krw: int | None = None) -> Deliberation:
        return Deliberation(actor=member, action=action, note=f"{action} it", cost_krw=cost_krw)

    async with time_skipping_env() as env, stubbed_worker(env) as run:
        # an existing programme: shortlisted, resized, selected
        kept = run.unique_id("p")
        handle = await run.start(
            ProjectWorkflow.run, deliberative_start(kept), id=project_workflow_id(kept)
        )
        state: ProjectState = await handle.query(ProjectWorkflow.state)
        assert (state.status, state.department) == (ProjectStatus.SUBMITTED, "welfare-policy")
        history = len((await handle.fetch_history()).events)
        screening = await refusal(
            handle.execute_update(
                ProjectWorkflow.screen, Screening(actor_role="admin", eligible=True, reason="")
            )
        )
        assert screening.type == "Conflict" and "metropolitan" in screening.message
        too_early = await refusal(
            handle.execute_update(ProjectWorkflow.deliberate, deliberation("continue"))
        )
        assert too_early.type == "Conflict" and "submitted" in too_early.message
        added = (await handle.fetch_history()).events[history:]
        assert not [e for e in added if "ACTIVITY" in EventType.Name(e.event_type)]  # no write

        await handle.signal(ProjectWorkflow.shortlist_result, ShortlistResult(True, "on it"))
        await run.settle(handle)
        await handle.signal(ProjectWorkflow.shortlist_result, ShortlistResult(False, "again"))
        await run.settle(handle)
        state = await handle.query(ProjectWorkflow.state)
        assert state.status is ProjectStatus.SHORTLISTED
        assert state.shortlist == ShortlistResult(True, "on it")
        for command, wanted in [
            (deliberation("resize"), "cost_krw"),
            (deliberation("resize", 2_000_000_000), "cost_krw"),
            (deliberation("resize", -1), "cost_krw"),
            (deliberation("continue", 1), "cost_krw"),
            (deliberation("grow"), "action"),
        ]:
            refused = await refusal(handle.execute_update(ProjectWorkflow.deliberate, command))
            assert refused.type == "Invalid" and refused.message.startswith(wanted), refused
        resized = await handle.execute_update(
            ProjectWorkflow.deliberate, deliberation("resize", 2_400_000_000)
        )
        assert (resized.status, resized.cost_krw) == (ProjectStatus.SHORTLISTED, 2_400_000_000)
        [record] = resized.deliberations
        assert (record.action, record.old_cost_krw, record.new_cost_krw) == (
            "resize",
            2_000_000_000,
            2_400_000_000,
        )
        await handle.signal(
            ProjectWorkflow.vote_result,
            ProjectVoteResult(selected=True, rank=1, score="10", note="deliberative vote"),
        )
        await run.settle(handle)  # selected: on to its execution in Y+1
        final: ProjectState = await handle.query(ProjectWorkflow.state)
        assert (final.status, final.cost_krw) == (ProjectStatus.SELECTED, 2_400_000_000)

        # left off the shortlist: final at once
        left = run.unique_id("p")
        left_handle = await run.start(
            ProjectWorkflow.run, deliberative_start(left), id=project_workflow_id(left)
        )
        await left_handle.signal(ProjectWorkflow.shortlist_result, ShortlistResult(False, ""))
        assert (await left_handle.result()).status is ProjectStatus.NOT_SHORTLISTED

        # a council's new item added in deliberation starts on the list; the council ends it
        new = run.unique_id("p")
        new_handle = await run.start(
            ProjectWorkflow.run,
            deliberative_start(
                new, proposer_id=member.person_id, department=None, shortlisted=True
            ),
            id=project_workflow_id(new),
        )
        stranger = Actor(role=Role.CITIZEN, person_id="someone-else")
        refused = await refusal(
            new_handle.execute_update(ProjectWorkflow.withdraw, ProjectWithdrawal(stranger))
        )
        assert refused.type == "Forbidden"
        ended = await new_handle.execute_update(ProjectWorkflow.deliberate, deliberation("end"))
        assert ended.status is ProjectStatus.ENDED
        assert (await new_handle.result()).status is ProjectStatus.ENDED

        # the proposer withdraws a shortlisted project
        out = run.unique_id("p")
        out_handle = await run.start(
            ProjectWorkflow.run, deliberative_start(out), id=project_workflow_id(out)
        )
        await out_handle.signal(ProjectWorkflow.shortlist_result, ShortlistResult(True, ""))
        await run.settle(out_handle)
        proposer = Actor(
            role=Role.CASEWORKER, person_id="caseworker-1", department="welfare-policy"
        )
        gone = await out_handle.execute_update(
            ProjectWorkflow.withdraw, ProjectWithdrawal(proposer)
        )
        assert gone.status is ProjectStatus.WITHDRAWN

    # then its execution (when the other workflows' results have skipped the clock into Y+1)
    assert run.stubs.events(kept)[:4] == [
        "submitted",
        "shortlist_result",
        "deliberated",
        "vote_counted",
    ]
    submitted, shortlisted, resized_entry, counted = run.stubs.timeline(kept)[:4]
    assert (submitted.actor_role, submitted.stage) == (Role.CASEWORKER, "submitted")
    assert "existing programme of the department welfare-policy" in submitted.note
    assert (shortlisted.stage, shortlisted.note) == (
        "shortlisted",
        "on the deliberation list of the field: on it",
    )
    assert resized_entry.note == "resized from 2,000,000,000 KRW to 2,400,000,000 KRW: resize it"
    assert counted.stage == "selected"
    assert run.stubs.events(left) == ["submitted", "shortlist_result"]
    assert run.stubs.timeline(left)[-1].stage == "not_shortlisted"
    new_events = run.stubs.timeline(new)
    assert [(e.event, e.stage) for e in new_events] == [
        ("submitted", "shortlisted"),
        ("deliberated", "ended"),
    ]
    assert (
        new_events[0].actor_role is Role.CITIZEN
        and "added during deliberation" in new_events[0].note
    )
    withdrawn = run.stubs.timeline(out)[-1]
    assert (withdrawn.event, withdrawn.actor_role) == ("withdrawn", Role.CASEWORKER)
