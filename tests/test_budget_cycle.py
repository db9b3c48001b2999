"""The budget-year cycle: phases on the calendar, in Seoul time, through the HTTP API; overrides;
and a whole year played on the time-skipping server with stubbed activities."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import rulebooks
from models.ballot_box import BoxTally
from models.budget import (
    BallotCandidate,
    BudgetCycleStart,
    BudgetCycleState,
    FieldAllocation,
    FormBody,
    RecordDecision,
    SetFields,
    SetShortlist,
    ShortlistEntry,
)
from models.calendar import CLOSED, NOT_STARTED, SEOUL, phase_schedule
from models.case import Role
from models.ids import budget_cycle_workflow_id
from tests.helpers import Api, expect, expect_problem
from tests.workflow_stubs import StubActivities, stubbed_worker, time_skipping_env
from workflows.budget import BudgetCycleWorkflow


def seoul(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=SEOUL)


async def next_year(api: Api) -> int:
    return datetime.fromisoformat(await api.now()).astimezone(SEOUL).year + 1


async def advance_to(api: Api, moment: datetime) -> None:
    now = datetime.fromisoformat(await api.now())
    await api.advance(seconds=(moment - now).total_seconds())


async def wait_phase(api: Api, year: int, kind: str, phase: str) -> dict[str, Any]:
    """The cycle once `kind` is in `phase`; for the vote, once its box is open too (the cycle
    records every type's phase change first, then opens the boxes)."""
    for _ in range(400):
        cycle: dict[str, Any] = expect(await api.http.get(f"/v1/budget-cycles/{year}"), 200)
        if cycle["phases"][kind]["phase"] == phase and (
            phase != "vote" or await _vote_opened(api, year, kind)
        ):
            return cycle
        await asyncio.sleep(0.05)
    raise AssertionError(f"{kind} never reached {phase}: {cycle}")


async def _vote_opened(api: Api, year: int, kind: str) -> bool:
    return any(
        e["event"] == "vote_opened" and e["note"].startswith(f"{kind}:")
        for e in await cycle_timeline(api, year)
    )


async def cycle_timeline(api: Api, year: int) -> list[dict[str, Any]]:
    body = expect(await api.http.get(f"/v1/budget-cycles/{year}/timeline"), 200)
    return list(body["items"])


async def test_phases_change_on_the_calendar_and_an_override_moves_a_boundary(
    api: Api, record_history: Any
) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    created = expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    assert created["rulebook"] == "seoul-2021-2" and created["drop_ratio"] == 0.05
    assert created["phases"]["metro"] == {
        "phase": NOT_STARTED,
        "phase_ends_at": seoul(year, 1, 1).isoformat(),
    }
    assert set(created["phases"]) == {
        "deliberative",
        "metro",
        "governance",
        "district",
        "neighbourhood",
    }
    assert created["fields"] == [] and created["totals"] == {
        "allocation_krw": 0,
        "shortlist_krw": 0,
    }
    second = await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.1})
    expect_problem(second, 409, field="year")

    # metro call -> screening at 03-01 00:00 Seoul = 02-28 15:00 UTC
    boundary = datetime(year, 2, 28, 15, tzinfo=UTC)
    await advance_to(api, boundary - timedelta(seconds=1))
    before = await wait_phase(api, year, "metro", "call")
    assert before["phases"]["metro"]["phase_ends_at"] == seoul(year, 3, 1).isoformat()
    assert before["phases"]["deliberative"] == {
        "phase": "forming",
        "phase_ends_at": seoul(year, 3, 1).isoformat(),
    }
    await api.advance(seconds=2)
    after = await wait_phase(api, year, "metro", "screening")
    assert after["phases"]["metro"]["phase_ends_at"] == seoul(year, 4, 15).isoformat()
    after = await wait_phase(api, year, "deliberative", "shortlist")
    assert after["phases"]["deliberative"]["phase_ends_at"] == seoul(year, 4, 1).isoformat()

    entries = await cycle_timeline(api, year)
    started = [e for e in entries if e["event"] == "phase_started"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(e["actor_role"] == "system" for e in started)
    metro = [e for e in started if e["note"].startswith("metro:")]
    assert [e["stage"] for e in metro] == [NOT_STARTED, "call", "screening"]
    assert "until 2" in metro[-1]["note"] and seoul(year, 4, 15).isoformat() in metro[-1]["note"]

    # an override: screening ends five days later, council review starts then
    path = f"/v1/budget-cycles/{year}/phase-overrides"
    new_end = seoul(year, 4, 20).isoformat()
    override = {"type": "metro", "phase": "screening", "new_end": new_end, "reason": "late call"}
    moved = expect(await api.post(path, admin, override), 200)
    assert moved["phases"]["metro"] == {"phase": "screening", "phase_ends_at": new_end}
    last = (await cycle_timeline(api, year))[-1]
    assert (last["event"], last["actor_role"], last["stage"]) == (
        "phase_overridden",
        "admin",
        "screening",
    )
    assert "late call" in last["note"] and new_end in last["note"]

    # refused overrides, nothing written
    over = {**override, "phase": "call", "new_end": seoul(year, 3, 5).isoformat()}
    expect_problem(await api.post(path, admin, over), 409)
    beyond = {**override, "new_end": seoul(year, 7, 2).isoformat()}
    assert "council_review" in expect_problem(await api.post(path, admin, beyond), 422)["detail"]
    unknown = {**override, "type": "lunar"}
    assert "lunar" in expect_problem(await api.post(path, admin, unknown), 422)["detail"]
    no_phase = {**override, "phase": "harvest"}
    assert "harvest" in expect_problem(await api.post(path, admin, no_phase), 422)["detail"]
    expect_problem(await api.post(path, admin, {**override, "reason": " "}), 422, field="reason")
    expect_problem(await api.post(path, await api.citizen(), override), 403)
    assert (await cycle_timeline(api, year))[-1]["seq"] == last["seq"]

    # the running timer follows the override
    await advance_to(api, seoul(year, 4, 15) + timedelta(seconds=1))
    await asyncio.sleep(0.5)
    still = expect(await api.http.get(f"/v1/budget-cycles/{year}"), 200)
    assert still["phases"]["metro"]["phase"] == "screening"
    await advance_to(api, seoul(year, 4, 20) + timedelta(seconds=1))
    later = await wait_phase(api, year, "metro", "council_review")
    assert later["phases"]["metro"]["phase_ends_at"] == seoul(year, 7, 1).isoformat()
    await record_history("budget_cycle_overridden", budget_cycle_workflow_id(year))


async def test_bad_input_is_refused_naming_the_field(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    refused: list[tuple[dict[str, Any], int, str]] = [
        ({"year": year, "drop_ratio": 0.5}, 422, "drop_ratio"),
        ({"year": year, "drop_ratio": 0.01}, 422, "drop_ratio"),
        ({"year": year, "rulebook": "seoul-2018"}, 422, "rulebook"),
        ({"year": year, "rulebook": "no-such-book"}, 422, "rulebook"),
        ({"year": str(year)}, 422, "year"),
        ({"year": 1800}, 422, "year"),
        ({"year": year, "colour": "red"}, 422, "colour"),
        ({}, 422, "year"),
    ]
    for body, status, name in refused:
        expect_problem(await api.post("/v1/budget-cycles", admin, body), status, field=name)
    expect_problem(await api.post("/v1/budget-cycles", await api.citizen(), {"year": year}), 403)
    expect_problem(await api.http.post("/v1/budget-cycles", json={"year": year}), 401)
    expect_problem(await api.http.get(f"/v1/budget-cycles/{year}"), 404)
    expect_problem(await api.http.get(f"/v1/budget-cycles/{year}/timeline"), 404)
    override = {"type": "metro", "phase": "call", "new_end": "2030-01-01T00:00:00+09:00"}
    path = f"/v1/budget-cycles/{year}/phase-overrides"
    expect_problem(await api.post(path, admin, {**override, "reason": "x"}), 404)
    expect_problem(await api.post(path, admin, override), 422, field="reason")
    bad_time = {**override, "new_end": "2030-01-01T00:00:00", "reason": "x"}
    expect_problem(await api.post(path, admin, bad_time), 422, field="new_end")
    created = expect(
        await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.3}), 201
    )
    assert created["drop_ratio"] == 0.3


# ---- the workflow alone: a whole year in seconds -------------------------------------------------


async def test_a_whole_year_continues_as_new_and_projects_every_change_in_order() -> None:
    pinned = rulebooks.load("seoul-2021")
    calendar = pinned.rulebook.calendar
    assert calendar is not None
    stubs = StubActivities()
    async with time_skipping_env() as env, stubbed_worker(env, stubs=stubs) as run:
        year = (await env.get_current_time()).astimezone(SEOUL).year + 1
        start = BudgetCycleStart(year=year, rules=pinned, drop_ratio=0.1, max_history_events=40)
        handle = await run.start(
            BudgetCycleWorkflow.run, start, id=run.unique_id(budget_cycle_workflow_id(year))
        )
        result: BudgetCycleState = await handle.result()
        assert result.status.value == "closed" and result.runs >= 2
        first_run = await env.client.get_workflow_handle(
            handle.id, run_id=handle.result_run_id
        ).fetch_history()
        assert first_run.events[-1].event_type == (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        )
    everything = sorted((p.entry for p in stubs.cycle_projections), key=lambda e: e.seq)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert [e.at for e in everything] == sorted(e.at for e in everything)
    # each type's vote opened and closed once, in its vote phase (no candidates were canned)
    votes = [(e.event, e.note.split(":")[0]) for e in everything if e.event.startswith("vote_")]
    assert sorted(votes) == sorted(
        (event, kind) for kind in calendar for event in ("vote_opened", "vote_closed")
    )
    assert stubs.budget_boxes_opened == stubs.budget_boxes_closed == ["deliberative", "metro"]
    # the metro vote opens on 1 August, when the deliberative one closes: it is not kept
    # waiting by that count
    vote_entries = {(e.event, e.note.split(":")[0]): e for e in everything}
    opened, closed = (
        vote_entries["vote_opened", "metro"],
        vote_entries["vote_closed", "deliberative"],
    )
    assert opened.seq < closed.seq
    assert closed.at - opened.at < timedelta(seconds=5)
    # the last projection shows the cycle closed, with its last change
    last = max(stubs.cycle_projections, key=lambda p: p.entry.seq)
    assert last.entry.note.endswith("closed (the last phase is over)")
    assert last.state.status.value == "closed"
    assert all(p.state.status.value == "running" for p in stubs.cycle_projections if p is not last)
    entries = [e for e in everything if e.event == "phase_started"]
    for kind in calendar:
        expected = [NOT_STARTED] + [p.phase for p in phase_schedule(calendar, kind, year)]
        announced = [e.stage for e in entries if e.note.startswith(f"{kind}:")]
        assert announced == [*expected, CLOSED], kind
        for entry, scheduled in zip(
            [e for e in entries if e.note.startswith(f"{kind}:")][1:],
            phase_schedule(calendar, kind, year),
            strict=False,
        ):
            # at the boundary, to the workflow task's few milliseconds
            assert timedelta(0) <= entry.at - scheduled.starts_at < timedelta(seconds=5), entry
    assert all(e.event == "phase_started" and e.actor_role == "system" for e in entries)


async def test_the_metro_vote_drops_by_weighted_score_not_raw_counts() -> None:
    """Budget-school graduates are half the ballots but 10 % of the weight: by raw counts B
    (100 approvals) is above C (40), by weighted score C (0.9 x 40/100 = 0.36) is above B
    (0.9 x 20/100 + 0.1 x 80/100 = 0.26). With a drop ratio of 0.3 of 100 KRW, only the
    lowest project worth up to 30 drops: B, not C, and the results name the rule and digest."""
    pinned = rulebooks.load("seoul-2021")
    stubs = StubActivities()
    stubs.budget_candidates["metro"] = [
        BallotCandidate(project_id="A", field="environment", cost_krw=50),
        BallotCandidate(project_id="B", field="environment", cost_krw=25),
        BallotCandidate(project_id="C", field="environment", cost_krw=25),
    ]
    stubs.budget_tallies["metro"] = BoxTally(
        approvals={
            "A": {"general": 90, "budget_school": 90},
            "B": {"general": 20, "budget_school": 80},
            "C": {"general": 40},
        },
        ballots={"general": 100, "budget_school": 100},
        digest="sha256:canned",
    )
    async with time_skipping_env() as env, stubbed_worker(env, stubs=stubs) as run:
        year = (await env.get_current_time()).astimezone(SEOUL).year + 1
        start = BudgetCycleStart(year=year, rules=pinned, drop_ratio=0.3)
        handle = await run.start(
            BudgetCycleWorkflow.run, start, id=run.unique_id(budget_cycle_workflow_id(year))
        )
        result: BudgetCycleState = await handle.result()
    vote = result.votes["metro"]
    assert vote.closed_at is not None and vote.digest == "sha256:canned"
    assert vote.rule == "drop_lowest"
    field = vote.results["environment"]
    outcomes = {p["project_id"]: p for p in field["projects"]}
    assert (outcomes["A"]["status"], outcomes["B"]["status"], outcomes["C"]["status"]) == (
        "selected",
        "dropped",
        "selected",
    )
    assert outcomes["B"]["total_approvals"] > outcomes["C"]["total_approvals"]  # raw: B above C
    assert outcomes["C"]["rank"] < outcomes["B"]["rank"]  # weighted: C above B
    assert (field["selected_krw"], field["dropped_krw"]) == (75, 25)
    closed = [p.entry for p in stubs.cycle_projections if p.entry.event == "vote_closed"]
    metro = [e for e in closed if e.note.startswith("metro:")]
    assert len(metro) == 1 and "sha256:canned" in metro[0].note
    assert "1 dropped" in metro[0].note and "2 selected" in metro[0].note


# ---- the deliberative type on the workflow alone ------------------------------------------------


async def _refused(call: Awaitable[Any], kind: str, *words: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await call
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == kind, cause
    for word in words:
        assert word in str(cause), (word, str(cause))


async def _skip_to(env: WorkflowEnvironment, moment: datetime) -> None:
    await env.sleep((moment - await env.get_current_time()).total_seconds())


async def test_deliberative_fields_councils_shortlist_and_selection_to_the_level() -> None:
    """Fields in January, the bodies (5:5 within one person; the Square at exactly 1,000),
    the shortlist at 130 % +/- 5 % of the allocation (1,250 and 1,350 of 1,000 taken, 1,249
    and 1,351 refused, naming both sums), then the vote selects in rank order to the 100 %
    level (at most 1,050): E2 (500) no longer fits after E1 (600) and is skipped, E3 (300) is
    taken. The assembly and the council are recorded in their phases, as given."""
    pinned = rulebooks.load("seoul-2021")
    stubs = StubActivities()
    stubs.budget_submitted["deliberative"] = ["E1", "E2", "E3", "X"]
    stubs.budget_candidates["deliberative"] = [
        BallotCandidate(project_id="E1", field="environment", cost_krw=600),
        BallotCandidate(project_id="E2", field="environment", cost_krw=500),
        BallotCandidate(project_id="E3", field="environment", cost_krw=300),
    ]
    stubs.budget_tallies["deliberative"] = BoxTally(
        approvals={"E1": {"general": 90}, "E2": {"general": 60}, "E3": {"general": 30}},
        ballots={"general": 100},
        digest="sha256:deliberative",
    )
    admin = Role.ADMIN.value
    async with time_skipping_env() as env, stubbed_worker(env, stubs=stubs) as run:
        year = (await env.get_current_time()).astimezone(SEOUL).year + 1
        handle = await run.start(
            BudgetCycleWorkflow.run,
            BudgetCycleStart(year=year, rules=pinned, drop_ratio=0.1),
            id=run.unique_id(budget_cycle_workflow_id(year)),
        )
        fields = SetFields(
            actor_role=admin,
            fields=[FieldAllocation("environment", 1_000), FieldAllocation("welfare", 500)],
        )
        await _refused(
            handle.execute_update(BudgetCycleWorkflow.set_fields, fields), "Conflict", "allocation"
        )
        await _skip_to(env, seoul(year, 1, 2))
        await _refused(
            handle.execute_update(
                BudgetCycleWorkflow.set_fields, SetFields(actor_role="citizen", fields=[])
            ),
            "Forbidden",
        )
        await handle.execute_update(BudgetCycleWorkflow.set_fields, fields)

        def council(field: str, active: int, drawn: int, draw: str) -> FormBody:
            return FormBody(
                actor_role=admin,
                body=f"council:{field}",
                draw_id=draw,
                active_ids=[f"a{i}" for i in range(active)],
                drawn_ids=[f"{draw}-{i}" for i in range(drawn)],
            )

        update = BudgetCycleWorkflow.form_body
        await _refused(handle.execute_update(update, council("environment", 3, 5, "d1")), "Invalid")
        await _refused(handle.execute_update(update, council("culture", 5, 5, "d1")), "Invalid")
        await handle.execute_update(update, council("environment", 6, 5, "d1"))
        await _refused(handle.execute_update(update, council("welfare", 4, 5, "d1")), "Invalid")
        await handle.execute_update(update, council("welfare", 4, 5, "d2"))

        def square(size: int, draw: str) -> FormBody:
            drawn = [f"s{i}" for i in range(size)]
            return FormBody(admin, "square", draw, active_ids=[], drawn_ids=drawn)

        await _refused(handle.execute_update(update, square(999, "d3")), "Invalid", "1000")
        await handle.execute_update(update, square(1_000, "d3"))

        await _skip_to(env, seoul(year, 3, 2))

        def shortlist(*costs: int) -> SetShortlist:
            projects = [ShortlistEntry(f"E{i + 1}", cost) for i, cost in enumerate(costs)]
            return SetShortlist(actor_role="citizen", field="environment", projects=projects)

        listing = BudgetCycleWorkflow.set_shortlist
        for outside in ((600, 500, 149), (600, 500, 251)):
            await _refused(
                handle.execute_update(listing, shortlist(*outside)),
                "Invalid",
                f"{sum(outside):,} KRW",
                "1,250 KRW to 1,350 KRW",
            )
        await handle.execute_update(listing, shortlist(600, 500, 250))
        await handle.execute_update(listing, shortlist(600, 500, 150))
        await _refused(
            handle.execute_update(
                BudgetCycleWorkflow.record_decision,
                RecordDecision(admin, "assembly", ["E1"], "minutes"),
            ),
            "Conflict",
            "assembly",
        )
        await _skip_to(env, seoul(year, 8, 25))
        await handle.execute_update(
            BudgetCycleWorkflow.record_decision,
            RecordDecision(admin, "assembly", ["E1", "E3"], "assembly of 25 August"),
        )
        await _skip_to(env, seoul(year, 12, 2))
        state = await handle.execute_update(
            BudgetCycleWorkflow.record_decision,
            RecordDecision(admin, "council", ["E1", "E2"], "resolution 2027-123"),
        )
        assert state.council is not None and state.council.project_ids == ["E1", "E2"]
        result: BudgetCycleState = await handle.result()
    assert [f.field for f in result.fields] == ["environment", "welfare"]
    assert (result.bodies["council:environment"].active, result.bodies["square"].drawn) == (
        6,
        1_000,
    )
    assert [p.cost_krw for p in result.shortlists["environment"]] == [600, 500, 150]
    vote = result.votes["deliberative"]
    assert vote.rule == "select_to_level"
    outcome = {p["project_id"]: p["status"] for p in vote.results["environment"]["projects"]}
    assert outcome == {"E1": "selected", "E2": "dropped", "E3": "selected"}
    entries = {p.entry.event: p for p in stubs.cycle_projections}
    formed = [p for p in stubs.cycle_projections if p.entry.event == "body_formed"]
    assert [len(p.members.members) for p in formed if p.members] == [11, 9, 1_000]
    assert "3 projects on the shortlists of 1 fields; 1 not shortlisted" in (
        entries["shortlists_closed"].entry.note
    )
    assert "all selected by the vote" in entries["assembly_recorded"].entry.note
    assert "1 of them not selected by the vote: E2" in entries["council_recorded"].entry.note
    told = [a for a in stubs.attempts if a[0] == "submitted_projects"]
    assert len(told) == 1
