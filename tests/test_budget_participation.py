"""Whole-budget participation (process.md §9) through the HTTP API on the simulated clock: each
record accepted only in its `[participation]` window of the cycle's rulebook, at both sides of
every boundary (00:00 Seoul time); who files and answers what; bad input naming the field;
idempotent replays; public listings without who filed; and the rulebook's windows themselves.

The drafting stage (year Y) plays in one test, execution and settlement (Y+1) in another, each
on its own stack and clock. Waste reports name projects whose rows are written here as the
vote's projection writes them (`status = 'selected'` or `'dropped'`): the vote itself is
test_budget_vote.py's.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import temporalio.converter

import rulebooks
from models.participation import ANSWER_WINDOWS, FILING_WINDOWS, window
from models.project_tables import BudgetProject
from models.rules import ParticipationRules, PinnedRules
from rulebooks import RulebookError
from tests.conftest import Stack
from tests.helpers import Api, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul

RULEBOOK = "seoul-2021-2"
SECOND = timedelta(seconds=1)
#: "Before" a boundary in the API tests: 23:59 the day before, a minute of wall time to act in
#: (the simulated clock runs at wall speed between advances).
BEFORE = timedelta(minutes=1)
PINNED = rulebooks.load(RULEBOOK)
TEXT = (rulebooks.BUILTIN_DIR / f"{RULEBOOK}.toml").read_text()


# ---- the rulebook ------------------------------------------------------------------------------


def test_seoul_2021_2_is_seoul_2021_plus_the_participation_windows() -> None:
    """... and plus the calendars of the types seoul-2021 had none for (the governance type on
    the metropolitan calendar, the district and neighbourhood types on their own) and the
    neighbourhood ceiling formula, and the execution's monitoring interval; every section
    seoul-2021 has is the same."""
    older = rulebooks.load("seoul-2021")
    newer, before = rulebooks.as_json(PINNED.rulebook), rulebooks.as_json(older.rulebook)
    assert set(newer) - set(before) == {"participation", "neighbourhood_ceiling", "monitoring"}
    assert newer["monitoring"] == {"report_days": 90}
    for section in set(before) - {"name", "title", "source", "calendar"}:
        assert newer[section] == before[section], section
    for kind, phases in before["calendar"].items():
        assert newer["calendar"][kind] == phases, kind
    assert newer["calendar"]["governance"] == before["calendar"]["metro"]
    assert set(newer["calendar"]) - set(before["calendar"]) == {
        "governance",
        "district",
        "neighbourhood",
    }
    assert list(newer["calendar"]["district"]) == [
        "briefing",
        "applications",
        "selection",
        "consulting",
        "submission",
        "negotiation",
        "decision",
        "drafting",
        "council",
    ]
    assert list(newer["calendar"]["neighbourhood"]) == [
        "ceilings",
        "agendas",
        "review",
        "drafting",
        "council",
    ]
    # no phase of the new types is a vote: the cycle opens no ballot box for them
    assert "vote" not in newer["calendar"]["district"]
    assert "vote" not in newer["calendar"]["neighbourhood"]
    assert newer["neighbourhood_ceiling"] == {
        "krw_per_neighbourhood": 30_000_000,
        "autonomous_max_per_district": 3,
    }
    # the older book keeps its content, hence its hash: the new section is optional
    assert "participation" not in before
    assert (
        older.content_hash
        == rulebooks.parse((rulebooks.BUILTIN_DIR / "seoul-2021.toml").read_text()).content_hash
    )
    assert PINNED.content_hash != older.content_hash


def test_the_windows_are_seoul_midnights_relative_to_the_cycle_year() -> None:
    rules = PINNED.rulebook.participation
    assert rules is not None

    def at(year: int, month: int, day: int) -> datetime:
        return seoul(year, month, day).astimezone(UTC)

    expected = {
        "material_requests": (at(2027, 4, 1), at(2027, 7, 1)),
        "explanations": (at(2027, 8, 1), at(2027, 11, 1)),
        "drafting_opinions": (at(2027, 10, 1), at(2027, 11, 1)),
        "opinion_statement": (at(2027, 10, 1), at(2027, 11, 1)),
        "waste_reports": (at(2028, 1, 1), at(2029, 1, 1)),
        "settlement_opinions": (at(2028, 7, 1), at(2028, 9, 1)),
        "settlement_answers": (at(2028, 9, 1), at(2028, 10, 1)),
    }
    for name, (opens, closes) in expected.items():
        found = window(rules, name, 2027)
        assert (found.opens_at, found.closes_at) == (opens, closes), name
        assert not found.holds(opens - SECOND) and found.holds(opens)
        assert found.holds(closes - SECOND) and not found.holds(closes)
    # 1 April 00:00 Seoul is 31 March 15:00 UTC
    assert window(rules, "material_requests", 2027).opens_at == datetime(
        2027, 3, 31, 15, tzinfo=UTC
    )


def test_every_record_and_answer_has_a_window_of_the_rulebook() -> None:
    keys = {f.name for f in dataclasses.fields(ParticipationRules)}
    assert set(FILING_WINDOWS.values()) | set(ANSWER_WINDOWS.values()) == keys
    assert set(ANSWER_WINDOWS) <= set(FILING_WINDOWS)


def test_the_rulebook_travels_through_a_workflow_input_unchanged() -> None:
    converter = temporalio.converter.DataConverter.default.payload_converter
    [back] = converter.from_payloads(converter.to_payloads([PINNED]), [PinnedRules])
    assert back == PINNED
    assert rulebooks.content_hash(back.rulebook) == PINNED.content_hash


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            (
                'material_requests = { start = "04-01", end = "07-01" }',
                'material_requests = { start = "07-01", end = "04-01" }',
            ),
            r"participation\.material_requests: .*ends \(04-01\) no later than it starts",
        ),
        (("end_year_offset = 2", "end_year_offset = 3"), "participation.waste_reports"),
        (
            ('explanations = { start = "08-01"', 'explanations = { start = "02-30"'),
            "participation.explanations.start",
        ),
        (
            (
                "[participation]\n",
                '[participation]\nsummaries = { start = "08-01", end = "09-01" }\n',
            ),
            "participation.summaries",
        ),
        (
            ('settlement_answers = { start = "09-01"', 'settlement_replies = { start = "09-01"'),
            "participation.settlement_answers",
        ),
    ],
)
def test_invalid_windows_are_rejected_naming_the_key(change: tuple[str, str], message: str) -> None:
    changed = TEXT.replace(*change)
    assert changed != TEXT
    with pytest.raises(RulebookError, match=message):
        rulebooks.parse(changed)


# ---- through the API ---------------------------------------------------------------------------


def path(year: int) -> str:
    return f"/v1/budget-cycles/{year}/participation"


def record(stage: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"stage": stage, "kind": kind, "body": f"{kind} at the {stage} stage", **fields}


MATERIAL = record("drafting", "material_request")
DRAFT_OPINION = record("drafting", "opinion")
STATEMENT = record("drafting", "opinion_statement")
WASTE = "waste_report"
SETTLEMENT = record("settlement", "opinion")
ANSWER = {"body": "Our draft spends it on ramps; the tables are attached."}


def refused_for_window(
    response: httpx.Response, name: str, opens: datetime, closes: datetime
) -> None:
    problem = expect_problem(response, 409)
    assert problem["window"] == f"participation.{name}", problem
    assert (problem["opens_at"], problem["closes_at"]) == (opens.isoformat(), closes.isoformat())
    assert opens.isoformat() in problem["detail"] and closes.isoformat() in problem["detail"]


async def answer(
    api: Api, year: int, record_id: str, who: dict[str, str], key: str | None = None
) -> httpx.Response:
    headers = {**who, **({"Idempotency-Key": key} if key else {})}
    return await api.http.post(f"{path(year)}/{record_id}/answers", json=ANSWER, headers=headers)


async def file(
    api: Api, year: int, who: dict[str, str], body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {**who, **({"Idempotency-Key": key} if key else {})}
    return await api.http.post(path(year), json=body, headers=headers)


async def listing(api: Api, year: int, **params: Any) -> list[dict[str, Any]]:
    return list(expect(await api.http.get(path(year), params=params), 200)["items"])


async def test_the_drafting_stage_in_its_windows_with_roles_answers_and_replays(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": RULEBOOK}), 201)
    alice_sub, bob_sub = f"alice-{year}", f"bob-{year}"
    alice, bob = await api.citizen(alice_sub), await api.citizen(bob_sub)
    parks = await api.official("caseworker", "parks")
    transport = await api.official("caseworker", "transport")
    welfare = await api.official("caseworker", "welfare")

    # a cycle on a rulebook without [participation] windows, and one that does not exist
    expect(
        await api.post("/v1/budget-cycles", admin, {"year": year + 1, "rulebook": "seoul-2021"}),
        201,
    )
    older = expect_problem(await file(api, year + 1, alice, MATERIAL), 409)
    assert "seoul-2021" in older["detail"] and "[participation]" in older["detail"]
    expect_problem(await file(api, year + 5, alice, MATERIAL), 404)
    expect_problem(await api.http.get(path(year + 5)), 404)

    # bad input, named; nothing written
    bad: list[tuple[dict[str, Any], str]] = [
        ({**MATERIAL, "stage": "planning"}, "stage"),
        ({**MATERIAL, "stage": 5}, "stage"),
        ({**MATERIAL, "kind": "complaint"}, "kind"),
        (record("drafting", WASTE, project_id="p-1"), "kind"),
        (record("execution", "opinion"), "kind"),
        (record("settlement", "material_request"), "kind"),
        (record("execution", WASTE), "project_id"),
        ({**MATERIAL, "body": "   "}, "body"),
        ({**MATERIAL, "body": "nul \x00 inside"}, "body"),
        ({**MATERIAL, "department": ""}, "department"),
        ({**MATERIAL, "colour": "red"}, "colour"),
        ({"stage": "drafting", "kind": "opinion"}, "body"),
    ]
    for body, field in bad:
        expect_problem(await file(api, year, alice, body), 422, field=field)
    expect_problem(
        await file(api, year, admin, {**STATEMENT, "project_id": "p-1"}), 422, field="project_id"
    )
    expect_problem(
        await file(api, year, admin, {**STATEMENT, "department": "parks"}), 422, field="department"
    )

    # who files what
    official = await api.citizen(public_official=True)
    for who, body in (
        (parks, MATERIAL),
        (official, MATERIAL),
        (admin, MATERIAL),
        (await api.official("committee"), DRAFT_OPINION),
        (alice, STATEMENT),
    ):
        expect_problem(await file(api, year, who, body), 403)
    expect_problem(await api.http.post(path(year), json=MATERIAL), 401)
    assert await listing(api, year) == []

    # material requests: [04-01, 07-01) of Y
    opens, closes = seoul(year, 4, 1), seoul(year, 7, 1)
    await advance_to(api, opens - BEFORE)
    refused_for_window(await file(api, year, alice, MATERIAL), "material_requests", opens, closes)
    await advance_to(api, opens)
    to_transport = {**MATERIAL, "department": "transport", "body": "The bus budget by line."}
    first = expect(await file(api, year, alice, to_transport, key="req-1"), 201)
    assert (first["stage"], first["kind"], first["department"]) == (
        "drafting",
        "material_request",
        "transport",
    )
    assert first["filed_by"] == "citizen" and first["answers"] == []
    assert first["created_at"].endswith("+09:00") and first["created_at"].startswith(
        f"{year}-04-01T00:00"
    )
    replay = expect(await file(api, year, alice, to_transport, key="req-1"), 201)
    assert replay == first
    expect_problem(
        await file(api, year, alice, MATERIAL, key="req-1"), 422, field="Idempotency-Key"
    )
    expect_problem(await file(api, year, alice, {**MATERIAL, "project_id": "no-such-project"}), 404)
    refused_for_window(
        await file(api, year, alice, DRAFT_OPINION),
        "drafting_opinions",
        seoul(year, 10, 1),
        seoul(year, 11, 1),
    )
    assert [r["id"] for r in await listing(api, year)] == [first["id"]]

    await advance_to(api, closes - BEFORE)
    last = expect(await file(api, year, bob, MATERIAL), 201)
    explains, explained = seoul(year, 8, 1), seoul(year, 11, 1)
    refused_for_window(
        await answer(api, year, last["id"], parks), "explanations", explains, explained
    )
    await advance_to(api, closes)
    refused_for_window(await file(api, year, bob, MATERIAL), "material_requests", opens, closes)

    # the departments' explanations: [08-01, 11-01) of Y, answering the requests
    await advance_to(api, explains - BEFORE)
    refused_for_window(
        await answer(api, year, last["id"], parks), "explanations", explains, explained
    )
    await advance_to(api, explains)
    expect_problem(await answer(api, year, first["id"], parks), 403)  # addressed to transport
    expect_problem(await answer(api, year, first["id"], alice), 403)
    expect_problem(await answer(api, year, first["id"], admin), 403)
    expect_problem(await answer(api, year, "no-such-record", transport), 404)
    expect_problem(await answer(api, year + 1, first["id"], transport), 404)  # not that cycle's
    explanation = expect(await answer(api, year, first["id"], transport, key="exp-1"), 201)
    assert (explanation["record_id"], explanation["department"]) == (first["id"], "transport")
    assert expect(await answer(api, year, first["id"], transport, key="exp-1"), 201) == explanation
    expect_problem(await answer(api, year, first["id"], transport), 409)  # once per department
    expect(await answer(api, year, last["id"], parks), 201)
    expect(await answer(api, year, last["id"], transport), 201)

    # the opinions for the statement and the statement itself: [10-01, 11-01) of Y
    october = seoul(year, 10, 1)
    await advance_to(api, october - BEFORE)
    refused_for_window(
        await file(api, year, alice, DRAFT_OPINION), "drafting_opinions", october, explained
    )
    refused_for_window(
        await file(api, year, admin, STATEMENT), "opinion_statement", october, explained
    )
    await advance_to(api, october)
    opinion = expect(await file(api, year, alice, DRAFT_OPINION), 201)
    assert "opinion" in expect_problem(await answer(api, year, opinion["id"], parks), 409)["detail"]
    statement = expect(await file(api, year, admin, STATEMENT, key="statement"), 201)
    assert statement["filed_by"] == "admin"
    assert expect(await file(api, year, admin, STATEMENT, key="statement"), 201) == statement
    expect_problem(await file(api, year, admin, {**STATEMENT, "body": "a second one"}), 409)

    await advance_to(api, explained - BEFORE)
    expect(await file(api, year, alice, {**DRAFT_OPINION, "body": "Fund the ramps first."}), 201)
    expect(await answer(api, year, last["id"], welfare), 201)
    await advance_to(api, explained)
    refused_for_window(
        await file(api, year, alice, DRAFT_OPINION), "drafting_opinions", october, explained
    )
    refused_for_window(
        await answer(api, year, last["id"], welfare), "explanations", explains, explained
    )

    # the public listing: records with their answers, no one's id
    requests = await listing(api, year, stage="drafting", kind="material_request")
    assert [r["id"] for r in requests] == [first["id"], last["id"]]
    assert [a["department"] for a in requests[0]["answers"]] == ["transport"]
    assert [a["department"] for a in requests[1]["answers"]] == ["parks", "transport", "welfare"]
    assert set(requests[0]) == {
        "id",
        "year",
        "stage",
        "kind",
        "body",
        "project_id",
        "department",
        "filed_by",
        "created_at",
        "answers",
    }
    assert set(requests[0]["answers"][0]) == {"id", "record_id", "department", "body", "created_at"}
    everything = await api.http.get(path(year))
    assert alice_sub not in everything.text and bob_sub not in everything.text
    assert len(everything.json()["items"]) == 5
    [recorded] = await listing(api, year, kind="opinion_statement")
    assert recorded["id"] == statement["id"]
    assert len(await listing(api, year, stage="drafting", kind="opinion")) == 2
    expect_problem(
        await api.http.get(path(year), params={"stage": "spending"}), 422, field="query.stage"
    )
    page = expect(await api.http.get(path(year), params={"limit": 2}), 200)
    assert len(page["items"]) == 2 and page["next_cursor"] == "2"
    rest = expect(await api.http.get(path(year), params={"limit": 2, "cursor": "4"}), 200)
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None

    # the filer's own records
    mine = expect(await api.http.get("/v1/me/participation", headers=alice), 200)["items"]
    assert [r["kind"] for r in mine] == ["material_request", "opinion", "opinion"]
    theirs = expect(await api.http.get("/v1/me/participation", headers=bob), 200)["items"]
    assert [r["id"] for r in theirs] == [last["id"]]
    other_year = await api.http.get(
        "/v1/me/participation", params={"year": year + 1}, headers=alice
    )
    assert expect(other_year, 200)["items"] == []
    expect_problem(await api.http.get("/v1/me/participation"), 401)


async def add_project(system: Stack, year: int, status: str) -> str:
    """A project row of the cycle as the vote's projection leaves it (selected, dropped) or as
    its execution in Y+1 does (executing, completed: still selected)."""
    project_id = f"project-{year}-{status}"
    now = datetime.now(UTC)
    async with system.sessions() as session, session.begin():
        session.add(
            BudgetProject(
                id=project_id,
                workflow_id=f"project-workflow-{project_id}",
                year=year,
                kind="metro",
                field="welfare",
                title=f"A {status} project",
                body="Ramps along the Han.",
                proposer_id="someone",
                event=False,
                districts=["Mapo-gu", "Jongno-gu"],
                submitted_cost_krw=1_000_000_000,
                rulebook=RULEBOOK,
                rulebook_hash=PINNED.content_hash,
                created_at=now,
                status=status,
                cost_krw=1_000_000_000,
                selected=status in ("selected", "executing", "completed"),
            )
        )
    return project_id


async def test_waste_reports_and_settlement_in_the_year_the_budget_is_spent(
    api: Api, system: Stack
) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    spent = year + 1
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": RULEBOOK}), 201)
    expect(await api.post("/v1/budget-cycles", admin, {"year": spent, "rulebook": RULEBOOK}), 201)
    selected = await add_project(system, year, "selected")
    dropped = await add_project(system, year, "dropped")
    elsewhere = await add_project(system, spent, "selected")
    monitor = await api.citizen(district="Mapo-gu")
    finance = await api.official("caseworker", "finance")
    parks = await api.official("caseworker", "parks")

    def waste(project_id: str | None, **fields: Any) -> dict[str, Any]:
        body = record("execution", WASTE, body="Paving laid twice on the same path.", **fields)
        if project_id is not None:
            body["project_id"] = project_id
        return body

    # waste reports: the whole of Y+1
    opens, closes = seoul(spent, 1, 1), seoul(spent + 1, 1, 1)
    await advance_to(api, opens - BEFORE)
    refused_for_window(
        await file(api, year, monitor, waste(selected)), "waste_reports", opens, closes
    )
    await advance_to(api, opens)
    report = expect(await file(api, year, monitor, waste(selected), key="waste-1"), 201)
    assert (report["stage"], report["kind"], report["project_id"]) == ("execution", WASTE, selected)
    assert expect(await file(api, year, monitor, waste(selected), key="waste-1"), 201) == report
    # from 1 January of Y+1 a selected project is being executed, then completed: still open
    # to waste reports
    for status in ("executing", "completed"):
        spent_on = await add_project(system, year, status)
        taken = expect(await file(api, year, monitor, waste(spent_on)), 201)
        assert taken["project_id"] == spent_on
    assert (
        "dropped"
        in expect_problem(await file(api, year, monitor, waste(dropped)), 422, field="project_id")[
            "detail"
        ]
    )
    assert (
        str(spent)
        in expect_problem(
            await file(api, year, monitor, waste(elsewhere)), 422, field="project_id"
        )["detail"]
    )
    expect_problem(await file(api, year, monitor, waste("no-such-project")), 404)
    expect_problem(await file(api, year, monitor, waste(None)), 422, field="project_id")
    expect_problem(await file(api, year, finance, waste(selected)), 403)
    # departments answer requests and settlement opinions, not waste reports
    expect_problem(await answer(api, year, report["id"], finance), 409)

    # settlement opinions: [07-01, 09-01) of Y+1; the departments' answers: [09-01, 10-01)
    gathered, reviewed, reflected = seoul(spent, 7, 1), seoul(spent, 9, 1), seoul(spent, 10, 1)
    await advance_to(api, gathered - BEFORE)
    refused_for_window(
        await file(api, year, monitor, SETTLEMENT), "settlement_opinions", gathered, reviewed
    )
    await advance_to(api, gathered)
    to_finance = expect(
        await file(
            api, year, monitor, {**SETTLEMENT, "department": "finance", "project_id": selected}
        ),
        201,
    )
    assert (to_finance["stage"], to_finance["project_id"]) == ("settlement", selected)
    await advance_to(api, reviewed - BEFORE)
    open_to_all = expect(await file(api, year, monitor, SETTLEMENT), 201)
    refused_for_window(
        await answer(api, year, to_finance["id"], finance),
        "settlement_answers",
        reviewed,
        reflected,
    )
    await advance_to(api, reviewed)
    refused_for_window(
        await file(api, year, monitor, SETTLEMENT), "settlement_opinions", gathered, reviewed
    )
    expect_problem(await answer(api, year, to_finance["id"], parks), 403)
    expect(await answer(api, year, to_finance["id"], finance, key="answer-1"), 201)
    await advance_to(api, reflected - BEFORE)
    expect(await answer(api, year, open_to_all["id"], parks), 201)
    await advance_to(api, reflected)
    refused_for_window(
        await answer(api, year, open_to_all["id"], finance),
        "settlement_answers",
        reviewed,
        reflected,
    )

    # the last second of Y+1 still takes a waste report; Y+2 does not
    await advance_to(api, closes - BEFORE)
    expect(await file(api, year, monitor, waste(selected)), 201)
    await advance_to(api, closes)
    refused_for_window(
        await file(api, year, monitor, waste(selected)), "waste_reports", opens, closes
    )

    reports = await listing(api, year, stage="execution")
    assert [r["kind"] for r in reports] == [WASTE] * 4
    assert sorted(r["project_id"] for r in reports) == sorted(
        [selected, selected, f"project-{year}-executing", f"project-{year}-completed"]
    )
    settled = await listing(api, year, stage="settlement", kind="opinion")
    assert [[a["department"] for a in r["answers"]] for r in settled] == [["finance"], ["parks"]]
    assert await listing(api, spent) == []
