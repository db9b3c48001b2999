"""The governance type (광역협치형, process.md §7 and §6a) end to end, through HTTP on the
simulated clock: projects of at least two districts proposed jointly by a citizen and a
department, the two-stage joint review (screening, then the public-private council), no
per-project cap but the yearly ceiling (`governance.ceiling_krw`, 10 bn, 이내: the ceiling
itself fits) held at the council review and at an objection's cost adjustment, and the
citizen vote with the metropolitan drop rule."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.helpers import Api, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_projects import SCORES, proposal, screening, submit

BILLION = 1_000_000_000
CEILING = 10 * BILLION
TWO = ["Jongno-gu", "Mapo-gu"]


def governance(**fields: Any) -> dict[str, Any]:
    return {"kind": "governance", "department": "climate", "districts": TWO, **fields}


async def test_governance_projects_share_the_yearly_ceiling_and_the_drop_rule(api: Api) -> None:
    admin, committee = await api.official("admin"), await api.official("committee")
    proposer = await api.citizen()
    year = await next_year(api)
    created = expect(
        await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.3}), 201
    )
    assert created["phases"]["governance"]["phase"] == "not_started"
    submit_path = f"/v1/budget-cycles/{year}/projects"

    early = expect_problem(await api.post(submit_path, proposer, proposal(**governance())), 409)
    assert "governance call" in early["detail"]

    await advance_to(api, seoul(year, 1, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "call")
    # jointly with a department, for at least two districts
    without = proposal(**governance())
    del without["department"]
    expect_problem(await api.post(submit_path, proposer, without), 422, field="department")
    expect_problem(
        await api.post(submit_path, proposer, proposal(**governance(districts=[]))),
        422,
        field="districts",
    )
    official = await api.official("caseworker", "climate")
    expect_problem(await api.post(submit_path, official, proposal(**governance())), 403)

    # A 6 bn and B 4 bn fill the ceiling exactly; C (1 bn) would pass it; D names one
    # district; E alone is over the ceiling; F (5 bn) is above the metropolitan cap, which a
    # governance project does not have
    costs = {"A": 6, "B": 4, "C": 1, "F": 5}
    projects = {
        name: await submit(
            api, year, proposer, title=f"Project {name}", **governance(cost_krw=cost * BILLION)
        )
        for name, cost in costs.items()
    }
    projects["D"] = await submit(
        api, year, proposer, title="Project D", **governance(districts=TWO[:1])
    )
    projects["E"] = await submit(
        api, year, proposer, title="Project E", **governance(cost_krw=CEILING + 1)
    )
    assert {p["kind"] for p in projects.values()} == {"governance"}
    expect(await api.post(f"/v1/projects/{projects['F']['id']}/withdraw", proposer), 200)

    await advance_to(api, seoul(year, 3, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "screening")
    for name in "ABC":
        screened = expect(
            await api.post(f"/v1/projects/{projects[name]['id']}/screening", admin, screening()),
            200,
        )
        assert screened["status"] == "eligible"
    one_district = expect_problem(
        await api.post(f"/v1/projects/{projects['D']['id']}/screening", admin, screening()), 422
    )
    assert "min_districts" in one_district["detail"] and "governance" in one_district["detail"]
    over = expect_problem(
        await api.post(f"/v1/projects/{projects['E']['id']}/screening", admin, screening()), 422
    )
    assert "governance.ceiling_krw" in over["detail"]

    await advance_to(api, seoul(year, 4, 15) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "council_review")
    review = {"advance": True, "scores": SCORES, "note": "on the ballot"}
    for name in "AB":
        reviewed = expect(
            await api.post(f"/v1/projects/{projects[name]['id']}/review", committee, review), 200
        )
        assert reviewed["status"] == "candidate"
    # 6 + 4 = 10 bn is the ceiling itself; one more billion is over it
    full = expect_problem(
        await api.post(f"/v1/projects/{projects['C']['id']}/review", committee, review),
        422,
        field="governance.ceiling_krw",
    )
    assert "11,000,000,000" in full["detail"] and "10,000,000,000" in full["detail"]
    not_advanced = {"advance": False, "scores": SCORES, "note": "over the ceiling"}
    expect(
        await api.post(f"/v1/projects/{projects['C']['id']}/review", committee, not_advanced), 200
    )

    # an objection's answer may lower a candidate's cost, never raise the total past the ceiling
    await advance_to(api, seoul(year, 7, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "objections")
    b_id = projects["B"]["id"]
    objection = expect(
        await api.post(
            f"/v1/projects/{b_id}/objections", await api.citizen(), {"body": "too dear"}
        ),
        201,
    )
    answer_path = f"/v1/projects/{b_id}/objections/{objection['id']}/answer"
    raised = {"answer": "more trees", "adjusted_cost_krw": 4 * BILLION + 1}
    expect_problem(await api.post(answer_path, admin, raised), 422, field="governance.ceiling_krw")
    lowered = {"answer": "fewer benches", "adjusted_cost_krw": 2 * BILLION}
    assert expect(await api.post(answer_path, admin, lowered), 200)["cost_krw"] == 2 * BILLION

    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "vote")
    ballots_path = f"/v1/budget-cycles/{year}/ballots"
    a_id = projects["A"]["id"]
    c_only = expect_problem(
        await api.post(
            ballots_path,
            await api.citizen(),
            {"kind": "governance", "project_ids": [projects["C"]["id"]]},
        ),
        422,
        field="options",
    )
    assert "not on this ballot" in c_only["detail"]
    for _ in range(5):
        body = {"kind": "governance", "project_ids": [a_id]}
        expect(await api.post(ballots_path, await api.citizen(), body), 201)
    for _ in range(2):
        body = {"kind": "governance", "project_ids": [b_id]}
        expect(await api.post(ballots_path, await api.citizen(), body), 201)

    await advance_to(api, seoul(year, 8, 21) + timedelta(seconds=1))
    await wait_phase(api, year, "governance", "assembly")
    results_path = f"/v1/budget-cycles/{year}/results"
    for _ in range(100):
        answer = await api.http.get(results_path, params={"kind": "governance"})
        if answer.status_code == 200:
            break
        await asyncio.sleep(0.1)
    results = expect(answer, 200)
    assert results["rule"] == "drop_lowest" and results["matches_recorded_tally"] is True
    [field] = results["fields"].values()
    outcome = {p["project_id"]: p["status"] for p in field["projects"]}
    # B (2 bn of 8) is within 30 % of the amount (2.4 bn): dropped from the bottom; A stays
    assert outcome == {a_id: "selected", b_id: "dropped"}
