"""`minju simulate` (issue 9, item 7), small: a whole year played through the HTTP API on the
simulated clock with the real worker and Postgres, and its summary checked against what
Postgres holds (the tallies, the selections, the channels' counts, the plans, the cases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from rich.console import Console
from sqlalchemy import text

from minju import stack
from minju.simulate import render, simulate
from minju.simulate.core import Sizes
from tests.conftest import Stack, running_stack

SIZES = Sizes(citizens=2_000, ballots=3_000, proposals=6, projects=30, online_share=0.1, seed=7)


@pytest_asyncio.fixture(loop_scope="session")
async def cached_system(
    postgres: stack.EmbeddedPostgres, template_database: str
) -> AsyncIterator[Stack]:
    """The test stack with the settings of `minju simulate`'s own stack (minju/simulate)."""
    async with running_stack(
        postgres,
        template_database,
        worker_cache=10_000,
        cycle_max_history_events=40_000,
        cycle_follow_suggestion=False,
    ) as running:
        yield running


async def rows(system: Stack, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with system.sessions() as session:
        return [tuple(row) for row in (await session.execute(text(sql), params)).all()]


def section(summary: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = summary.get(name, [])
    assert found, f"the summary has no {name!r} rows: {sorted(summary)}"
    return found


async def test_a_small_year_whose_summary_matches_postgres(cached_system: Stack) -> None:
    system = cached_system
    summary = await simulate(
        system.http,
        SIZES,
        jwt_secret=system.settings.jwt_secret,
        console=Console(width=120, record=True),
        show_progress=False,
    )
    render(summary, Console(width=120, record=True))
    year = int(next(r["value"] for r in summary["run"] if r["what"] == "budget year"))

    # what each vote selected, per type and field: the projects Postgres marks selected
    selected = {
        (kind, field): (count, amount)
        for kind, field, count, amount in await rows(
            system,
            "SELECT kind, field, count(*), sum(cost_krw) FROM budget_projects "
            "WHERE year = :year AND selected GROUP BY kind, field",
            year=year,
        )
    }
    shown = {
        (r["type"], r["field"]): (r["selected"], r["selected_krw"])
        for r in section(summary, "selected")
        if r["selected"]
    }
    assert shown == selected
    assert {kind for kind, _ in selected} == {"deliberative", "metro", "governance"}

    # turnout per voter group and the ballots per path: the boxes' rows in Postgres
    by_group = {
        (box.rsplit(":", 1)[1], group): n
        for box, group, n in await rows(
            system,
            "SELECT box_id, voter_group, count(DISTINCT receipt) FROM ballot_choices "
            "WHERE box_id LIKE :boxes GROUP BY box_id, voter_group",
            boxes=f"budget:{year}:%",
        )
    }
    assert {(r["type"], r["group"]): r["ballots"] for r in section(summary, "turnout")} == (
        by_group
    )
    by_channel = {
        (box.rsplit(":", 1)[1], channel): n
        for box, channel, n in await rows(
            system,
            "SELECT box_id, channel, count(DISTINCT receipt) FROM ballot_choices "
            "WHERE box_id LIKE :boxes GROUP BY box_id, channel",
            boxes=f"budget:{year}:%",
        )
    }
    paths = section(summary, "ballot paths")
    assert {
        (r["type"], r["path"]): r["accepted"] for r in paths if r["path"] != "refused duplicates"
    } == by_channel
    # every ballot the summary counts was cast once: one participation per ballot
    participations = dict(
        await rows(
            system,
            "SELECT box_id, count(*) FROM ballot_participations WHERE box_id LIKE :boxes "
            "GROUP BY box_id",
            boxes=f"budget:{year}:%",
        )
    )
    for kind in ("deliberative", "metro", "governance"):
        cast = sum(n for (k, _), n in by_channel.items() if k == kind)
        assert participations[f"budget:{year}:{kind}"] == cast
    refused = [r for r in paths if r["path"] == "refused duplicates"]
    assert refused and all(r["accepted"] < 0 for r in refused)
    # the ballots asked for, less the duplicates refused, all counted
    assert sum(by_channel.values()) == SIZES.ballots
    assert all(
        r["recount_matches_tally"] and r["selection_matches"] for r in summary["vote checks"]
    )
    assert all(r["within"] for r in section(summary, "amounts"))

    # the proposals: each outcome as many times as Postgres holds proposals in that status
    assert {r["outcome"]: r["count"] for r in section(summary, "proposals")} == dict(
        await rows(system, "SELECT status, count(*) FROM proposals GROUP BY status")
    )
    # each proposal vote's yes and no: the box's choices
    counted = {
        title: (yes, no)
        for title, yes, no in await rows(
            system,
            "SELECT p.title, count(*) FILTER (WHERE c.option = 'yes'), "
            "count(*) FILTER (WHERE c.option = 'no') FROM ballot_choices c "
            "JOIN ballot_boxes b ON b.id = c.box_id JOIN proposals p ON p.id = b.case_id "
            "GROUP BY p.title",
        )
    }
    votes = section(summary, "proposal votes")
    for vote in votes:
        assert counted.get(vote["proposal"], (0, 0)) == (vote["yes"], vote["no"]), vote
        assert vote["turnout"] == vote["yes"] + vote["no"]
        assert vote["passed"] == (
            vote["turnout"] >= vote["quorum"] and vote["yes"] * 2 > vote["turnout"]
        )

    # the district plans: each district's cost, ceiling and outcome as Postgres holds them
    plans = {
        district: (strategic, cost, ceiling, status)
        for district, strategic, cost, ceiling, status in await rows(
            system,
            "SELECT district, strategic, cost_krw, ceiling_krw, status FROM district_plans "
            "WHERE year = :year",
            year=year,
        )
    }
    district_rows = section(summary, "district plans")
    assert len(district_rows) == len(plans) == 24
    for plan in district_rows:
        strategic, cost, ceiling, status = plans[plan["district"]]
        assert (plan["strategic"], plan["cost_krw"], plan["ceiling_krw"]) == (
            strategic,
            cost,
            ceiling,
        )
        assert plan["agreed"] == (status == "agreed")
        assert cost <= ceiling

    # the execution in Y+1: every selected project, with the reports Postgres counts
    executed = dict(
        await rows(
            system,
            "SELECT title, (execution->>'reports')::int FROM budget_projects "
            "WHERE year = :year AND selected",
            year=year,
        )
    )
    execution = section(summary, "execution")
    assert {r["project"]: r["reports"] for r in execution} == executed
    assert any(r["late_reports"] for r in execution)
    assert all(r["final"] for r in execution)
    overdue = section(summary, "overdue cases")
    assert {r["case"] for r in overdue} >= {"proposal", "project"}

    # the whole-budget participation: the records of the cycle
    recorded = dict(
        await rows(
            system,
            "SELECT kind, count(*) FROM budget_participation WHERE year = :year GROUP BY kind",
            year=year,
        )
    )
    participation = {r["record"]: r["count"] for r in section(summary, "participation")}
    assert participation["waste reports"] == recorded.get("waste_report", 0) > 0
    assert participation["opinion statement"] == recorded["opinion_statement"] == 1
    assert participation["material requests"] == recorded["material_request"]
