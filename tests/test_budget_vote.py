"""The metropolitan vote of a budget cycle end to end, through HTTP on the simulated clock:
candidates from the council review, the August vote on the shared ballot box (one ballot per
person under concurrent requests, approvals of several projects, voter groups), no counts
before the close, and the results after it: the group weights decide who drops, the recount
matches the recorded tally, the pabulib file, and each project's own status."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from models.ids import budget_cycle_workflow_id
from tests.helpers import Api, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_projects import SCORES, screening, submit

BILLION = 1_000_000_000


async def walk_to_ballot(api: Api, year: int) -> dict[str, dict[str, Any]]:
    """Three candidates of one field, A (2 bn), B and C (1 bn each), walked to the ballot."""
    admin, committee = await api.official("admin"), await api.official("committee")
    proposer = await api.citizen()
    await advance_to(api, seoul(year, 1, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "call")
    projects = {
        name: await submit(api, year, proposer, title=f"Project {name}", cost_krw=cost)
        for name, cost in (("A", 2 * BILLION), ("B", BILLION), ("C", BILLION))
    }
    await advance_to(api, seoul(year, 3, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "screening")
    for project in projects.values():
        expect(await api.post(f"/v1/projects/{project['id']}/screening", admin, screening()), 200)
    await advance_to(api, seoul(year, 4, 15) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "council_review")
    review = {"advance": True, "scores": SCORES, "note": "on the ballot"}
    for project in projects.values():
        reviewed = expect(
            await api.post(f"/v1/projects/{project['id']}/review", committee, review), 200
        )
        assert reviewed["status"] == "candidate"
    return projects


async def test_the_august_vote_weights_groups_and_drops_the_lowest(
    api: Api, record_history: Any
) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.3}), 201)
    projects = await walk_to_ballot(api, year)
    ids = {name: p["id"] for name, p in projects.items()}
    ballots_path = f"/v1/budget-cycles/{year}/ballots"
    results_path = f"/v1/budget-cycles/{year}/results"

    early = await api.citizen()
    refused = expect_problem(
        await api.post(ballots_path, early, {"kind": "metro", "project_ids": [ids["A"]]}), 409
    )
    assert "council_review" in refused["detail"]

    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")

    # 10 general ballots (A 9, B 2, C 5) and 10 of budget-school graduates (A 10, B 8, C 0):
    # by raw counts B (10) is above C (5); weighted (0.9 / 0.1), C (0.9 x 5/11 = 0.41, with the
    # racer's ballot below) is above B (0.9 x 2/11 + 0.1 x 8/10 = 0.24).
    general = [["A", "C"]] * 4 + [["A", "B"]] * 2 + [["A"]] * 3 + [["C"]]
    graduates = [["A", "B"]] * 8 + [["A"]] * 2
    assert len(general) == 10 and len(graduates) == 10
    voters: list[tuple[dict[str, str], list[str]]] = []
    for choice in general:
        voters.append((await api.citizen(), choice))
    for choice in graduates:
        voters.append((await api.citizen(budget_school=True), choice))

    # one person, 20 concurrent ballots: exactly one is taken
    racer = await api.citizen()
    race = await asyncio.gather(
        *(
            api.post(ballots_path, racer, {"kind": "metro", "project_ids": [ids["A"]]})
            for _ in range(20)
        )
    )
    assert sorted(r.status_code for r in race) == [201] + [409] * 19

    receipts = set()
    for who, choice in voters:
        body = {"kind": "metro", "project_ids": [ids[name] for name in choice]}
        receipts.add(expect(await api.post(ballots_path, who, body), 201)["receipt"])
    assert len(receipts) == len(voters)

    stranger = await api.citizen()
    not_on_ballot = {"kind": "metro", "project_ids": [ids["A"], "no-such-project"]}
    expect_problem(await api.post(ballots_path, stranger, not_on_ballot), 422, field="options")
    expect_problem(
        await api.post(ballots_path, stranger, {"kind": "metro", "project_ids": []}),
        422,
        field="project_ids",
    )
    official = await api.official("caseworker", "parks")
    body = {"kind": "metro", "project_ids": [ids["A"]]}
    expect_problem(await api.post(ballots_path, official, body), 403)

    # nobody sees counts before the close, the operations team included
    expect_problem(await api.http.get(results_path, params={"kind": "metro"}), 409)
    expect_problem(await api.http.get(results_path, headers=admin), 409)
    auditor = await api.official("auditor")
    recount_path = f"/v1/audit/ballots/budget:{year}:metro/recount"
    expect_problem(await api.http.get(recount_path, headers=auditor), 409)

    await advance_to(api, seoul(year, 8, 21) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "assembly")
    for _ in range(100):
        answer = await api.http.get(results_path, params={"kind": "metro"})
        if answer.status_code == 200:
            break
        await asyncio.sleep(0.1)
    results = expect(answer, 200)
    assert results["rule"] == "drop_lowest" and results["matches_recorded_tally"] is True
    assert results["matches_recorded_selection"] is True
    # the racer's one ballot counts too: 11 general ballots, 10 of graduates
    assert results["ballots"] == {"general": 11, "budget_school": 10}
    assert results["digest"].startswith("sha256:")
    [field] = results["fields"].values()
    outcome = {p["project_id"]: p for p in field["projects"]}
    assert outcome[ids["A"]]["status"] == "selected"
    assert outcome[ids["B"]]["total_approvals"] > outcome[ids["C"]]["total_approvals"]
    assert outcome[ids["B"]]["status"] == "dropped"
    assert outcome[ids["C"]]["status"] == "selected"
    assert outcome[ids["B"]]["approvals"] == {"general": 2, "budget_school": 8}

    expect_problem(await api.post(ballots_path, stranger, body), 409)

    # the auditor's recount: the same counts and digest as the tally the cycle's history
    # recorded, and apart per channel (all online here)
    recount = expect(await api.http.get(recount_path, headers=auditor), 200)
    assert recount["kind"] == "budget" and recount["matches_recorded_tally"] is True
    assert recount["ballots"] == {"general": 11, "budget_school": 10} == results["ballots"]
    assert recount["turnout"] == 21 and recount["digest"] == results["digest"]
    assert recount["approvals"][ids["B"]] == {"general": 2, "budget_school": 8}
    assert list(recount["per_channel"]) == ["online"]
    assert recount["per_channel"]["online"]["digest"] == recount["digest"]
    same = expect(
        await api.http.get(f"/v1/audit/ballots/{year}:metro/recount", headers=auditor), 200
    )
    assert same["digest"] == recount["digest"]

    pabulib = await api.http.get(f"{results_path}.pb", params={"kind": "metro"})
    assert pabulib.status_code == 200, pabulib.text
    text = pabulib.text
    assert text.startswith("META") and "PROJECTS" in text and "VOTES" in text
    votes = text.split("VOTES", 1)[1].strip().splitlines()[1:]
    assert len(votes) == 21
    for receipt in receipts:
        assert receipt not in text

    timeline = expect(await api.http.get(f"/v1/budget-cycles/{year}/timeline"), 200)["items"]
    events = [e["event"] for e in timeline if e["note"].startswith("metro:")]
    assert events.count("vote_opened") == 1 and events.count("vote_closed") == 1
    for name, status in (("A", "selected"), ("B", "dropped"), ("C", "selected")):
        for _ in range(100):
            project = expect(await api.http.get(f"/v1/projects/{ids[name]}"), 200)
            if project["status"] == status:
                break
            await asyncio.sleep(0.1)
        assert project["status"] == status, (name, project)
    # projects entered as the cycle's children, both votes counted: replayed in CI
    await record_history("budget_cycle_metro_voted", budget_cycle_workflow_id(year))
