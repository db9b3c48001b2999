"""The workflows alone: real workflows and a real worker on the time-skipping test server, every
activity an in-memory stub (tests/workflow_stubs.py), no Postgres and no HTTP.

They complement the end-to-end tests (test_deadlines.py, test_proposal_paths.py, test_forums.py,
test_asks.py), which walk the same paths through the API: here a month or two years of a case
pass in well under a second, and what the workflow asked its activities for is asserted exactly.
Tests that assert on the clock get a fresh server (`fresh_env`), the others share one per module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.activity import _Definition
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import rulebooks
import worker as worker_module
from models.calendar import add_years, deliberation_year
from models.case import Actor, ErrorType, Notice, Role, TimelineEntry
from models.deliberation import (
    AskReview,
    AskStart,
    AskState,
    AskStatus,
    ForumKind,
    ForumStart,
    ForumState,
    ForumStatus,
    OpinionTally,
)
from models.ids import ask_workflow_id, forum_workflow_id, proposal_workflow_id
from models.proposal import (
    AppropriatenessVerdict,
    Assignment,
    ExecutionPlan,
    ExecutionReport,
    ProposalStart,
    ProposalState,
    ReviewAnswer,
    ReviewDecision,
    Screening,
    ScreeningDecision,
    Status,
    Tally,
    Verdict,
    Withdrawal,
)
from tests.workflow_stubs import StubActivities, StubbedRun, stubbed_worker, time_skipping_env
from workflows.ask import AskWorkflow
from workflows.forum import ForumWorkflow
from workflows.proposal import ProposalWorkflow

DAY = timedelta(days=1)
PROPOSER = "person-proposer"
ASK_DEPARTMENT = "animal-welfare"
SCORES = {"necessity": 8, "changeability": 7, "feasibility": 6, "impact": 9}
#: Only these events may follow an Update its validator refused: the Java test server writes
#: the (empty) workflow task that ran the validator, where a real server writes nothing.
WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}

ProposalHandle = WorkflowHandle[ProposalWorkflow, ProposalState]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One server for the module's tests that do not depend on where its clock stands."""
    async with time_skipping_env() as environment:
        yield environment


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of the test's own: its clock starts now and only this test moves it."""
    async with time_skipping_env() as environment:
        yield environment


# ---- walking a proposal down its path, one Update per stage --------------------------------


def admin() -> Actor:
    return Actor(role=Role.ADMIN, person_id="admin-1")


def caseworker(department: str) -> Actor:
    return Actor(role=Role.CASEWORKER, person_id=f"caseworker-{department}", department=department)


def committee() -> Actor:
    return Actor(role=Role.COMMITTEE, person_id="committee-1")


async def propose(run: StubbedRun, rulebook: str = "seoul-2018") -> tuple[ProposalHandle, str]:
    proposal_id = run.unique_id("p")
    start = ProposalStart(
        proposal_id=proposal_id, proposer_id=PROPOSER, rules=rulebooks.load(rulebook)
    )
    handle = await run.start(ProposalWorkflow.run, start, id=proposal_workflow_id(proposal_id))
    return handle, proposal_id


async def to_review(run: StubbedRun) -> tuple[ProposalHandle, str]:
    handle, proposal_id = await propose(run)
    await handle.signal(ProposalWorkflow.support_threshold_reached)
    await run.settle(handle)
    return handle, proposal_id


async def assign(run: StubbedRun, handle: ProposalHandle, department: str) -> ProposalState:
    state = await handle.execute_update(
        ProposalWorkflow.assign,
        Assignment(actor=admin(), department=department, note="routed by the evaluation group"),
    )
    await run.settle(handle)
    return state


async def answer_review(
    run: StubbedRun, handle: ProposalHandle, department: str, decision: ReviewDecision
) -> ProposalState:
    state = await handle.execute_update(
        ProposalWorkflow.review,
        ReviewAnswer(
            actor=caseworker(department),
            decision=decision,
            reason=f"{decision.value}: reviewed by {department}",
        ),
    )
    await run.settle(handle)
    return state


async def to_vote(
    run: StubbedRun, *, department: str = "parks", cost_krw: int = 0
) -> tuple[ProposalHandle, str]:
    handle, proposal_id = await to_review(run)
    await assign(run, handle, department)
    await answer_review(run, handle, department, ReviewDecision.ACCEPT)
    await handle.execute_update(
        ProposalWorkflow.screen,
        Screening(actor=committee(), decision=ScreeningDecision.ADVANCE, scores=SCORES),
    )
    await handle.execute_update(
        ProposalWorkflow.plan,
        ExecutionPlan(
            actor=committee(),
            summary="Plant in spring",
            executing_department=department,
            cost_krw=cost_krw,
        ),
    )
    voting = await handle.execute_update(
        ProposalWorkflow.check_appropriateness,
        AppropriatenessVerdict(
            actor=caseworker(department),
            verdict=Verdict.APPROPRIATE,
            reason="appropriate after checking law and budget",
        ),
    )
    assert voting.status is Status.VOTING
    await run.settle(handle)
    return handle, proposal_id


async def proposal_state(handle: ProposalHandle) -> ProposalState:
    return await handle.query(ProposalWorkflow.state)


def last(timeline: list[TimelineEntry], event: str) -> TimelineEntry:
    found = [entry for entry in timeline if entry.event == event]
    assert found, f"no {event} in {[entry.event for entry in timeline]}"
    return found[-1]


def notice_kinds(notices: list[Notice]) -> list[tuple[str, list[str]]]:
    return [(notice.kind, notice.recipients) for notice in notices]


async def refused(call: Any) -> ApplicationError:
    """The validator's refusal behind a failed Update."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await call
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


def definitions(activities: list[Callable[..., Any]]) -> dict[str, _Definition]:
    found: dict[str, _Definition] = {}
    for fn in activities:
        definition = _Definition.must_from_callable(fn)
        assert definition.name is not None
        found[definition.name] = definition
    return found


# ---- the kit itself --------------------------------------------------------------------------


async def test_every_activity_the_worker_registers_has_a_stub_of_the_same_signature() -> None:
    """A new activity in worker.py without a stub here would leave these workflows stuck."""
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/never-connected")
    try:
        real = definitions(worker_module.activities(engine))  # builds no connection
    finally:
        await engine.dispose()
    stubs = definitions(StubActivities().activities())
    assert sorted(stubs) == sorted(real)
    assert sorted(real) == [
        "close_and_count_opinions",
        "close_and_tally",
        "close_budget_ballot",
        "deliver_notifications",
        "enqueue_notice",
        "open_budget_ballot",
        "open_opinion_box",
        "project_ask",
        "project_budget_cycle",
        "project_budget_project",
        "project_district_plan",
        "project_forum",
        "project_proposal",
        "record_forum",
        "submitted_projects",
    ]
    for name, definition in real.items():
        assert (stubs[name].arg_types, stubs[name].ret_type) == (
            definition.arg_types,
            definition.ret_type,
        ), name


# ---- proposal: ripening → department review ------------------------------------------------


async def test_the_tenth_support_signal_sends_the_proposal_to_department_review(
    env: WorkflowEnvironment,
) -> None:
    async with stubbed_worker(env) as run:
        handle, pid = await propose(run)
        await env.sleep(60 * DAY)  # ripening has no deadline: time alone changes nothing
        await run.settle(handle)
        ripening = await proposal_state(handle)
        assert (ripening.status, ripening.department, ripening.due_at) == (
            Status.RIPENING,
            None,
            None,
        )
        assert run.stubs.events(pid) == ["submitted"]

        await handle.signal(ProposalWorkflow.support_threshold_reached)
        await run.settle(handle)
        in_review = await proposal_state(handle)
        assert (in_review.status, in_review.department, in_review.due_at) == (
            Status.DEPT_REVIEW,
            None,
            None,
        )
        assert in_review.supports_open is True  # supports stay open until the review completes
        assert run.stubs.proposal_row(pid) == in_review

        await handle.signal(ProposalWorkflow.support_threshold_reached)  # sent again: idempotent
        await run.settle(handle)
        timeline = run.stubs.timeline(pid)
        assert [(t.event, t.actor_role, t.stage) for t in timeline] == [
            ("submitted", Role.CITIZEN, "ripening"),
            ("support_threshold_reached", Role.SYSTEM, "dept_review"),
        ]
        assert timeline[0].note == (
            f"rulebook seoul-2018 ({rulebooks.load('seoul-2018').content_hash})"
        )
        assert timeline[1].note.startswith("10 supports reached")
        assert run.stubs.notices == []


# ---- proposal: the department's 20 days ----------------------------------------------------


async def test_department_review_day_19_on_time_day_21_overdue_reminded_then_answered_late(
    fresh_env: WorkflowEnvironment,
) -> None:
    env = fresh_env
    async with stubbed_worker(env) as run:
        handle, pid = await to_review(run)
        assigned = await assign(run, handle, "environment")
        assigned_at = last(run.stubs.timeline(pid), "department_assigned").at
        assert assigned.due_at == assigned_at + 20 * DAY
        due_at = assigned.due_at

        await env.sleep(19 * DAY)
        await run.settle(handle)
        day_19 = await proposal_state(handle)
        assert (day_19.status, day_19.overdue) == (Status.DEPT_REVIEW, False)
        assert run.stubs.events(pid)[-1] == "department_assigned"
        assert run.stubs.notices_for(pid) == []

        await env.sleep(2 * DAY)  # day 21
        await run.settle(handle)
        day_21 = await proposal_state(handle)
        assert (day_21.status, day_21.overdue, day_21.due_at) == (
            Status.DEPT_REVIEW,  # escalated, never decided
            True,
            due_at,
        )
        missed = last(run.stubs.timeline(pid), "deadline_missed")
        assert due_at <= missed.at < due_at + timedelta(minutes=1)
        assert (missed.stage, missed.actor_role) == ("dept_review", Role.SYSTEM)
        assert "environment and the operations team notified" in missed.note
        assert run.stubs.proposal_row(pid) == day_21
        [notice] = run.stubs.notices_for(pid)
        assert notice == Notice(
            key=f"{proposal_workflow_id(pid)}:{missed.seq}",
            case_id=pid,
            recipients=["department:environment", "operations"],
            kind="deadline_missed",
            message=notice.message,
            due_at=due_at,
        )
        assert notice.message.startswith(f"Case {pid}: the dept_review answer was due ")

        await env.sleep(3 * DAY)  # escalation.reminder_days = 3 in seoul-2018
        await run.settle(handle)
        reminded = last(run.stubs.timeline(pid), "reminder_sent")
        assert missed.at + 3 * DAY <= reminded.at < missed.at + 3 * DAY + timedelta(minutes=1)
        assert notice_kinds(run.stubs.notices_for(pid)) == [
            ("deadline_missed", ["department:environment", "operations"]),
            ("reminder_sent", ["department:environment", "operations"]),
        ]
        assert (await proposal_state(handle)).status is Status.DEPT_REVIEW  # still waiting

        accepted = await answer_review(run, handle, "environment", ReviewDecision.ACCEPT)
        assert (accepted.status, accepted.overdue, accepted.due_at) == (
            Status.COMMITTEE_SCREENING,
            False,
            None,
        )
        late = run.stubs.timeline(pid)[-1]
        assert late.event == "review_accepted"
        assert late.note == "accept: reviewed by environment (answered after the deadline)"
        assert run.stubs.events(pid) == [
            "submitted",
            "support_threshold_reached",
            "department_assigned",
            "deadline_missed",
            "reminder_sent",
            "review_accepted",
        ]
        await env.sleep(10 * DAY)  # no review timer is left behind
        await run.settle(handle)
        assert len(run.stubs.notices_for(pid)) == 2


async def test_a_review_answered_on_day_19_is_never_overdue(
    fresh_env: WorkflowEnvironment,
) -> None:
    env = fresh_env
    async with stubbed_worker(env) as run:
        handle, pid = await to_review(run)
        await assign(run, handle, "environment")
        await env.sleep(19 * DAY)
        await run.settle(handle)
        accepted = await answer_review(run, handle, "environment", ReviewDecision.ACCEPT)
        assert (accepted.status, accepted.overdue) == (Status.COMMITTEE_SCREENING, False)
        assert run.stubs.timeline(pid)[-1].note == "accept: reviewed by environment"
        await env.sleep(5 * DAY)  # day 24: past the deadline the answer met
        await run.settle(handle)
        assert "deadline_missed" not in run.stubs.events(pid)
        assert run.stubs.notices_for(pid) == []


# ---- proposal: validators, withdrawal ------------------------------------------------------


async def test_a_validator_refuses_the_wrong_stage_and_nothing_is_written(
    env: WorkflowEnvironment,
) -> None:
    async with stubbed_worker(env) as run:
        handle, pid = await propose(run)
        before = await proposal_state(handle)
        history = len((await handle.fetch_history()).events)
        projections = len(run.stubs.attempts)

        review = await refused(
            handle.execute_update(
                ProposalWorkflow.review,
                ReviewAnswer(
                    actor=caseworker("environment"),
                    decision=ReviewDecision.ACCEPT,
                    reason="too early",
                ),
            )
        )
        assert review.type == ErrorType.CONFLICT.value
        assert review.message == "the proposal is ripening, not dept_review"
        assigning = await refused(
            handle.execute_update(
                ProposalWorkflow.assign, Assignment(actor=admin(), department="environment")
            )
        )
        assert assigning.type == ErrorType.CONFLICT.value
        # The wrong role is refused too, before the stage is even looked at.
        screening = await refused(
            handle.execute_update(
                ProposalWorkflow.screen,
                Screening(actor=admin(), decision=ScreeningDecision.ADVANCE, scores=SCORES),
            )
        )
        assert screening.type == ErrorType.FORBIDDEN.value

        added = (await handle.fetch_history()).events[history:]
        assert added, "the refused updates never reached the workflow"
        assert {event.event_type for event in added} <= WORKFLOW_TASK_EVENTS
        assert len(run.stubs.attempts) == projections  # no activity ran
        assert run.stubs.events(pid) == ["submitted"]
        assert await proposal_state(handle) == before


async def test_the_proposer_withdraws_until_the_vote_opens(env: WorkflowEnvironment) -> None:
    async with stubbed_worker(env) as run:
        handle, pid = await to_review(run)
        await assign(run, handle, "environment")
        stranger = await refused(
            handle.execute_update(
                ProposalWorkflow.withdraw,
                Withdrawal(actor=Actor(role=Role.CITIZEN, person_id="person-stranger")),
            )
        )
        assert stranger.type == ErrorType.FORBIDDEN.value
        proposer = Withdrawal(actor=Actor(role=Role.CITIZEN, person_id=PROPOSER))
        withdrawn = await handle.execute_update(ProposalWorkflow.withdraw, proposer)
        assert (withdrawn.status, withdrawn.supports_open, withdrawn.due_at) == (
            Status.WITHDRAWN,
            False,
            None,
        )
        final = await handle.result()
        assert final == withdrawn == run.stubs.proposal_row(pid)
        entry = run.stubs.timeline(pid)[-1]
        assert (entry.event, entry.actor_role, entry.note) == (
            "withdrawn",
            Role.CITIZEN,
            "withdrawn by the proposer",
        )

        voting, _ = await to_vote(run)
        too_late = await refused(voting.execute_update(ProposalWorkflow.withdraw, proposer))
        assert too_late.type == ErrorType.CONFLICT.value
        assert too_late.message == (
            "a proposal can be withdrawn only until the vote opens; it is voting"
        )
        assert (await proposal_state(voting)).status is Status.VOTING


# ---- proposal: the decision vote -----------------------------------------------------------


@pytest.mark.parametrize(
    ("yes", "no", "status"),
    [
        (500, 500, Status.NOT_PASSED),  # half is not more than half
        (501, 499, Status.EXECUTING),  # half + 1
    ],
)
async def test_the_vote_closes_on_day_30_and_passes_on_more_than_half(
    fresh_env: WorkflowEnvironment, yes: int, no: int, status: Status
) -> None:
    env = fresh_env
    tally = Tally(yes=yes, no=no, turnout=yes + no, digest=f"sha256:{yes}-{no}")
    async with stubbed_worker(env, tally=tally) as run:
        handle, pid = await to_vote(run, cost_krw=0)
        opened = await proposal_state(handle)
        assert opened.vote is not None
        assert opened.vote.closes_at - opened.vote.opens_at == 30 * DAY
        assert (opened.vote.quorum, opened.vote.yes, opened.due_at) == (
            1_000,  # seoul-2018 min_voters
            None,  # no count before the close
            opened.vote.closes_at,
        )

        await env.sleep(29 * DAY + 23 * timedelta(hours=1))
        await run.settle(handle)
        assert (await proposal_state(handle)).status is Status.VOTING
        assert run.stubs.tallied == []

        await env.sleep(timedelta(hours=1, seconds=1))
        await run.settle(handle)
        closed = await proposal_state(handle)
        assert run.stubs.tallied == [pid]
        assert closed.status is status
        assert closed.vote is not None
        assert (closed.vote.yes, closed.vote.no, closed.vote.turnout, closed.vote.digest) == (
            yes,
            no,
            1_000,
            tally.digest,
        )
        assert closed.vote.passed is (status is Status.EXECUTING)
        entry = run.stubs.timeline(pid)[-1]
        summary = f"yes {yes}, no {no}, turnout 1000 of quorum 1000; digest {tally.digest}"
        assert (entry.event, entry.actor_role, entry.note) == ("vote_closed", Role.SYSTEM, summary)
        assert opened.vote.closes_at <= entry.at < opened.vote.closes_at + timedelta(minutes=1)
        if status is Status.NOT_PASSED:
            assert closed.decision_reason == "the decision vote did not pass: " + summary
            assert await handle.result() == closed
        else:
            assert (closed.due_at, closed.overdue) == (None, False)  # non-budget work: no end
            # It waits for the final report, however long that takes.
            assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
        assert run.stubs.proposal_row(pid) == closed


async def test_budget_work_must_be_reported_within_two_years(
    fresh_env: WorkflowEnvironment,
) -> None:
    env = fresh_env
    tally = Tally(yes=501, no=499, turnout=1_000, digest="sha256:budget")
    async with stubbed_worker(env, tally=tally) as run:
        handle, pid = await to_vote(run, department="parks", cost_krw=50_000_000)
        await env.sleep(30 * DAY + timedelta(seconds=1))
        await run.settle(handle)
        executing = await proposal_state(handle)
        closed_at = last(run.stubs.timeline(pid), "vote_closed").at
        assert executing.status is Status.EXECUTING
        assert executing.due_at == add_years(closed_at, 2)  # execution.budget_years_max
        due_at = executing.due_at

        await env.sleep(due_at - closed_at - DAY)  # one day before the end of the second year
        await run.settle(handle)
        assert (await proposal_state(handle)).overdue is False
        assert run.stubs.notices_for(pid) == []

        await env.sleep(2 * DAY)
        await run.settle(handle)
        overdue = await proposal_state(handle)
        assert (overdue.status, overdue.overdue) == (Status.EXECUTING, True)
        assert notice_kinds(run.stubs.notices_for(pid)) == [
            ("deadline_missed", ["department:parks", "operations"])
        ]
        assert last(run.stubs.timeline(pid), "deadline_missed").stage == "executing"

        completed = await handle.execute_update(
            ProposalWorkflow.report_execution,
            ExecutionReport(
                actor=caseworker("parks"), progress_pct=100, note="all planted", final=True
            ),
        )
        assert (completed.status, completed.overdue, completed.progress_pct) == (
            Status.COMPLETED,
            False,
            100,
        )
        assert run.stubs.timeline(pid)[-1].note == "100%: all planted (after the deadline)"
        assert await handle.result() == completed


# ---- forum: close and count ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "participants", "for_", "eligible"),
    [
        (ForumKind.FOR_AGAINST, 4_999, 3_000, False),
        (ForumKind.FOR_AGAINST, 5_000, 3_000, True),
        (ForumKind.DISCUSSION, 4_999, 0, False),
        (ForumKind.DISCUSSION, 5_000, 0, True),
    ],
)
async def test_a_forum_closes_on_day_30_and_5000_participants_make_it_eligible(
    fresh_env: WorkflowEnvironment,
    kind: ForumKind,
    participants: int,
    for_: int,
    eligible: bool,
) -> None:
    env = fresh_env
    forum_id = StubbedRun.unique_id("f")
    tally = OpinionTally(
        participants=participants,
        for_=for_,
        against=participants - for_,
        other=0,
        opinions=12,
        digest=f"sha256:forum-{participants}",
    )
    rules = rulebooks.load("seoul-2020")
    async with stubbed_worker(env, opinion_tally={forum_id: tally}) as run:
        handle: WorkflowHandle[ForumWorkflow, ForumState] = await run.start(
            ForumWorkflow.run,
            ForumStart(forum_id=forum_id, kind=kind, rules=rules),
            id=forum_workflow_id(forum_id),
        )
        opened = await handle.query(ForumWorkflow.state)
        assert opened.status is ForumStatus.OPEN
        assert opened.opens_at is not None and opened.closes_at is not None
        assert opened.closes_at - opened.opens_at == 30 * DAY  # forum.days
        assert run.stubs.opened_boxes == [forum_id]
        first = run.stubs.timeline(forum_id)[0]
        assert (first.event, first.actor_role) == ("opened", Role.ADMIN)

        await env.sleep(29 * DAY)
        await run.settle(handle)
        assert (await handle.query(ForumWorkflow.state)).status is ForumStatus.OPEN
        assert run.stubs.counted_boxes == []

        await env.sleep(DAY + timedelta(seconds=1))
        await run.settle(handle)
        final = await handle.result()
        assert run.stubs.counted_boxes == [forum_id]
        assert (final.status, final.tally, final.eligible_for_deliberation) == (
            ForumStatus.CLOSED,
            tally,
            eligible,
        )
        closed = last(run.stubs.timeline(forum_id), "closed")
        assert opened.closes_at <= closed.at < opened.closes_at + timedelta(minutes=1)
        verdict = "eligible" if eligible else "not eligible"
        assert closed.note.endswith(f"{verdict} for deliberation (threshold 5000)")
        assert f"{participants} participants" in closed.note and tally.digest in closed.note
        if eligible:
            year, carried = deliberation_year(closed.at, "03-01", "08-31")
            assert (final.budget_year, final.carried_over) == (year, carried)
            assert run.stubs.events(forum_id) == ["opened", "closed", "handed_to_budget_year"]
        else:
            assert (final.budget_year, final.carried_over) == (None, None)
            assert run.stubs.events(forum_id) == ["opened", "closed"]
        newest = max(run.stubs.forum_projections, key=lambda p: p.entry.seq)
        assert newest.state == final


# ---- ask: the opinion period and the department's 60 days ----------------------------------


async def test_an_ask_opens_closes_and_escalates_its_60_day_review(
    fresh_env: WorkflowEnvironment,
) -> None:
    env = fresh_env
    ask_id = StubbedRun.unique_id("a")
    tally = OpinionTally(
        participants=4, for_=2, against=1, other=1, opinions=2, digest="sha256:ask"
    )
    requested_at = await env.get_current_time()
    opens_at = requested_at + 14 * DAY  # ask.request_lead_days (checked by the API)
    closes_at = opens_at + 30 * DAY  # ask.opinion_days (checked by the API)
    start = AskStart(
        ask_id=ask_id,
        department=ASK_DEPARTMENT,
        rules=rulebooks.load("seoul-2020"),
        opens_at=opens_at,
        closes_at=closes_at,
    )
    async with stubbed_worker(env, opinion_tally=tally) as run:
        handle: WorkflowHandle[AskWorkflow, AskState] = await run.start(
            AskWorkflow.run, start, id=ask_workflow_id(ask_id)
        )

        async def state() -> AskState:
            return await handle.query(AskWorkflow.state)

        review = AskReview(
            actor=caseworker(ASK_DEPARTMENT),
            summary="Relocation with shelters",
            actions="Budget 260 million KRW for shelters next year.",
        )
        early = await refused(handle.execute_update(AskWorkflow.review, review))
        assert early.type == ErrorType.CONFLICT.value
        assert ((await state()).status, run.stubs.events(ask_id)) == (
            AskStatus.SCHEDULED,
            ["requested"],
        )

        await env.sleep(13 * DAY)
        await run.settle(handle)
        assert (await state()).status is AskStatus.SCHEDULED
        assert run.stubs.opened_boxes == []

        await env.sleep(DAY + timedelta(minutes=1))
        await run.settle(handle)
        assert (await state()).status is AskStatus.OPEN
        assert run.stubs.opened_boxes == [ask_id]
        assert opens_at <= last(run.stubs.timeline(ask_id), "opened").at

        await env.sleep(29 * DAY)
        await run.settle(handle)
        assert (await state()).status is AskStatus.OPEN
        assert run.stubs.counted_boxes == []

        await env.sleep(DAY)
        await run.settle(handle)
        reviewing = await state()
        timeline = run.stubs.timeline(ask_id)
        closed = last(timeline, "closed")
        assert closes_at <= closed.at < closes_at + timedelta(minutes=1)
        assert run.stubs.counted_boxes == [ask_id]
        assert (reviewing.status, reviewing.tally, reviewing.overdue) == (
            AskStatus.DEPT_REVIEW,
            tally,
            False,
        )
        assert reviewing.due_at == closed.at + 60 * DAY  # ask.dept_review_days
        due_at = reviewing.due_at
        assert [t.event for t in timeline] == ["requested", "opened", "closed", "results_sent"]
        [results] = run.stubs.notices_for(ask_id)
        assert (results.kind, results.recipients, results.due_at) == (
            "ask_results",
            [f"department:{ASK_DEPARTMENT}"],
            due_at,
        )
        assert "4 participants (for 2, against 1, other 1), 2 opinions" in results.message

        other = await refused(
            handle.execute_update(
                AskWorkflow.review,
                AskReview(actor=caseworker("transport"), summary="x", actions="y"),
            )
        )
        assert other.type == ErrorType.FORBIDDEN.value

        await env.sleep(due_at - closed.at - DAY)  # day 59
        await run.settle(handle)
        assert ((await state()).status, (await state()).overdue) == (AskStatus.DEPT_REVIEW, False)
        assert len(run.stubs.notices_for(ask_id)) == 1

        await env.sleep(2 * DAY)  # day 61
        await run.settle(handle)
        overdue = await state()
        assert (overdue.status, overdue.overdue) == (AskStatus.DEPT_REVIEW, True)
        missed = last(run.stubs.timeline(ask_id), "deadline_missed")
        assert due_at <= missed.at < due_at + timedelta(minutes=1)
        await env.sleep(3 * DAY)  # escalation.reminder_days
        await run.settle(handle)
        recipients = [f"department:{ASK_DEPARTMENT}", "operations"]
        assert notice_kinds(run.stubs.notices_for(ask_id)) == [
            ("ask_results", [f"department:{ASK_DEPARTMENT}"]),
            ("deadline_missed", recipients),
            ("reminder_sent", recipients),
        ]
        assert (await state()).status is AskStatus.DEPT_REVIEW  # escalated, never decided

        published = await handle.execute_update(AskWorkflow.review, review)
        assert (published.status, published.overdue, published.due_at) == (
            AskStatus.PUBLISHED,
            False,
            None,
        )
        assert (published.review_summary, published.review_actions) == (
            review.summary,
            review.actions,
        )
        assert await handle.result() == published
        entry = run.stubs.timeline(ask_id)[-1]
        assert (entry.event, entry.actor_role, entry.note) == (
            "review_published",
            Role.CASEWORKER,
            "Relocation with shelters (answered after the deadline)",
        )
        assert run.stubs.events(ask_id) == [
            "requested",
            "opened",
            "closed",
            "results_sent",
            "deadline_missed",
            "reminder_sent",
            "review_published",
        ]
