""" "Seoul asks" (서울시가 묻습니다, process.md §2): a department asks citizens.

scheduled (until the opinion period opens, at least `ask.request_lead_days` after the request)
→ open (at least `ask.opinion_days`; positions and opinions in the shared opinion box) →
dept_review (the counts and digest are sent to the asking department, which reviews them within
`ask.dept_review_days`; a missed deadline escalates with reminders, never decides) → published.

Participation, opinions, reports and moderation live in Postgres; the workflow opens the box,
closes and counts it, hands the results to the department and waits for its review, which
arrives as an Update whose validator rejects what the current stage does not allow.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.common import (
    CaseRecorder,
    activity_options,
    await_answer,
    counting_options,
    reject,
    require_idle,
    require_text,
    require_writable,
)

with workflow.unsafe.imports_passed_through():
    from activities.notices import Notices
    from activities.opinions import OpinionBoxes
    from activities.records import AskProjection, CaseRecords
    from models.calendar import add_days, in_seoul
    from models.case import ErrorType, Notice, Role, TimelineEntry
    from models.deliberation import AskReview, AskStart, AskState, AskStatus

    # Imported here so the sandbox knows the module when it resolves AskStart.rules's types.
    from models.rules import AskRules


@workflow.defn
class AskWorkflow(CaseRecorder):
    @workflow.init
    def __init__(self, start: AskStart) -> None:
        self._start = start
        book = start.rules.rulebook
        if book.ask is None or book.escalation is None:
            raise ApplicationError(f"rulebook {start.rules.name} has no Seoul-asks rules")
        self._rules: AskRules = book.ask
        self._reminder = timedelta(days=book.escalation.reminder_days)
        self._state = AskState(ask_id=start.ask_id)
        self._timeline: list[TimelineEntry] = []
        #: Projections in flight: no decision is taken while one is (see `require_idle`).
        self._recording = 0

    @workflow.query
    def state(self) -> AskState:
        return self._state

    @workflow.run
    async def run(self, start: AskStart) -> AskState:
        department = start.department
        opens, closes = in_seoul(start.opens_at), in_seoul(start.closes_at)
        await self._record(
            "requested",
            Role.CASEWORKER,
            f"asked by department {department}, rulebook {start.rules.name} "
            f"({start.rules.content_hash}); opinions from {opens.isoformat()} "
            f"until {closes.isoformat()}",
        )
        await workflow.sleep(max(start.opens_at - workflow.now(), timedelta(0)))
        await workflow.execute_activity_method(
            OpinionBoxes.open_box, start.ask_id, **activity_options()
        )
        self._state.status = AskStatus.OPEN
        await self._record("opened", Role.SYSTEM, f"open until {closes.isoformat()}")

        await workflow.sleep(max(start.closes_at - workflow.now(), timedelta(0)))
        tally = await workflow.execute_activity_method(
            OpinionBoxes.close_and_count, start.ask_id, **counting_options()
        )
        self._state.tally = tally
        # The department's review clock starts when the opinion period closes.
        due_at = add_days(workflow.now(), self._rules.dept_review_days)
        counts = (
            f"{tally.participants} participants (for {tally.for_}, against {tally.against}, "
            f"other {tally.other}), {tally.opinions} opinions; digest {tally.digest}"
        )
        closed = await self._record("closed", Role.SYSTEM, counts)

        # The vote result and the opinions go to the department (process.md §2).
        await workflow.execute_activity_method(
            Notices.enqueue,
            Notice(
                key=f"{workflow.info().workflow_id}:{closed.seq}",
                case_id=start.ask_id,
                recipients=[f"department:{department}"],
                kind="ask_results",
                message=f"Seoul asks {start.ask_id}: {counts}. "
                f"Please publish your review by {in_seoul(due_at).isoformat()}.",
                due_at=due_at,
            ),
            **activity_options(),
        )
        self._state.status = AskStatus.DEPT_REVIEW
        self._state.due_at = due_at
        await self._record(
            "results_sent",
            Role.SYSTEM,
            f"to department {department}; review due {in_seoul(due_at).isoformat()}",
        )

        def mark_overdue() -> None:
            self._state.overdue = True

        await await_answer(
            lambda: self._state.status is not AskStatus.DEPT_REVIEW,
            due_at=due_at,
            reminder=self._reminder,
            case_id=start.ask_id,
            stage=AskStatus.DEPT_REVIEW.value,
            party=department,
            mark_overdue=mark_overdue,
            record=self._record,
        )
        # The review handler may still be writing its projection.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    @workflow.update
    async def review(self, command: AskReview) -> AskState:
        late = " (answered after the deadline)" if self._state.overdue else ""
        self._state.status = AskStatus.PUBLISHED
        self._state.review_summary = command.summary
        self._state.review_actions = command.actions
        self._state.due_at = None
        self._state.overdue = False
        await self._record("review_published", command.actor.role, command.summary + late)
        return self._state

    @review.validator
    def _validate_review(self, command: AskReview) -> None:
        department = self._start.department
        if command.actor.role is not Role.CASEWORKER or command.actor.department != department:
            raise reject(
                ErrorType.FORBIDDEN, f"only a caseworker of department {department} may do this"
            )
        require_idle(self._recording)
        if self._state.status is not AskStatus.DEPT_REVIEW:
            raise reject(
                ErrorType.CONFLICT,
                f"the ask is {self._state.status.value}, not {AskStatus.DEPT_REVIEW.value}",
            )
        require_text(command.summary, "summary")
        require_text(command.actions, "actions")
        require_writable(command)

    def _stage(self) -> str:
        return self._state.status.value

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        projection = AskProjection(state=copy.deepcopy(self._state), entry=entry)
        return CaseRecords.project_ask, projection
