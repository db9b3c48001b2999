"""`GET /v1/me/activity` on the real stack: a proposer's, a supporter's and a voter's cases with
their whole timelines, never another person's, never a choice; officials see the cases they
opened; budget voters, objectors; pages."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_budget_vote import walk_to_ballot
from tests.test_forums import create_forum


async def activity(api: Api, who: dict[str, str], **params: Any) -> dict[str, Any]:
    return dict(expect(await api.http.get("/v1/me/activity", headers=who, params=params), 200))


def cases(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in page["items"]}


async def test_proposer_supporter_and_voters_see_their_own_cases_and_no_choice(
    api: Api, system: Stack
) -> None:
    proposer = await api.citizen("citizen-me-proposer")
    supporter = await api.citizen("citizen-me-supporter")
    yes_voter = await api.citizen("citizen-me-yes")
    no_voter = await api.citizen("citizen-me-no")
    stranger = await api.citizen("citizen-me-stranger")

    voting = await api.to_vote(proposer=proposer)
    vid = voting["id"]
    other = await api.to_review()
    expect(await api.post(f"/v1/proposals/{other['id']}/supports", supporter), 201)
    expect(await api.post(f"/v1/proposals/{vid}/supports", supporter), 409)  # support closed
    receipts = [
        expect(await api.vote(vid, "yes", yes_voter), 201)["receipt"],
        expect(await api.vote(vid, "no", no_voter), 201)["receipt"],
    ]
    theirs = await api.propose(stranger, title="The stranger's own")

    mine = await activity(api, proposer)
    assert set(cases(mine)) == {vid}
    case = cases(mine)[vid]
    assert (case["kind"], case["relations"], case["status"]) == ("proposal", ["proposer"], "voting")
    assert case["title"] == voting["title"] and case["department"] == "parks"
    public = await api.timeline(vid)
    assert case["timeline"] == public and case["timeline_truncated"] is False
    assert [e["event"] for e in case["timeline"]][-1] == public[-1]["event"]
    assert [p["id"] for p in mine["proposals"]] == [vid]
    assert mine["supported"] == [] and mine["voted"] == [] and mine["next_cursor"] is None

    supported = await activity(api, supporter)
    assert set(cases(supported)) == {other["id"]}
    assert cases(supported)[other["id"]]["relations"] == ["supporter"]
    assert cases(supported)[other["id"]]["timeline"] == await api.timeline(other["id"])
    assert [p["id"] for p in supported["supported"]] == [other["id"]]

    yes, no = await activity(api, yes_voter), await activity(api, no_voter)
    assert set(cases(yes)) == {vid} and cases(yes)[vid]["relations"] == ["voter"]
    assert [p["id"] for p in yes["voted"]] == [vid]
    # a yes voter's page and a no voter's page are the same: nothing tells the choice
    assert yes == no
    for page in (yes, no, mine, supported):
        text = json.dumps(page)
        assert not any(receipt in text for receipt in receipts)
        assert '"choice"' not in text and '"receipt"' not in text

    # the caseworker of the case's department: not their own case, not on their page
    assert (await activity(api, await api.official("caseworker", "parks")))["items"] == []

    strangers = await activity(api, stranger)
    assert set(cases(strangers)) == {theirs["id"]}
    assert strangers["supported"] == strangers["voted"] == []
    assert "citizen-me-" not in json.dumps(strangers)

    # after the close, the voter's case shows the closing transition, still without a choice
    await api.advance(days=30, seconds=1)
    await api.wait_status(vid, "not_passed")
    after_yes, after_no = await activity(api, yes_voter), await activity(api, no_voter)
    assert after_yes == after_no
    assert cases(after_yes)[vid]["status"] == "not_passed"
    assert cases(after_yes)[vid]["timeline"] == await api.timeline(vid)


async def test_forum_participants_officials_pages_and_refusals(api: Api, system: Stack) -> None:
    admin = await api.official("admin")
    citizen = await api.citizen()
    forum = await create_forum(api)
    mine = [await api.propose(citizen, title=f"Proposal {n}") for n in range(3)]
    expect(
        await api.post(f"/v1/forums/{forum['id']}/participations", citizen, {"position": "for"}),
        201,
    )

    first = await activity(api, citizen, limit=2)
    second = await activity(api, citizen, limit=2, cursor=first["next_cursor"])
    assert first["next_cursor"] == "2" and second["next_cursor"] is None
    seen = [i["id"] for i in first["items"] + second["items"]]
    assert sorted(seen) == sorted([forum["id"], *(p["id"] for p in mine)])
    assert len(set(seen)) == 4
    by_id = cases(first) | cases(second)
    assert by_id[forum["id"]]["kind"] == "forum"
    assert by_id[forum["id"]]["relations"] == ["participant"]
    assert by_id[forum["id"]]["timeline"], "a forum's timeline has its opening"
    # the whole list of proposals on every page
    assert first["proposals"] == second["proposals"] and len(first["proposals"]) == 3

    # an official: only the cases they opened; another admin's forum is not theirs
    assert (await activity(api, admin))["items"] == []
    caseworker = await api.official("caseworker", "parks")
    assert (await activity(api, caseworker))["items"] == []

    expect_problem(await api.http.get("/v1/me/activity"), 401)
    expect_problem(
        await api.http.get("/v1/me/activity", headers=citizen, params={"limit": 0}),
        422,
        field="query.limit",
    )
    expect_problem(
        await api.http.get("/v1/me/activity", headers=citizen, params={"cursor": "x"}),
        422,
        field="query.cursor",
    )


async def test_an_official_sees_the_forum_they_opened(api: Api) -> None:
    admin = await api.official("admin")
    body = {"title": "Opened by me", "body": "A forum.", "kind": "discussion"}
    forum = expect(await api.post("/v1/forums", admin, body), 201)
    page = await activity(api, admin)
    assert [(i["id"], i["kind"], i["relations"]) for i in page["items"]] == [
        (forum["id"], "forum", ["creator"])
    ]
    assert page["proposals"] == page["supported"] == page["voted"] == []


async def test_a_budget_voter_an_objector_and_the_cycles_creator(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year}), 201)
    projects = await walk_to_ballot(api, year)
    target = projects["A"]["id"]
    await advance_to(api, seoul(year, 7, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "objections")
    objector = await api.citizen()
    objection = {"body": "the ramps cost too much"}
    expect(await api.post(f"/v1/projects/{target}/objections", objector, objection), 201)
    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")
    voters = []
    for choice in (["A"], ["B", "C"]):
        voter = await api.citizen()
        body = {"kind": "metro", "project_ids": [projects[n]["id"] for n in choice]}
        expect(await api.post(f"/v1/budget-cycles/{year}/ballots", voter, body), 201)
        voters.append(voter)

    cycle_id = f"budget-cycle-{year}"
    first, second = [await activity(api, v) for v in voters]
    assert [(i["id"], i["kind"], i["relations"]) for i in first["items"]] == [
        (cycle_id, "budget_cycle", ["voter"])
    ]
    assert first == second  # two ballots of other projects: the same page
    assert first["items"][0]["timeline"], "the cycle's timeline"

    async def objected() -> bool:  # the objection's signal is projected after the 201
        page = await activity(api, objector)
        [case] = page["items"]
        return (case["id"], case["relations"]) == (target, ["objector"]) and any(
            e["event"] == "objection_filed" for e in case["timeline"]
        )

    await eventually(objected)
    created = await activity(api, admin)
    assert [(i["id"], i["relations"]) for i in created["items"]] == [(cycle_id, ["creator"])]
