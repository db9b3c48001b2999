"""The citizen-proposal process (process.md §1) as one long-lived workflow per proposal.

ripening → dept_review (assignment, 20-day answer) → committee_screening → planning →
appropriateness_check (10 days; revise → revising → planning again) → voting (≥ 30 days) →
executing (budget work within the rulebook's years) → completed; plus the terminal branches
rejected, dropped, discarded, not_passed and withdrawn.

Decisions arrive as Updates whose validators reject what the current stage does not allow, so a
rejected request writes nothing. Each handler applies its transition and awaits the projection,
so the API answers with Postgres already up to date. The run loop owns the clock: deadlines,
overdue escalation with reminders, the vote's opening and closing.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

from workflows.common import (
    OPERATIONS,
    CaseRecorder,
    activity_options,
    await_answer,
    counting_options,
    outlive_children,
    reject,
    require_idle,
    require_text,
    require_writable,
)
from workflows.forum import ForumWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.ballots import BallotBoxes
    from activities.forums import ForumRecords
    from activities.records import CaseRecords
    from models.calendar import add_days, add_years, in_seoul
    from models.case import Actor, ErrorType, Role, TimelineEntry
    from models.deliberation import ForumKind, ForumOpening, ForumStart
    from models.ids import forum_workflow_id
    from models.proposal import (
        TERMINAL,
        WITHDRAWABLE,
        AgendaDecision,
        AgendaPlan,
        AgendaState,
        AppropriatenessVerdict,
        Assignment,
        ExecutionPlan,
        ExecutionReport,
        PlanSummary,
        Projection,
        ProposalStart,
        ProposalState,
        ReviewAnswer,
        Screening,
        ScreeningResult,
        Status,
        VoteState,
        Withdrawal,
    )
    from models.rules import ProposalRules

AGENDA_SELECTION_GROUP = "agenda-selection-group"
SCREENING_CRITERIA = ("necessity", "changeability", "feasibility", "impact")


@workflow.defn
class ProposalWorkflow(CaseRecorder):
    @workflow.init
    def __init__(self, start: ProposalStart) -> None:
        self._start = start
        #: The forum this run opened (an abandoned child: it outlives the proposal's stages).
        self._children: list[workflow.ChildWorkflowHandle[Any, Any]] = []
        book = start.rules.rulebook
        if book.proposal is None or book.execution is None or book.escalation is None:
            raise ApplicationError(f"rulebook {start.rules.name} lacks proposal rules")
        self._rules: ProposalRules = book.proposal
        self._budget_years = book.execution.budget_years_max
        self._reminder = timedelta(days=book.escalation.reminder_days)
        self._state = ProposalState(proposal_id=start.proposal_id)
        self._timeline: list[TimelineEntry] = []
        self._threshold_reached = False
        #: The linked-budget path (seoul-2020 and later); None under seoul-2018.
        self._linked = book.linked
        self._agenda_group_size = book.sortition.agenda_group_size if book.sortition else None
        self._forum_threshold_reached = False
        self._support_window_ends: datetime | None = None
        #: Increases at every change of stage, so a wait can tell "left this stage" even when
        #: the next stage has the same status (a revised plan is checked again).
        self._stage_no = 0
        #: Projections (and the forum's opening) in flight: no decision is taken while one is,
        #: so none acts on a state Postgres does not show yet (see `require_idle`).
        self._recording = 0

    # ---- queries -------------------------------------------------------------------------

    @workflow.query
    def state(self) -> ProposalState:
        return self._state

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        return self._timeline

    # ---- the run loop: time and system events --------------------------------------------

    @workflow.run
    async def run(self, start: ProposalStart) -> ProposalState:
        await self._record(
            "submitted",
            Role.CITIZEN,
            f"rulebook {start.rules.name} ({start.rules.content_hash})",
        )
        if self._linked is not None:
            await self._linked_support_window()
        while self._state.status not in TERMINAL:
            status = self._state.status
            if status is Status.RIPENING:
                await workflow.wait_condition(
                    lambda: self._threshold_reached or self._state.status is not Status.RIPENING
                )
                if self._state.status is Status.RIPENING:
                    await self._enter(
                        Status.DEPT_REVIEW,
                        "support_threshold_reached",
                        Role.SYSTEM,
                        f"{self._rules.review_support_threshold} supports reached; "
                        "awaiting assignment to a department",
                    )
            elif status is Status.DEPT_REVIEW and self._state.department is None:
                await workflow.wait_condition(
                    lambda: (
                        self._state.department is not None
                        or self._state.status is not Status.DEPT_REVIEW
                    )
                )
            elif status in (Status.DEPT_REVIEW, Status.APPROPRIATENESS_CHECK):
                await self._await_answer()
            elif status is Status.EXECUTING and self._state.due_at is not None:
                await self._await_answer()
            elif status is Status.VOTING:
                await self._run_vote()
            elif status is Status.AGENDA_SELECTION:
                await self._await_answer()
            else:
                await self._await_stage_change()
        # The handler that made the last transition may still be writing its projection.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await outlive_children(self._children, "proposal-outlives-its-forum")
        return self._state

    async def _linked_support_window(self) -> None:
        """Linked path (process.md §4): enough supports within the window → agenda selection.

        Reading: while the window runs, the 2018 trigger (10 supports → department review) waits,
        so one proposal never runs two decision tracks at once; when the window closes short of
        the forum threshold, the proposal goes on under the 2018 rules of its rulebook, and
        to department review at once if it already has their 10 supports.
        """
        linked = self._linked
        assert linked is not None
        window = timedelta(days=linked.support_window_days)
        self._support_window_ends = workflow.info().start_time + window
        try:
            await workflow.wait_condition(
                lambda: self._forum_threshold_reached or self._state.status is not Status.RIPENING,
                timeout=window,
            )
        except TimeoutError:
            await self._record(
                "support_window_closed",
                Role.SYSTEM,
                f"fewer than {linked.forum_support_threshold} supports within "
                f"{linked.support_window_days} days; the proposal pipeline continues",
            )
            return
        if self._state.status is not Status.RIPENING:
            return
        now = workflow.now()
        self._state.agenda = AgendaState(
            threshold_at=now,
            decision_from=add_days(now, linked.agenda_min_days),
            due_at=add_days(now, linked.agenda_max_days),
        )
        await self._enter(
            Status.AGENDA_SELECTION,
            "forum_threshold_reached",
            Role.SYSTEM,
            f"{linked.forum_support_threshold} supports within {linked.support_window_days} days;"
            f" the selection group decides between "
            f"{in_seoul(self._state.agenda.decision_from).isoformat()} and "
            f"{in_seoul(self._state.agenda.due_at).isoformat()}",
            due_at=self._state.agenda.due_at,
        )

    async def _await_stage_change(self) -> None:
        stage_no = self._stage_no
        await workflow.wait_condition(lambda: self._stage_no != stage_no)

    async def _await_answer(self) -> None:
        """Wait for the answer the stage requires; past the deadline, escalate and remind."""
        stage_no = self._stage_no
        assert self._state.due_at is not None

        def mark_overdue() -> None:
            self._state.overdue = True

        await await_answer(
            lambda: self._stage_no != stage_no,
            due_at=self._state.due_at,
            reminder=self._reminder,
            case_id=self._start.proposal_id,
            stage=self._state.status.value,
            party=self._responsible_department(),
            mark_overdue=mark_overdue,
            record=self._record,
        )

    async def _run_vote(self) -> None:
        vote = self._state.vote
        assert vote is not None
        await workflow.sleep(max(vote.closes_at - workflow.now(), timedelta(0)))
        tally = await workflow.execute_activity_method(
            BallotBoxes.close_and_tally,
            self._start.proposal_id,
            **counting_options(),
        )
        vote.yes, vote.no, vote.turnout, vote.digest = (
            tally.yes,
            tally.no,
            tally.turnout,
            tally.digest,
        )
        vote.passed = self._rules.passes(yes=tally.yes, turnout=tally.turnout, quorum=vote.quorum)
        summary = (
            f"yes {tally.yes}, no {tally.no}, turnout {tally.turnout} of quorum {vote.quorum}; "
            f"digest {tally.digest}"
        )
        if not vote.passed:
            self._state.decision_reason = "the decision vote did not pass: " + summary
            await self._enter(Status.NOT_PASSED, "vote_closed", Role.SYSTEM, summary)
            return
        # Non-budget work starts at once with no statutory end; budget work must report its
        # completion within the rulebook's years, or it becomes overdue like any other answer.
        due_at = add_years(workflow.now(), self._budget_years) if self._plan_cost() > 0 else None
        await self._enter(Status.EXECUTING, "vote_closed", Role.SYSTEM, summary, due_at=due_at)

    # ---- signals and updates: what people do ---------------------------------------------

    @workflow.signal
    def support_threshold_reached(self, reached_at: datetime | None = None) -> None:
        """Sent when the supports counted in Postgres reach the threshold; idempotent."""
        self._threshold_reached = True

    @workflow.signal
    def forum_threshold_reached(self, reached_at: datetime | None = None) -> None:
        """Sent when the supports reach the linked path's forum threshold, with the time of the
        support that reached it; idempotent. Only a threshold reached within the support window
        counts, however late its signal arrives (signals recorded before it carried a time
        count as they arrive, as they did then)."""
        if reached_at is None or self._support_window_ends is None:
            self._forum_threshold_reached = True
        elif reached_at < self._support_window_ends:
            self._forum_threshold_reached = True

    @workflow.update
    async def plan_agenda(self, command: AgendaPlan) -> ProposalState:
        agenda = self._state.agenda
        assert agenda is not None
        revised = agenda.agenda_title is not None
        agenda.agenda_title = command.agenda_title
        agenda.summary = command.summary
        agenda.forum_kind = command.forum_kind
        agenda.selection_draw_id = command.selection_draw_id
        agenda.selection_members = command.selection_members
        group = (
            f"; selection group: draw {command.selection_draw_id} "
            f"({command.selection_members} members)"
            if command.selection_draw_id
            else ""
        )
        await self._record(
            "agenda_revised" if revised else "agenda_planned",
            command.actor.role,
            f"{command.forum_kind} agenda: {command.agenda_title}{group}",
        )
        return self._state

    @plan_agenda.validator
    def _validate_plan_agenda(self, command: AgendaPlan) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.ADMIN)
        self._require_status(Status.AGENDA_SELECTION)
        require_text(command.agenda_title, "agenda_title")
        require_text(command.summary, "summary")
        if command.forum_kind not in ("for_against", "discussion"):
            raise reject(ErrorType.INVALID, "forum_kind must be for_against or discussion")

    @workflow.update
    async def decide_agenda(self, command: AgendaDecision) -> ProposalState:
        agenda = self._state.agenda
        assert agenda is not None
        agenda.hold_forum = command.hold_forum
        agenda.votes_for = command.votes_for
        agenda.votes_against = command.votes_against
        agenda.reason = command.reason
        late = " (decided after the deadline)" if self._state.overdue else ""
        votes = f"{command.votes_for} for, {command.votes_against} against"
        if not command.hold_forum:
            self._state.decision_reason = command.reason
            await self._enter(
                Status.NOT_SELECTED,
                "forum_declined",
                command.actor.role,
                f"{votes}: {command.reason}{late}",
            )
            return self._state
        agenda.forum_id = str(workflow.uuid4())
        await self._open_forum(agenda)
        await self._enter(
            Status.FORUM,
            "forum_decided",
            command.actor.role,
            f"{votes}: {command.reason}{late}; forum {agenda.forum_id} opened. From now on the "
            "proposer's withdrawal no longer stops it",
        )
        return self._state

    @decide_agenda.validator
    def _validate_decide_agenda(self, command: AgendaDecision) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.COMMITTEE)
        self._require_status(Status.AGENDA_SELECTION)
        agenda = self._state.agenda
        assert agenda is not None
        if agenda.agenda_title is None:
            raise reject(ErrorType.CONFLICT, "the planning group's agenda comes first")
        if workflow.now() < agenda.decision_from:
            raise reject(
                ErrorType.CONFLICT,
                "the selection group decides no earlier than "
                f"{in_seoul(agenda.decision_from).isoformat()} (linked.agenda_min_days)",
            )
        require_text(command.reason, "reason")
        if command.votes_for < 0 or command.votes_against < 0:
            raise reject(ErrorType.INVALID, "votes must not be negative")
        size = agenda.selection_members or self._agenda_group_size
        if size is not None and command.votes_for + command.votes_against > size:
            raise reject(ErrorType.INVALID, f"more votes than the {size} members of the group")
        if command.hold_forum != (command.votes_for > command.votes_against):
            raise reject(
                ErrorType.INVALID,
                "hold_forum must follow the group's majority (votes_for > votes_against)",
            )

    async def _open_forum(self, agenda: AgendaState) -> None:
        """Hold the forum: its record, then its own workflow, which outlives this one."""
        assert agenda.forum_id and agenda.agenda_title and agenda.summary and agenda.forum_kind
        kind = ForumKind(agenda.forum_kind)
        self._recording += 1
        try:
            await self._start_forum(agenda, kind)
        finally:
            self._recording -= 1

    async def _start_forum(self, agenda: AgendaState, kind: ForumKind) -> None:
        assert agenda.forum_id and agenda.agenda_title and agenda.summary
        await workflow.execute_activity_method(
            ForumRecords.record_forum,
            ForumOpening(
                forum_id=agenda.forum_id,
                title=agenda.agenda_title,
                body=agenda.summary,
                kind=kind,
                rules=self._start.rules,
                created_by=AGENDA_SELECTION_GROUP,
                origin_proposal_id=self._start.proposal_id,
            ),
            **activity_options(),
        )
        forum = await workflow.start_child_workflow(
            ForumWorkflow.run,
            ForumStart(
                forum_id=agenda.forum_id,
                kind=kind,
                rules=self._start.rules,
                origin_proposal_id=self._start.proposal_id,
            ),
            id=forum_workflow_id(agenda.forum_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._children.append(forum)

    @workflow.update
    async def assign(self, command: Assignment) -> ProposalState:
        self._state.department = command.department
        self._state.due_at = add_days(workflow.now(), self._rules.dept_review_days)
        note = command.department + (f": {command.note}" if command.note else "")
        await self._record("department_assigned", command.actor.role, note)
        return self._state

    @assign.validator
    def _validate_assign(self, command: Assignment) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.ADMIN)
        self._require_status(Status.DEPT_REVIEW)
        if self._state.department is not None:
            raise reject(
                ErrorType.CONFLICT, f"already assigned to department {self._state.department}"
            )
        require_text(command.department, "department")

    @workflow.update
    async def review(self, command: ReviewAnswer) -> ProposalState:
        self._state.decision_reason = command.reason
        note = command.reason + (" (answered after the deadline)" if self._state.overdue else "")
        if command.decision == "accept":
            await self._enter(
                Status.COMMITTEE_SCREENING, "review_accepted", command.actor.role, note
            )
        else:
            await self._enter(Status.REJECTED, "review_rejected", command.actor.role, note)
        return self._state

    @review.validator
    def _validate_review(self, command: ReviewAnswer) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.CASEWORKER)
        self._require_status(Status.DEPT_REVIEW)
        if self._state.department is None:
            raise reject(ErrorType.CONFLICT, "no department is assigned yet")
        self._require_department(command.actor, self._state.department)
        if command.decision not in ("accept", "reject"):
            raise reject(ErrorType.INVALID, "decision must be accept or reject")
        require_text(command.reason, "reason")

    @workflow.update
    async def screen(self, command: Screening) -> ProposalState:
        self._state.screening = ScreeningResult(
            decision=command.decision, scores=dict(command.scores), note=command.note
        )
        scores = ", ".join(f"{k} {command.scores[k]}" for k in SCREENING_CRITERIA)
        note = f"{scores}. {command.note}".strip()
        if command.decision == "advance":
            await self._enter(Status.PLANNING, "screening_advanced", command.actor.role, note)
        else:
            self._state.decision_reason = command.note or "dropped at committee screening"
            await self._enter(Status.DROPPED, "screening_dropped", command.actor.role, note)
        return self._state

    @screen.validator
    def _validate_screen(self, command: Screening) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.COMMITTEE)
        self._require_status(Status.COMMITTEE_SCREENING)
        if command.decision not in ("advance", "drop"):
            raise reject(ErrorType.INVALID, "decision must be advance or drop")
        if set(command.scores) != set(SCREENING_CRITERIA):
            raise reject(
                ErrorType.INVALID, "scores must rate exactly " + ", ".join(SCREENING_CRITERIA)
            )
        if command.decision == "drop":
            require_text(command.note, "note")

    @workflow.update
    async def plan(self, command: ExecutionPlan) -> ProposalState:
        self._state.plan = PlanSummary(
            summary=command.summary,
            executing_department=command.executing_department,
            cost_krw=command.cost_krw,
            revision=self._state.plan.revision + 1 if self._state.plan else 0,
        )
        self._state.executing_department = command.executing_department
        revised = self._state.status is Status.REVISING
        await self._enter(
            Status.APPROPRIATENESS_CHECK,
            "plan_revised" if revised else "plan_submitted",
            command.actor.role,
            f"{command.executing_department} checks; cost {command.cost_krw} KRW",
            due_at=add_days(workflow.now(), self._rules.appropriateness_days),
        )
        return self._state

    @plan.validator
    def _validate_plan(self, command: ExecutionPlan) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.COMMITTEE)
        self._require_status(Status.PLANNING, Status.REVISING)
        require_text(command.summary, "summary")
        require_text(command.executing_department, "executing_department")
        if command.cost_krw < 0:
            raise reject(ErrorType.INVALID, "cost_krw must not be negative")

    @workflow.update
    async def check_appropriateness(self, command: AppropriatenessVerdict) -> ProposalState:
        role = command.actor.role
        late = " (answered after the deadline)" if self._state.overdue else ""
        if command.verdict == "appropriate":
            now = workflow.now()
            vote = VoteState(
                opens_at=now,
                closes_at=add_days(now, self._rules.vote_days),
                quorum=self._rules.quorum(self._plan_cost()),
            )
            self._state.vote = vote
            closes = in_seoul(vote.closes_at).isoformat()
            await self._enter(
                Status.VOTING,
                "plan_appropriate",
                role,
                f"{command.reason}{late}; vote open until {closes}, quorum {vote.quorum}",
                due_at=vote.closes_at,
            )
        elif command.verdict == "revise":
            await self._enter(
                Status.REVISING, "plan_revision_requested", role, command.reason + late
            )
        else:
            self._state.decision_reason = command.reason
            await self._enter(Status.DISCARDED, "plan_discarded", role, command.reason + late)
        return self._state

    @check_appropriateness.validator
    def _validate_appropriateness(self, command: AppropriatenessVerdict) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.CASEWORKER)
        self._require_status(Status.APPROPRIATENESS_CHECK)
        self._require_department(command.actor, self._state.executing_department)
        if command.verdict not in ("appropriate", "revise", "discard"):
            raise reject(ErrorType.INVALID, "verdict must be appropriate, revise or discard")
        require_text(command.reason, "reason")

    @workflow.update
    async def report_execution(self, command: ExecutionReport) -> ProposalState:
        self._state.progress_pct = command.progress_pct
        note = f"{command.progress_pct}%: {command.note}"
        if command.final:
            late = " (after the deadline)" if self._state.overdue else ""
            await self._enter(Status.COMPLETED, "final_report", command.actor.role, note + late)
        else:
            await self._record("progress_reported", command.actor.role, note)
        return self._state

    @report_execution.validator
    def _validate_report(self, command: ExecutionReport) -> None:
        require_writable(command)
        self._require_role(command.actor, Role.CASEWORKER)
        self._require_status(Status.EXECUTING)
        self._require_department(command.actor, self._state.executing_department)
        if not 0 <= command.progress_pct <= 100:
            raise reject(ErrorType.INVALID, "progress_pct must be between 0 and 100")
        if command.final and command.progress_pct != 100:
            raise reject(ErrorType.INVALID, "a final report has progress_pct 100")
        require_text(command.note, "note")

    @workflow.update
    async def withdraw(self, command: Withdrawal) -> ProposalState:
        await self._enter(Status.WITHDRAWN, "withdrawn", Role.CITIZEN, "withdrawn by the proposer")
        return self._state

    @withdraw.validator
    def _validate_withdraw(self, command: Withdrawal) -> None:
        require_writable(command)
        if command.actor.person_id != self._start.proposer_id:
            raise reject(ErrorType.FORBIDDEN, "only the proposer may withdraw a proposal")
        require_idle(self._recording)
        if self._state.status not in WITHDRAWABLE:
            raise reject(
                ErrorType.CONFLICT,
                "a proposal can be withdrawn only until the vote opens; "
                f"it is {self._state.status.value}",
            )

    # ---- helpers -------------------------------------------------------------------------

    def _plan_cost(self) -> int:
        return self._state.plan.cost_krw if self._state.plan else 0

    def _responsible_department(self) -> str:
        if self._state.status is Status.AGENDA_SELECTION:
            return AGENDA_SELECTION_GROUP
        if self._state.status is Status.DEPT_REVIEW:
            return self._state.department or OPERATIONS
        return self._state.executing_department or OPERATIONS

    def _require_status(self, *allowed: Status) -> None:
        require_idle(self._recording)
        if self._state.status not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise reject(
                ErrorType.CONFLICT,
                f"the proposal is {self._state.status.value}, not {wanted}",
            )

    @staticmethod
    def _require_role(actor: Actor, role: Role) -> None:
        if actor.role is not role:
            raise reject(ErrorType.FORBIDDEN, f"only a {role.value} may do this")

    @staticmethod
    def _require_department(actor: Actor, department: str | None) -> None:
        if department is None or actor.department != department:
            raise reject(ErrorType.FORBIDDEN, f"this case belongs to department {department}")

    async def _enter(
        self,
        status: Status,
        event: str,
        role: Role,
        note: str,
        *,
        due_at: datetime | None = None,
    ) -> TimelineEntry:
        """Move to a new stage: a fresh deadline (or none), not overdue, one timeline entry."""
        self._state.status = status
        self._state.due_at = due_at
        self._state.overdue = False
        if status not in (Status.RIPENING, Status.DEPT_REVIEW, Status.AGENDA_SELECTION):
            self._state.supports_open = False
        self._stage_no += 1
        return await self._record(event, role, note)

    def _stage(self) -> str:
        return self._state.status

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        return CaseRecords.project_proposal, Projection(
            state=copy.deepcopy(self._state), entry=entry
        )
