"""Open data (issue 10) on the real stack: the index and both spellings of a format, the errors,
no personal data and no receipt in any dataset in either format, no tally of a vote before it
closes and the recounted tally after, and the CSV and the JSON of a dataset agreeing."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from api.me import MAX_TIMELINE
from models.ballot_box import budget_box_id, count_box, count_proposal_ballots
from models.open_data import BATCH, MASK
from models.tables import TimelineRow
from tests.conftest import Stack
from tests.helpers import Api, auth, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.test_budget_vote import walk_to_ballot
from tests.test_forums import create_forum, wait_forum
from tests.test_sortition import commitment_of, create_pool, pool_members, synthetic_pool, this_year

DATASETS = {
    "cases",
    "timelines",
    "proposal_votes",
    "budget_votes",
    "opinion_results",
    "sortition_draws",
    "sortition_strata",
}
#: Person ids the helpers give: citizens `person-N`, officials `<role>-<dept|x>-N`.
HELPER_PERSON_IDS = re.compile(
    r"\bperson-\d+\b|\b(?:admin|caseworker|committee|auditor)-[\w]+-\d+\b"
)


async def index(api: Api) -> dict[str, Any]:
    return dict(expect(await api.http.get("/v1/open-data"), 200))


async def json_rows(api: Api, name: str) -> list[dict[str, Any]]:
    body = expect(await api.http.get(f"/v1/open-data/{name}.json"), 200)
    assert body["dataset"] == name
    return list(body["items"])


async def every_export(api: Api) -> dict[str, str]:
    """The text of every dataset in both formats, fetched by the index's URLs."""
    texts = {}
    for dataset in (await index(api))["datasets"]:
        for url in (dataset["json_url"], dataset["csv_url"]):
            response = await api.http.get(url)
            assert response.status_code == 200, (url, response.text)
            texts[url] = response.text
    return texts


def assert_absent(texts: dict[str, str], secrets: set[str]) -> None:
    leaked = sorted(
        (secret, url) for url, text in texts.items() for secret in secrets if secret in text
    )
    assert not leaked, f"found in the open data: {leaked[:5]}"
    helper_ids = sorted({m for text in texts.values() for m in HELPER_PERSON_IDS.findall(text)})
    assert not helper_ids, f"person ids in the open data: {helper_ids[:5]}"


async def test_index_formats_and_errors(api: Api) -> None:
    listing = await index(api)
    assert {d["name"] for d in listing["datasets"]} == DATASETS
    assert listing["formats"] == ["json", "csv"]
    for dataset in listing["datasets"]:
        assert dataset["description"] and dataset["columns"]
        assert dataset["json_url"].endswith(f"/v1/open-data/{dataset['name']}.json")
        assert dataset["csv_url"].endswith(f"/v1/open-data/{dataset['name']}.csv")

    as_json = await api.http.get("/v1/open-data/cases.json")
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == {"dataset": "cases", "columns": as_json.json()["columns"], "items": []}
    bare = await api.http.get("/v1/open-data/cases")
    assert bare.json() == as_json.json()
    assert (await api.http.get("/v1/open-data/cases?format=json")).json() == as_json.json()
    as_csv = await api.http.get("/v1/open-data/cases.csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert (await api.http.get("/v1/open-data/cases?format=csv")).text == as_csv.text
    assert as_csv.text == ",".join(as_json.json()["columns"]) + "\r\n"
    # no token needed, and a token changes nothing
    citizen = await api.citizen()
    assert (await api.http.get("/v1/open-data/cases.csv", headers=citizen)).text == as_csv.text

    expect_problem(await api.http.get("/v1/open-data/ballots.json"), 404, field="path.dataset")
    expect_problem(await api.http.get("/v1/open-data/person_ids"), 404, field="path.dataset")
    expect_problem(await api.http.get("/v1/open-data/cases.xml"), 422, field="path.dataset")
    expect_problem(
        await api.http.get("/v1/open-data/cases", params={"format": "xlsx"}),
        422,
        field="query.format",
    )
    expect_problem(
        await api.http.get("/v1/open-data/cases.csv", params={"format": "json"}),
        422,
        field="query.format",
    )
    expect_problem(await api.http.get("/v1/open-data/" + "x" * 101), 422, field="path.dataset")


async def test_no_personal_data_and_no_receipt_in_any_export(api: Api, system: Stack) -> None:
    secrets = {"citizen-secret", "citizen-secret-7", "citizen-secret-voter"}
    secrets |= {"citizen-secret-forum", "official-secret-admin", "kim.secret@example.com"}
    secrets |= {"010-9876-5432", "Secret Commenter Kim", "the body is private"}
    proposer = await api.citizen("citizen-secret-7")
    title = "Benches on Jong-ro: write kim.secret@example.com or call 010-9876-5432"
    mine = await api.propose(proposer, title=title, body="the body is private")
    for n in range(3):
        supporter = await api.citizen(f"citizen-secret-supporter-{n}")
        expect(await api.post(f"/v1/proposals/{mine['id']}/supports", supporter), 201)
    comment = {"body": "Secret Commenter Kim, 010-9876-5432"}
    expect(await api.post(f"/v1/proposals/{mine['id']}/comments", proposer, comment), 201)

    voting = await api.to_vote(proposer=await api.citizen("citizen-secret-7-b"))
    receipts = set()
    for n, choice in enumerate(["yes", "yes", "no"]):
        voter = await api.citizen(f"citizen-secret-voter-{n}")
        receipts.add(expect(await api.vote(voting["id"], choice, voter), 201)["receipt"])

    forum = await create_forum(api, title="Night buses")
    opinion = {"position": "for", "opinion": "Secret Commenter Kim, kim.secret@example.com"}
    forum_citizen = await api.citizen("citizen-secret-forum")
    expect(await api.post(f"/v1/forums/{forum['id']}/participations", forum_citizen, opinion), 201)

    admin = auth(await api.token("official-secret-admin", "admin"))
    year = await this_year(api)
    pool = pool_members(synthetic_pool(60, prefix="citizen-secret-pool-"), year)
    await create_pool(api, admin, "open-data-pool", pool)
    seed = "open data draw"
    body = {
        "purpose": "agenda_selection_group",
        "pool": "open-data-pool",
        "seed_commitment": commitment_of(seed),
    }
    draw = expect(await api.post("/v1/sortitions", admin, body), 201)
    expect(await api.post(f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": seed}), 200)

    await api.advance(days=30, seconds=1)
    await api.wait_status(voting["id"], "not_passed")
    await wait_forum(api, forum["id"], "closed")

    texts = await every_export(api)
    assert_absent(texts, secrets | receipts)
    cases = {c["case_id"]: c for c in await json_rows(api, "cases")}
    # the title is kept, the ways to reach its writer are masked
    assert cases[mine["id"]]["title"] == f"Benches on Jong-ro: write {MASK} or call {MASK}"
    assert cases[mine["id"]]["support_count"] == 3
    assert {c["kind"] for c in cases.values()} == {"proposal", "forum"}
    [tally] = await json_rows(api, "proposal_votes")
    assert (tally["proposal_id"], tally["yes"], tally["no"]) == (voting["id"], 2, 1)
    [result] = await json_rows(api, "opinion_results")
    assert (result["case_id"], result["participants"], result["for_count"]) == (forum["id"], 1, 1)
    [published] = await json_rows(api, "sortition_draws")
    assert published["draw_id"] == draw["id"] and published["seed"] == seed
    assert published["pool_size"] == len(pool) and published["members_count"] == 20
    strata = [s for s in await json_rows(api, "sortition_strata") if s["draw_id"] == draw["id"]]
    assert sum(s["drawn"] for s in strata) == 20 and sum(s["quota"] for s in strata) == 20
    timeline = [t for t in await json_rows(api, "timelines") if t["case_id"] == voting["id"]]
    assert [t["seq"] for t in timeline] == [t["seq"] for t in await api.timeline(voting["id"])]


async def test_a_proposal_tally_only_after_the_close_and_equal_to_the_recount(
    api: Api, system: Stack
) -> None:
    voting = await api.to_vote()
    pid = voting["id"]
    for choice in ["yes"] * 4 + ["no"] * 3:
        expect(await api.vote(pid, choice), 201)
    assert await json_rows(api, "proposal_votes") == []
    csv_text = (await api.http.get("/v1/open-data/proposal_votes.csv")).text
    assert csv_text.count("\r\n") == 1  # the header only
    assert [c["status"] for c in await json_rows(api, "cases")] == ["voting"]

    await api.advance(days=30, seconds=1)
    closed = await api.wait_status(pid, "not_passed")
    [row] = await json_rows(api, "proposal_votes")
    async with system.sessions() as session:
        recount = await count_proposal_ballots(session, pid)
    assert (row["yes"], row["no"], row["turnout"], row["digest"]) == (
        recount.yes,
        recount.no,
        recount.turnout,
        recount.digest,
    )
    assert (row["yes"], row["no"], row["passed"]) == (4, 3, False)
    assert row["quorum"] == closed["vote"]["quorum"] and row["digest"] == closed["vote"]["digest"]


async def test_a_budget_box_tally_only_after_the_close_with_the_recorded_digest(
    api: Api, system: Stack
) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "drop_ratio": 0.3}), 201)
    projects = await walk_to_ballot(api, year)
    ids = {name: p["id"] for name, p in projects.items()}
    await advance_to(api, seoul(year, 8, 1) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "vote")
    ballots = [(False, ["A", "B"]), (False, ["A"]), (True, ["C"]), (True, ["A", "C"])]
    receipts = set()
    for budget_school, names in ballots:
        who = await api.citizen(budget_school=budget_school)
        body = {"kind": "metro", "project_ids": [ids[n] for n in names]}
        answer = await api.post(f"/v1/budget-cycles/{year}/ballots", who, body)
        receipts.add(expect(answer, 201)["receipt"])
    assert await json_rows(api, "budget_votes") == []

    await advance_to(api, seoul(year, 8, 21) + timedelta(seconds=1))
    await wait_phase(api, year, "metro", "assembly")
    for _ in range(100):
        answer = await api.http.get(f"/v1/budget-cycles/{year}/results", params={"kind": "metro"})
        if answer.status_code == 200:
            break
        await asyncio.sleep(0.1)
    results = expect(answer, 200)
    rows = await json_rows(api, "budget_votes")
    assert {r["box_id"] for r in rows} == {budget_box_id(year, "metro")}
    assert len(rows) == 3 * 2  # three projects by two voter groups
    async with system.sessions() as session:
        recount = await count_box(session, budget_box_id(year, "metro"))
    for row in rows:
        assert row["digest"] == row["recorded_digest"] == recount.digest == results["digest"]
        assert row["approvals"] == recount.approvals.get(row["project_id"], {}).get(
            row["voter_group"], 0
        )
        assert row["group_ballots"] == results["ballots"][row["voter_group"]]
    approvals = {(r["project_id"], r["voter_group"]): r["approvals"] for r in rows}
    assert approvals == {
        (ids["A"], "general"): 2,
        (ids["A"], "budget_school"): 1,
        (ids["B"], "general"): 1,
        (ids["B"], "budget_school"): 0,
        (ids["C"], "general"): 0,
        (ids["C"], "budget_school"): 2,
    }
    kinds = {c["kind"] for c in await json_rows(api, "cases")}
    assert {"budget_cycle", "budget_project"} <= kinds
    assert_absent(await every_export(api), receipts)


def csv_cell(value: Any) -> str:
    """A JSON value as the CSV spells it (the rule the export's OpenAPI description states)."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return str(value)


async def test_csv_and_json_of_every_dataset_agree(api: Api, system: Stack) -> None:
    proposer = await api.citizen()
    formula = await api.propose(proposer, title='=HYPERLINK("x") benches')
    # more rows than one batch of the cursor, so the stream spans batches
    async with system.sessions() as session, session.begin():
        for n in range(2 * BATCH + 7):
            at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
            row = TimelineRow(
                case_id=formula["id"],
                seq=100_000 + n,
                at=at,
                stage="bulk",
                event="bulk",
                actor_role="system",
                note=f'note {n}, "quoted", with a\nnew line',
            )
            session.add(row)
    voting = await api.to_vote()
    expect(await api.vote(voting["id"], "yes"), 201)
    await api.advance(days=30, seconds=1)
    await api.wait_status(voting["id"], "not_passed")
    checked = 0
    for name in sorted(DATASETS):
        body = expect(await api.http.get(f"/v1/open-data/{name}.json"), 200)
        text = (await api.http.get(f"/v1/open-data/{name}", params={"format": "csv"})).text
        header, *lines = list(csv.reader(io.StringIO(text)))
        assert header == body["columns"]
        assert lines == [[csv_cell(item[c]) for c in header] for item in body["items"]]
        checked += len(lines)
    assert checked > 2 * BATCH + 7
    timelines = await json_rows(api, "timelines")
    assert len([t for t in timelines if t["event"] == "bulk"]) == 2 * BATCH + 7
    # the proposer's own page caps a timeline and says so
    page = expect(await api.http.get("/v1/me/activity", headers=proposer), 200)
    [case] = [i for i in page["items"] if i["id"] == formula["id"]]
    assert len(case["timeline"]) == MAX_TIMELINE and case["timeline_truncated"] is True
    cases = {c["case_id"]: c for c in await json_rows(api, "cases")}
    assert cases[formula["id"]]["title"] == '=HYPERLINK("x") benches'
    assert "'=HYPERLINK" in (await api.http.get("/v1/open-data/cases.csv")).text
