"""The HTTP contract: auth, eligibility, department scoping, problem+json, idempotency.

Bad input gets a clear error naming the field, never a 500, and leaves nothing written.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
from sqlalchemy import func, select
from sqlmodel import col

from models.tables import Proposal, TimelineRow
from tests.conftest import Stack
from tests.helpers import Api, auth, expect, expect_problem


async def count_rows(system: Stack, table: Any) -> int:
    async with system.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_missing_or_forged_token_is_401(api: Api, system: Stack) -> None:
    body = {"title": "t", "body": "b"}
    expect_problem(await system.http.post("/v1/proposals", json=body), 401)
    forged = jwt.encode({"sub": "x", "role": "admin"}, "a-different-key-of-32-bytes-length!")
    expect_problem(await system.http.post("/v1/proposals", json=body, headers=auth(forged)), 401)
    expect_problem(
        await system.http.post("/v1/proposals", json=body, headers={"Authorization": "Basic x"}),
        401,
    )


async def test_public_officials_may_not_propose_support_or_vote(api: Api, system: Stack) -> None:
    official = await api.citizen(public_official=True)
    refused = expect_problem(
        await api.post("/v1/proposals", official, {"title": "t", "body": "b"}), 403
    )
    assert "public officials" in refused["detail"]
    voting = await api.to_vote()
    expect_problem(
        await api.post(f"/v1/proposals/{voting['id']}/ballots", official, {"choice": "yes"}), 403
    )
    ripening = await api.propose(await api.citizen())
    expect_problem(await api.post(f"/v1/proposals/{ripening['id']}/supports", official), 403)
    outsider = auth(await api.token(role="citizen", residency=None))
    assert (
        "live, work or study"
        in expect_problem(
            await api.post(f"/v1/proposals/{ripening['id']}/supports", outsider), 403
        )["detail"]
    )
    caseworker = await api.official("caseworker", "parks")
    expect_problem(await api.post("/v1/proposals", caseworker, {"title": "t", "body": "b"}), 403)


async def test_caseworker_of_another_department_gets_404(api: Api) -> None:
    pid = (await api.to_review())["id"]
    await api.assign(pid, "parks")
    expect_problem(await api.review(pid, "transport", "accept"), 404)
    expect_problem(await api.appropriateness(pid, "transport", "appropriate"), 404)
    committee = await api.official("committee")
    expect_problem(
        await api.post(
            f"/v1/proposals/{pid}/review", committee, {"decision": "accept", "reason": "x"}
        ),
        403,
    )
    # The department's own caseworker is not refused.
    assert (expect(await api.review(pid, "parks", "accept"), 200))[
        "status"
    ] == "committee_screening"


async def test_wrong_stage_is_409_and_writes_nothing(api: Api, system: Stack) -> None:
    proposal = await api.propose(await api.citizen())
    pid = proposal["id"]
    await api.wait_event(pid, "submitted")
    before = await api.timeline(pid)
    admin = await api.official("admin")
    wrong = await api.post(f"/v1/proposals/{pid}/assign", admin, {"department": "parks"})
    assert "ripening" in expect_problem(wrong, 409)["detail"]
    expect_problem(await api.screen(pid), 409)
    expect_problem(await api.plan(pid, "parks", 0), 409)
    assert await api.timeline(pid) == before
    assert (await api.get(pid))["status"] == "ripening"
    await api.support(pid, 10)
    await api.wait_status(pid, "dept_review")
    await api.assign(pid, "parks")
    again = await api.post(f"/v1/proposals/{pid}/assign", admin, {"department": "welfare"})
    assert "already assigned" in expect_problem(again, 409)["detail"]
    assert (await api.get(pid))["department"] == "parks"


async def test_bad_input_names_the_field_and_creates_nothing(api: Api, system: Stack) -> None:
    who = await api.citizen()
    proposals_before = await count_rows(system, Proposal)
    cases: list[tuple[Any, str]] = [
        ({"body": "no title"}, "title"),
        ({"title": "", "body": "b"}, "title"),
        ({"title": "t", "body": "b", "estimated_cost_krw": -5}, "estimated_cost_krw"),
        ({"title": "t", "body": "b", "estimated_cost_krw": "lots"}, "estimated_cost_krw"),
        ({"title": "t", "body": "b", "unknown": 1}, "unknown"),
        ({"title": "t", "body": "b", "rulebook": "seoul-1999"}, "rulebook"),
        ({"title": "x" * 201, "body": "b"}, "title"),
    ]
    for body, field in cases:
        expect_problem(await api.post("/v1/proposals", who, body), 422, field=field)
    broken = await system.http.post(
        "/v1/proposals", content=b"{not json", headers={**who, "Content-Type": "application/json"}
    )
    expect_problem(broken, 422)
    assert await count_rows(system, Proposal) == proposals_before

    pid = (await api.to_review())["id"]
    await api.assign(pid, "parks")
    timeline_before = await count_rows(system, TimelineRow)
    caseworker = await api.official("caseworker", "parks")
    for body, field in [
        ({"decision": "maybe", "reason": "x"}, "decision"),
        ({"decision": "accept"}, "reason"),
        ({"decision": "reject", "reason": ""}, "reason"),
    ]:
        expect_problem(
            await api.post(f"/v1/proposals/{pid}/review", caseworker, body), 422, field=field
        )
    expect(await api.review(pid, "parks", "accept"), 200)
    committee = await api.official("committee")
    partial_scores = {"decision": "advance", "scores": {"necessity": 1}, "note": ""}
    expect_problem(
        await api.post(f"/v1/proposals/{pid}/screening", committee, partial_scores),
        422,
        field="scores.changeability",
    )
    out_of_range = {
        "decision": "advance",
        "scores": {"necessity": 11, "changeability": 1, "feasibility": 1, "impact": 1},
    }
    expect_problem(
        await api.post(f"/v1/proposals/{pid}/screening", committee, out_of_range),
        422,
        field="scores.necessity",
    )
    assert await count_rows(system, TimelineRow) == timeline_before + 1  # only the acceptance
    expect_problem(await system.http.get("/v1/proposals/no-such-id"), 404)
    expect_problem(await system.http.get("/v1/proposals?status=bogus"), 422, field="query.status")
    expect_problem(await system.http.get("/v1/proposals?cursor=%%%"), 400, field="cursor")


async def test_idempotency_key_returns_the_first_result(api: Api, system: Stack) -> None:
    who = {**await api.citizen(), "Idempotency-Key": "submit-1"}
    body = {"title": "Bike lanes", "body": "On Sejong-daero"}
    first = await system.http.post("/v1/proposals", json=body, headers=who)
    again = await system.http.post("/v1/proposals", json=body, headers=who)
    assert expect(first, 201) == expect(again, 201)
    other = await system.http.post("/v1/proposals", json={**body, "title": "Other"}, headers=who)
    expect_problem(other, 422, field="Idempotency-Key")
    async with system.sessions() as session:
        titles = (await session.execute(select(col(Proposal.title)))).scalars().all()
    assert titles == ["Bike lanes"]

    voting = await api.to_vote()
    voter = {**await api.citizen(), "Idempotency-Key": "ballot-1"}
    path = f"/v1/proposals/{voting['id']}/ballots"
    receipts = [
        expect(await system.http.post(path, json={"choice": "no"}, headers=voter), 201)["receipt"]
        for _ in range(2)
    ]
    assert receipts[0] == receipts[1]


async def test_lists_paginate_and_filter(api: Api, system: Stack) -> None:
    who = await api.citizen()
    ids = [(await api.propose(who, title=f"p{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = expect(await system.http.get("/v1/proposals", params=params), 200)
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    await api.support(ids[0], 10)
    await api.wait_status(ids[0], "dept_review")
    await api.assign(ids[0], "parks")
    by_status = expect(
        await system.http.get("/v1/proposals", params={"status": "dept_review"}), 200
    )
    assert [p["id"] for p in by_status["items"]] == [ids[0]]
    by_dept = expect(await system.http.get("/v1/proposals", params={"department": "parks"}), 200)
    assert [p["id"] for p in by_dept["items"]] == [ids[0]]


async def test_inbox_and_my_page(api: Api, system: Stack) -> None:
    proposer = await api.citizen()
    pid = (await api.to_review(proposer))["id"]
    supporter = await api.citizen()
    expect(await api.post(f"/v1/proposals/{pid}/supports", supporter), 201)
    admin_inbox = expect(
        await system.http.get("/v1/inbox", headers=await api.official("admin")), 200
    )
    assert [(i["proposal_id"], i["waiting_for"]) for i in admin_inbox["items"]] == [
        (pid, "assignment")
    ]
    await api.assign(pid, "parks")
    parks = expect(
        await system.http.get("/v1/inbox", headers=await api.official("caseworker", "parks")), 200
    )
    assert [i["proposal_id"] for i in parks["items"]] == [pid]
    assert parks["items"][0]["due_at"] is not None
    other = expect(
        await system.http.get("/v1/inbox", headers=await api.official("caseworker", "roads")), 200
    )
    assert other["items"] == []
    expect_problem(await system.http.get("/v1/inbox", headers=proposer), 403)
    mine = expect(await system.http.get("/v1/me/activity", headers=proposer), 200)
    assert [(p["id"], p["status"]) for p in mine["proposals"]] == [(pid, "dept_review")]
    theirs = expect(await system.http.get("/v1/me/activity", headers=supporter), 200)
    assert [p["id"] for p in theirs["supported"]] == [pid] and theirs["proposals"] == []


async def test_health_clock_and_openapi(api: Api, system: Stack) -> None:
    health = expect(await system.http.get("/healthz"), 200)
    assert health == {"status": "ok", "temporal": "ok", "database": "ok"}
    clock = expect(await system.http.get("/v1/clock"), 200)
    assert clock["mode"] == "simulated" and clock["now"].endswith("+09:00")
    expect_problem(
        await system.http.post("/v1/dev/clock/advance", json={"days": -1}), 422, field="days"
    )
    spec = expect(await system.http.get("/openapi.json"), 200)
    for path in (
        "/v1/proposals",
        "/v1/proposals/{proposal_id}/assign",
        "/v1/proposals/{proposal_id}/ballots",
        "/v1/audit/cases/{workflow_id}/replay",
        "/v1/dev/tokens",
    ):
        assert path in spec["paths"], path


async def test_dev_endpoints_are_off_unless_enabled(system: Stack) -> None:
    from api.app import create_app

    app = create_app(system.settings.with_(dev_endpoints=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/v1/dev/tokens", json={"sub": "x", "role": "admin"})
    assert response.status_code == 404
