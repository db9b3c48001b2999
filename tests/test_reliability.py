"""Issue 6: what an attacker or an unlucky operator found, each defect with the test that
failed before its fix.

- a decision whose text Postgres cannot store never wedges a case: the edge refuses it, the
  workflow's validator refuses it too, and a projection that fails for any reason is retried
  until it lands (with an alert), never given up on;
- no string the API takes (body, query, path, key) may hold control characters, lone
  surrogates or bidirectional overrides; numbers are numbers;
- ballot secrecy holds in every table an insider can read, the idempotency store included;
- no counts before the close, no proposer id in public, no file read through `rulebook`;
- an unexpected error answers problem+json and keeps the connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError

from api import errors
from minju import stack
from models.case import Actor, Role
from models.proposal import ReviewAnswer, ReviewDecision
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from workflows.proposal import ProposalWorkflow

NUL = "ok\u0000"
BAD_STRINGS = {
    "NUL": "o\u0000k",
    "escape": "o\u001b[31mk",
    "right-to-left override": "o\u202egnp.exe",
    "lone surrogate": "o\ud800k",
    "C1 control": "o\u0085k",
}


async def _post_raw(system: Stack, path: str, who: dict[str, str], body: Any) -> httpx.Response:
    """POST `body` as ASCII JSON (escapes kept), as a client may send a lone surrogate."""
    headers = {**who, "Content-Type": "application/json"}
    return await system.http.post(path, content=json.dumps(body), headers=headers)


async def _assigned(api: Api, department: str = "parks") -> dict[str, Any]:
    proposal = await api.to_review()
    await api.assign(proposal["id"], department)
    return await api.get(proposal["id"])


# ---- 1. a NUL in a decision's reason -----------------------------------------------------------


async def test_nul_in_a_reason_is_refused_at_the_edge_and_by_the_workflow(
    api: Api, system: Stack
) -> None:
    proposal = await _assigned(api)
    pid = proposal["id"]
    before = await api.timeline(pid)
    caseworker = await api.official("caseworker", "parks")
    body = {"decision": "accept", "reason": NUL}
    refused = expect_problem(await api.post(f"/v1/proposals/{pid}/review", caseworker, body), 422)
    assert refused["field"] == "reason"
    assert "U+0000" in refused["detail"]

    # Even an Update sent straight to Temporal, past the API, is refused by its validator.
    handle = system.temporal.get_workflow_handle(proposal["workflow_id"])
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(
            ProposalWorkflow.review,
            ReviewAnswer(
                actor=Actor(role=Role.CASEWORKER, person_id="cw", department="parks"),
                decision=ReviewDecision.ACCEPT,
                reason=NUL,
            ),
        )
    assert "U+0000" in str(failure.value.cause)

    state = await handle.query(ProposalWorkflow.state)
    assert state.status.value == "dept_review"
    assert (await api.get(pid))["status"] == "dept_review"
    assert await api.timeline(pid) == before
    # And the case goes on.
    expect(await api.review(pid, "parks", "accept"), 200)
    assert (await api.get(pid))["status"] == "committee_screening"


async def test_a_failing_projection_is_retried_until_it_lands_and_raises_the_alarm(
    api: Api, system: Stack
) -> None:
    """Postgres refuses the projection for a while (a constraint stands in for any fault):
    the decision's request answers 503 with Retry-After after its patience, no other decision
    is taken meanwhile, operations are alerted, and once Postgres accepts again the
    projection lands; the same Idempotency-Key then returns the decision's result."""
    proposal = await _assigned(api)
    pid = proposal["id"]
    async with system.engine.begin() as connection:
        await connection.execute(
            text(
                "ALTER TABLE timeline_entries ADD CONSTRAINT test_refuse_acceptance "
                "CHECK (event <> 'review_accepted') NOT VALID"
            )
        )
    caseworker = await api.official("caseworker", "parks")
    key = {"Idempotency-Key": "review-under-fault", **caseworker}
    body = {"decision": "accept", "reason": "meets the criteria"}
    first = asyncio.create_task(
        system.http.post(f"/v1/proposals/{pid}/review", json=body, headers=key)
    )

    async def alerted() -> bool:
        async with system.engine.connect() as connection:
            found = await connection.execute(
                text(
                    "SELECT message FROM notifications WHERE case_id = :pid "
                    "AND kind = 'projection_stuck' AND recipient = 'operations'"
                ),
                {"pid": pid},
            )
            return found.first() is not None

    await eventually(alerted, within=40)
    # Meanwhile nothing else is decided on a state Postgres does not show.
    other = await api.official("caseworker", "parks")
    busy = await api.post(
        f"/v1/proposals/{pid}/review", other, {"decision": "reject", "reason": "no"}
    )
    expect_problem(busy, 503)
    assert busy.headers["retry-after"]
    assert (await api.get(pid))["status"] == "dept_review"

    answered = await first
    expect_problem(answered, 503)
    assert answered.headers["retry-after"]
    async with system.engine.begin() as connection:
        await connection.execute(
            text("ALTER TABLE timeline_entries DROP CONSTRAINT test_refuse_acceptance")
        )
    await api.wait_for(pid, lambda p: p["status"] == "committee_screening", within=90)
    retried = expect(
        await system.http.post(f"/v1/proposals/{pid}/review", json=body, headers=key), 200
    )
    assert retried["status"] == "committee_screening"
    events = [e["event"] for e in await api.timeline(pid)]
    assert events.count("review_accepted") == 1
    assert "review_rejected" not in events
    state = await system.temporal.get_workflow_handle(proposal["workflow_id"]).query(
        ProposalWorkflow.state
    )
    assert state.status.value == retried["status"]


# ---- 3. control characters anywhere the API takes a string ------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_STRINGS))
async def test_bad_characters_in_bodies_are_422_naming_the_field(
    api: Api, system: Stack, kind: str
) -> None:
    bad = BAD_STRINGS[kind]
    citizen = await api.citizen()
    admin = await api.official("admin")
    proposal = expect_problem(
        await _post_raw(system, "/v1/proposals", citizen, {"title": bad, "body": "b"}), 422
    )
    assert proposal["field"] == "title"
    forum = expect_problem(
        await _post_raw(
            system,
            "/v1/forums",
            admin,
            {"title": "t", "body": "b", "kind": "discussion", "origin_proposal_id": bad},
        ),
        422,
    )
    assert forum["field"] == "origin_proposal_id"
    async with system.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT (SELECT count(*) FROM proposals), (SELECT count(*) FROM forums)")
        )
        assert tuple(rows.one()) == (0, 0)


async def test_bad_characters_in_every_kind_of_string_are_422(api: Api, system: Stack) -> None:
    citizen = await api.citizen()
    admin = await api.official("admin")
    caseworker = await api.official("caseworker", "parks")
    pid = (await api.propose(citizen))["id"]
    cases: list[tuple[str, str, dict[str, str], Any, str]] = [
        ("POST", f"/v1/proposals/{pid}/comments", citizen, {"body": NUL}, "body"),
        ("POST", "/v1/forums", admin, {"title": NUL, "body": "b", "kind": "discussion"}, "title"),
        (
            "POST",
            "/v1/asks",
            caseworker,
            {
                "title": NUL,
                "body": "b",
                "opens_at": "2030-01-01T00:00:00+09:00",
                "closes_at": "2030-03-01T00:00:00+09:00",
            },
            "title",
        ),
        ("GET", "/v1/proposals?department=ok%00", citizen, None, "query.department"),
        ("GET", "/v1/forums?origin_proposal_id=ok%00", citizen, None, "query.origin_proposal_id"),
        ("GET", "/v1/proposals/ok%00", citizen, None, "path.proposal_id"),
        ("GET", "/v1/proposals/ok%00/timeline", citizen, None, "path.proposal_id"),
        ("POST", "/v1/proposals/ok%00/supports", citizen, None, "path.proposal_id"),
        ("GET", "/v1/forums/ok%00", citizen, None, "path.forum_id"),
        ("GET", "/v1/asks/ok%E2%80%AE", citizen, None, "path.ask_id"),
    ]
    for method, path, who, body, field in cases:
        response = await system.http.request(method, path, json=body, headers=who)
        problem = expect_problem(response, 422, field=field)
        assert "U+" in problem["detail"], (path, problem)
    bad_cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|x\x00").decode()
    expect_problem(await system.http.get(f"/v1/proposals?cursor={bad_cursor}"), 400, field="cursor")
    keyed: dict[str, Any] = {"Idempotency-Key": "k\u202e".encode(), **citizen}
    expect_problem(
        await system.http.post("/v1/proposals", json={"title": "t", "body": "b"}, headers=keyed),
        422,
        field="Idempotency-Key",
    )
    # Line breaks and tabs are text, not control: a body may hold them.
    expect(
        await api.post(f"/v1/proposals/{pid}/comments", citizen, {"body": "line 1\n\tline 2"}),
        201,
    )


async def test_numbers_are_numbers(api: Api, system: Stack) -> None:
    citizen = await api.citizen()
    for cost in (True, "5", 1.5):
        body = {"title": "t", "body": "b", "estimated_cost_krw": cost}
        expect_problem(
            await api.post("/v1/proposals", citizen, body), 422, field="estimated_cost_krw"
        )
    created = await api.propose(citizen, estimated_cost_krw=5)
    assert created["estimated_cost_krw"] == 5


# ---- 2. ballot secrecy against an insider -----------------------------------------------------


async def _rows_mentioning(system: Stack, needle: str) -> list[tuple[str, str]]:
    """Every (table, row as text) of the database whose text holds `needle`."""
    found: list[tuple[str, str]] = []
    async with system.engine.connect() as connection:
        tables = (
            await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        for table in list(tables):
            rows = await connection.execute(text(f'SELECT t::text FROM "{table}" AS t'))
            found += [(table, row) for row in rows.scalars() if needle in row]
    return found


async def test_no_table_links_a_voter_to_a_choice(api: Api, system: Stack) -> None:
    voting = await api.to_vote()
    pid = voting["id"]
    voters = [f"secret-voter-{n}" for n in range(6)]
    receipts: dict[str, str] = {}
    for n, voter in enumerate(voters):
        who = {**await api.citizen(voter), "Idempotency-Key": f"ballot-{n}"}
        choice = "yes" if n % 2 else "no"
        response = await system.http.post(
            f"/v1/proposals/{pid}/ballots", json={"choice": choice}, headers=who
        )
        receipts[voter] = expect(response, 201)["receipt"]
        # The retry with the same key gives the voter their receipt again...
        again = await system.http.post(
            f"/v1/proposals/{pid}/ballots", json={"choice": choice}, headers=who
        )
        assert expect(again, 201)["receipt"] == receipts[voter]
        # ...and the same key with another choice is refused, not counted.
        other = "no" if choice == "yes" else "yes"
        changed = await system.http.post(
            f"/v1/proposals/{pid}/ballots", json={"choice": other}, headers=who
        )
        expect_problem(changed, 422, field="Idempotency-Key")

    for voter, receipt in receipts.items():
        # The receipt is only in the ballot box, and no row holds both a voter and a receipt.
        assert {table for table, _ in await _rows_mentioning(system, receipt)} == {"ballot_choices"}
        for table, row in await _rows_mentioning(system, voter):
            assert receipt not in row and "yes" not in row and 'no"' not in row, (table, row)

    async with system.engine.connect() as connection:
        # The joins an insider would try: the idempotency store against the ballot box...
        joined = await connection.execute(
            text(
                "SELECT count(*) FROM idempotency_keys k JOIN ballot_choices c "
                "ON k.response::text LIKE '%' || c.receipt || '%' "
                "OR k.key LIKE '%' || c.receipt || '%' OR k.request_hash = c.receipt"
            )
        )
        assert joined.scalar_one() == 0
        # ...and the request hash of a ballot is not the hash of a known body.
        hashes = set(
            (
                await connection.execute(
                    text(
                        "SELECT request_hash FROM idempotency_keys WHERE scope LIKE 'POST ballots%'"
                    )
                )
            ).scalars()
        )
        for choice in ("yes", "no"):
            plain = hashlib.sha256(
                f'POST ballots {pid}\n{{"choice":"{choice}"}}'.encode()
            ).hexdigest()
            assert plain not in hashes
        assert len(hashes) == len(voters)  # keyed per voter: equal choices do not repeat

    history = await system.temporal.get_workflow_handle(voting["workflow_id"]).fetch_history()
    dumped = history.to_json()
    for voter, receipt in receipts.items():
        assert voter not in dumped and receipt not in dumped


# ---- 6, 7, 8: counts, personal data, files ----------------------------------------------------


async def test_nobody_sees_counts_before_the_close(api: Api, system: Stack) -> None:
    voting = await api.to_vote()
    pid = voting["id"]
    for choice in ("yes", "yes", "no"):
        expect(await api.vote(pid, choice), 201)
    for role, status in (("auditor", 409), ("admin", 403)):  # an admin audits nothing
        who = await api.official(role)
        refused = expect_problem(
            await system.http.get(f"/v1/audit/ballots/{pid}/recount", headers=who), status
        )
        assert not any(key in refused for key in ("yes", "no", "turnout"))
        if status == 409:
            assert "not closed" in refused["detail"]
    public = await api.get(pid)
    assert public["vote"]["yes"] is None and public["vote"]["turnout"] is None
    await api.advance(days=30, seconds=1)
    await api.wait_for(pid, lambda p: p["vote"]["digest"] is not None)
    auditor = await api.official("auditor")
    recount = expect(
        await system.http.get(f"/v1/audit/ballots/{pid}/recount", headers=auditor), 200
    )
    assert (recount["yes"], recount["no"], recount["matches_recorded_tally"]) == (2, 1, True)


async def test_no_proposer_id_in_public(api: Api, system: Stack) -> None:
    proposer = await api.citizen("proposer-with-a-name")
    created = await api.propose(proposer)
    for response in (
        await system.http.get(f"/v1/proposals/{created['id']}"),
        await system.http.get("/v1/proposals"),
        await system.http.get(f"/v1/proposals/{created['id']}/timeline"),
    ):
        assert "proposer-with-a-name" not in response.text
        assert "proposer_id" not in response.text
    mine = expect(await system.http.get("/v1/me/activity", headers=proposer), 200)
    assert [p["id"] for p in mine["proposals"]] == [created["id"]]


@pytest.mark.parametrize(
    "name", ["../pyproject", "..%2Fpyproject", "/etc/passwd", "seoul-2018/../seoul-2018", "a" * 80]
)
async def test_rulebook_is_a_name_not_a_path(api: Api, system: Stack, name: str) -> None:
    citizen = await api.citizen()
    problem = expect_problem(
        await api.post("/v1/proposals", citizen, {"title": "t", "body": "b", "rulebook": name}),
        422,
        field="rulebook",
    )
    assert "/work" not in problem["detail"] and "build-system" not in problem["detail"]
    assert "setuptools" not in str(problem)


# ---- 9. an unexpected error keeps the connection ----------------------------------------------


async def test_an_unexpected_error_is_problem_json_and_keeps_the_connection() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"ok": "yes"}

    port = stack.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            failed = await client.get("/boom")
            assert failed.status_code == 500
            assert failed.headers["content-type"] == errors.PROBLEM_JSON
            assert "a bug" not in failed.text  # internals stay in the log
            # The same connection serves the next request.
            assert (await client.get("/fine")).json() == {"ok": "yes"}
            assert failed.headers.get("connection") != "close"
    finally:
        server.should_exit = True
        await task


def test_backend_outages_are_classified() -> None:
    import asyncpg
    from temporalio.service import RPCError, RPCStatusCode

    assert errors.backend_down(ConnectionRefusedError()) == "database"
    assert errors.backend_down(asyncpg.CannotConnectNowError("starting")) == "database"
    assert errors.backend_down(RPCError("down", RPCStatusCode.UNAVAILABLE, b"")) == "Temporal"
    assert errors.backend_down(ValueError("bad input")) is None
    assert errors.backend_down(RPCError("no", RPCStatusCode.INVALID_ARGUMENT, b"")) is None


async def test_a_decision_right_after_a_transition_is_taken_once_it_is_recorded(api: Api) -> None:
    """Withdrawn at once after submission, while the `submitted` projection is still in flight:
    refused as busy at first, the decision is taken as soon as the projection is applied, never
    refused for good (on the uncached simulated worker the task that refused it used to be
    dropped with the projection's completion in it, again and again)."""
    proposer = await api.citizen()
    for _ in range(5):
        created = expect(
            await api.post("/v1/proposals", proposer, {"title": "Benches", "body": "On Jong-ro"}),
            201,
        )
        answer = await api.post(f"/v1/proposals/{created['id']}/withdraw", proposer)
        assert expect(answer, 200)["status"] == "withdrawn"
