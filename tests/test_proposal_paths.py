"""Every branch of the citizen-proposal process (process.md §1), through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from models.ballot_box import cast_proposal_ballot
from models.tables import Notification
from tests.conftest import Stack
from tests.helpers import Api, eventually, expect, expect_problem


def events(timeline: list[dict[str, Any]]) -> list[str]:
    return [item["event"] for item in timeline]


async def cast_many(system: Stack, proposal_id: str, *, yes: int, no: int) -> None:
    """Cast ballots through the same code the API uses, in bulk (quorums are ≥ 1,000)."""
    now = datetime.now(UTC)
    async with system.sessions() as session, session.begin():
        for index in range(yes + no):
            await cast_proposal_ballot(
                session,
                proposal_id=proposal_id,
                person_id=f"bulk-voter-{index}",
                choice="yes" if index < yes else "no",
                now=now,
            )


async def test_nine_supports_keep_ripening_the_tenth_sends_to_review(
    api: Api, record_history: Any
) -> None:
    proposal = await api.propose(await api.citizen())
    pid = proposal["id"]
    assert proposal["status"] == "ripening"
    assert proposal["rulebook"] == "seoul-2018"
    assert proposal["rulebook_hash"].startswith("sha256:")
    await api.support(pid, 9)
    await api.advance(days=60)  # no deadline in ripening: time alone changes nothing
    after_nine = await api.get(pid)
    assert (after_nine["status"], after_nine["support_count"]) == ("ripening", 9)
    await api.support(pid, 1)
    in_review = await api.wait_status(pid, "dept_review")
    assert in_review["support_count"] == 10
    assert in_review["department"] is None and in_review["due_at"] is None
    # Supports and comments stay open until the review completes.
    await api.support(pid, 1)
    who = await api.citizen()
    expect(await api.post(f"/v1/proposals/{pid}/comments", who, {"body": "Yes please"}), 201)
    assert (await api.get(pid))["support_count"] == 11
    timeline = await api.timeline(pid)
    assert events(timeline) == ["submitted", "support_threshold_reached"]
    assert timeline[0]["note"].startswith("rulebook seoul-2018 (sha256:")
    await record_history("ripening_to_review", proposal["workflow_id"])


async def test_assignment_starts_the_clock_and_rejection_needs_a_reason(
    api: Api, record_history: Any
) -> None:
    pid = (await api.to_review())["id"]
    assigned = await api.assign(pid, "transport")
    assert assigned["department"] == "transport" and assigned["due_at"] is not None
    who = await api.official("caseworker", "transport")
    no_reason = await api.post(
        f"/v1/proposals/{pid}/review", who, {"decision": "reject", "reason": "  "}
    )
    expect_problem(no_reason, 422, field="reason")
    rejected = expect(await api.review(pid, "transport", "reject"), 200)
    assert rejected["status"] == "rejected"
    assert rejected["decision_reason"] == "reject: reviewed by transport"
    assert rejected["supports_open"] is False
    expect_problem(await api.post(f"/v1/proposals/{pid}/supports", await api.citizen()), 409)
    timeline = await api.timeline(pid)
    assert events(timeline) == [
        "submitted",
        "support_threshold_reached",
        "department_assigned",
        "review_rejected",
    ]
    assert [t["actor_role"] for t in timeline] == ["citizen", "system", "admin", "caseworker"]
    assert all(t["at"].endswith("+09:00") for t in timeline)
    await record_history("review_rejected", rejected["workflow_id"])


async def test_committee_drops_with_a_note(api: Api, record_history: Any) -> None:
    pid = (await api.to_review())["id"]
    await api.assign(pid, "welfare")
    expect(await api.review(pid, "welfare", "accept"), 200)
    dropped = expect(await api.screen(pid, "drop"), 200)
    assert dropped["status"] == "dropped"
    assert dropped["screening"]["scores"] == {
        "necessity": 8,
        "changeability": 7,
        "feasibility": 6,
        "impact": 9,
    }
    await record_history("screening_dropped", dropped["workflow_id"])


async def test_revise_then_appropriate_then_discard_paths(api: Api, record_history: Any) -> None:
    pid = (await api.to_review())["id"]
    await api.assign(pid, "parks")
    expect(await api.review(pid, "parks", "accept"), 200)
    expect(await api.screen(pid), 200)
    checking = expect(await api.plan(pid, "parks", 50_000_000), 200)
    assert checking["status"] == "appropriateness_check"
    revising = expect(await api.appropriateness(pid, "parks", "revise"), 200)
    assert revising["status"] == "revising"
    rechecking = expect(await api.plan(pid, "parks", 40_000_000), 200)
    assert rechecking["status"] == "appropriateness_check"
    assert rechecking["plan"]["revision"] == 1
    discarded = expect(await api.appropriateness(pid, "parks", "discard"), 200)
    assert discarded["status"] == "discarded"
    assert discarded["decision_reason"] == "discard after checking law and budget"
    assert events(await api.timeline(pid))[-5:] == [
        "screening_advanced",
        "plan_submitted",
        "plan_revision_requested",
        "plan_revised",
        "plan_discarded",
    ]
    await record_history("plan_discarded", discarded["workflow_id"])


async def test_withdrawal_until_the_vote_opens_only_by_the_proposer(
    api: Api, record_history: Any
) -> None:
    proposer = await api.citizen()
    pid = (await api.to_review(proposer))["id"]
    stranger = await api.citizen()
    expect_problem(await api.post(f"/v1/proposals/{pid}/withdraw", stranger), 403)
    withdrawn = expect(await api.post(f"/v1/proposals/{pid}/withdraw", proposer), 200)
    assert withdrawn["status"] == "withdrawn"
    expect_problem(await api.post(f"/v1/proposals/{pid}/withdraw", proposer), 409)
    await record_history("withdrawn", withdrawn["workflow_id"])

    owner = await api.citizen()
    voting = await api.to_vote(proposer=owner)
    refused = expect_problem(await api.post(f"/v1/proposals/{voting['id']}/withdraw", owner), 409)
    assert "until the vote opens" in refused["detail"]


async def test_vote_below_quorum_fails_at_quorum_passes(
    api: Api, system: Stack, record_history: Any
) -> None:
    short = await api.to_vote(cost_krw=0)
    enough = await api.to_vote(cost_krw=0)
    assert short["vote"]["quorum"] == enough["vote"]["quorum"] == 1_000
    assert short["vote"]["yes"] is None  # counts only after close
    await cast_many(system, short["id"], yes=999, no=0)
    await cast_many(system, enough["id"], yes=501, no=499)
    await api.advance(days=29)
    assert (await api.get(short["id"]))["status"] == "voting"
    await api.advance(days=1, seconds=1)
    failed = await api.wait_status(short["id"], "not_passed")
    assert failed["vote"] | {"digest": None} == failed["vote"] | {
        "yes": 999,
        "no": 0,
        "turnout": 999,
        "passed": False,
        "digest": None,
    }
    passed = await api.wait_status(enough["id"], "executing")
    assert (passed["vote"]["turnout"], passed["vote"]["passed"]) == (1_000, True)
    await record_history("vote_not_passed", failed["workflow_id"])


async def test_half_yes_fails_half_plus_one_passes(api: Api, system: Stack) -> None:
    tie = await api.to_vote(cost_krw=0)
    majority = await api.to_vote(cost_krw=0)
    await cast_many(system, tie["id"], yes=500, no=500)
    await cast_many(system, majority["id"], yes=501, no=500)
    await api.advance(days=30, seconds=1)
    assert (await api.wait_status(tie["id"], "not_passed"))["vote"]["yes"] == 500
    assert (await api.wait_status(majority["id"], "executing"))["vote"]["passed"] is True


async def test_ballots_are_one_per_person_and_only_while_open(api: Api) -> None:
    voting = await api.to_vote()
    pid = voting["id"]
    voter = await api.citizen()
    receipt = expect(await api.vote(pid, "yes", voter), 201)["receipt"]
    assert len(receipt) == 32
    expect_problem(await api.vote(pid, "no", voter), 409)
    await api.advance(days=30, seconds=1)
    await api.wait_status(pid, "not_passed")
    late = expect_problem(await api.vote(pid, "yes"), 409)
    assert "not open" in late["detail"]
    early = (await api.to_review())["id"]
    expect_problem(await api.vote(early, "yes"), 409)


async def test_non_budget_execution_completes_on_the_final_report(
    api: Api, system: Stack, record_history: Any
) -> None:
    voting = await api.to_vote(department="culture", cost_krw=0)
    pid = voting["id"]
    await cast_many(system, pid, yes=1_000, no=0)
    await api.advance(days=30, seconds=1)
    executing = await api.wait_status(pid, "executing")
    assert executing["due_at"] is None  # non-budget work: at once, no budget deadline
    worker = await api.official("caseworker", "culture")
    path = f"/v1/proposals/{pid}/execution-reports"
    progress = expect(await api.post(path, worker, {"progress_pct": 40, "note": "begun"}), 201)
    assert progress["progress_pct"] == 40
    bad_final = await api.post(path, worker, {"progress_pct": 90, "note": "x", "final": True})
    expect_problem(bad_final, 422)
    done = expect(
        await api.post(path, worker, {"progress_pct": 100, "note": "done", "final": True}), 201
    )
    assert done["status"] == "completed"
    assert events(await api.timeline(pid))[-3:] == [
        "vote_closed",
        "progress_reported",
        "final_report",
    ]
    await record_history("completed_non_budget", done["workflow_id"])


async def test_budget_execution_is_overdue_without_a_final_report_in_two_years(
    api: Api, system: Stack, record_history: Any
) -> None:
    voting = await api.to_vote(department="housing", cost_krw=1_000_000_000)
    pid = voting["id"]
    assert voting["vote"]["quorum"] == 10_000
    await cast_many(system, pid, yes=5_001, no=4_999)
    await api.advance(days=30, seconds=1)
    executing = await api.wait_status(pid, "executing")
    assert executing["due_at"] is not None
    await api.advance(days=729)
    assert (await api.get(pid))["overdue"] is False
    await api.advance(days=2)
    overdue = await api.wait_for(pid, lambda p: p["overdue"])
    assert overdue["status"] == "executing"

    async def both_notified() -> bool:
        async with system.sessions() as session:
            recipients = (
                (
                    await session.execute(
                        select(col(Notification.recipient)).where(col(Notification.case_id) == pid)
                    )
                )
                .scalars()
                .all()
            )
        return set(recipients) == {"department:housing", "operations"}

    await eventually(both_notified)
    worker = await api.official("caseworker", "housing")
    done = expect(
        await api.post(
            f"/v1/proposals/{pid}/execution-reports",
            worker,
            {"progress_pct": 100, "note": "built", "final": True},
        ),
        201,
    )
    assert done["status"] == "completed"
    timeline = await api.timeline(pid)
    assert "deadline_missed" in events(timeline)
    assert timeline[-1]["note"].endswith("(after the deadline)")
    await record_history("completed_budget_late", done["workflow_id"])


async def test_full_path_timeline_is_complete(api: Api, system: Stack) -> None:
    voting = await api.to_vote(department="parks", cost_krw=0)
    await cast_many(system, voting["id"], yes=700, no=300)
    await api.advance(days=31)
    await api.wait_status(voting["id"], "executing")
    async with system.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(Notification))).scalar_one()
    assert count == 0  # every answer came in time: nobody was chased
    assert events(await api.timeline(voting["id"])) == [
        "submitted",
        "support_threshold_reached",
        "department_assigned",
        "review_accepted",
        "screening_advanced",
        "plan_submitted",
        "plan_appropriate",
        "vote_closed",
    ]
