"""Auditors for every kind of case, through HTTP and `minju audit`: cases listed per kind,
histories exported and replayed (on the server, and exported files against this checkout, a
tampered one diverging), recounts of a proposal vote and a forum compared with the tallies
their histories recorded, the transitions a timer made told apart from a person's, sortition
draws re-run, no counts before the close, auditors only, and every audit call in the log.
(The budget ballot's recount per channel is in tests/test_budget_vote.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from minju import audit as audit_cli
from tests.conftest import Stack
from tests.helpers import Api, expect, expect_problem
from tests.test_forums import bulk_participate, create_forum, wait_forum
from tests.test_proposal_paths import cast_many
from tests.test_sortition import commitment_of, create_pool, pool_members, synthetic_pool
from tests.test_sortition import this_year as clock_year


async def _cli(system: Stack, token: str, *argv: str) -> tuple[int, str]:
    """`minju audit ARGV` against the test stack: (exit code, what it printed)."""
    console = Console(record=True, width=200)
    args = audit_cli.parse(["--url", str(system.http.base_url), "--token", token, *argv])
    args.no_progress = True
    code = await audit_cli.run(args, console)
    return code, console.export_text()


async def test_a_proposal_exported_replayed_and_recounted_from_the_cli(
    api: Api, system: Stack, tmp_path: Path
) -> None:
    voting = await api.to_vote()
    await cast_many(system, voting["id"], yes=7, no=3)
    await api.advance(days=31)
    closed = await api.wait_status(voting["id"], "not_passed")  # short of the quorum
    wid = closed["workflow_id"]
    auditor = await api.official("auditor")
    token = auditor["Authorization"].removeprefix("Bearer ")

    code, out = await _cli(system, token, "export", wid, "--out", str(tmp_path))
    assert code == 0, out
    exported = json.loads((tmp_path / f"{wid}.json").read_text())
    assert exported["events"][0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"

    code, out = await _cli(system, token, "replay", "--dir", str(tmp_path))
    assert code == 0 and "1 of 1 replayed without divergence" in out, out
    code, out = await _cli(system, token, "replay", wid)
    assert code == 0 and "1 of 1 replayed" in out, out

    code, out = await _cli(system, token, "recount", voting["id"])
    assert code == 0 and "matches the recorded tally: True" in out, out
    recount = expect(
        await system.http.get(f"/v1/audit/ballots/{voting['id']}/recount", headers=auditor), 200
    )
    assert (recount["kind"], recount["yes"], recount["no"], recount["turnout"]) == (
        "proposal",
        7,
        3,
        10,
    )
    assert recount["recorded"] == {"yes": 7, "no": 3, "turnout": 10, "digest": recount["digest"]}
    assert recount["matches_recorded_tally"] is True

    # A history whose recorded commands no longer match the code diverges, loudly.
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for event in exported["events"]:
        attributes = event.get("activityTaskScheduledEventAttributes")
        if attributes and attributes["activityType"]["name"] == "project_proposal":
            attributes["activityType"]["name"] = "project_forum"
            break
    (tampered / f"{wid}.json").write_text(json.dumps(exported))
    code, out = await _cli(system, token, "replay", "--dir", str(tampered))
    assert code == audit_cli.EXIT_DIVERGED and f"DIVERGED {wid}" in out, out

    # What a timer did, told apart from what people did, read from the history itself.
    transitions = expect(
        await system.http.get(f"/v1/audit/cases/{wid}/transitions", headers=auditor), 200
    )["items"]
    by_event = {t["event"]: t["trigger"] for t in transitions}
    assert by_event["submitted"] == "start" and by_event["vote_closed"] == "timer"
    decisions = [t for t in transitions if t["actor_role"] in ("caseworker", "committee", "admin")]
    assert len(decisions) >= 5 and {t["trigger"] for t in decisions} == {"update"}, decisions
    timeline = await api.timeline(voting["id"])
    assert [t["seq"] for t in transitions] == [e["seq"] for e in timeline]
    timers = expect(
        await system.http.get(
            f"/v1/audit/cases/{wid}/transitions", headers=auditor, params={"trigger": "timer"}
        ),
        200,
    )["items"]
    assert {t["trigger"] for t in timers} == {"timer"} and "vote_closed" in {
        t["event"] for t in timers
    }
    code, out = await _cli(system, token, "timers", wid)
    assert code == 0 and "vote_closed" in out, out

    # Every case of a kind, listed and replayed.
    cases = expect(
        await system.http.get("/v1/audit/cases", headers=auditor, params={"kind": "proposal"}),
        200,
    )
    assert wid in {c["workflow_id"] for c in cases["items"]}
    bulk = expect(
        await system.http.post("/v1/audit/replay", headers=auditor, params={"kind": "proposal"}),
        200,
    )
    assert bulk["cases"] >= 1 and bulk["divergences"] == {} and bulk["replayed"] == bulk["cases"]

    # Every one of those calls is in the audit log, with who made it.
    log = expect(await system.http.get("/v1/audit/log", headers=auditor), 200)["items"]
    mine = [(e["action"], e["target"]) for e in log if e["role"] == "auditor"]
    for call in (("history", wid), ("replay", wid), ("recount", voting["id"])):
        assert call in mine, (call, mine)
    assert ("replay_kind", "proposal") in mine and ("transitions", wid) in mine


async def test_no_recount_before_the_close_and_auditors_only(api: Api, system: Stack) -> None:
    voting = await api.to_vote()
    auditor, citizen = await api.official("auditor"), await api.citizen()
    recount = f"/v1/audit/ballots/{voting['id']}/recount"
    refused = expect_problem(await system.http.get(recount, headers=auditor), 409)
    assert "not closed" in refused["detail"]
    expect_problem(await system.http.get(recount, headers=citizen), 403)
    expect_problem(
        await system.http.get("/v1/audit/ballots/no-such-box/recount", headers=auditor), 404
    )
    expect_problem(
        await system.http.get("/v1/audit/ballots/budget:2999:metro/recount", headers=auditor), 404
    )
    expect_problem(
        await system.http.get("/v1/audit/cases", headers=auditor, params={"kind": "petition"}),
        422,
        field="kind",
    )
    for path in ("/v1/audit/cases?kind=proposal", "/v1/audit/log"):
        expect_problem(await system.http.get(path, headers=citizen), 403)
        expect_problem(await system.http.get(path), 401)
    expect_problem(await system.http.post("/v1/audit/replay?kind=forum", headers=citizen), 403)
    code, out = await _cli(
        system, citizen["Authorization"].removeprefix("Bearer "), "recount", voting["id"]
    )
    assert code == audit_cli.EXIT_USAGE and "403" in out, out


async def test_a_forum_recounted_and_its_closing_made_by_a_timer(api: Api, system: Stack) -> None:
    forum = await create_forum(api)
    auditor = await api.official("auditor")
    open_recount = await system.http.get(
        f"/v1/audit/ballots/{forum['id']}/recount", headers=auditor
    )
    expect_problem(open_recount, 409)
    await bulk_participate(system, forum["id"], for_=30, against=15, other=5)
    await api.advance(days=30, seconds=1)
    closed = await wait_forum(api, forum["id"], "closed")
    recount = expect(
        await system.http.get(f"/v1/audit/ballots/{forum['id']}/recount", headers=auditor), 200
    )
    assert recount["kind"] == "forum" and recount["turnout"] == 50
    assert recount["positions"] == {
        "participants": 50,
        "for_": 30,
        "against": 15,
        "other": 5,
        "opinions": 0,
    }
    assert recount["matches_recorded_tally"] is True
    assert recount["recorded"]["digest"] == recount["digest"]
    transitions = expect(
        await system.http.get(
            f"/v1/audit/cases/{closed['workflow_id']}/transitions",
            headers=auditor,
            params={"trigger": "timer"},
        ),
        200,
    )["items"]
    assert "closed" in {t["event"] for t in transitions}
    bulk = expect(
        await system.http.post("/v1/audit/replay", headers=auditor, params={"kind": "forum"}), 200
    )
    assert bulk["divergences"] == {} and bulk["cases"] >= 1


async def test_a_sortition_draw_exported_and_re_run(api: Api, system: Stack) -> None:
    admin, auditor = await api.official("admin"), await api.official("auditor")
    year = await clock_year(api)
    await create_pool(api, admin, "audit-pool", pool_members(synthetic_pool(150), year))
    seed = "audited draw"
    body = {
        "purpose": "agenda_selection_group",
        "pool": "audit-pool",
        "seed_commitment": commitment_of(seed),
    }
    draw = expect(await api.post("/v1/sortitions", admin, body), 201)
    revealed = expect(
        await api.post(f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": seed}), 200
    )
    audit_id = f"sortition-{draw['id']}"
    cases = expect(
        await system.http.get("/v1/audit/cases", headers=auditor, params={"kind": "sortition"}),
        200,
    )["items"]
    [case] = [c for c in cases if c["case_id"] == draw["id"]]
    assert case == {
        "kind": "sortition",
        "case_id": draw["id"],
        "workflow_id": audit_id,
        "status": "revealed",
    }
    record: dict[str, Any] = expect(
        await system.http.get(f"/v1/audit/cases/{audit_id}/history", headers=auditor), 200
    )
    assert record["seed"] == seed and record["members_digest"] == revealed["members_digest"]
    assert record["draw_id"] == draw["id"] and len(record["members"]) == draw["candidates"]
    replay = expect(
        await system.http.post(f"/v1/audit/cases/{audit_id}/replay", headers=auditor), 200
    )
    assert replay == {"workflow_id": audit_id, "replayed": True, "events": 0, "divergence": None}
    expect_problem(
        await system.http.get("/v1/audit/cases/sortition-nope/history", headers=auditor), 404
    )
