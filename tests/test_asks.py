""" "Seoul asks": request lead time and opinion period on both sides, participation window,
tally sent to the department, the 60-day review with escalation, publication, moderation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from models.deliberation import AskState
from models.deliberation_tables import Post
from models.tables import Notification
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem
from workflows.ask import AskWorkflow

DEPARTMENT = "animal-welfare"
#: A margin for the time an HTTP round trip takes on the (running) server clock.
MARGIN = timedelta(minutes=1)


async def ask_body(
    api: Api, *, lead: timedelta, period: timedelta, **fields: Any
) -> dict[str, Any]:
    opens_at = datetime.fromisoformat(await api.now()) + lead
    return {
        "title": "Should stray cats in redevelopment areas be relocated?",
        "body": "Neutral material: costs, shelters, the views of residents and of carers.",
        "opens_at": opens_at.isoformat(),
        "closes_at": (opens_at + period).isoformat(),
        **fields,
    }


async def create_ask(
    api: Api,
    department: str = DEPARTMENT,
    *,
    lead: timedelta = timedelta(days=14) + MARGIN,
    period: timedelta = timedelta(days=30),
) -> dict[str, Any]:
    caseworker = await api.official("caseworker", department)
    body = await ask_body(api, lead=lead, period=period)
    return dict(expect(await api.post("/v1/asks", caseworker, body), 201))


async def get_ask(api: Api, ask_id: str) -> dict[str, Any]:
    return dict(expect(await api.http.get(f"/v1/asks/{ask_id}"), 200))


async def wait_ask(api: Api, ask_id: str, status: str, *, within: float = 15.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        ask = await get_ask(api, ask_id)
        if ask["status"] == status:
            return ask
        assert loop.time() < deadline, f"the ask never became {status}: {ask}"
        await asyncio.sleep(0.05)


async def events(api: Api, ask_id: str) -> list[str]:
    body = expect(await api.http.get(f"/v1/asks/{ask_id}/timeline"), 200)
    return [t["event"] for t in body["items"]]


async def ask_state(system: Stack, workflow_id: str) -> AskState:
    state: AskState = await system.temporal.get_workflow_handle(workflow_id).query(
        AskWorkflow.state
    )
    return state


async def notices(system: Stack, ask_id: str) -> list[tuple[str, str]]:
    async with system.sessions() as session:
        rows = await session.execute(
            select(col(Notification.kind), col(Notification.recipient))
            .where(col(Notification.case_id) == ask_id)
            .order_by(col(Notification.id))
        )
        return [(r.kind, r.recipient) for r in rows]


def review_body(summary: str = "Relocation with shelters") -> dict[str, str]:
    return {"summary": summary, "actions": "Budget 260 million KRW for shelters next year."}


async def test_request_lead_time_and_opinion_period_both_sides(api: Api, system: Stack) -> None:
    caseworker = await api.official("caseworker", DEPARTMENT)
    day = timedelta(days=1)
    for lead in (13 * day, 14 * day - MARGIN):
        body = await ask_body(api, lead=lead, period=30 * day)
        refused = expect_problem(
            await api.post("/v1/asks", caseworker, body), 422, field="opens_at"
        )
        assert "ask.request_lead_days" in refused["detail"]
    for period in (29 * day, 30 * day - timedelta(seconds=1)):
        body = await ask_body(api, lead=14 * day + MARGIN, period=period)
        refused = expect_problem(
            await api.post("/v1/asks", caseworker, body), 422, field="closes_at"
        )
        assert "ask.opinion_days" in refused["detail"]
    naive = await ask_body(api, lead=20 * day, period=30 * day)
    naive["opens_at"] = naive["opens_at"][:19]  # no offset
    expect_problem(await api.post("/v1/asks", caseworker, naive), 422, field="opens_at")
    fine = await ask_body(api, lead=14 * day + MARGIN, period=30 * day)
    expect_problem(await api.post("/v1/asks", await api.citizen(), fine), 403)
    expect_problem(
        await api.post("/v1/asks", caseworker, {**fine, "rulebook": "seoul-2018"}),
        422,
        field="rulebook",
    )
    assert expect(await api.http.get("/v1/asks"), 200)["items"] == []

    # Exactly 14 days ahead (plus the round trip) and exactly 30 days long: accepted, once.
    keyed = {**caseworker, "Idempotency-Key": "ask-1"}
    ask = expect(await api.post("/v1/asks", keyed, fine), 201)
    again = expect(await api.post("/v1/asks", keyed, fine), 201)
    assert again["id"] == ask["id"]
    assert (ask["status"], ask["department"], ask["rulebook"]) == (
        "scheduled",
        DEPARTMENT,
        "seoul-2020",
    )
    assert ask["for"] is None and ask["participants"] is None
    opens_at = datetime.fromisoformat(ask["opens_at"])
    assert datetime.fromisoformat(ask["closes_at"]) - opens_at == timedelta(days=30)
    assert opens_at.utcoffset() == timedelta(hours=9)
    listed = expect(await api.http.get("/v1/asks", params={"department": DEPARTMENT}), 200)
    assert [a["id"] for a in listed["items"]] == [ask["id"]]
    assert expect(await api.http.get("/v1/asks", params={"status": "open"}), 200)["items"] == []
    expect_problem(await api.http.get("/v1/asks", params={"status": "closed"}), 422)
    expect_problem(await api.http.get("/v1/asks/nope"), 404)

    # The review waits for the results: before dept_review it is a conflict; another
    # department does not see the case at all; nothing is written either way.
    aid = ask["id"]
    await eventually(lambda: _has_event(api, aid, "requested"))
    expect_problem(await api.post(f"/v1/asks/{aid}/review", caseworker, review_body()), 409)
    other = await api.official("caseworker", "transport")
    expect_problem(await api.post(f"/v1/asks/{aid}/review", other, review_body()), 404)
    admin = await api.official("admin")
    expect_problem(await api.post(f"/v1/asks/{aid}/review", admin, review_body()), 403)
    assert await events(api, aid) == ["requested"]
    assert (await get_ask(api, aid))["status"] == "scheduled"


async def _has_event(api: Api, ask_id: str, event: str) -> bool:
    return event in await events(api, ask_id)


async def test_ask_from_request_to_a_review_published_late(
    api: Api, system: Stack, record_history: Any
) -> None:
    ask = await create_ask(api)
    aid, wid = ask["id"], ask["workflow_id"]
    path = f"/v1/asks/{aid}/participations"
    first = await api.citizen()
    early = expect_problem(await api.post(path, first, {"position": "for"}), 409)
    assert "not open yet" in early["detail"]

    await api.advance(days=14, seconds=MARGIN.total_seconds() + 1)
    opened = await wait_ask(api, aid, "open")
    assert opened["due_at"] is None
    taken = expect(await api.post(path, first, {"position": "for", "opinion": "Relocate"}), 201)
    assert taken["post_id"] is not None
    expect_problem(await api.post(path, first, {"position": "against"}), 409)
    expect_problem(await api.post(path, await api.citizen(), {}), 422, field="position")
    expect_problem(
        await api.post(path, await api.citizen(public_official=True), {"position": "for"}), 403
    )
    expect(await api.post(path, await api.citizen(), {"position": "against"}), 201)
    expect(await api.post(path, await api.citizen(), {"position": "other", "opinion": "?"}), 201)

    await api.advance(days=29, hours=23)
    assert (await get_ask(api, aid))["status"] == "open"
    expect(await api.post(path, await api.citizen(), {"position": "for"}), 201)  # last hour
    await api.advance(hours=1, seconds=1)
    reviewing = await wait_ask(api, aid, "dept_review")
    assert (
        reviewing["participants"],
        reviewing["for"],
        reviewing["against"],
        reviewing["other"],
        reviewing["opinions"],
    ) == (4, 2, 1, 1, 2)
    assert reviewing["digest"].startswith("sha256:") and reviewing["overdue"] is False
    late = expect_problem(await api.post(path, await api.citizen(), {"position": "for"}), 409)
    assert "closed" in late["detail"]
    timeline = expect(await api.http.get(f"/v1/asks/{aid}/timeline"), 200)["items"]
    assert [t["event"] for t in timeline[-2:]] == ["closed", "results_sent"]
    closed_at = datetime.fromisoformat(timeline[-2]["at"])
    assert datetime.fromisoformat(reviewing["due_at"]) - closed_at == timedelta(days=60)
    assert reviewing["digest"] in timeline[-2]["note"]

    async def results_sent() -> bool:
        return await notices(system, aid) == [("ask_results", f"department:{DEPARTMENT}")]

    await eventually(results_sent)

    await api.advance(days=59)
    state = await ask_state(system, wid)
    assert (state.status.value, state.overdue) == ("dept_review", False)
    assert (await get_ask(api, aid))["overdue"] is False
    assert [k for k, _ in await notices(system, aid)] == ["ask_results"]

    await api.advance(days=2)  # day 61
    await eventually(lambda: _overdue(api, aid))
    assert (await get_ask(api, aid))["status"] == "dept_review"  # escalated, never decided

    async def escalated() -> bool:
        return len(await notices(system, aid)) == 3

    await eventually(escalated)
    assert (await notices(system, aid))[1:] == [
        ("deadline_missed", f"department:{DEPARTMENT}"),
        ("deadline_missed", "operations"),
    ]
    await api.advance(days=3)  # escalation.reminder_days

    async def reminded() -> bool:
        return [k for k, _ in await notices(system, aid)].count("reminder_sent") == 2

    await eventually(reminded)

    caseworker = await api.official("caseworker", DEPARTMENT)
    other = await api.official("caseworker", "transport")
    review_path = f"/v1/asks/{aid}/review"
    expect_problem(await api.post(review_path, other, review_body()), 404)
    expect_problem(await api.post(review_path, caseworker, {"actions": "x"}), 422, field="summary")
    expect_problem(
        await api.post(review_path, caseworker, {"summary": "  ", "actions": "x"}),
        422,
        field="summary",
    )
    published = expect(await api.post(review_path, caseworker, review_body()), 200)
    assert published["status"] == "published"
    assert published["review_summary"] == "Relocation with shelters"
    assert published["review_actions"].startswith("Budget 260 million")
    assert published["overdue"] is False and published["due_at"] is None
    assert await get_ask(api, aid) == published
    expect_problem(await api.post(review_path, caseworker, review_body("again")), 409)
    timeline = expect(await api.http.get(f"/v1/asks/{aid}/timeline"), 200)["items"]
    assert [t["event"] for t in timeline] == [
        "requested",
        "opened",
        "closed",
        "results_sent",
        "deadline_missed",
        "reminder_sent",
        "review_published",
    ]
    assert timeline[-1]["note"].endswith("(answered after the deadline)")
    assert timeline[-1]["actor_role"] == "caseworker"
    await system.temporal.get_workflow_handle(wid).result()
    await record_history("ask_published_late", wid)


async def _overdue(api: Api, ask_id: str) -> bool:
    return bool((await get_ask(api, ask_id))["overdue"])


async def test_moderation_of_an_ask_comment_hides_but_keeps_it(api: Api, system: Stack) -> None:
    ask = await create_ask(api)
    aid = ask["id"]
    await api.advance(days=14, seconds=MARGIN.total_seconds() + 1)
    await wait_ask(api, aid, "open")
    post_id = expect(
        await api.post(
            f"/v1/asks/{aid}/participations",
            await api.citizen(),
            {"position": "against", "opinion": "Hateful words"},
        ),
        201,
    )["post_id"]
    reporter = await api.citizen()
    report = expect(
        await api.post(f"/v1/asks/{aid}/posts/{post_id}/reports", reporter, {"reason": "hate"}),
        201,
    )
    assert report["reports"] == 1
    posts = expect(await api.http.get(f"/v1/asks/{aid}/posts"), 200)["items"]
    assert [(p["id"], p["reports"]) for p in posts] == [(post_id, 1)]
    moderation = f"/v1/asks/{aid}/posts/{post_id}/moderation"
    hide = {"action": "hide", "reason": "criterion 3: hate speech"}
    expect_problem(await api.post(moderation, await api.citizen(), hide), 403)
    expect(await api.post(moderation, await api.official("admin"), hide), 200)
    assert expect(await api.http.get(f"/v1/asks/{aid}/posts"), 200)["items"] == []
    async with system.sessions() as session:
        kept = await session.get(Post, post_id)
        assert kept is not None and kept.hidden and kept.body == "Hateful words"
    # A post of one case cannot be moderated through another.
    other = await create_ask(api)
    expect_problem(
        await api.post(
            f"/v1/asks/{other['id']}/posts/{post_id}/moderation", await api.official("admin"), hide
        ),
        404,
    )
