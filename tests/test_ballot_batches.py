"""Ballots from other channels (mVoting, on-site e-voting, paper) in bulk, through HTTP on the
simulated clock: one ballot per person across every channel and the online box, refusals by
line, JSON / JSON lines / CSV, who may submit for which channel, nothing taken outside the
vote or from an unreadable batch, the same batch twice under one key, and after the close the
box recounted per channel, adding up to the results, with every row mixed."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx

from models.ballot_box import MIX_BATCH, budget_box_id
from tests.conftest import Stack
from tests.helpers import Api, expect, expect_problem
from tests.test_ballot_box import _assert_mixed, _rows
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_budget_vote import walk_to_ballot


def _batch_path(year: int) -> str:
    return f"/v1/budget-cycles/{year}/ballot-batches"


async def _send(
    api: Api,
    year: int,
    who: dict[str, str],
    content: str,
    media_type: str,
    *,
    key: str | None = None,
    **params: str,
) -> httpx.Response:
    headers = {**who, "Content-Type": media_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.http.post(
        _batch_path(year), content=content.encode(), headers=headers, params=params
    )


async def _totals(api: Api, year: int, who: dict[str, str]) -> dict[str, Any]:
    listing = expect(
        await api.http.get(_batch_path(year), params={"kind": "metro"}, headers=who), 200
    )
    return dict(listing["kinds"]["metro"]["totals"])


async def test_channel_batches_count_once_per_person_and_recount_per_channel(
    api: Api, system: Stack
) -> None:
    admin = await api.official("admin")
    auditor = await api.official("auditor")
    mvoting = await api.official("caseworker", "channel:mvoting")
    paper = await api.official("caseworker", "channel:paper")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.3}), 201)
    projects = await walk_to_ballot(api, year)
    a, b, c = (projects[name]["id"] for name in "ABC")

    # before the vote, nothing is taken (409 naming the phase)
    early = json.dumps(
        {
            "channel": "mvoting",
            "kind": "metro",
            "ballots": [{"person_id": "p-0", "project_ids": [a]}],
        }
    )
    refused = expect_problem(await _send(api, year, mvoting, early, "application/json"), 409)
    assert "council_review" in refused["detail"]
    assert await _totals(api, year, admin) == {}

    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")

    online_path = f"/v1/budget-cycles/{year}/ballots"
    for i in range(3):
        voter = await api.citizen(f"online-{year}-{i}")
        expect(await api.post(online_path, voter, {"kind": "metro", "project_ids": [a]}), 201)

    # mVoting, JSON: 40 good ballots (A and C, 10 of them from budget-school graduates), and
    # five that are refused by line
    ballots: list[dict[str, Any]] = [
        {
            "person_id": f"mv-{year}-{i}",
            "group": "budget_school" if i < 10 else "general",
            "project_ids": [a, c],
        }
        for i in range(40)
    ]
    ballots += [
        {"person_id": f"online-{year}-0", "project_ids": [b]},  # voted online: line 41
        {"person_id": f"mv-{year}-5", "project_ids": [b]},  # twice in the batch: line 42
        {"person_id": f"mv-{year}-x1", "project_ids": ["no-such-project"]},  # line 43
        {"person_id": f"mv-{year}-x2", "group": "mayors", "project_ids": [a]},  # line 44
        {"person_id": f"mv-{year}-x3", "project_ids": []},  # line 45
    ]
    body = json.dumps({"channel": "mvoting", "kind": "metro", "ballots": ballots})
    taken = expect(await _send(api, year, mvoting, body, "application/json", key="mv-1"), 201)
    assert (taken["received"], taken["accepted"]) == (45, 40)
    assert [r["line"] for r in taken["refused"]] == [41, 42, 43, 44, 45]
    assert "voted already" in taken["refused"][0]["reason"]
    assert "line 6" in taken["refused"][1]["reason"]
    assert taken["content_digest"].startswith("sha256:") and taken["format"] == "json"
    # the same batch under the same key: the first answer, nothing counted twice
    again = expect(await _send(api, year, mvoting, body, "application/json", key="mv-1"), 201)
    assert again == taken
    # without a key, every person in it has voted already
    resent = expect(await _send(api, year, mvoting, body, "application/json"), 201)
    assert resent["accepted"] == 0 and len(resent["refused"]) == 45

    # paper, CSV (fewer than a mixing batch: queued for the mixer like online ballots), with
    # one person who voted through mVoting and a line with a column missing
    assert 4 < MIX_BATCH
    csv = "person_id,group,project_ids\n" + "".join(
        f"paper-{year}-{i},general,{b};{c}\n" for i in range(4)
    )
    csv += f"mv-{year}-7,general,{b}\nshort-line\n"
    on_paper = expect(
        await _send(api, year, paper, csv, "text/csv", channel="paper", kind="metro"), 201
    )
    assert (on_paper["received"], on_paper["accepted"]) == (6, 4)
    assert [r["line"] for r in on_paper["refused"]] == [6, 7]

    # on-site, JSON lines, sent by an admin; a line that is not JSON is refused by its number
    lines = "\n".join(
        [json.dumps({"person_id": f"site-{year}-{i}", "project_ids": [a, b]}) for i in range(2)]
        + ["{not json"]
    )
    onsite = expect(
        await _send(
            api, year, admin, lines, "application/x-ndjson", channel="onsite", kind="metro"
        ),
        201,
    )
    assert (onsite["received"], onsite["accepted"], onsite["refused"][0]["line"]) == (3, 2, 3)

    # one ballot per person across channels: the online box refuses a paper voter
    paper_voter = await api.citizen(f"paper-{year}-0")
    expect_problem(
        await api.post(online_path, paper_voter, {"kind": "metro", "project_ids": [a]}), 409
    )

    # who may submit what; bad batches take nothing
    before = await _totals(api, year, admin)
    one = json.dumps({"kind": "metro", "ballots": [{"person_id": "z", "project_ids": [a]}]})
    expect_problem(await _send(api, year, mvoting, one, "application/json", channel="paper"), 403)
    expect_problem(
        await _send(api, year, await api.citizen(), one, "application/json", channel="paper"), 403
    )
    expect_problem(
        await _send(api, year, admin, one, "application/json", channel="fax"),
        422,
        field="query.channel",
    )
    expect_problem(
        await _send(
            api,
            year,
            admin,
            json.dumps({"channel": "paper", "kind": "metro", "ballots": []}),
            "application/json",
            channel="onsite",
        ),
        422,
        field="channel",
    )
    expect_problem(
        await _send(api, year, admin, one, "application/json", channel="paper", kind="district"),
        422,
        field="kind",
    )
    expect_problem(
        await _send(
            api, year, admin, "person,choice\nx,y\n", "text/csv", channel="paper", kind="metro"
        ),
        422,
        field="body.header",
    )
    expect_problem(await _send(api, year, admin, "{", "application/json", channel="paper"), 422)
    expect_problem(await _send(api, year, admin, "x", "text/plain", channel="paper"), 415)
    assert await _totals(api, year, admin) == before
    assert before["mvoting"] == {"batches": 2, "received": 90, "accepted": 40, "refused": 50}
    assert before["paper"] == {"batches": 1, "received": 6, "accepted": 4, "refused": 2}

    # a channel sees its own batches only; no count is shown while the vote runs
    own = expect(await api.http.get(_batch_path(year), headers=paper), 200)
    assert set(own["kinds"]) == {"metro", "deliberative", "governance"}
    assert set(own["kinds"]["metro"]["totals"]) == {"paper"}
    assert own["kinds"]["metro"]["recount"] is None
    expect_problem(
        await api.http.get(
            _batch_path(year), params={"kind": "metro"}, headers=await api.citizen()
        ),
        403,
    )

    await advance_to(api, seoul(year, 8, 21) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "assembly")
    results: dict[str, Any] = {}
    for _ in range(100):
        answer = await api.http.get(f"/v1/budget-cycles/{year}/results", params={"kind": "metro"})
        if answer.status_code == 200:
            results = answer.json()
            break
    assert results["matches_recorded_tally"] is True
    # 3 online + 40 mVoting + 4 paper + 2 on-site; 10 of them budget-school graduates
    assert results["ballots"] == {"general": 39, "budget_school": 10}

    # after the close nothing more is taken
    late = f"person_id,project_ids\nlate-{year},{a}\n"
    closed = expect_problem(
        await _send(api, year, paper, late, "text/csv", channel="paper", kind="metro"), 409
    )
    assert "assembly" in closed["detail"]

    listing = expect(
        await api.http.get(_batch_path(year), params={"kind": "metro"}, headers=auditor), 200
    )
    recount = listing["kinds"]["metro"]["recount"]
    assert set(recount) == {"online", "mvoting", "paper", "onsite"}
    assert recount["online"]["approvals"] == {a: {"general": 3}}
    assert recount["mvoting"]["approvals"] == {
        a: {"general": 30, "budget_school": 10},
        c: {"general": 30, "budget_school": 10},
    }
    assert recount["paper"]["approvals"] == {b: {"general": 4}, c: {"general": 4}}
    assert recount["onsite"]["ballots"] == {"general": 2}
    summed: dict[str, int] = {}
    for tally in recount.values():
        for group, n in tally["ballots"].items():
            summed[group] = summed.get(group, 0) + n
    assert summed == results["ballots"]
    assert len({tally["digest"] for tally in recount.values()}) == 4

    # participation apart from choice: no channel beside a person, every row mixed
    box = budget_box_id(year, "metro")
    columns = await _rows(
        system,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'ballot_participations'",
    )
    assert {str(name) for (name,) in columns} == {"box_id", "person_id"}
    await _assert_mixed(system, box, 49)
