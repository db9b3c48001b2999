"""A budget project (process.md §5, §6, §6a): `project-{id}`, one workflow per project.

A metropolitan project (광역제안형, kind `metro`):

    submitted -> (screening, admin)       eligible | ineligible | transferred (to a district)
    eligible  -> (council review, committee) candidate | not_advanced
    candidate -> (the vote, a `vote_result` signal from the cycle) selected | dropped
    submitted | eligible | candidate -> withdrawn (the proposer; never a linked item)

A governance project (광역협치형, kind `governance`, §7) follows the metropolitan path and
commands (§6a: the same two-stage review and vote); at screening it has no cap but must fit the
type's yearly ceiling alone (the API holds the year's candidates together under it).

A deliberative project (숙의형, kind `deliberative`): an existing programme (a caseworker) or a
new item (a member of the field's citizen council; entered during deliberation, it starts on
the list):

    submitted   -> (a `shortlist_result` signal from the cycle)  shortlisted | not_shortlisted
    shortlisted -> (`deliberate`, the council: continue | resize)  shortlisted, at the new cost
    shortlisted -> (`deliberate`, the council: end)                ended
    shortlisted -> (the vote, `vote_result`)                       selected | dropped
    submitted | shortlisted -> withdrawn (the proposer)

Screening, the council review and objections are the metropolitan type's: a deliberative
project refuses them (409). Every branch of the deliberative type is gated by its kind or is a
handler of its own, so a metropolitan project's commands are the same as before.

Decisions are Updates whose validators refuse what the state does not allow (409), a wrong
actor (403) or input that breaks a rule (422), with nothing written. Screening checks the rules
of §6: the cost must be *below* the cap (`metro.cap_general_krw`, or `metro.cap_event_krw` for a
programme or event: both caps are exclusive, 미만) and at least `metro.min_districts` districts
must benefit. An answer to an objection may adjust the cost, which must stay below the cap.

**Reading of the review's weighted total:** each of the four scores is 0..100; inclusiveness
(사회적 포용성) weighs `review.inclusiveness_weight` and the remaining weight is split evenly
between necessity, feasibility and impact, so the total is again 0..100
(`models.project.weighted_total`). The total is recorded; the council's `advance` decides.

Which phase of the cycle a write belongs to (call, screening, council_review, objections;
forming, shortlist, deliberation) and who sits on a council are checked by the API against
Postgres (`budget_cycles.phases`, `budget_body_members`): the cycle workflow owns the phases,
this one owns the project's stage.

Follow-up: the project is started by the API as a standalone workflow with its `year` in the
start. Making it a child of the cycle (`budget-cycle-{year}`), which would then send
`vote_result` to its children, is left for when the cycle's module is free to change.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow

from workflows.common import (
    OPERATIONS,
    CaseRecorder,
    await_answer,
    reject,
    require_idle,
    require_text,
    require_writable,
)

#: Selected projects go on to their execution in Y+1; those selected before it end there.
EXECUTION_PATCH = "project-execution-in-y-plus-1"

with workflow.unsafe.imports_passed_through():
    from activities.projects import ProjectRecords
    from models.budget import BALLOT_STATUS
    from models.calendar import in_seoul, seoul_midnight
    from models.case import ErrorType, Role, TimelineEntry
    from models.project import (
        DELIBERATION_ACTIONS,
        DELIBERATIVE,
        FINAL,
        GOVERNANCE,
        METRO,
        SCORE_MAX,
        SCORE_NAMES,
        TWO_STAGE_KINDS,
        WITHDRAWABLE,
        CouncilReview,
        Deliberation,
        DeliberationRecord,
        Eligibility,
        Evaluation,
        ExecutingDepartment,
        ExecutionCouncil,
        ExecutionRecord,
        FormExecutionCouncil,
        ObjectionAnswer,
        ObjectionFiled,
        ObjectionRecord,
        ProjectExecutionReport,
        ProjectProjection,
        ProjectStart,
        ProjectState,
        ProjectStatus,
        ProjectVoteResult,
        ProjectWithdrawal,
        ReviewRecord,
        Screening,
        ShortlistResult,
        weighted_total,
    )
    from models.rules import MetroRules, ReviewRules
    from models.sortition import DISTRICTS


def _krw(amount: int) -> str:
    return f"{amount:,} KRW"


@workflow.defn
class ProjectWorkflow(CaseRecorder):
    @workflow.init
    def __init__(self, start: ProjectStart) -> None:
        self._start = start
        self._state = ProjectState(
            project_id=start.project_id,
            year=start.year,
            kind=start.kind,
            field=start.field,
            cost_krw=start.cost_krw,
            event=start.event,
            districts=list(start.districts),
            department=start.department,
        )
        if start.kind == DELIBERATIVE and start.shortlisted:
            self._state.status = ProjectStatus.SHORTLISTED
        self._timeline: list[TimelineEntry] = []
        self._recording = 0

    @workflow.query
    def state(self) -> ProjectState:
        return self._state

    @workflow.run
    async def run(self, start: ProjectStart) -> ProjectState:
        if start.kind == DELIBERATIVE:
            await self._record_deliberative_submission(start)
        else:
            await self._record(
                "submitted",
                Role.CITIZEN,
                f"{start.kind} project for the {start.year} cycle, field {start.field}, "
                f"{_krw(start.cost_krw)}{' (programme/event)' if start.event else ''}, "
                f"{len(start.districts)} district(s); rulebook {start.rules.name} "
                f"({start.rules.content_hash})",
            )
        await workflow.wait_condition(lambda: self._state.status in FINAL)
        if self._state.status is ProjectStatus.SELECTED and workflow.patched(EXECUTION_PATCH):
            completed = await self._execute()
            if completed and self._state.kind == GOVERNANCE:
                await self._await_evaluation()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    # ---- execution in Y+1 (process.md §6: every selected project is monitored) ----------------

    async def _execute(self) -> bool:
        """From 1 January of Y+1 until the final report: a progress report at least every
        `monitoring.report_days`, the final one by the end of the project's last year; each
        report missed is escalated to its department and the operations team, then reminded
        every `escalation.reminder_days` until it comes. True once the final report is in."""
        book = self._start.rules.rulebook
        execution = self._execution()
        starts = seoul_midnight(date(self._start.year + 1, 1, 1))
        last_year = max([y.year for y in self._start.years] or [self._start.year + 1])
        final_due = seoul_midnight(date(last_year + 1, 1, 1))
        await workflow.sleep(max(starts - workflow.now(), timedelta(0)))
        report_every = (
            timedelta(days=book.monitoring.report_days) if book.monitoring is not None else None
        )
        reminder = timedelta(days=self._reminder_days())
        self._state.status = ProjectStatus.EXECUTING
        execution.started_at = workflow.now().isoformat()
        execution.final_due_at = final_due.isoformat()
        by = execution.department or "a department the operations team has yet to name"
        await self._record(
            "execution_started",
            Role.SYSTEM,
            f"execution by {by}; final report due {in_seoul(final_due).date().isoformat()}"
            + (
                f", a progress report at least every {report_every.days} days"
                if report_every
                else ""
            ),
        )
        while self._state.status is ProjectStatus.EXECUTING:
            reports = execution.reports
            due = final_due
            if report_every is not None and workflow.now() < final_due:
                last = (
                    datetime.fromisoformat(execution.last_report_at)
                    if execution.last_report_at
                    else starts
                )
                due = min(last + report_every, final_due)
            execution.next_report_due_at = due.isoformat()

            final = due == final_due

            def answered(reports: int = reports, final: bool = final) -> bool:
                if self._state.status is not ProjectStatus.EXECUTING:
                    return True
                return not final and execution.reports != reports

            def mark_overdue() -> None:
                execution.overdue = True

            await await_answer(
                answered,
                due_at=due,
                reminder=reminder,
                case_id=self._start.project_id,
                stage="final report" if final else "progress report",
                party=execution.department or OPERATIONS,
                mark_overdue=mark_overdue,
                record=self._record,
                # a progress report owed at the final report's due date gives way to it
                until=None if final else final_due,
            )
        return self._state.status is ProjectStatus.COMPLETED

    def _execution(self) -> ExecutionRecord:
        """The execution record, begun under the project's own department if it has none."""
        if self._state.execution is None:
            self._state.execution = ExecutionRecord(department=self._state.department)
        return self._state.execution

    async def _await_evaluation(self) -> None:
        """A completed governance project waits for its evaluation, due at the December
        results meeting of the year its final report came in (escalated to the operations
        team if it has not come by the end of that December)."""
        completed = workflow.now()
        local = in_seoul(completed)
        due = seoul_midnight(date(local.year + 1, 1, 1))

        await await_answer(
            lambda: self._state.evaluation is not None,
            due_at=due,
            reminder=timedelta(days=self._reminder_days()),
            case_id=self._start.project_id,
            stage="evaluation at the December results meeting",
            party=OPERATIONS,
            mark_overdue=lambda: None,
            record=self._record,
        )

    def _reminder_days(self) -> int:
        escalation = self._start.rules.rulebook.escalation
        return escalation.reminder_days if escalation is not None else 3

    @workflow.update
    async def evaluate(self, command: Evaluation) -> ProjectState:
        self._state.evaluation = dataclasses.replace(
            command, recorded_at=workflow.now().isoformat()
        )
        await self._record(
            "evaluated",
            Role.ADMIN,
            f"results meeting of {command.results_meeting_on}: {command.findings}",
        )
        return self._state

    @evaluate.validator
    def _validate_evaluation(self, command: Evaluation) -> None:
        require_writable(command)
        self._require_role(command.actor_role, Role.ADMIN, "the evaluation")
        require_idle(self._recording)
        if self._state.kind != GOVERNANCE:
            raise reject(
                ErrorType.CONFLICT,
                f"the evaluation at the results meeting is the governance type's (process.md "
                f"§7); this project is {self._state.kind}",
            )
        self._require_status(ProjectStatus.COMPLETED, action="the evaluation")
        if self._state.evaluation is not None:
            raise reject(ErrorType.CONFLICT, "the project's evaluation is recorded already")
        require_text(command.findings, "findings")
        try:
            held = date.fromisoformat(command.results_meeting_on)
        except ValueError:
            raise reject(ErrorType.INVALID, "results_meeting_on: a date, YYYY-MM-DD") from None
        if held.month != 12 or held.year <= self._start.year:
            raise reject(
                ErrorType.INVALID,
                f"results_meeting_on: the results meeting is held in December of a year after "
                f"{self._start.year} (process.md §7)",
            )

    @workflow.update
    async def report_execution(self, command: ProjectExecutionReport) -> ProjectState:
        execution = self._state.execution
        assert execution is not None
        now = workflow.now()
        execution.progress_pct = command.progress_pct
        execution.reports += 1
        execution.last_report_at = now.isoformat()
        late = " (after the deadline)" if execution.overdue else ""
        execution.overdue = False
        note = f"{command.progress_pct}%: {command.note}{late}"
        if command.final:
            execution.completed_at = now.isoformat()
            self._state.status = ProjectStatus.COMPLETED
            await self._record("final_report", Role.CASEWORKER, note)
        else:
            await self._record("progress_reported", Role.CASEWORKER, note)
        return self._state

    @report_execution.validator
    def _validate_report(self, command: ProjectExecutionReport) -> None:
        require_writable(command)
        self._require_role(command.actor_role, Role.CASEWORKER, "an execution report")
        require_idle(self._recording)
        self._require_status(ProjectStatus.EXECUTING, action="an execution report")
        department = self._state.execution.department if self._state.execution else None
        if department is None:
            raise reject(
                ErrorType.CONFLICT,
                "no executing department is named yet: the operations team names it first",
            )
        if command.actor_department != department:
            raise reject(
                ErrorType.FORBIDDEN, f"the project is executed by {department}, not your department"
            )
        if not 0 <= command.progress_pct <= 100:
            raise reject(ErrorType.INVALID, "progress_pct must be between 0 and 100")
        if command.final and command.progress_pct != 100:
            raise reject(ErrorType.INVALID, "progress_pct: a final report has progress_pct 100")
        require_text(command.note, "note")

    @workflow.update
    async def form_execution_council(self, command: FormExecutionCouncil) -> ProjectState:
        self._execution().council = ExecutionCouncil(
            citizen_members=command.citizen_members,
            official_members=command.official_members,
            note=command.note,
            formed_at=workflow.now().isoformat(),
        )
        await self._record(
            "execution_council_formed",
            Role.ADMIN,
            f"public-private council of {command.citizen_members} citizens and "
            f"{command.official_members} officials" + (f": {command.note}" if command.note else ""),
        )
        return self._state

    @form_execution_council.validator
    def _validate_council(self, command: FormExecutionCouncil) -> None:
        require_writable(command)
        self._require_role(command.actor_role, Role.ADMIN, "forming the execution council")
        require_idle(self._recording)
        if self._state.kind != GOVERNANCE:
            raise reject(
                ErrorType.CONFLICT,
                "a public-private execution council is the governance type's (process.md §7); "
                f"this project is {self._state.kind}",
            )
        self._require_status(
            ProjectStatus.SELECTED, ProjectStatus.EXECUTING, action="forming the execution council"
        )
        if command.citizen_members < 1 or command.official_members < 1:
            raise reject(
                ErrorType.INVALID,
                "citizen_members: a public-private council has at least one citizen and one "
                "official",
            )

    @workflow.update
    async def name_executing_department(self, command: ExecutingDepartment) -> ProjectState:
        if self._state.execution is None:
            self._state.execution = ExecutionRecord(department=None)
        before = self._state.execution.department
        self._state.execution.department = command.department
        note = f"executed by {command.department}" + (
            f" (was {before})" if before is not None else ""
        )
        await self._record(
            "executing_department_named",
            Role.ADMIN,
            note + (f": {command.reason}" if command.reason else ""),
        )
        return self._state

    @name_executing_department.validator
    def _validate_department(self, command: ExecutingDepartment) -> None:
        require_writable(command)
        self._require_role(command.actor_role, Role.ADMIN, "naming the executing department")
        require_idle(self._recording)
        self._require_status(
            ProjectStatus.SELECTED,
            ProjectStatus.EXECUTING,
            action="naming the executing department",
        )
        require_text(command.department, "department")

    async def _record_deliberative_submission(self, start: ProjectStart) -> None:
        if start.department is not None:
            role = Role.CASEWORKER
            what = f"an existing programme of the department {start.department}"
        else:
            role = Role.CITIZEN
            what = f"a new item of the {start.field} citizen council"
            if start.shortlisted:
                what += ", added during deliberation: on the deliberation list"
        await self._record(
            "submitted",
            role,
            f"deliberative project for the {start.year} cycle, field {start.field}, "
            f"{_krw(start.cost_krw)}; {what}; rulebook {start.rules.name} "
            f"({start.rules.content_hash})",
        )

    # ---- rules ---------------------------------------------------------------------------------

    def _metro(self) -> MetroRules:
        metro = self._start.rules.rulebook.metro
        assert metro is not None  # the API pins only a rulebook with metro rules
        return metro

    def _review_rules(self) -> ReviewRules:
        review = self._start.rules.rulebook.review
        assert review is not None
        return review

    def _cap_refusal(self, cost_krw: int) -> str | None:
        if self._state.kind == GOVERNANCE:
            return self._ceiling_refusal(cost_krw)
        metro = self._metro()
        if metro.within_cap(cost_krw, event=self._state.event):
            return None
        rule = "metro.cap_event_krw" if self._state.event else "metro.cap_general_krw"
        kind = "a programme/event" if self._state.event else "a general"
        cap = metro.cap_krw(event=self._state.event)
        return (
            f"{rule}: {kind} project must cost less than {_krw(cap)} "
            f"(the cap is exclusive); this one costs {_krw(cost_krw)}"
        )

    def _ceiling_refusal(self, cost_krw: int) -> str | None:
        """A governance project has no cap of its own; alone it must fit the type's yearly
        ceiling (the API checks the candidates together against it at the council review)."""
        governance = self._start.rules.rulebook.governance
        assert governance is not None  # the API pins only a rulebook with governance rules
        if cost_krw <= governance.ceiling_krw:
            return None
        return (
            f"governance.ceiling_krw: a governance project must fit the type's yearly ceiling "
            f"of {_krw(governance.ceiling_krw)}; this one costs {_krw(cost_krw)}"
        )

    def _require_status(self, *allowed: ProjectStatus, action: str) -> None:
        if self._state.status not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise reject(
                ErrorType.CONFLICT,
                f"{action} is for a project that is {wanted}; this one is "
                f"{self._state.status.value}",
            )

    def _require_metro(self, action: str) -> None:
        """Screening, the council review and objections are the metropolitan and governance
        types' (§6a)."""
        if self._state.kind not in TWO_STAGE_KINDS:
            raise reject(
                ErrorType.CONFLICT,
                f"{action} is for metropolitan and governance projects; this one is "
                f"{self._state.kind}",
            )

    def _on_ballot(self) -> ProjectStatus:
        """The status that puts a project of this kind on the cycle's ballot."""
        return ProjectStatus(BALLOT_STATUS[self._state.kind])

    @staticmethod
    def _require_role(actor_role: str, role: Role, action: str) -> None:
        if actor_role != role.value:
            raise reject(ErrorType.FORBIDDEN, f"{action} is for the role {role.value}")

    # ---- screening -----------------------------------------------------------------------------

    @workflow.update
    async def screen(self, command: Screening) -> ProjectState:
        now = workflow.now()
        self._state.eligibility = Eligibility(
            eligible=command.eligible,
            reason=command.reason,
            transfer_to_district=command.transfer_to_district,
            decided_at=now,
        )
        if command.transfer_to_district is not None:
            self._state.status = ProjectStatus.TRANSFERRED
            note = f"transferred to {command.transfer_to_district}: {command.reason}"
        elif command.eligible:
            self._state.status = ProjectStatus.ELIGIBLE
            note = "eligible" + (f": {command.reason}" if command.reason else "")
        else:
            self._state.status = ProjectStatus.INELIGIBLE
            note = f"ineligible: {command.reason}"
        await self._record("screened", Role(command.actor_role), note)
        return self._state

    @screen.validator
    def _validate_screen(self, command: Screening) -> None:
        require_writable(command)
        self._require_metro("eligibility screening")
        self._require_role(command.actor_role, Role.ADMIN, "eligibility screening")
        require_idle(self._recording)
        self._require_status(ProjectStatus.SUBMITTED, action="eligibility screening")
        if command.transfer_to_district is not None:
            if command.eligible:
                raise reject(
                    ErrorType.INVALID,
                    "transfer_to_district: a project transferred to a district is not "
                    "eligible as a metropolitan project (send eligible: false)",
                )
            if command.transfer_to_district not in DISTRICTS:
                raise reject(
                    ErrorType.INVALID,
                    f"transfer_to_district: {command.transfer_to_district!r} is not a Seoul "
                    "district",
                )
            require_text(command.reason, "reason")
            return
        if not command.eligible:
            require_text(command.reason, "reason")
            return
        refusal = self._cap_refusal(self._state.cost_krw)
        if refusal is not None:
            raise reject(ErrorType.INVALID, refusal)
        needed = self._metro().min_districts
        if len(self._state.districts) < needed:
            kind = "a metropolitan" if self._state.kind == METRO else "a governance"
            raise reject(
                ErrorType.INVALID,
                f"metro.min_districts: {kind} project must benefit at least {needed} "
                f"districts; this one names {len(self._state.districts)}",
            )

    # ---- council review ------------------------------------------------------------------------

    @workflow.update
    async def review(self, command: CouncilReview) -> ProjectState:
        total = weighted_total(command.scores, self._review_rules().inclusiveness_weight)
        self._state.review = ReviewRecord(
            advance=command.advance,
            scores=command.scores,
            total=total,
            note=command.note,
            decided_at=workflow.now(),
        )
        self._state.status = (
            ProjectStatus.CANDIDATE if command.advance else ProjectStatus.NOT_ADVANCED
        )
        verdict = "a vote candidate" if command.advance else "not advanced"
        note = f"{verdict}; weighted total {total}" + (f": {command.note}" if command.note else "")
        await self._record("reviewed", Role(command.actor_role), note)
        return self._state

    @review.validator
    def _validate_review(self, command: CouncilReview) -> None:
        require_writable(command)
        self._require_metro("the council review")
        self._require_role(command.actor_role, Role.COMMITTEE, "the council review")
        require_idle(self._recording)
        self._require_status(ProjectStatus.ELIGIBLE, action="the council review")
        for name in SCORE_NAMES:
            value = getattr(command.scores, name)
            if not 0 <= value <= SCORE_MAX:
                raise reject(ErrorType.INVALID, f"scores.{name} must be within 0..{SCORE_MAX}")

    # ---- objections ----------------------------------------------------------------------------

    @workflow.signal
    async def objection_filed(self, filed: ObjectionFiled) -> None:
        """An objection row was written by the API (only while the project is a candidate)."""
        if self._state.kind not in TWO_STAGE_KINDS:
            return  # the API files none for another kind
        if self._state.objection(filed.objection_id) is not None:
            return  # signals may come twice
        self._state.objections.append(ObjectionRecord(filed.objection_id, filed.at))
        await self._record("objection_filed", Role.CITIZEN, f"objection {filed.objection_id}")

    @workflow.update
    async def answer_objection(self, command: ObjectionAnswer) -> ProjectState:
        now = workflow.now()
        record = self._state.objection(command.objection_id)
        if record is None:
            # the API found the row; its signal has not arrived (yet): the answer records both
            record = ObjectionRecord(command.objection_id, now)
            self._state.objections.append(record)
        record.answer = command.answer
        record.adjusted_cost_krw = command.adjusted_cost_krw
        record.answered_at = now
        note = f"objection {command.objection_id} answered"
        if command.adjusted_cost_krw is not None:
            note += (
                f"; cost adjusted from {_krw(self._state.cost_krw)} to "
                f"{_krw(command.adjusted_cost_krw)}"
            )
            self._state.cost_krw = command.adjusted_cost_krw
        await self._record("objection_answered", Role(command.actor_role), note)
        return self._state

    @answer_objection.validator
    def _validate_answer_objection(self, command: ObjectionAnswer) -> None:
        require_writable(command)
        self._require_metro("answering an objection")
        self._require_role(command.actor_role, Role.ADMIN, "answering an objection")
        require_idle(self._recording)
        self._require_status(ProjectStatus.CANDIDATE, action="answering an objection")
        record = self._state.objection(command.objection_id)
        if record is not None and record.answered_at is not None:
            raise reject(
                ErrorType.CONFLICT, f"objection {command.objection_id} is answered already"
            )
        require_text(command.answer, "answer")
        if command.adjusted_cost_krw is not None:
            if command.adjusted_cost_krw <= 0:
                raise reject(ErrorType.INVALID, "adjusted_cost_krw must be a positive amount")
            refusal = self._cap_refusal(command.adjusted_cost_krw)
            if refusal is not None:
                raise reject(ErrorType.INVALID, f"adjusted_cost_krw: {refusal}")

    # ---- withdrawal and the vote ---------------------------------------------------------------

    @workflow.update
    async def withdraw(self, command: ProjectWithdrawal) -> ProjectState:
        self._state.status = ProjectStatus.WITHDRAWN
        # a deliberative project's proposer may be a caseworker
        role = command.actor.role if self._state.kind == DELIBERATIVE else Role.CITIZEN
        await self._record("withdrawn", role, "withdrawn by the proposer: it leaves review")
        return self._state

    @withdraw.validator
    def _validate_withdraw(self, command: ProjectWithdrawal) -> None:
        require_writable(command)
        if command.actor.person_id != self._start.proposer_id:
            raise reject(ErrorType.FORBIDDEN, "only the proposer may withdraw a project")
        if self._start.linked:
            raise reject(
                ErrorType.CONFLICT,
                "a linked (forum-centred) item does not leave review when its proposer "
                "withdraws (process.md §6a)",
            )
        require_idle(self._recording)
        self._require_status(*sorted(WITHDRAWABLE[self._state.kind]), action="withdrawal")

    @workflow.signal
    async def vote_result(self, result: ProjectVoteResult) -> None:
        """Sent by the cycle once its vote is counted."""
        if self._state.status is not self._on_ballot():
            await self._record(
                "vote_result_ignored",
                Role.SYSTEM,
                f"a vote result came for a project that is {self._state.status.value}",
            )
            return
        self._state.vote = result
        self._state.status = ProjectStatus.SELECTED if result.selected else ProjectStatus.DROPPED
        await self._record(
            "vote_counted",
            Role.SYSTEM,
            f"{self._state.status.value}: rank {result.rank}, score {result.score}"
            + (f"; {result.note}" if result.note else ""),
        )

    # ---- the deliberative type: the shortlist and the council's deliberation --------------------

    @workflow.signal
    async def shortlist_result(self, result: ShortlistResult) -> None:
        """Sent by the cycle at the end of its shortlist phase to each deliberative project of
        the year still submitted. Any other project, or one already decided (a repeated
        signal), changes nothing."""
        if self._state.kind != DELIBERATIVE or self._state.status is not ProjectStatus.SUBMITTED:
            workflow.logger.info(
                "shortlist result ignored: a %s project that is %s",
                self._state.kind,
                self._state.status.value,
            )
            return
        self._state.shortlist = result
        if result.shortlisted:
            self._state.status = ProjectStatus.SHORTLISTED
            verdict = "on the deliberation list of the field"
        else:
            self._state.status = ProjectStatus.NOT_SHORTLISTED
            verdict = "not shortlisted"
        await self._record(
            "shortlist_result", Role.SYSTEM, verdict + (f": {result.note}" if result.note else "")
        )

    @workflow.update
    async def deliberate(self, command: Deliberation) -> ProjectState:
        old = self._state.cost_krw
        new = old if command.cost_krw is None else command.cost_krw  # only a resize has one
        self._state.deliberations.append(
            DeliberationRecord(
                action=command.action,
                old_cost_krw=old,
                new_cost_krw=new,
                note=command.note,
                decided_at=workflow.now(),
            )
        )
        self._state.cost_krw = new
        if command.action == "end":
            self._state.status = ProjectStatus.ENDED
            verdict = f"ended by the council at {_krw(old)}"
        elif command.action == "resize":
            verdict = f"resized from {_krw(old)} to {_krw(new)}"
        else:
            verdict = f"continued at {_krw(old)}"
        note = verdict + (f": {command.note}" if command.note else "")
        await self._record("deliberated", command.actor.role, note)
        return self._state

    @deliberate.validator
    def _validate_deliberate(self, command: Deliberation) -> None:
        require_writable(command)
        if self._state.kind != DELIBERATIVE:
            raise reject(
                ErrorType.CONFLICT,
                f"deliberation is for deliberative projects; this one is {self._state.kind}",
            )
        if command.action not in DELIBERATION_ACTIONS:
            raise reject(
                ErrorType.INVALID,
                f"action must be one of {', '.join(DELIBERATION_ACTIONS)}",
            )
        require_idle(self._recording)
        self._require_status(ProjectStatus.SHORTLISTED, action="deliberation")
        if command.action != "resize":
            if command.cost_krw is not None:
                raise reject(
                    ErrorType.INVALID,
                    f"cost_krw: only a resize carries a cost, not {command.action}",
                )
            return
        if command.cost_krw is None or command.cost_krw <= 0:
            raise reject(ErrorType.INVALID, "cost_krw: a resize needs the new, positive cost")
        if command.cost_krw == self._state.cost_krw:
            raise reject(
                ErrorType.INVALID,
                f"cost_krw: a resize must change the cost; it is {_krw(command.cost_krw)} now",
            )

    # ---- recording -----------------------------------------------------------------------------

    def _stage(self) -> str:
        return self._state.status.value

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        return ProjectRecords.project_budget_project, ProjectProjection(
            state=copy.deepcopy(self._state), entry=entry
        )
