"""The deliberative type of a budget cycle (process.md §5, api.md "Budget-year cycles") through
the HTTP API on the simulated clock, with the real worker and Postgres: the fields in the
`allocation` phase, the citizen councils (5:5 within one person) and the Budget Square (exactly
`sortition.square_size`) from revealed draws, the shortlists at 130 % +/- 5 % of a field's
allocation, the general assembly's and the city council's decisions recorded as given, and the
linked forums that close on either side of 31 August joining this year or carried over to the
next, whether the cycles exist when the forums close or are started after. Each phase edge and
each limit is walked on both sides; every refusal leaves the cycle as it was."""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel import col, select

from models.budget_tables import BudgetBodyMember
from models.calendar import SEOUL
from models.sortition import DISTRICTS
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from tests.test_budget_cycle import advance_to, cycle_timeline, next_year, seoul, wait_phase
from tests.test_deliberative_projects import entered, wait_project
from tests.test_forums import bulk_participate, create_forum, wait_forum

SECOND = timedelta(seconds=1)
BILLION = 1_000_000_000
_pools = itertools.count()


# ---- helpers ------------------------------------------------------------------------------------


async def pool(api: Api, size: int, *, graduates: bool) -> str:
    """A sortition pool of `size` people, alternately women and men, all of age."""
    admin = await api.official("admin")
    name = f"pool-{'graduates' if graduates else 'citizens'}-{next(_pools)}"
    members = [
        {
            "person_id": f"{name}-{i}",
            "sex": "female" if i % 2 else "male",
            "birth_year": 1950 + i % 50,
            "district": DISTRICTS[i % len(DISTRICTS)],
            "budget_school": graduates,
        }
        for i in range(size)
    ]
    expect(await api.post("/v1/sortition-pools", admin, {"name": name, "members": members}), 201)
    return name


async def draw(
    api: Api,
    pool_name: str,
    purpose: str,
    size: int,
    *,
    reveal: bool = True,
    draw_filter: dict[str, Any] | None = None,
) -> str:
    """A committed (and by default revealed) draw of `size` from the pool, stratified by sex."""
    admin = await api.official("admin")
    seed = f"seed {next(_pools)} for {purpose}"
    body: dict[str, Any] = {
        "purpose": purpose,
        "size": size,
        "strata": ["sex"],
        "pool": pool_name,
        "seed_commitment": hashlib.sha256(seed.encode()).hexdigest(),
    }
    if draw_filter is not None:
        body["filter"] = draw_filter
    committed = expect(await api.post("/v1/sortitions", admin, body), 201)
    if reveal:
        revealed = expect(
            await api.post(f"/v1/sortitions/{committed['id']}/reveal", admin, {"seed": seed}), 200
        )
        assert revealed["members_count"] == size
    return str(committed["id"])


async def drawn_people(api: Api, draw_id: str) -> list[str]:
    admin = await api.official("admin")
    roster = expect(await api.http.get(f"/v1/sortitions/{draw_id}/members", headers=admin), 200)
    return sorted(m["person_id"] for m in roster["members"])


async def get_cycle(api: Api, year: int) -> dict[str, Any]:
    return dict(expect(await api.http.get(f"/v1/budget-cycles/{year}"), 200))


async def last_seq(api: Api, year: int) -> int:
    return int((await cycle_timeline(api, year))[-1]["seq"])


async def put_fields(api: Api, year: int, who: dict[str, str], body: Any) -> httpx.Response:
    return await api.http.put(f"/v1/budget-cycles/{year}/fields", json=body, headers=who)


async def put_shortlist(
    api: Api, year: int, field: str, who: dict[str, str] | None, project_ids: Any
) -> httpx.Response:
    return await api.http.put(
        f"/v1/budget-cycles/{year}/fields/{field}/shortlist",
        json={"project_ids": project_ids},
        headers=who or {},
    )


def council(field: str, active: list[str], draw_id: str) -> dict[str, Any]:
    return {"field": field, "active_member_ids": active, "draw_id": draw_id}


def actives(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-active-{i}" for i in range(n)]


async def members(system: Stack, year: int, body: str) -> dict[str, str]:
    """Who the cycle's projection seated on `body`: person id -> origin."""
    async with system.sessions() as session:
        rows = (
            await session.exec(
                select(BudgetBodyMember).where(
                    col(BudgetBodyMember.year) == year, col(BudgetBodyMember.body) == body
                )
            )
        ).all()
    return {row.person_id: row.origin for row in rows}


async def reach(api: Api, year: int, moment: datetime, **phases: str) -> None:
    """Advance to `moment` and wait until each type shows its phase (types changing at the
    same boundary are announced one after the other), and until no type of the cycle (those
    not named included) still shows a phase that ended by `moment`: every change due is
    recorded before the test counts the timeline."""
    await advance_to(api, moment)
    for kind, phase in phases.items():
        await wait_phase(api, year, kind, phase)

    async def caught_up() -> bool:
        shown = (await get_cycle(api, year))["phases"].values()
        ends = [p["phase_ends_at"] for p in shown if p["phase_ends_at"] is not None]
        return all(datetime.fromisoformat(end) > moment for end in ends)

    await eventually(caught_up, within=20.0)


async def start_cycle(api: Api, year: int) -> dict[str, Any]:
    admin = await api.official("admin")
    return dict(expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201))


# ---- fields ----------------------------------------------------------------------------------


async def test_fields_are_set_in_the_allocation_phase_only_and_bad_input_writes_nothing(
    api: Api,
) -> None:
    admin, citizen = await api.official("admin"), await api.citizen()
    year = await next_year(api)
    await start_cycle(api, year)
    fields = {
        "fields": [
            {"field": "welfare", "allocation_krw": 10 * BILLION},
            {"field": "transport", "allocation_krw": 8 * BILLION},
        ]
    }

    # one second before the allocation phase: 409 naming the phase, nothing written
    await reach(api, year, seoul(year, 1, 1) - SECOND, deliberative="not_started")
    early = expect_problem(await put_fields(api, year, admin, fields), 409)
    assert "allocation" in early["detail"] and "deliberative not_started" in early["detail"]
    assert (await get_cycle(api, year))["fields"] == []

    await reach(api, year, seoul(year, 1, 1) + SECOND, deliberative="allocation", metro="call")
    seq = await last_seq(api, year)

    # bad input: 422 naming the field; the wrong caller 401/403; no cycle 404
    one = {"field": "welfare", "allocation_krw": BILLION}
    refused: list[tuple[Any, str]] = [
        ({"fields": []}, "fields"),
        ({}, "fields"),
        ({"fields": [one, {**one, "allocation_krw": 2 * BILLION}]}, "fields"),
        ({"fields": [{**one, "allocation_krw": 0}]}, "fields.0.allocation_krw"),
        ({"fields": [{**one, "allocation_krw": -1}]}, "fields.0.allocation_krw"),
        ({"fields": [{**one, "allocation_krw": "1000"}]}, "fields.0.allocation_krw"),
        ({"fields": [{**one, "allocation_krw": 10**15 + 1}]}, "fields.0.allocation_krw"),
        ({"fields": [{"field": "welfare"}]}, "fields.0.allocation_krw"),
        ({"fields": [{**one, "field": ""}]}, "fields.0.field"),
        ({"fields": [{**one, "field": "   "}]}, "fields.0.field"),
        ({"fields": [one, {**one, "field": "x" * 201}]}, "fields.1.field"),
        ({"fields": [{**one, "colour": "red"}]}, "fields.0.colour"),
        ({**fields, "extra": True}, "extra"),
    ]
    for body, name in refused:
        expect_problem(await put_fields(api, year, admin, body), 422, field=name)
    duplicate = expect_problem(
        await put_fields(api, year, admin, {"fields": [one, {**one, "allocation_krw": 5}]}), 422
    )
    assert "each field once" in duplicate["detail"]
    expect_problem(await put_fields(api, year, citizen, fields), 403)
    expect_problem(await put_fields(api, year, await api.official("committee"), fields), 403)
    expect_problem(await api.http.put(f"/v1/budget-cycles/{year}/fields", json=fields), 401)
    expect_problem(await put_fields(api, year + 5, admin, fields), 404)
    unchanged = await get_cycle(api, year)
    assert unchanged["fields"] == [] and unchanged["totals"]["allocation_krw"] == 0
    assert await last_seq(api, year) == seq

    # taken: each field with its allocation, shown with its sums, in the timeline
    taken = expect(await put_fields(api, year, admin, fields), 200)
    assert taken["fields"] == [
        {
            "field": "welfare",
            "allocation_krw": 10 * BILLION,
            "shortlist_krw": 0,
            "selected_krw": 0,
        },
        {
            "field": "transport",
            "allocation_krw": 8 * BILLION,
            "shortlist_krw": 0,
            "selected_krw": 0,
        },
    ]
    assert taken["totals"]["allocation_krw"] == 18 * BILLION
    assert (await get_cycle(api, year))["fields"] == taken["fields"]
    [entry] = (await cycle_timeline(api, year))[seq:]
    assert (entry["event"], entry["actor_role"], entry["stage"]) == (
        "fields_allocated",
        "admin",
        "allocation",
    )
    assert "welfare 10,000,000,000 KRW; transport 8,000,000,000 KRW" in entry["note"]

    # a second call replaces the first, to the last second of the phase
    await reach(api, year, seoul(year, 2, 1) - SECOND, deliberative="allocation")
    last = {"fields": [{"field": "culture", "allocation_krw": 3 * BILLION}]}
    replaced = expect(await put_fields(api, year, admin, last), 200)
    assert [(f["field"], f["allocation_krw"]) for f in replaced["fields"]] == [
        ("culture", 3 * BILLION)
    ]
    assert replaced["totals"]["allocation_krw"] == 3 * BILLION

    # one second after it: 409 naming the phase, the fields stay
    await reach(api, year, seoul(year, 2, 1) + SECOND, deliberative="forming")
    seq = await last_seq(api, year)
    late = expect_problem(await put_fields(api, year, admin, fields), 409)
    assert "allocation" in late["detail"] and "deliberative forming" in late["detail"]
    assert (await get_cycle(api, year))["fields"] == replaced["fields"]
    assert await last_seq(api, year) == seq


# ---- the bodies ----------------------------------------------------------------------------------


async def test_councils_five_to_five_and_the_square_of_exactly_its_size_from_revealed_draws(
    api: Api, system: Stack
) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    await start_cycle(api, year)
    councils = f"/v1/budget-cycles/{year}/councils"
    square = f"/v1/budget-cycles/{year}/square"

    graduates = await pool(api, 40, graduates=True)
    citizens = await pool(api, 1_120, graduates=False)
    welfare_draw = await draw(api, graduates, "citizen_council", 5)
    transport_draw = await draw(api, graduates, "citizen_council", 5)
    culture_draw = await draw(api, graduates, "citizen_council", 5)
    housing_draw = await draw(api, graduates, "citizen_council", 5)
    committed = await draw(api, graduates, "citizen_council", 5, reveal=False)
    not_graduates = await draw(api, citizens, "citizen_council", 5, draw_filter={})
    square_999 = await draw(api, citizens, "budget_square", 999)
    square_1001 = await draw(api, citizens, "budget_square", 1_001)
    square_1000 = await draw(api, citizens, "budget_square", 1_000)
    welfare_drawn = await drawn_people(api, welfare_draw)
    assert len(welfare_drawn) == 5
    assert all(p.startswith(graduates) for p in welfare_drawn)

    # before the allocation phase: 409 naming the phase
    early = expect_problem(
        await api.post(councils, admin, council("welfare", actives("w", 5), welfare_draw)), 409
    )
    assert "allocation or forming" in early["detail"] and "not_started" in early["detail"]
    early = expect_problem(await api.post(square, admin, {"draw_id": square_1000}), 409)
    assert "allocation or forming" in early["detail"] and "not_started" in early["detail"]

    await reach(api, year, seoul(year, 1, 1) + SECOND, deliberative="allocation", metro="call")
    fields = [
        {"field": name, "allocation_krw": BILLION}
        for name in ("welfare", "transport", "culture", "housing")
    ]
    expect(await put_fields(api, year, admin, {"fields": fields}), 200)
    seq = await last_seq(api, year)

    # refused councils: 422 naming what is wrong, 403 for anyone but the operations team
    refusals: list[tuple[dict[str, Any], str, str]] = [
        (council("welfare", actives("w", 5), "no-such-draw"), "draw_id", "no sortition draw"),
        (council("welfare", actives("w", 5), committed), "draw_id", "not revealed"),
        (council("welfare", actives("w", 5), square_1000), "draw_id", "budget_square"),
        (council("welfare", actives("w", 5), not_graduates), "draw_id", "budget-school"),
        (council("welfare", ["a", "b", "a", "c", "d"], welfare_draw), "active_member_ids", "once"),
        # 3 and 7 against 5: beyond one person either way
        (council("welfare", actives("w", 3), welfare_draw), "active_member_ids", "3 active"),
        (council("welfare", actives("w", 7), welfare_draw), "active_member_ids", "7 active"),
        (
            council("welfare", [*actives("w", 4), welfare_drawn[0]], welfare_draw),
            "active_member_ids",
            "also be named active",
        ),
        (council("fishing", actives("f", 5), welfare_draw), "field", "'fishing'"),
        (council("welfare", [], welfare_draw), "active_member_ids", ""),
        (council("", actives("w", 5), welfare_draw), "field", ""),
        ({"field": "welfare", "active_member_ids": actives("w", 5)}, "draw_id", ""),
    ]
    for body, name, words in refusals:
        refused = expect_problem(await api.post(councils, admin, body), 422, field=name)
        assert words in refused["detail"], (body, refused)
    good = council("welfare", actives("w", 4), welfare_draw)
    expect_problem(await api.post(councils, await api.citizen(), good), 403)
    expect_problem(await api.post(councils, await api.official("committee"), good), 403)
    expect_problem(await api.http.post(councils, json=good), 401)
    expect_problem(await api.post(f"/v1/budget-cycles/{year + 5}/councils", admin, good), 404)
    nothing = await get_cycle(api, year)
    assert nothing["bodies"] == {}
    assert await last_seq(api, year) == seq
    assert await members(system, year, "council:welfare") == {}

    # 4 active against 5 drawn: within one person, taken
    formed = expect(await api.post(councils, admin, good), 201)
    assert {k: v for k, v in formed.items() if k != "formed_at"} == {
        "year": year,
        "body": "council:welfare",
        "field": "welfare",
        "draw_id": welfare_draw,
        "active": 4,
        "drawn": 5,
    }
    assert datetime.fromisoformat(formed["formed_at"]) >= seoul(year, 1, 1)
    # the members in Postgres (who may then act as the council), the counts on the cycle
    assert await members(system, year, "council:welfare") == {
        **{person: "active" for person in actives("w", 4)},
        **{person: "drawn" for person in welfare_drawn},
    }
    shown = await get_cycle(api, year)
    assert shown["bodies"] == {
        "council:welfare": {
            "draw_id": welfare_draw,
            "active": 4,
            "drawn": 5,
            "formed_at": shown["bodies"]["council:welfare"]["formed_at"],
        }
    }
    assert datetime.fromisoformat(
        shown["bodies"]["council:welfare"]["formed_at"]
    ) == datetime.fromisoformat(formed["formed_at"])
    [entry] = (await cycle_timeline(api, year))[seq:]
    assert (entry["event"], entry["actor_role"]) == ("body_formed", "admin")
    assert (
        f"4 active members and 5 budget-school graduates of the revealed draw {welfare_draw}"
        in (entry["note"])
    )

    # a draw forms one body only; a field has one council
    reused = expect_problem(
        await api.post(councils, admin, council("transport", actives("t", 5), welfare_draw)),
        422,
        field="draw_id",
    )
    assert "council:welfare" in reused["detail"]
    twice = expect_problem(
        await api.post(councils, admin, council("welfare", actives("w2", 5), culture_draw)), 409
    )
    assert "formed already" in twice["detail"]

    # 6 active against 5 drawn: within one person on the other side, taken; with a key, a
    # retry gets the first answer and the key with another body is 422, forming nothing
    keyed = {**admin, "Idempotency-Key": "transport-council"}
    transport_body = council("transport", actives("t", 6), transport_draw)
    transport = expect(await api.http.post(councils, json=transport_body, headers=keyed), 201)
    assert (transport["body"], transport["active"], transport["drawn"]) == (
        "council:transport",
        6,
        5,
    )
    assert len(await members(system, year, "council:transport")) == 11
    seq = await last_seq(api, year)
    retried = expect(await api.http.post(councils, json=transport_body, headers=keyed), 201)
    assert retried == transport
    for other in (
        council("culture", actives("c", 5), culture_draw),
        council("transport", actives("t", 6), culture_draw),
    ):
        expect_problem(
            await api.http.post(councils, json=other, headers=keyed), 422, field="Idempotency-Key"
        )
    assert sorted((await get_cycle(api, year))["bodies"]) == [
        "council:transport",
        "council:welfare",
    ]
    assert await last_seq(api, year) == seq
    assert await members(system, year, "council:culture") == {}

    # the Square: exactly sortition.square_size (1,000); one short or one over is refused
    seq = await last_seq(api, year)
    for draw_id, size in ((square_999, 999), (square_1001, 1_001)):
        refused = expect_problem(await api.post(square, admin, {"draw_id": draw_id}), 422)
        assert refused["field"] == "draw_id", refused
        assert "1000 citizens" in refused["detail"] and f"has {size}" in refused["detail"]
    wrong_purpose = expect_problem(
        await api.post(square, admin, {"draw_id": culture_draw}), 422, field="draw_id"
    )
    assert "citizen_council" in wrong_purpose["detail"]
    expect_problem(await api.post(square, admin, {"draw_id": committed}), 422, field="draw_id")
    expect_problem(await api.post(square, admin, {}), 422, field="draw_id")
    expect_problem(await api.post(square, await api.citizen(), {"draw_id": square_1000}), 403)
    assert "square" not in (await get_cycle(api, year))["bodies"]
    assert await last_seq(api, year) == seq
    assert await members(system, year, "square") == {}

    the_square = expect(await api.post(square, admin, {"draw_id": square_1000}), 201)
    assert (the_square["body"], the_square["field"], the_square["active"]) == ("square", None, 0)
    assert (the_square["drawn"], the_square["draw_id"]) == (1_000, square_1000)
    seated = await members(system, year, "square")
    assert len(seated) == 1_000 and set(seated.values()) == {"drawn"}
    assert set(seated) == set(await drawn_people(api, square_1000))
    again = expect_problem(await api.post(square, admin, {"draw_id": square_1001}), 409)
    assert "formed already" in again["detail"]

    # the forming phase takes bodies to its last second, the shortlist phase no longer
    await reach(api, year, seoul(year, 3, 1) - SECOND, deliberative="forming")
    culture = expect(
        await api.post(councils, admin, council("culture", actives("c", 5), culture_draw)), 201
    )
    assert culture["active"] == culture["drawn"] == 5
    await reach(api, year, seoul(year, 3, 1) + SECOND, deliberative="shortlist", metro="screening")
    seq = await last_seq(api, year)
    late = expect_problem(
        await api.post(councils, admin, council("housing", actives("h", 5), housing_draw)), 409
    )
    assert "allocation or forming" in late["detail"] and "deliberative shortlist" in late["detail"]
    # outside the phase the phase is what is wrong, whatever the request names
    for late_body in (
        council("housing", actives("h", 5), "no-such-draw"),
        council("housing", actives("h", 5), not_graduates),
    ):
        expect_problem(await api.post(councils, admin, late_body), 409)
    expect_problem(await api.post(square, admin, {"draw_id": square_999}), 409)
    final = await get_cycle(api, year)
    assert sorted(final["bodies"]) == [
        "council:culture",
        "council:transport",
        "council:welfare",
        "square",
    ]
    assert await last_seq(api, year) == seq
    assert await members(system, year, "council:housing") == {}


# ---- shortlists and the decisions ---------------------------------------------------------------


async def test_shortlists_at_the_130_percent_level_and_the_decisions_recorded_as_given(
    api: Api, system: Stack
) -> None:
    admin = await api.official("admin")
    caseworker = await api.official("caseworker", "welfare-policy")
    year = await next_year(api)
    await start_cycle(api, year)
    graduates = await pool(api, 30, graduates=True)
    welfare_draw = await draw(api, graduates, "citizen_council", 5)
    transport_draw = await draw(api, graduates, "citizen_council", 5)
    await reach(api, year, seoul(year, 1, 1) + SECOND, deliberative="allocation", metro="call")
    fields = [
        {"field": "welfare", "allocation_krw": BILLION},
        {"field": "transport", "allocation_krw": BILLION},
    ]
    expect(await put_fields(api, year, admin, {"fields": fields}), 200)
    councils = f"/v1/budget-cycles/{year}/councils"
    expect(await api.post(councils, admin, council("welfare", actives("w", 5), welfare_draw)), 201)
    expect(
        await api.post(councils, admin, council("transport", actives("t", 5), transport_draw)), 201
    )
    active_member = await api.citizen(actives("w", 5)[0])
    drawn_member = await api.citizen((await drawn_people(api, welfare_draw))[0])
    transport_member = await api.citizen(actives("t", 5)[0])

    # the projects of the field, entered by a caseworker while the bodies form
    await reach(api, year, seoul(year, 2, 1) + SECOND, deliberative="forming")
    costs = {
        "P1": BILLION,
        "P2": 250_000_000,  # P1 + P2 = 1,250,000,000: the lowest total taken
        "P3": 249_999_999,  # P1 + P3: one won under it
        "P4": 350_000_000,  # P1 + P4 = 1,350,000,000: the highest total taken
        "P5": 350_000_001,  # P1 + P5: one won over it
        "gone": 250_000_000,
    }
    ids = {
        name: (await entered(api, year, caseworker, title=f"Welfare {name}", cost_krw=cost))["id"]
        for name, cost in costs.items()
    }
    ids["T"] = (
        await entered(
            api, year, caseworker, title="Transport", field="transport", cost_krw=1_300_000_000
        )
    )["id"]
    expect(await api.post(f"/v1/projects/{ids['gone']}/withdraw", caseworker), 200)

    # the forming phase's last second: 409 naming the phase
    await reach(api, year, seoul(year, 3, 1) - SECOND, deliberative="forming")
    early = expect_problem(
        await put_shortlist(api, year, "welfare", active_member, [ids["P1"], ids["P2"]]), 409
    )
    assert "shortlist phase" in early["detail"] and "deliberative forming" in early["detail"]
    await reach(api, year, seoul(year, 3, 1) + SECOND, deliberative="shortlist", metro="screening")
    seq = await last_seq(api, year)

    # only a member of the field's council: 403 for anyone else, 401 without a token
    level = [ids["P1"], ids["P2"]]
    for who in (
        await api.citizen(),
        transport_member,
        admin,
        await api.official("committee"),
        caseworker,
    ):
        refused = expect_problem(await put_shortlist(api, year, "welfare", who, level), 403)
        assert "welfare citizen council" in refused["detail"]
    # a member of one council is no member of a field that has none
    expect_problem(await put_shortlist(api, year, "fishing", active_member, level), 403)
    expect_problem(await put_shortlist(api, year, "welfare", None, level), 401)
    expect_problem(await put_shortlist(api, year + 5, "welfare", active_member, level), 404)

    # bad input: 422 naming project_ids
    for project_ids, words in [
        ([], ""),
        ("P1", ""),
        ([ids["P1"], ids["P1"]], "each project once"),
        ([ids["P1"], "no-such-project"], "no-such-project"),
        ([ids["P1"], ids["T"]], ids["T"]),
        ([ids["P1"], ids["gone"]], ids["gone"]),
    ]:
        refused = expect_problem(
            await put_shortlist(api, year, "welfare", active_member, project_ids),
            422,
            field="project_ids",
        )
        assert words in refused["detail"], refused

    # the level: 130 % +/- 5 % of 1,000,000,000 is 1,250,000,000 to 1,350,000,000, inclusive;
    # one won outside either end is refused, naming the total and the level
    for outside, total in (("P3", "1,249,999,999 KRW"), ("P5", "1,350,000,001 KRW")):
        refused = expect_problem(
            await put_shortlist(api, year, "welfare", active_member, [ids["P1"], ids[outside]]),
            422,
            field="project_ids",
        )
        assert f"totals {total}" in refused["detail"], refused
        assert "1,250,000,000 KRW to 1,350,000,000 KRW" in refused["detail"], refused
        assert "130% ± 5%" in refused["detail"], refused
    unchanged = await get_cycle(api, year)
    assert {f["field"]: f["shortlist_krw"] for f in unchanged["fields"]} == {
        "welfare": 0,
        "transport": 0,
    }
    assert unchanged["decisions"]["shortlists"] == {}
    assert await last_seq(api, year) == seq

    # the lowest end, by an active member
    low = expect(await put_shortlist(api, year, "welfare", active_member, level), 200)
    assert {f["field"]: f["shortlist_krw"] for f in low["fields"]} == {
        "welfare": 1_250_000_000,
        "transport": 0,
    }
    assert low["decisions"]["shortlists"] == {"welfare": level}
    [entry] = (await cycle_timeline(api, year))[seq:]
    assert (entry["event"], entry["actor_role"]) == ("shortlist_set", "citizen")
    assert "welfare: 2 projects, 1,250,000,000 KRW" in entry["note"]

    # the highest end, by a drawn member: it replaces the first
    high_ids = [ids["P1"], ids["P4"]]
    high = expect(await put_shortlist(api, year, "welfare", drawn_member, high_ids), 200)
    welfare = next(f for f in high["fields"] if f["field"] == "welfare")
    assert welfare["shortlist_krw"] == 1_350_000_000
    assert high["decisions"]["shortlists"] == {"welfare": high_ids}
    assert high["totals"]["shortlist_krw"] == 1_350_000_000
    # a refusal after it leaves it standing
    expect_problem(
        await put_shortlist(api, year, "welfare", drawn_member, [ids["P1"], ids["P5"]]), 422
    )
    # another field's council sets its own
    transport = expect(
        await put_shortlist(api, year, "transport", transport_member, [ids["T"]]), 200
    )
    assert {f["field"]: f["shortlist_krw"] for f in transport["fields"]} == {
        "welfare": 1_350_000_000,
        "transport": 1_300_000_000,
    }
    assert transport["totals"]["shortlist_krw"] == 2_650_000_000

    # the shortlist phase's end: the list is final, each project learns whether it is on it
    await reach(api, year, seoul(year, 4, 1) - SECOND, deliberative="shortlist")
    expect(await put_shortlist(api, year, "welfare", drawn_member, high_ids), 200)
    await reach(api, year, seoul(year, 4, 1) + SECOND, deliberative="deliberation")
    for name in ("P1", "P4", "T"):
        await wait_project(api, ids[name], "shortlisted")
    for name in ("P2", "P3", "P5"):
        await wait_project(api, ids[name], "not_shortlisted")

    async def closed() -> bool:
        return "shortlists_closed" in [e["event"] for e in await cycle_timeline(api, year)]

    await eventually(closed)
    # too late: 409 naming the phase (though the projects are no longer `submitted`)
    seq = await last_seq(api, year)
    for late_ids in (level, high_ids):
        late = expect_problem(
            await put_shortlist(api, year, "welfare", active_member, late_ids), 409
        )
        assert "shortlist phase" in late["detail"], late
        assert "deliberative deliberation" in late["detail"], late
    after = await get_cycle(api, year)
    assert {f["field"]: f["shortlist_krw"] for f in after["fields"]} == {
        "welfare": 1_350_000_000,
        "transport": 1_300_000_000,
    }
    assert after["decisions"]["shortlists"] == {"welfare": high_ids, "transport": [ids["T"]]}
    assert await last_seq(api, year) == seq

    # the general assembly: in the metropolitan assembly phase, as given, once
    assembly = f"/v1/budget-cycles/{year}/assembly"
    city_council = f"/v1/budget-cycles/{year}/council"
    approved: dict[str, Any] = {
        "approved_project_ids": [ids["P1"], ids["P2"]],
        "minutes": "assembly of 29 Aug",
    }
    adopted: dict[str, Any] = {
        "adopted_project_ids": [ids["P4"], ids["T"]],
        "resolution_ref": "resolution 123",
    }
    await reach(api, year, seoul(year, 8, 21) - SECOND, metro="vote", deliberative="drafting")
    early = expect_problem(await api.post(assembly, admin, approved), 409)
    assert "assembly phase" in early["detail"] and "metro vote" in early["detail"]
    early = expect_problem(await api.post(city_council, admin, adopted), 409)
    assert "council phase" in early["detail"]
    await reach(api, year, seoul(year, 8, 21) + SECOND, metro="assembly")

    async def metro_counted() -> bool:
        return any(
            e["event"] == "vote_closed" and e["note"].startswith("metro:")
            for e in await cycle_timeline(api, year)
        )

    await eventually(metro_counted)  # the metropolitan vote closes as the assembly starts
    seq = await last_seq(api, year)
    refused_assemblies: list[tuple[dict[str, Any], str]] = [
        ({**approved, "approved_project_ids": [ids["P1"], "no-such-project"]}, "no-such-project"),
        ({**approved, "approved_project_ids": [ids["P1"], ids["P1"]]}, "each project once"),
        ({**approved, "approved_project_ids": ids["P1"]}, ""),
    ]
    for body, words in refused_assemblies:
        refused = expect_problem(
            await api.post(assembly, admin, body), 422, field="approved_project_ids"
        )
        assert words in refused["detail"], refused
    for body in ({**approved, "minutes": " "}, {"approved_project_ids": [ids["P1"]]}):
        expect_problem(await api.post(assembly, admin, body), 422, field="minutes")
    expect_problem(await api.post(assembly, await api.citizen(), approved), 403)
    expect_problem(await api.post(assembly, caseworker, approved), 403)
    expect_problem(await api.http.post(assembly, json=approved), 401)
    untouched = await get_cycle(api, year)
    assert untouched["decisions"]["assembly"] is None
    assert await last_seq(api, year) == seq

    recorded = expect(await api.post(assembly, admin, approved), 200)
    given = recorded["decisions"]["assembly"]
    assert (given["project_ids"], given["reference"]) == (
        approved["approved_project_ids"],
        approved["minutes"],
    )
    assert datetime.fromisoformat(given["recorded_at"]) >= seoul(year, 8, 21)
    assert recorded["decisions"]["council"] is None
    [entry] = (await cycle_timeline(api, year))[seq:]
    assert (entry["event"], entry["actor_role"]) == ("assembly_recorded", "admin")
    # P2 was never on the ballot: the record says so and keeps it
    assert "the general assembly approved 2 projects (assembly of 29 Aug)" in entry["note"]
    assert "not selected by the vote" in entry["note"] and ids["P2"] in entry["note"]
    again = expect_problem(
        await api.post(assembly, admin, {**approved, "minutes": "a second assembly"}), 409
    )
    assert "recorded" in again["detail"]
    assert (await get_cycle(api, year))["decisions"]["assembly"] == given

    # the city council: in the council phase (1 December), as given, once
    await reach(api, year, seoul(year, 12, 1) - SECOND, deliberative="drafting", metro="drafting")
    early = expect_problem(await api.post(city_council, admin, adopted), 409)
    assert "council phase" in early["detail"] and "deliberative drafting" in early["detail"]
    await reach(api, year, seoul(year, 12, 1) + SECOND, deliberative="council", metro="council")
    seq = await last_seq(api, year)
    refused_councils: list[tuple[dict[str, Any], str]] = [
        ({**adopted, "adopted_project_ids": ["no-such-project"]}, "adopted_project_ids"),
        ({**adopted, "adopted_project_ids": [ids["T"], ids["T"]]}, "adopted_project_ids"),
        ({**adopted, "resolution_ref": ""}, "resolution_ref"),
        ({"adopted_project_ids": [ids["T"]]}, "resolution_ref"),
    ]
    for body, name in refused_councils:
        expect_problem(await api.post(city_council, admin, body), 422, field=name)
    expect_problem(await api.post(city_council, await api.official("committee"), adopted), 403)
    assert (await get_cycle(api, year))["decisions"]["council"] is None
    assert await last_seq(api, year) == seq
    decided = expect(await api.post(city_council, admin, adopted), 200)
    council_decision = decided["decisions"]["council"]
    assert (council_decision["project_ids"], council_decision["reference"]) == (
        adopted["adopted_project_ids"],
        adopted["resolution_ref"],
    )
    assert decided["decisions"]["assembly"] == given
    [entry] = (await cycle_timeline(api, year))[seq:]
    assert (entry["event"], entry["actor_role"]) == ("council_recorded", "admin")
    assert "the city council adopted 2 projects (resolution 123)" in entry["note"]
    again = expect_problem(await api.post(city_council, admin, adopted), 409)
    assert "recorded" in again["detail"]
    assert (await get_cycle(api, year))["decisions"]["council"] == council_decision
    # the assembly's phase is over too: still 409
    expect_problem(await api.post(assembly, admin, approved), 409)


# ---- linked forums across 31 August ------------------------------------------------------------


async def _two_forums_across_31_august(api: Api, system: Stack, year: int) -> tuple[str, str]:
    """Two eligible forums (5,000 participants, a majority for): `on_time` opened so that it
    closes at 31 August 23:59:59 Seoul, `late` at 1 September 00:00 Seoul (forum.days = 30);
    the clock then passes both closes. Returns (on_time, late) forum ids."""
    await advance_to(api, datetime(year, 8, 1, 23, 59, 59, tzinfo=SEOUL))
    on_time = (await create_forum(api))["id"]
    await advance_to(api, datetime(year, 8, 2, tzinfo=SEOUL))
    late = (await create_forum(api))["id"]
    for forum_id in (on_time, late):
        await bulk_participate(system, forum_id, for_=2_600, against=2_400)
    shown = {
        forum_id: datetime.fromisoformat(
            expect(await api.http.get(f"/v1/forums/{forum_id}"), 200)["closes_at"]
        )
        for forum_id in (on_time, late)
    }
    # to the test server's clock (it runs between the advance and the start by milliseconds)
    last_second = datetime(year, 8, 31, 23, 59, 59, tzinfo=SEOUL)
    first_moment = datetime(year, 9, 1, tzinfo=SEOUL)
    assert last_second <= shown[on_time] < first_moment, shown
    assert first_moment <= shown[late] < first_moment + SECOND, shown
    await advance_to(api, first_moment + 2 * SECOND)
    closed = {forum_id: await wait_forum(api, forum_id, "closed") for forum_id in (on_time, late)}
    assert closed[on_time]["eligible_for_deliberation"] is True
    assert (closed[on_time]["budget_year"], closed[on_time]["carried_over"]) == (year, False)
    assert closed[late]["eligible_for_deliberation"] is True
    assert (closed[late]["budget_year"], closed[late]["carried_over"]) == (year + 1, True)
    for budget_year, forum_id in ((year, on_time), (year + 1, late)):
        listed = expect(await api.http.get("/v1/forums", params={"budget_year": budget_year}), 200)
        assert [f["id"] for f in listed["items"]] == [forum_id]
    return on_time, late


def _closed_near(forum: dict[str, Any], moment: datetime) -> None:
    """A linked forum's `closed_at` is its close, to the workflow task's milliseconds."""
    closed_at = datetime.fromisoformat(forum["closed_at"])
    assert moment <= closed_at < moment + 2 * SECOND, (forum, moment)


def _assert_handed(
    year: int, on_time: str, late: str, this: dict[str, Any], following: dict[str, Any]
) -> None:
    """Cycle `year` has `on_time` joining and `late` carried over; `year + 1` has `late`."""
    [joined] = this["linked_forums"]
    assert (joined["forum_id"], joined["carried_over_from"]) == (on_time, None)
    assert "carried_over_to" not in joined
    _closed_near(joined, datetime(year, 8, 31, 23, 59, 59, tzinfo=SEOUL))
    [carried] = this["carried_over"]
    assert (carried["forum_id"], carried["carried_over_from"], carried["carried_over_to"]) == (
        late,
        year,
        year + 1,
    )
    _closed_near(carried, datetime(year, 9, 1, tzinfo=SEOUL))
    [arrived] = following["linked_forums"]
    assert (arrived["forum_id"], arrived["carried_over_from"]) == (late, year)
    assert "carried_over_to" not in arrived
    _closed_near(arrived, datetime(year, 9, 1, tzinfo=SEOUL))
    assert following["carried_over"] == []


async def test_forums_closing_either_side_of_31_august_are_told_to_both_running_cycles(
    api: Api, system: Stack
) -> None:
    year = await next_year(api)
    await start_cycle(api, year)
    await start_cycle(api, year + 1)
    on_time, late = await _two_forums_across_31_august(api, system, year)

    seen: dict[int, dict[str, Any]] = {}

    async def told() -> bool:
        for y in (year, year + 1):
            seen[y] = await get_cycle(api, y)
        return (
            len(seen[year]["linked_forums"]) == 1
            and len(seen[year]["carried_over"]) == 1
            and len(seen[year + 1]["linked_forums"]) == 1
        )

    await eventually(told)
    _assert_handed(year, on_time, late, seen[year], seen[year + 1])
    notes = {
        y: [(e["event"], e["note"]) for e in await cycle_timeline(api, y) if "forum" in e["event"]]
        for y in (year, year + 1)
    }
    assert [event for event, _ in notes[year]] == [
        "linked_forum_joined",
        "linked_forum_carried_over",
    ]
    assert on_time in notes[year][0][1] and late in notes[year][1][1]
    assert f"carried over to the {year + 1} cycle" in notes[year][1][1]
    [(event, note)] = notes[year + 1]
    assert event == "linked_forum_joined" and late in note
    assert f"carried over from {year}" in note


async def test_forums_handed_off_before_their_cycles_exist_join_them_when_they_start(
    api: Api, system: Stack
) -> None:
    """Neither cycle runs when the forums close (the forum's signals find nobody); each cycle
    started later reads the forums handed to it from their projections."""
    year = await next_year(api)
    on_time, late = await _two_forums_across_31_august(api, system, year)
    expect_problem(await api.http.get(f"/v1/budget-cycles/{year}"), 404)

    this = await start_cycle(api, year)
    following = await start_cycle(api, year + 1)
    # the answers to the starts show them already, and so does every read after
    _assert_handed(year, on_time, late, this, following)

    async def projected() -> bool:
        timeline = await cycle_timeline(api, year + 1)
        return any(e["event"] == "phase_started" for e in timeline)

    await eventually(projected)
    _assert_handed(year, on_time, late, await get_cycle(api, year), await get_cycle(api, year + 1))
    # nothing was announced twice: the forums were in the start, not signals
    for y in (year, year + 1):
        events = [e["event"] for e in await cycle_timeline(api, y)]
        assert not [e for e in events if "forum" in e], events
