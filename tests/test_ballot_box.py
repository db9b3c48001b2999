"""The ballot box every vote shares (models/ballot_box.py), on a real PostgreSQL.

One ballot per person per box however many requests race, a ballot approving several options
under one receipt, refusals that name what was wrong and write nothing, and a tally per option
per group whose digest anyone holding the rows can recompute.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from models.ballot_box import (
    BUDGET_SCHOOL,
    GENERAL,
    BallotRefused,
    budget_box_id,
    cast,
    close_box,
    count_box,
    open_box,
)
from tests.conftest import Stack

PROJECTS = ("p1", "p2", "p3", "p4")


async def _open(system: Stack, box_id: str, *, max_choices: int | None = None) -> None:
    async with system.sessions() as session, session.begin():
        await open_box(
            session,
            box_id,
            kind="budget",
            case_id="cycle-2027",
            options=PROJECTS,
            max_choices=max_choices,
            now=datetime.now(UTC),
        )


async def _cast(system: Stack, box_id: str, person: str, options: list[str], group: str) -> str:
    async with system.sessions() as session, session.begin():
        return await cast(session, box_id=box_id, person_id=person, options=options, group=group)


async def _rows(system: Stack, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with system.sessions() as session:
        return [tuple(r) for r in await session.execute(text(sql), params)]


async def test_one_ballot_per_person_under_20_concurrent_requests(system: Stack) -> None:
    box = budget_box_id(2027, "metro")
    await _open(system, box)
    results = await asyncio.gather(
        *(_cast(system, box, "racer", ["p1", "p3"], GENERAL) for _ in range(20)),
        return_exceptions=True,
    )
    receipts = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, BallotRefused)]
    assert len(receipts) == 1, results
    assert len(refused) == 19
    assert all(r.reason == "you have already voted in this ballot" for r in refused)
    participations = await _rows(
        system, "SELECT person_id FROM ballot_participations WHERE box_id = :b", b=box
    )
    assert participations == [("racer",)]
    choices = await _rows(
        system,
        "SELECT receipt, option FROM ballot_choices WHERE box_id = :b ORDER BY option",
        b=box,
    )
    assert choices == [(receipts[0], "p1"), (receipts[0], "p3")]


@pytest.mark.parametrize(
    ("options", "group", "field", "reason"),
    [
        ([], GENERAL, "options", "at least one"),
        (["p1", "p1"], GENERAL, "options", "named twice"),
        (["p1", "p9"], GENERAL, "options", "not on this ballot: p9"),
        (["p1", "p2", "p3"], GENERAL, "options", "at most 2"),
        (["p1"], "observers", "group", "does not vote here"),
    ],
)
async def test_a_refused_ballot_names_what_is_wrong_and_writes_nothing(
    system: Stack, options: list[str], group: str, field: str, reason: str
) -> None:
    box = budget_box_id(2028, f"refusal-{field}-{len(options)}-{group}")
    await _open(system, box, max_choices=2)
    with pytest.raises(BallotRefused) as refused:
        await _cast(system, box, "citizen-1", options, group)
    assert refused.value.field == field
    assert reason in refused.value.reason
    for table in ("ballot_participations", "ballot_choices"):
        assert await _rows(system, f"SELECT 1 FROM {table} WHERE box_id = :b", b=box) == []
    # the same person may still vote, correctly
    assert await _cast(system, box, "citizen-1", ["p1"], GENERAL)


async def test_no_ballot_before_the_box_opens_or_after_it_closes(system: Stack) -> None:
    with pytest.raises(BallotRefused) as missing:
        await _cast(system, budget_box_id(2029, "nowhere"), "citizen-1", ["p1"], GENERAL)
    assert missing.value.not_found
    box = budget_box_id(2029, "metro")
    await _open(system, box)
    await _cast(system, box, "early", ["p1"], GENERAL)
    async with system.sessions() as session, session.begin():
        await close_box(session, box, now=datetime.now(UTC))
    with pytest.raises(BallotRefused, match="closed"):
        await _cast(system, box, "late", ["p1"], GENERAL)
    # reopening is not a thing: a retried open leaves the box closed
    await _open(system, box)
    with pytest.raises(BallotRefused, match="closed"):
        await _cast(system, box, "late", ["p1"], GENERAL)


async def test_the_tally_counts_per_option_per_group_with_a_recomputable_digest(
    system: Stack,
) -> None:
    box = budget_box_id(2030, "metro")
    await _open(system, box)
    ballots = {
        "g1": (["p1", "p2"], GENERAL),
        "g2": (["p1"], GENERAL),
        "g3": (["p3"], GENERAL),
        "s1": (["p2", "p3", "p4"], BUDGET_SCHOOL),
        "s2": (["p2"], BUDGET_SCHOOL),
    }
    for person, (options, group) in ballots.items():
        await _cast(system, box, person, options, group)
    async with system.sessions() as session:
        tally = await count_box(session, box)
    assert tally.ballots == {GENERAL: 3, BUDGET_SCHOOL: 2}
    assert tally.turnout == 5
    assert tally.approvals == {
        "p1": {GENERAL: 2},
        "p2": {GENERAL: 1, BUDGET_SCHOOL: 2},
        "p3": {GENERAL: 1, BUDGET_SCHOOL: 1},
        "p4": {BUDGET_SCHOOL: 1},
    }
    rows = await _rows(
        system, "SELECT receipt, option, voter_group FROM ballot_choices WHERE box_id = :b", b=box
    )
    lines = "".join(f"{r}:{o}:{g}\n" for r, o, g in sorted(rows))
    assert tally.digest == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    # an empty box counts to nothing, with the digest of no rows
    await _open(system, budget_box_id(2030, "empty"))
    async with system.sessions() as session:
        empty = await count_box(session, budget_box_id(2030, "empty"))
    assert (empty.approvals, empty.ballots, empty.turnout) == ({}, {}, 0)
    assert empty.digest == "sha256:" + hashlib.sha256(b"").hexdigest()
