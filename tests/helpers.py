"""A thin client of the HTTP API for tests: every call goes over HTTP, as a real client's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

_people = itertools.count(1)


def expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text}"
    )
    return response.json() if response.content else None


def expect_problem(
    response: httpx.Response, status: int, *, field: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = expect(response, status)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    if field is not None:
        assert body.get("field") == field, body
    return body


@dataclass
class Api:
    http: httpx.AsyncClient
    _tokens: dict[str, str] = field(default_factory=dict)

    async def token(self, sub: str | None = None, role: str = "citizen", **claims: Any) -> str:
        sub = sub or f"person-{next(_people)}"
        if role == "citizen":
            claims.setdefault("residency", "resident")
        body = {"sub": sub, "role": role, **claims}
        return str(expect(await self.http.post("/v1/dev/tokens", json=body), 200)["token"])

    async def citizen(self, sub: str | None = None, **claims: Any) -> dict[str, str]:
        return auth(await self.token(sub, "citizen", **claims))

    async def official(self, role: str, dept: str | None = None) -> dict[str, str]:
        claims = {"dept": dept} if dept else {}
        return auth(await self.token(f"{role}-{dept or 'x'}-{next(_people)}", role, **claims))

    async def now(self) -> str:
        return str(expect(await self.http.get("/v1/clock"), 200)["now"])

    async def advance(self, **delta: float) -> str:
        return str(expect(await self.http.post("/v1/dev/clock/advance", json=delta), 200)["now"])

    async def propose(self, who: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"title": "Shade trees on Jong-ro", "body": "Plant 200 trees.", **fields}
        result: dict[str, Any] = expect(
            await self.http.post("/v1/proposals", json=body, headers=who), 201
        )
        return result

    async def get(self, proposal_id: str) -> dict[str, Any]:
        result: dict[str, Any] = expect(await self.http.get(f"/v1/proposals/{proposal_id}"), 200)
        return result

    async def timeline(self, proposal_id: str) -> list[dict[str, Any]]:
        body = expect(await self.http.get(f"/v1/proposals/{proposal_id}/timeline"), 200)
        return list(body["items"])

    async def support(self, proposal_id: str, count: int) -> None:
        for _ in range(count):
            who = await self.citizen()
            expect(await self.http.post(f"/v1/proposals/{proposal_id}/supports", headers=who), 201)

    async def wait_for(
        self,
        proposal_id: str,
        condition: Callable[[dict[str, Any]], bool],
        *,
        within: float = 15.0,
    ) -> dict[str, Any]:
        """Poll the proposal until the projection shows `condition` (it is written by an
        activity right after the transition, so it may trail the workflow briefly)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            proposal = await self.get(proposal_id)
            if condition(proposal):
                return proposal
            assert loop.time() < deadline, f"condition never held; last state: {proposal}"
            await asyncio.sleep(0.05)

    async def wait_event(self, proposal_id: str, event: str, *, within: float = 15.0) -> None:
        """Poll the timeline until `event` is in it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while event not in [t["event"] for t in await self.timeline(proposal_id)]:
            assert loop.time() < deadline, f"{event} never appeared"
            await asyncio.sleep(0.05)

    async def wait_status(self, proposal_id: str, status: str) -> dict[str, Any]:
        return await self.wait_for(proposal_id, lambda p: p["status"] == status)

    async def post(
        self, path: str, who: dict[str, str], body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.post(path, json=body, headers=who)

    # ---- one call per stage, for walking a proposal down its path --------------------------

    async def to_review(
        self, proposer: dict[str, str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        proposal = await self.propose(proposer or await self.citizen(), **fields)
        await self.support(proposal["id"], 10)
        return await self.wait_status(proposal["id"], "dept_review")

    async def assign(self, proposal_id: str, department: str) -> dict[str, Any]:
        admin = await self.official("admin")
        body = {"department": department, "note": "routed by the evaluation group"}
        result: dict[str, Any] = expect(
            await self.post(f"/v1/proposals/{proposal_id}/assign", admin, body), 200
        )
        return result

    async def review(self, proposal_id: str, department: str, decision: str) -> httpx.Response:
        who = await self.official("caseworker", department)
        body = {"decision": decision, "reason": f"{decision}: reviewed by {department}"}
        return await self.post(f"/v1/proposals/{proposal_id}/review", who, body)

    async def screen(self, proposal_id: str, decision: str = "advance") -> httpx.Response:
        who = await self.official("committee")
        scores = {"necessity": 8, "changeability": 7, "feasibility": 6, "impact": 9}
        body = {"decision": decision, "scores": scores, "note": "first review"}
        return await self.post(f"/v1/proposals/{proposal_id}/screening", who, body)

    async def plan(self, proposal_id: str, department: str, cost_krw: int) -> httpx.Response:
        who = await self.official("committee")
        body = {
            "summary": "Plant in spring",
            "executing_department": department,
            "cost_krw": cost_krw,
        }
        return await self.post(f"/v1/proposals/{proposal_id}/plan", who, body)

    async def appropriateness(
        self, proposal_id: str, department: str, verdict: str
    ) -> httpx.Response:
        who = await self.official("caseworker", department)
        body = {"verdict": verdict, "reason": f"{verdict} after checking law and budget"}
        return await self.post(f"/v1/proposals/{proposal_id}/appropriateness", who, body)

    async def to_vote(
        self, department: str = "parks", cost_krw: int = 0, proposer: dict[str, str] | None = None
    ) -> dict[str, Any]:
        proposal = await self.to_review(proposer)
        pid = proposal["id"]
        await self.assign(pid, department)
        expect(await self.review(pid, department, "accept"), 200)
        expect(await self.screen(pid), 200)
        expect(await self.plan(pid, department, cost_krw), 200)
        return dict(expect(await self.appropriateness(pid, department, "appropriate"), 200))

    async def vote(
        self, proposal_id: str, choice: str, who: dict[str, str] | None = None
    ) -> httpx.Response:
        who = who or await self.citizen()
        return await self.post(f"/v1/proposals/{proposal_id}/ballots", who, {"choice": choice})


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> None:
    """Poll until `check` holds: for effects written by activities after a transition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
