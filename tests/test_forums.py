"""Public forums: participation counted in SQL, eligibility both sides, moderation, hand-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from models.calendar import SEOUL, deliberation_year
from models.deliberation import ForumKind, OpinionTally, Position
from models.deliberation_tables import ModerationAction, Post
from models.opinion_box import participate
from tests.conftest import Stack
from tests.helpers import Api, expect, expect_problem
from workflows.forum import eligible_for_deliberation


async def create_forum(api: Api, kind: str = "for_against", **fields: Any) -> dict[str, Any]:
    admin = await api.official("admin")
    body = {
        "title": "Support for infertility treatment",
        "body": "Should the city pay?",
        "kind": kind,
    }
    return dict(expect(await api.post("/v1/forums", admin, {**body, **fields}), 201))


async def get_forum(api: Api, forum_id: str) -> dict[str, Any]:
    return dict(expect(await api.http.get(f"/v1/forums/{forum_id}"), 200))


async def wait_forum(api: Api, forum_id: str, status: str) -> dict[str, Any]:
    import asyncio

    for _ in range(300):
        forum = await get_forum(api, forum_id)
        if forum["status"] == status and (status != "closed" or forum["participants"] is not None):
            if forum["eligible_for_deliberation"] is not True or forum["budget_year"] is not None:
                return forum
        await asyncio.sleep(0.05)
    raise AssertionError(f"forum never reached {status}: {forum}")


async def bulk_participate(
    system: Stack, forum_id: str, *, for_: int, against: int, other: int = 0
) -> None:
    """Participations through the same code the API uses, in bulk (thresholds are 5,000)."""
    positions = [Position.FOR] * for_ + [Position.AGAINST] * against + [Position.OTHER] * other
    async with system.sessions() as session, session.begin():
        for index, position in enumerate(positions):
            await participate(
                session,
                case_id=forum_id,
                person_id=f"bulk-{index}",
                position=position,
                opinion=None,
                now=datetime.now(UTC),
            )


@pytest.mark.parametrize(
    ("closes", "year", "carried"),
    [
        (
            datetime(2027, 2, 28, 23, 59, tzinfo=SEOUL),
            2027,
            False,
        ),  # before the window: this year's
        (datetime(2027, 3, 1, 0, 0, tzinfo=SEOUL), 2027, False),
        (datetime(2027, 8, 31, 23, 59, 59, tzinfo=SEOUL), 2027, False),  # last moment of August
        (datetime(2027, 9, 1, 0, 0, tzinfo=SEOUL), 2028, True),  # carried over
        (datetime(2027, 8, 31, 15, 0, tzinfo=UTC), 2028, True),  # 1 Sept 00:00 in Seoul
    ],
)
def test_budget_year_of_a_closing_forum(closes: datetime, year: int, carried: bool) -> None:
    assert deliberation_year(closes, "03-01", "08-31") == (year, carried)


@pytest.mark.parametrize(
    ("kind", "participants", "for_", "eligible"),
    [
        (ForumKind.FOR_AGAINST, 4_999, 4_999, False),
        (ForumKind.FOR_AGAINST, 5_000, 2_501, True),
        (ForumKind.FOR_AGAINST, 5_000, 2_500, False),  # a tie is no majority
        (ForumKind.DISCUSSION, 5_000, 0, True),
        (ForumKind.DISCUSSION, 4_999, 0, False),
    ],
)
def test_eligibility_for_deliberation(
    kind: ForumKind, participants: int, for_: int, eligible: bool
) -> None:
    tally = OpinionTally(participants, for_, participants - for_, 0, 0, "sha256:x")
    assert eligible_for_deliberation(kind, tally, 5_000) is eligible


async def test_forum_of_5000_with_a_majority_goes_to_next_years_council(
    api: Api, system: Stack, record_history: Any
) -> None:
    forum = await create_forum(api)
    assert forum["status"] == "open" and forum["participants"] is None
    assert forum["rulebook"] == "seoul-2020"
    fid = forum["id"]
    citizen = await api.citizen()
    first = expect(
        await api.post(
            f"/v1/forums/{fid}/participations", citizen, {"position": "for", "opinion": "Yes"}
        ),
        201,
    )
    assert first["post_id"] is not None
    expect_problem(
        await api.post(f"/v1/forums/{fid}/participations", citizen, {"position": "against"}), 409
    )
    expect_problem(
        await api.post(f"/v1/forums/{fid}/participations", await api.citizen(), {}),
        422,
        field="position",
    )
    official = await api.citizen(public_official=True)
    expect_problem(
        await api.post(f"/v1/forums/{fid}/participations", official, {"position": "for"}), 403
    )
    await bulk_participate(system, fid, for_=2_600, against=2_399)  # 5,000 with the first
    await api.advance(days=29)
    assert (await get_forum(api, fid))["status"] == "open"
    await api.advance(days=1, seconds=1)
    closed = await wait_forum(api, fid, "closed")
    assert (closed["participants"], closed["for"], closed["against"], closed["other"]) == (
        5_000,
        2_601,
        2_399,
        0,
    )
    assert closed["opinions"] == 1 and closed["digest"].startswith("sha256:")
    assert closed["eligible_for_deliberation"] is True
    # Opened 2026-11 (the test server's clock starts at the real date): closes after August.
    closes_at = datetime.fromisoformat(closed["closes_at"])
    expected_year, carried = deliberation_year(closes_at, "03-01", "08-31")
    assert (closed["budget_year"], closed["carried_over"]) == (expected_year, carried)
    listed = expect(await api.http.get("/v1/forums", params={"budget_year": expected_year}), 200)
    assert [f["id"] for f in listed["items"]] == [fid]
    late = await api.post(
        f"/v1/forums/{fid}/participations", await api.citizen(), {"position": "for"}
    )
    assert "closed" in expect_problem(late, 409)["detail"]
    events = [
        t["event"] for t in expect(await api.http.get(f"/v1/forums/{fid}/timeline"), 200)["items"]
    ]
    assert events == ["opened", "closed", "handed_to_budget_year"]
    await record_history("forum_eligible_handed_off", closed["workflow_id"])


async def test_forum_of_4999_is_not_eligible_and_goes_nowhere(api: Api, system: Stack) -> None:
    forum = await create_forum(api)
    await bulk_participate(system, forum["id"], for_=4_999, against=0)
    await api.advance(days=30, seconds=1)
    closed = await wait_forum(api, forum["id"], "closed")
    assert (closed["participants"], closed["eligible_for_deliberation"]) == (4_999, False)
    assert closed["budget_year"] is None


async def test_a_tie_is_not_a_majority(api: Api, system: Stack) -> None:
    forum = await create_forum(api)
    await bulk_participate(system, forum["id"], for_=2_500, against=2_495, other=5)
    await api.advance(days=30, seconds=1)
    closed = await wait_forum(api, forum["id"], "closed")
    assert (closed["participants"], closed["eligible_for_deliberation"]) == (5_000, False)


async def test_forum_closing_inside_the_window_goes_to_that_years_council(
    api: Api, system: Stack
) -> None:
    now = datetime.fromisoformat(await api.now())
    target_open = datetime(now.year + 1, 7, 1, 12, 0, tzinfo=SEOUL)  # closes 31 July
    await api.advance(seconds=(target_open - now).total_seconds())
    forum = await create_forum(api, kind="discussion")
    await bulk_participate(system, forum["id"], for_=0, against=0)
    async with system.sessions() as session, session.begin():
        for index in range(5_000):
            await participate(
                session,
                case_id=forum["id"],
                person_id=f"speaker-{index}",
                position=None,
                opinion=None,
                now=datetime.now(UTC),
            )
    await api.advance(days=30, seconds=1)
    closed = await wait_forum(api, forum["id"], "closed")
    assert closed["eligible_for_deliberation"] is True
    assert (closed["budget_year"], closed["carried_over"]) == (now.year + 1, False)


async def test_moderation_hides_and_restores_but_never_deletes(api: Api, system: Stack) -> None:
    forum = await create_forum(api, kind="discussion")
    fid = forum["id"]
    expect_problem(
        await api.post(
            f"/v1/forums/{fid}/participations", await api.citizen(), {"position": "for"}
        ),
        422,
        field="position",
    )
    author = await api.citizen()
    post_id = expect(
        await api.post(f"/v1/forums/{fid}/participations", author, {"opinion": "Hateful words"}),
        201,
    )["post_id"]
    reporter = await api.citizen()
    report = expect(
        await api.post(f"/v1/forums/{fid}/posts/{post_id}/reports", reporter, {"reason": "hate"}),
        201,
    )
    assert report["reports"] == 1
    expect_problem(
        await api.post(f"/v1/forums/{fid}/posts/{post_id}/reports", reporter, {"reason": "again"}),
        409,
    )
    posts = expect(await api.http.get(f"/v1/forums/{fid}/posts"), 200)["items"]
    assert [(p["id"], p["reports"]) for p in posts] == [(post_id, 1)]
    admin = await api.official("admin")
    path = f"/v1/forums/{fid}/posts/{post_id}/moderation"
    expect_problem(await api.post(path, admin, {"action": "hide"}), 422, field="reason")
    expect_problem(
        await api.post(path, await api.citizen(), {"action": "hide", "reason": "x"}), 403
    )
    expect(
        await api.post(path, admin, {"action": "hide", "reason": "criterion 3: hate speech"}), 200
    )
    assert expect(await api.http.get(f"/v1/forums/{fid}/posts"), 200)["items"] == []
    expect_problem(await api.post(path, admin, {"action": "hide", "reason": "again"}), 409)
    async with system.sessions() as session:
        kept = await session.get(Post, post_id)
        assert kept is not None and kept.hidden and kept.body == "Hateful words"
    expect(await api.post(path, admin, {"action": "restore", "reason": "appeal upheld"}), 200)
    assert len(expect(await api.http.get(f"/v1/forums/{fid}/posts"), 200)["items"]) == 1
    async with system.sessions() as session:
        actions = (
            await session.exec(
                select(ModerationAction.action, ModerationAction.reason)
                .where(col(ModerationAction.post_id) == post_id)
                .order_by(col(ModerationAction.id))
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("hide", "criterion 3: hate speech"),
        ("restore", "appeal upheld"),
    ]
    other_forum = await create_forum(api)
    expect_problem(
        await api.post(
            f"/v1/forums/{other_forum['id']}/posts/{post_id}/reports", reporter, {"reason": "x"}
        ),
        404,
    )


async def test_forum_creation_is_admin_only_and_validated(api: Api, system: Stack) -> None:
    citizen = await api.citizen()
    body = {"title": "t", "body": "b", "kind": "for_against"}
    expect_problem(await api.post("/v1/forums", citizen, body), 403)
    admin = await api.official("admin")
    expect_problem(await api.post("/v1/forums", admin, {**body, "kind": "vote"}), 422, field="kind")
    expect_problem(
        await api.post("/v1/forums", admin, {**body, "rulebook": "seoul-2018"}),
        422,
        field="rulebook",
    )
    assert expect(await api.http.get("/v1/forums"), 200)["items"] == []
    expect_problem(await api.http.get("/v1/forums/nope"), 404)
    _ = timedelta
