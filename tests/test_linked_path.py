"""The Democracy-Seoul-linked path (process.md §4, rulebook seoul-2020): 500 supports within
30 days → agenda selection → a forum, or else the 2018 pipeline; both sides of each boundary."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from api.auth import issue_token
from models.tables import Notification
from tests.conftest import Stack
from tests.helpers import Api, auth, eventually, expect, expect_problem
from tests.test_forums import bulk_participate, wait_forum

_supporters = itertools.count()


async def support_many(system: Stack, proposal_id: str, count: int) -> None:
    """`count` different citizens support over HTTP, 25 at a time."""
    secret = system.settings.jwt_secret

    async def one() -> None:
        claims = {
            "sub": f"supporter-{next(_supporters)}",
            "role": "citizen",
            "residency": "resident",
        }
        response = await system.http.post(
            f"/v1/proposals/{proposal_id}/supports", headers=auth(issue_token(secret, claims))
        )
        assert response.status_code == 201, response.text

    for start in range(0, count, 25):
        await asyncio.gather(*(one() for _ in range(min(25, count - start))))


async def linked_proposal(api: Api, proposer: dict[str, str] | None = None) -> dict[str, Any]:
    return await api.propose(proposer or await api.citizen(), rulebook="seoul-2020")


async def agenda(api: Api, proposal_id: str) -> dict[str, Any]:
    return dict(expect(await api.http.get(f"/v1/proposals/{proposal_id}/agenda"), 200))


async def plan_agenda(api: Api, proposal_id: str, **fields: Any) -> Any:
    body = {
        "agenda_title": "Support for infertility treatment",
        "summary": "Should the city fund treatment costs?",
        "forum_kind": "for_against",
        **fields,
    }
    return await api.post(
        f"/v1/proposals/{proposal_id}/agenda/plan", await api.official("admin"), body
    )


async def decide(api: Api, proposal_id: str, hold: bool, votes: tuple[int, int]) -> Any:
    body = {
        "hold_forum": hold,
        "votes_for": votes[0],
        "votes_against": votes[1],
        "reason": "deliberated",
    }
    return await api.post(
        f"/v1/proposals/{proposal_id}/agenda/decision", await api.official("committee"), body
    )


async def test_500_supports_lead_to_a_forum_of_5000_handed_to_a_budget_year(
    api: Api, system: Stack, record_history: Any
) -> None:
    proposer = await api.citizen()
    proposal = await linked_proposal(api, proposer)
    pid = proposal["id"]
    assert proposal["rulebook"] == "seoul-2020"
    await support_many(system, pid, 499)
    await api.advance(days=29)
    assert (await api.get(pid))["status"] == "ripening"  # 10 supports wait while the window runs
    expect_problem(await api.http.get(f"/v1/proposals/{pid}/agenda"), 404)
    await support_many(system, pid, 1)
    selecting = await api.wait_status(pid, "agenda_selection")
    selection = await agenda(api, pid)
    threshold_at = datetime.fromisoformat(selection["threshold_at"])
    assert datetime.fromisoformat(selection["decision_from"]) - threshold_at == timedelta(days=30)
    assert datetime.fromisoformat(selection["due_at"]) - threshold_at == timedelta(days=90)
    assert selecting["due_at"] == selection["due_at"]

    expect_problem(await decide(api, pid, True, (12, 8)), 409)  # the planning group comes first
    planned = expect(await plan_agenda(api, pid), 200)
    assert planned["planning_group"]["forum_kind"] == "for_against"
    await api.advance(days=29)
    early = expect_problem(await decide(api, pid, True, (12, 8)), 409)
    assert "no earlier than" in early["detail"]
    await api.advance(days=2)  # day 31 after the threshold
    expect_problem(await decide(api, pid, True, (8, 12)), 422)  # must follow the majority
    expect_problem(await decide(api, pid, True, (15, 8)), 422)  # more votes than 20 members
    decided = expect(await decide(api, pid, True, (12, 8)), 200)
    forum_id = decided["forum_id"]
    assert decided["status"] == "forum" and forum_id
    assert decided["decision"] == {
        "hold_forum": True,
        "votes_for": 12,
        "votes_against": 8,
        "reason": "deliberated",
    }
    refused = expect_problem(await api.post(f"/v1/proposals/{pid}/withdraw", proposer), 409)
    assert "no longer stops it" in refused["detail"]

    forum = await wait_forum(api, forum_id, "open")
    assert (forum["origin_proposal_id"], forum["kind"], forum["rulebook"]) == (
        pid,
        "for_against",
        "seoul-2020",
    )
    listed = expect(await api.http.get("/v1/forums", params={"origin_proposal_id": pid}), 200)
    assert [f["id"] for f in listed["items"]] == [forum_id]
    await bulk_participate(system, forum_id, for_=2_700, against=2_300)
    await api.advance(days=30, seconds=1)
    closed = await wait_forum(api, forum_id, "closed")
    assert (closed["participants"], closed["eligible_for_deliberation"]) == (5_000, True)
    assert closed["budget_year"] is not None
    by_year = expect(
        await api.http.get("/v1/forums", params={"budget_year": closed["budget_year"]}), 200
    )
    assert forum_id in [f["id"] for f in by_year["items"]]
    events = [t["event"] for t in await api.timeline(pid)]
    assert events == ["submitted", "forum_threshold_reached", "agenda_planned", "forum_decided"]
    await record_history("linked_forum_decided", proposal["workflow_id"])


async def test_499_supports_by_day_30_keep_the_2018_pipeline(api: Api, system: Stack) -> None:
    pid = (await linked_proposal(api))["id"]
    await support_many(system, pid, 499)
    await api.advance(days=29)
    assert (await api.get(pid))["status"] == "ripening"
    await api.advance(days=1, seconds=1)
    in_review = await api.wait_status(pid, "dept_review")  # 499 ≥ 10: to department review at once
    assert in_review["support_count"] == 499
    await support_many(system, pid, 1)  # the 500th, on day 30: too late for a forum
    await asyncio.sleep(0.5)
    assert (await api.get(pid))["status"] == "dept_review"
    expect_problem(await api.http.get(f"/v1/proposals/{pid}/agenda"), 404)
    events = [t["event"] for t in await api.timeline(pid)]
    assert events == ["submitted", "support_window_closed", "support_threshold_reached"]
    await api.assign(pid, "health")
    assert expect(await api.review(pid, "health", "accept"), 200)["status"] == "committee_screening"


async def test_agenda_decision_past_day_90_is_overdue_and_escalated(
    api: Api, system: Stack
) -> None:
    pid = (await linked_proposal(api))["id"]
    await support_many(system, pid, 500)
    await api.wait_status(pid, "agenda_selection")
    expect(await plan_agenda(api, pid, forum_kind="discussion"), 200)
    await api.advance(days=89)
    assert (await agenda(api, pid))["overdue"] is False
    await api.advance(days=2)  # day 91
    overdue = await api.wait_for(pid, lambda p: p["overdue"])
    assert overdue["status"] == "agenda_selection"  # escalated, never decided

    async def operations_notified() -> bool:
        async with system.sessions() as session:
            rows = (
                await session.exec(
                    select(Notification.recipient).where(col(Notification.case_id) == pid)
                )
            ).all()
        return "operations" in rows

    await eventually(operations_notified)
    declined = expect(await decide(api, pid, False, (5, 15)), 200)
    assert declined["status"] == "not_selected" and declined["forum_id"] is None
    proposal = await api.get(pid)
    assert proposal["decision_reason"] == "deliberated"
    assert (await api.timeline(pid))[-1]["note"].endswith("(decided after the deadline)")


async def test_withdrawal_during_agenda_selection_stops_it(api: Api, system: Stack) -> None:
    proposer = await api.citizen()
    pid = (await linked_proposal(api, proposer))["id"]
    await support_many(system, pid, 500)
    await api.wait_status(pid, "agenda_selection")
    withdrawn = expect(await api.post(f"/v1/proposals/{pid}/withdraw", proposer), 200)
    assert withdrawn["status"] == "withdrawn"


async def revealed_draw(api: Api, purpose: str, size: int, pool_size: int = 120) -> str:
    """A drawn citizen group, through the sortition API: pool, commitment, reveal."""
    import hashlib

    from models.sortition import DISTRICTS

    admin = await api.official("admin")
    name = f"pool-{purpose}-{next(_supporters)}"
    members = [
        {
            "person_id": f"{name}-member-{i}",
            "sex": "female" if i % 2 else "male",
            "birth_year": 1950 + i % 50,
            "district": DISTRICTS[i % len(DISTRICTS)],
        }
        for i in range(pool_size)
    ]
    expect(await api.post("/v1/sortition-pools", admin, {"name": name, "members": members}), 201)
    seed = f"seed for {name}"
    draw = expect(
        await api.post(
            "/v1/sortitions",
            admin,
            {
                "purpose": purpose,
                "size": size,
                "strata": ["sex"],
                "pool": name,
                "seed_commitment": hashlib.sha256(seed.encode()).hexdigest(),
            },
        ),
        201,
    )
    expect(await api.post(f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": seed}), 200)
    return str(draw["id"])


async def test_the_selection_group_is_a_revealed_draw_of_20(api: Api, system: Stack) -> None:
    pid = (await linked_proposal(api))["id"]
    await support_many(system, pid, 500)
    await api.wait_status(pid, "agenda_selection")
    expect_problem(
        await plan_agenda(api, pid, selection_draw_id="nope"), 422, field="selection_draw_id"
    )
    draw_id = await revealed_draw(api, "agenda_selection_group", 20)
    planned = expect(await plan_agenda(api, pid, selection_draw_id=draw_id), 200)
    assert planned["selection_group"] == {"draw_id": draw_id, "members_count": 20}


async def test_public_deliberation_publishes_a_recommendation(api: Api, system: Stack) -> None:
    from tests.test_forums import create_forum

    panel = await revealed_draw(api, "other", 30)
    forum = await create_forum(api, kind="discussion", panel_draw_id=panel)
    fid = forum["id"]
    admin = await api.official("admin")
    path = f"/v1/forums/{fid}/recommendation"
    expect_problem(await api.post(path, admin, {"text": "too early"}), 409)
    plain = await create_forum(api)
    await api.advance(days=30, seconds=1)
    await wait_forum(api, fid, "closed")
    expect_problem(await api.post(path, await api.official("committee"), {"text": "x"}), 403)
    expect_problem(
        await api.post(f"/v1/forums/{plain['id']}/recommendation", admin, {"text": "x"}), 409
    )
    published = expect(await api.post(path, admin, {"text": "Fund a pilot in 3 districts"}), 200)
    assert published["recommendation"] == "Fund a pilot in 3 districts"
    expect_problem(await api.post(path, admin, {"text": "again"}), 409)
    events = [
        t["event"] for t in expect(await api.http.get(f"/v1/forums/{fid}/timeline"), 200)["items"]
    ]
    assert events[-1] == "recommendation_published"
