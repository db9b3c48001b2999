"""Deadlines: both sides of each boundary, with escalation that never decides by itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import col

from models.proposal import ProposalState
from models.tables import Notification
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect
from workflows.proposal import ProposalWorkflow


async def workflow_state(system: Stack, workflow_id: str) -> ProposalState:
    handle = system.temporal.get_workflow_handle(workflow_id)
    state: ProposalState = await handle.query(ProposalWorkflow.state)
    return state


async def notices(system: Stack, proposal_id: str) -> list[tuple[str, str]]:
    async with system.sessions() as session:
        rows = await session.execute(
            select(col(Notification.kind), col(Notification.recipient))
            .where(col(Notification.case_id) == proposal_id)
            .order_by(col(Notification.id))
        )
        return [(r.kind, r.recipient) for r in rows]


async def test_department_review_day_19_on_time_day_21_overdue_and_reminded(
    api: Api, system: Stack, record_history: object
) -> None:
    pid = (await api.to_review())["id"]
    assigned = await api.assign(pid, "environment")
    due_at = datetime.fromisoformat(assigned["due_at"])
    assigned_at = datetime.fromisoformat((await api.timeline(pid))[-1]["at"])
    assert (due_at - assigned_at).days == 20

    await api.advance(days=19)
    state = await workflow_state(system, assigned["workflow_id"])
    assert (state.status.value, state.overdue) == ("dept_review", False)
    assert (await api.get(pid))["overdue"] is False
    assert await notices(system, pid) == []

    await api.advance(days=2)  # day 21
    overdue = await api.wait_for(pid, lambda p: p["overdue"])
    assert overdue["status"] == "dept_review"  # escalated, never decided

    async def notified() -> bool:
        return len(await notices(system, pid)) == 2

    await eventually(notified)
    assert await notices(system, pid) == [
        ("deadline_missed", "department:environment"),
        ("deadline_missed", "operations"),
    ]
    inbox = expect(await system.http.get("/v1/inbox", headers=await api.official("admin")), 200)
    assert [(i["proposal_id"], i["overdue"]) for i in inbox["items"]] == [(pid, True)]

    await api.advance(days=3)  # reminder_days = 3 in seoul-2018
    await api.wait_event(pid, "reminder_sent")

    async def reminded_both() -> bool:
        return [k for k, _ in await notices(system, pid)].count("reminder_sent") == 2

    await eventually(reminded_both)

    accepted = expect(await api.review(pid, "environment", "accept"), 200)
    assert accepted["status"] == "committee_screening"
    assert accepted["overdue"] is False and accepted["due_at"] is None
    assert (await api.timeline(pid))[-1]["note"].endswith("(answered after the deadline)")
    await record_history("review_overdue_then_accepted", accepted["workflow_id"])  # type: ignore[operator]


async def test_review_answered_on_day_19_is_never_overdue(api: Api, system: Stack) -> None:
    pid = (await api.to_review())["id"]
    await api.assign(pid, "environment")
    await api.advance(days=19)
    expect(await api.review(pid, "environment", "accept"), 200)
    await api.advance(days=5)
    timeline = await api.timeline(pid)
    assert "deadline_missed" not in [t["event"] for t in timeline]
    assert await notices(system, pid) == []


async def test_appropriateness_check_day_9_on_time_day_11_overdue(api: Api, system: Stack) -> None:
    pid = (await api.to_review())["id"]
    await api.assign(pid, "parks")
    expect(await api.review(pid, "parks", "accept"), 200)
    expect(await api.screen(pid), 200)
    checking = expect(await api.plan(pid, "parks", 0), 200)
    await api.advance(days=9)
    state = await workflow_state(system, checking["workflow_id"])
    assert (state.status.value, state.overdue) == ("appropriateness_check", False)
    await api.advance(days=2)  # day 11
    overdue = await api.wait_for(pid, lambda p: p["overdue"])
    assert overdue["status"] == "appropriateness_check"

    async def notified() -> bool:
        return ("deadline_missed", "department:parks") in await notices(system, pid)

    await eventually(notified)
    voting = expect(await api.appropriateness(pid, "parks", "appropriate"), 200)
    assert voting["status"] == "voting" and voting["overdue"] is False


async def test_the_vote_stays_open_for_the_full_30_days(api: Api, system: Stack) -> None:
    voting = await api.to_vote()
    pid = voting["id"]
    await api.advance(days=29, hours=23)
    expect(await api.vote(pid, "yes"), 201)
    state = await workflow_state(system, voting["workflow_id"])
    assert state.status.value == "voting"
    await api.advance(hours=1, seconds=1)
    closed = await api.wait_status(pid, "not_passed")
    assert closed["vote"]["turnout"] == 1
