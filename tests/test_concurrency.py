"""Concurrent duplicate requests leave one row; the threshold is crossed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlmodel import col
from temporalio.api.enums.v1 import EventType

from api import signal_outbox
from models.ids import proposal_workflow_id
from models.tables import BallotChoice, BallotParticipation, Support
from tests.conftest import Stack
from tests.helpers import Api, eventually


async def test_concurrent_duplicate_supports_leave_one_row(api: Api, system: Stack) -> None:
    pid = (await api.propose(await api.citizen()))["id"]
    who = await api.citizen()
    responses = await asyncio.gather(
        *(system.http.post(f"/v1/proposals/{pid}/supports", headers=who) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    async with system.sessions() as session:
        rows = (
            await session.execute(
                select(func.count()).select_from(Support).where(col(Support.proposal_id) == pid)
            )
        ).scalar_one()
    assert rows == 1
    assert (await api.get(pid))["support_count"] == 1


async def test_concurrent_supports_cross_the_threshold_once(api: Api, system: Stack) -> None:
    pid = (await api.propose(await api.citizen()))["id"]
    people = [await api.citizen() for _ in range(25)]
    responses = await asyncio.gather(
        *(system.http.post(f"/v1/proposals/{pid}/supports", headers=who) for who in people)
    )
    assert all(r.status_code == 201 for r in responses)
    proposal = await api.wait_status(pid, "dept_review")
    assert proposal["support_count"] == 25
    events = [t["event"] for t in await api.timeline(pid)]
    assert events.count("support_threshold_reached") == 1


async def test_concurrent_duplicate_ballots_leave_one_row(api: Api, system: Stack) -> None:
    pid = (await api.to_vote())["id"]
    voter = await api.citizen()
    responses = await asyncio.gather(
        *(
            system.http.post(
                f"/v1/proposals/{pid}/ballots",
                json={"choice": "yes" if i % 2 else "no"},
                headers=voter,
            )
            for i in range(20)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    async with system.sessions() as session:
        participations = (
            await session.execute(select(func.count()).select_from(BallotParticipation))
        ).scalar_one()
        choices = (
            await session.execute(select(func.count()).select_from(BallotChoice))
        ).scalar_one()
    assert (participations, choices) == (1, 1)


async def test_ballots_keep_who_and_what_apart(system: Stack) -> None:
    """No column can join a person to a choice: not a person id, a receipt or a time. A choice
    says which channel brought its ballot (for a recount per channel); a participation does
    not, so the channel joins nothing."""
    query = text("SELECT column_name FROM information_schema.columns WHERE table_name = :table")
    async with system.sessions() as session:
        participation = {
            r[0] for r in await session.execute(query, {"table": "ballot_participations"})
        }
        choice = {r[0] for r in await session.execute(query, {"table": "ballot_choices"})}
    assert participation == {"box_id", "person_id"}
    assert choice == {"box_id", "receipt", "option", "voter_group", "channel"}


async def test_a_pending_signal_is_sent_once_by_racing_senders(api: Api, system: Stack) -> None:
    """The sender after a commit and the relay may find the same pending row: it is claimed
    by one of them, so the workflow receives its signal once, and the row is gone."""
    pid = (await api.propose(await api.citizen()))["id"]
    workflow_id = proposal_workflow_id(pid)
    ctx = system.context()
    signal = (workflow_id, "support_threshold_reached", datetime.now(UTC))
    async with system.sessions() as session, session.begin():
        await signal_outbox.enqueue(session, signal)
    results = await asyncio.gather(
        *(signal_outbox.send(ctx, [signal]) for _ in range(5)),
        signal_outbox.relay_once(ctx),
    )
    assert all(results)
    handle = system.temporal.get_workflow_handle(workflow_id)

    async def signalled() -> list[str]:
        # a signal that arrives during a workflow task is in the history once the task ends
        history = await handle.fetch_history()
        return [
            e.workflow_execution_signaled_event_attributes.signal_name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]

    await eventually(lambda: _any(signalled()))
    await asyncio.sleep(1)  # time for a second send to land, were there one
    assert (await signalled()).count("support_threshold_reached") == 1
    async with system.sessions() as session:
        left = (await session.execute(text("SELECT count(*) FROM pending_signals"))).scalar_one()
    assert left == 0


async def _any(names: Awaitable[list[str]]) -> bool:
    return bool(await names)
