"""The budget-year cycle (process.md §5-8): `budget-cycle-{Y}`, deliberated in Y, spent in Y+1.

Every type of the pinned rulebook's calendar (`deliberative`, `metro`, ...) changes phase by
itself at the calendar's dates, 00:00 Seoul time, on a durable timer computed from
`workflow.now()`; nobody switches phases. An admin may move a phase's end (an audited Update,
in the timeline with its reason), which the running timer follows at once. Each change is a
timeline entry projected to Postgres. The workflow continues as new when its history grows
long, carrying its state, and ends once every type is closed.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.common import (
    Settles,
    activity_options,
    counting_options,
    next_entry,
    outlive_children,
    reject,
    require_idle,
    require_text,
    require_writable,
    tell_case,
)
from workflows.district_plan import DistrictPlanWorkflow
from workflows.project import ProjectWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.budget import BudgetRecords
    from models.budget import (
        VOTE_PHASE,
        BallotRef,
        BodyMembers,
        BudgetCycleProjection,
        BudgetCycleStart,
        BudgetCycleState,
        BudgetVote,
        CycleBody,
        CycleDecision,
        CyclePhase,
        CycleStatus,
        FieldAllocation,
        FormBody,
        LinkedForum,
        PhaseOverride,
        PhaseSlot,
        RecordDecision,
        SetFields,
        SetShortlist,
        select_vote,
    )
    from models.budget_bodies import ACTIVE, DRAWN, SQUARE
    from models.calendar import (
        CLOSED,
        NOT_STARTED,
        in_seoul,
        move_phase_end,
        phase_at,
        phase_ends_at,
        phase_schedule,
    )
    from models.case import ErrorType, Role, TimelineEntry
    from models.district_plans import (
        DISTRICT,
        SUBMISSION_PHASES,
        DistrictPlanStart,
        district_plan_workflow_id,
    )
    from models.ids import project_workflow_id
    from models.project import ProjectStart

    # Imported here so the sandbox knows the module when it resolves the start's types.
    from models.rules import PinnedRules  # noqa: F401


BALLOT_BOXES_PATCH = "budget-cycle-ballot-boxes"
#: Cycles that passed the deliberative shortlist's end before shortlists existed replay without
#: telling the projects.
SHORTLIST_PATCH = "budget-cycle-shortlist-results"
#: Cycles that changed phase before it did each type's follow-up (a vote's count) right after
#: recording that type's change; since, every change is recorded first, openings before closings.
PHASES_FIRST_PATCH = "budget-cycle-phases-first"

DELIBERATIVE = "deliberative"
#: The deliberative phases (rulebook calendar) in which each write is taken.
FIELDS_PHASES = ("allocation",)
BODY_PHASES = ("allocation", "forming")
SHORTLIST_PHASES = ("shortlist",)
#: Where each decision of `record_decision` belongs: the general assembly in the metropolitan
#: type's `assembly` phase, the city council's in any type's `council` phase.
DECISION_PHASES = {"assembly": ("metro", "assembly"), "council": (None, "council")}


def _krw(amount: int) -> str:
    return f"{amount:,} KRW"


def _per_group(counts: dict[str, int]) -> str:
    return ", ".join(f"{group} {n}" for group, n in sorted(counts.items())) or "none"


def _shown(moment: datetime | None) -> str:
    return "never" if moment is None else in_seoul(moment).isoformat()


@workflow.defn
class BudgetCycleWorkflow(Settles):
    @workflow.init
    def __init__(self, start: BudgetCycleStart) -> None:
        self._start = start
        #: The projects and plans this run started (abandoned children: they outlive it).
        self._children: list[workflow.ChildWorkflowHandle[Any, Any]] = []
        if start.state is None:
            self._state = BudgetCycleState(year=start.year)
            self._state.linked_forums = list(start.linked_forums)
            self._state.carried_over = list(start.carried_over)
        else:
            self._state = start.state
        self._timeline: list[TimelineEntry] = list(start.timeline)
        #: Projections in flight: no override is taken while one is (see `require_idle`).
        self._recording = 0
        #: Set by an override: the timer is recomputed from the new schedule.
        self._rescheduled = False

    @workflow.query
    def state(self) -> BudgetCycleState:
        return self._state

    @workflow.run
    async def run(self, start: BudgetCycleStart) -> BudgetCycleState:
        calendar = start.rules.rulebook.calendar
        if calendar is None:
            raise ApplicationError(f"rulebook {start.rules.name} has no calendar")
        if not self._state.schedules:
            self._state.schedules = {
                kind: [PhaseSlot.of(p) for p in phase_schedule(calendar, kind, start.year)]
                for kind in calendar
            }
        while True:
            await self._announce_changes()
            if all(current.phase == CLOSED for current in self._state.phases.values()):
                break
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._rescheduled:
                    self._continue_as_new()
            self._rescheduled = False
            timeout = self._until_next_change()
            try:
                await workflow.wait_condition(lambda: self._rescheduled, timeout=timeout)
            except TimeoutError:
                pass
        # The calendar is over (the status closed with the last change recorded). THE place
        # for what later issues add after it (execution in Y+1, settlement): wait here for
        # their signals instead of returning.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await outlive_children(self._children, "cycle-outlives-its-children")
        return self._state

    @workflow.update
    async def override_phase(self, override: PhaseOverride) -> BudgetCycleState:
        slots = self._state.schedules[override.type]
        old_end = next(s.ends_at for s in slots if s.phase == override.phase)
        moved = move_phase_end([s.scheduled() for s in slots], override.phase, override.new_end)
        self._state.schedules[override.type] = [PhaseSlot.of(p) for p in moved]
        self._rescheduled = True
        current = self._state.phases.get(override.type)
        if current is not None and current.phase == override.phase:
            current.phase_ends_at = override.new_end
        await self._record(
            override.phase,
            "phase_overridden",
            Role(override.actor_role),
            f"{override.type}: {override.phase} now ends {_shown(override.new_end)} "
            f"(was {_shown(old_end)}); reason: {override.reason}",
        )
        return self._state

    @override_phase.validator
    def _validate_override(self, override: PhaseOverride) -> None:
        if override.actor_role != Role.ADMIN.value:
            raise reject(ErrorType.FORBIDDEN, "only the operations team overrides a phase")
        require_idle(self._recording)
        require_writable(override)
        slots = self._state.schedules.get(override.type)
        if slots is None:
            types = ", ".join(self._state.schedules)
            raise reject(
                ErrorType.INVALID, f"type: no cycle type {override.type!r}; the types are: {types}"
            )
        names = [slot.phase for slot in slots]
        if override.phase not in names:
            raise reject(
                ErrorType.INVALID,
                f"phase: {override.type} has no phase {override.phase!r}; "
                f"its phases are: {', '.join(names)}",
            )
        require_text(override.reason, "reason")
        now = workflow.now()
        slot = slots[names.index(override.phase)]
        if slot.ends_at <= now:
            raise reject(
                ErrorType.CONFLICT,
                f"{override.type} {override.phase} is over (it ended {_shown(slot.ends_at)})",
            )
        if override.new_end <= now:
            raise reject(ErrorType.INVALID, "new_end: a phase cannot end in the past")
        try:
            move_phase_end([s.scheduled() for s in slots], override.phase, override.new_end)
        except ValueError as exc:
            raise reject(ErrorType.INVALID, f"new_end: {exc}") from None

    # ---- the deliberative type's writes (process.md §5) ----------------------------------------

    def _require_phase(self, kind: str | None, phases: tuple[str, ...], what: str) -> None:
        """409 naming the phase unless `kind` (any type if None) is in one of `phases`."""
        current = {k: p.phase for k, p in self._state.phases.items()}
        kinds = [kind] if kind is not None else list(current)
        if any(current.get(k) in phases for k in kinds):
            return
        shown = ", ".join(f"{k} {current.get(k, 'not started')}" for k in kinds)
        raise reject(
            ErrorType.CONFLICT,
            f"{what} is taken in the {' or '.join(phases)} phase; the phase is {shown}",
        )

    def _allocation(self, name: str) -> FieldAllocation:
        for allocation in self._state.fields:
            if allocation.field == name:
                return allocation
        known = ", ".join(f.field for f in self._state.fields) or "none set yet"
        raise reject(ErrorType.INVALID, f"field: no deliberation field {name!r} (fields: {known})")

    def _require_admin(self, actor_role: str, what: str) -> None:
        if actor_role != Role.ADMIN.value:
            raise reject(ErrorType.FORBIDDEN, f"only the operations team {what}")

    @workflow.update
    async def set_fields(self, request: SetFields) -> BudgetCycleState:
        self._state.fields = list(request.fields)
        await self._record(
            "allocation",
            "fields_allocated",
            Role.ADMIN,
            "deliberation fields: "
            + "; ".join(f"{f.field} {_krw(f.allocation_krw)}" for f in request.fields),
        )
        return self._state

    @set_fields.validator
    def _validate_fields(self, request: SetFields) -> None:
        self._require_admin(request.actor_role, "allocates the fields")
        require_idle(self._recording)
        require_writable(request)
        self._require_phase(DELIBERATIVE, FIELDS_PHASES, "allocating the fields")
        names = [f.field for f in request.fields]
        if not names:
            raise reject(ErrorType.INVALID, "fields: at least one field")
        if len(set(names)) != len(names):
            raise reject(ErrorType.INVALID, "fields: each field once")
        for allocation in request.fields:
            require_text(allocation.field, "fields.field")
            if allocation.allocation_krw <= 0:
                raise reject(ErrorType.INVALID, "fields.allocation_krw: a positive amount")

    @workflow.update
    async def form_body(self, request: FormBody) -> BudgetCycleState:
        body = CycleBody(
            body=request.body,
            draw_id=request.draw_id,
            active=len(request.active_ids),
            drawn=len(request.drawn_ids),
            formed_at=workflow.now(),
        )
        self._state.bodies[request.body] = body
        if request.body == SQUARE:
            note = f"the Budget Square: {body.drawn} citizens of the revealed draw {body.draw_id}"
        else:
            note = (
                f"citizen council of {request.body.removeprefix('council:')}: {body.active} "
                f"active members and {body.drawn} budget-school graduates of the revealed draw "
                f"{body.draw_id}"
            )
        await self._record(
            "forming",
            "body_formed",
            Role.ADMIN,
            note,
            members=BodyMembers(
                year=self._start.year,
                body=request.body,
                members=[(p, ACTIVE) for p in request.active_ids]
                + [(p, DRAWN) for p in request.drawn_ids],
            ),
        )
        return self._state

    @form_body.validator
    def _validate_body(self, request: FormBody) -> None:
        self._require_admin(request.actor_role, "forms the cycle's bodies")
        require_idle(self._recording)
        require_writable(request)
        self._require_phase(DELIBERATIVE, BODY_PHASES, "forming a council or the Square")
        if request.body in self._state.bodies:
            raise reject(ErrorType.CONFLICT, f"{request.body} is formed already")
        used = {b.draw_id: name for name, b in self._state.bodies.items()}
        if request.draw_id in used:
            raise reject(
                ErrorType.INVALID, f"draw_id: the draw formed {used[request.draw_id]} already"
            )
        if not request.drawn_ids:
            raise reject(ErrorType.INVALID, "draw_id: the draw has no members")
        if request.body == SQUARE:
            size = self._start.rules.rulebook.sortition
            expected = None if size is None else size.square_size
            if expected is not None and len(request.drawn_ids) != expected:
                raise reject(
                    ErrorType.INVALID,
                    f"draw_id: the Budget Square is {expected} citizens "
                    f"(sortition.square_size); the draw has {len(request.drawn_ids)}",
                )
            return
        self._allocation(request.body.removeprefix("council:"))
        if set(request.active_ids) & set(request.drawn_ids):
            raise reject(
                ErrorType.INVALID, "active_member_ids: a drawn member cannot also be named active"
            )
        active, drawn = len(request.active_ids), len(request.drawn_ids)
        if abs(active - drawn) > 1:
            raise reject(
                ErrorType.INVALID,
                f"active_member_ids: a citizen council is 5:5 within one person; {active} active "
                f"members against {drawn} drawn budget-school graduates",
            )

    @workflow.update
    async def set_shortlist(self, request: SetShortlist) -> BudgetCycleState:
        self._state.shortlists[request.field] = list(request.projects)
        total = sum(p.cost_krw for p in request.projects)
        await self._record(
            "shortlist",
            "shortlist_set",
            Role.CITIZEN,
            f"{request.field}: {len(request.projects)} projects, {_krw(total)} "
            f"(allocation {_krw(self._allocation(request.field).allocation_krw)})",
        )
        return self._state

    @set_shortlist.validator
    def _validate_shortlist(self, request: SetShortlist) -> None:
        require_idle(self._recording)
        require_writable(request)
        self._require_phase(DELIBERATIVE, SHORTLIST_PHASES, "the shortlist")
        allocation = self._allocation(request.field)
        ids = [p.project_id for p in request.projects]
        if not ids or len(set(ids)) != len(ids):
            raise reject(ErrorType.INVALID, "project_ids: at least one project, each once")
        rules = self._start.rules.rulebook.deliberative
        if rules is None:
            raise reject(ErrorType.CONFLICT, "the cycle's rulebook has no deliberative type")
        low, high = rules.shortlist_bounds_krw(allocation.allocation_krw)
        total = sum(p.cost_krw for p in request.projects)
        if not low <= total <= high:
            raise reject(
                ErrorType.INVALID,
                f"project_ids: the shortlist totals {_krw(total)}; {request.field}'s level is "
                f"{_krw(low)} to {_krw(high)} ({rules.shortlist_ratio:.0%} ± "
                f"{rules.level_tolerance:.0%} of the allocation {_krw(allocation.allocation_krw)})",
            )

    @workflow.update
    async def record_decision(self, request: RecordDecision) -> BudgetCycleState:
        decision = CycleDecision(
            project_ids=list(request.project_ids),
            reference=request.reference,
            recorded_at=workflow.now(),
        )
        selected = {
            str(p["project_id"])
            for vote in self._state.votes.values()
            for result in vote.results.values()
            for p in result["projects"]
            if p["status"] == "selected"
        }
        outside = [p for p in request.project_ids if p not in selected]
        if request.decision == "assembly":
            self._state.assembly = decision
            what = "the general assembly approved"
        else:
            self._state.council = decision
            what = "the city council adopted"
        await self._record(
            request.decision,
            f"{request.decision}_recorded",
            Role.ADMIN,
            f"{what} {len(request.project_ids)} projects ({request.reference})"
            + (
                f"; {len(outside)} of them not selected by the vote: {', '.join(outside)}"
                if outside
                else "; all selected by the vote"
            ),
        )
        return self._state

    @record_decision.validator
    def _validate_decision(self, request: RecordDecision) -> None:
        self._require_admin(request.actor_role, "records the decision")
        require_idle(self._recording)
        require_writable(request)
        if request.decision not in DECISION_PHASES:
            raise reject(ErrorType.INVALID, f"decision: one of {', '.join(DECISION_PHASES)}")
        kind, phase = DECISION_PHASES[request.decision]
        self._require_phase(kind, (phase,), f"the {request.decision}'s decision")
        recorded = self._state.assembly if request.decision == "assembly" else self._state.council
        if recorded is not None:
            raise reject(ErrorType.CONFLICT, f"the {request.decision}'s decision is recorded")
        require_text(request.reference, "reference")
        if len(set(request.project_ids)) != len(request.project_ids):
            raise reject(ErrorType.INVALID, "project_ids: each project once")

    # ---- projects: each its own child workflow (process.md §5-6) -------------------------------

    @workflow.update
    async def enter_project(self, start: ProjectStart) -> str:
        """Start a project as a child of the cycle. It is abandoned, not ended, when this run
        continues as new or closes: a project outlives the run that entered it."""
        child = await workflow.start_child_workflow(
            ProjectWorkflow.run,
            start,
            id=project_workflow_id(start.project_id),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        self._children.append(child)
        return child.id

    @enter_project.validator
    def _validate_project(self, start: ProjectStart) -> None:
        if start.year != self._start.year:
            raise reject(
                ErrorType.INVALID, f"year: the project is for {start.year}, not {self._start.year}"
            )
        current = self._state.phases.get(start.kind)
        phase = NOT_STARTED if current is None else current.phase
        if phase in (NOT_STARTED, CLOSED):
            raise reject(ErrorType.CONFLICT, f"the cycle's {start.kind} type is {phase}")

    # ---- district plans: each its own child workflow (process.md §8) --------------------------

    @workflow.update
    async def enter_district_plan(self, start: DistrictPlanStart) -> str:
        """Start a district plan as a child of the cycle, abandoned (not ended) when this run
        continues as new or closes, as a project is."""
        child = await workflow.start_child_workflow(
            DistrictPlanWorkflow.run,
            start,
            id=district_plan_workflow_id(start.plan_id),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        self._children.append(child)
        return child.id

    @enter_district_plan.validator
    def _validate_district_plan(self, start: DistrictPlanStart) -> None:
        if start.year != self._start.year:
            raise reject(
                ErrorType.INVALID, f"year: the plan is for {start.year}, not {self._start.year}"
            )
        self._require_phase(DISTRICT, SUBMISSION_PHASES, "submitting a district plan")

    # ---- linked forums (process.md §4) ---------------------------------------------------------

    @workflow.signal
    async def linked_forum(self, forum: LinkedForum) -> None:
        """A linked forum handed to this year: it joins the deliberation."""
        if any(f.forum_id == forum.forum_id for f in self._state.linked_forums):
            return
        self._state.linked_forums.append(forum)
        await self._record(
            "deliberation",
            "linked_forum_joined",
            Role.SYSTEM,
            f"linked forum {forum.forum_id} (closed {_shown(forum.closed_at)}) joins the "
            "citizen councils' deliberation"
            + (
                f", carried over from {forum.carried_over_from}"
                if forum.carried_over_from is not None
                else ""
            ),
        )

    @workflow.signal
    async def forum_carried_over(self, forum: LinkedForum) -> None:
        """A linked forum that closed after this year's window: it goes to next year's cycle."""
        if any(f.forum_id == forum.forum_id for f in self._state.carried_over):
            return
        self._state.carried_over.append(forum)
        await self._record(
            "deliberation",
            "linked_forum_carried_over",
            Role.SYSTEM,
            f"linked forum {forum.forum_id} closed {_shown(forum.closed_at)}, after the "
            f"deliberation window: carried over to the {self._start.year + 1} cycle",
        )

    async def _announce_changes(self) -> None:
        """Record each type whose phase at `workflow.now()` differs from the one announced, then
        do what the changes call for: open votes first, so that a type's vote opening at the
        instant another's closes is not kept waiting by the count (interleaved, per type, in
        cycles that predate `PHASES_FIRST_PATCH`)."""
        now = workflow.now()
        changes: list[tuple[str, CyclePhase | None, str]] = []
        phases_first = workflow.patched(PHASES_FIRST_PATCH)
        for kind, slots in self._state.schedules.items():
            schedule = [slot.scheduled() for slot in slots]
            phase = phase_at(schedule, now)
            current = self._state.phases.get(kind)
            if current is not None and current.phase == phase:
                continue
            ends_at = phase_ends_at(schedule, now)
            self._state.phases[kind] = CyclePhase(phase=phase, phase_ends_at=ends_at)
            if all(p.phase == CLOSED for p in self._state.phases.values()):
                self._state.status = CycleStatus.CLOSED
            if phase == CLOSED:
                note = f"{kind}: closed (the last phase is over)"
            else:
                note = f"{kind}: {phase} until {_shown(ends_at)}"
            if current is None:
                note += (
                    f"; cycle {self._start.year}, rulebook {self._start.rules.name} "
                    f"({self._start.rules.content_hash}), drop ratio {self._start.drop_ratio}"
                )
            await self._record(phase, "phase_started", Role.SYSTEM, note)
            if phases_first:
                changes.append((kind, current, phase))
            else:
                await self._follow_up(kind, current, phase, opening=True, closing=True)
        for kind, current, phase in changes:
            await self._follow_up(kind, current, phase, opening=True, closing=False)
        for kind, current, phase in changes:
            await self._follow_up(kind, current, phase, opening=False, closing=True)

    async def _follow_up(
        self, kind: str, current: CyclePhase | None, phase: str, *, opening: bool, closing: bool
    ) -> None:
        """What a type's change from `current` to `phase` calls for: with `opening`, the
        shortlist results and a vote that opens; with `closing`, a vote that closes."""
        if (
            opening
            and kind == DELIBERATIVE
            and current is not None
            and current.phase in SHORTLIST_PHASES
            and workflow.patched(SHORTLIST_PATCH)
        ):
            await self._close_shortlists()
        if phase != VOTE_PHASE and (current is None or current.phase != VOTE_PHASE):
            return
        # Cycles that passed a vote phase before ballot boxes existed replay without them.
        if not workflow.patched(BALLOT_BOXES_PATCH):
            return
        if closing and current is not None and current.phase == VOTE_PHASE:
            await self._close_vote(kind)
        if opening and phase == VOTE_PHASE:
            await self._open_vote(kind)

    async def _close_shortlists(self) -> None:
        """The shortlist phase is over: each deliberative project still submitted learns whether
        its council kept it (on the deliberation list, later on the ballot) or not."""
        waiting = await workflow.execute_activity_method(
            BudgetRecords.submitted_projects,
            BallotRef(year=self._start.year, kind=DELIBERATIVE),
            **activity_options(),
        )
        listed = {p.project_id for entries in self._state.shortlists.values() for p in entries}
        for project_id in waiting:
            shortlisted = project_id in listed
            await self._tell_project(
                project_id,
                "shortlist_result",
                {
                    "shortlisted": shortlisted,
                    "note": f"{'on' if shortlisted else 'not on'} the council's shortlist of "
                    f"{self._start.year}",
                },
            )
        await self._record(
            "shortlist",
            "shortlists_closed",
            Role.SYSTEM,
            f"{len(listed)} projects on the shortlists of "
            f"{len(self._state.shortlists)} fields; {len(waiting) - len(listed & set(waiting))} "
            "not shortlisted",
        )

    async def _tell_project(self, project_id: str, signal: str, payload: dict[str, Any]) -> None:
        await tell_case(project_workflow_id(project_id), signal, payload)

    async def _open_vote(self, kind: str) -> None:
        """The kind's ballot box opens with the projects on the ballot now."""
        if kind in self._state.votes:
            return
        candidates = await workflow.execute_activity_method(
            BudgetRecords.open_budget_ballot,
            BallotRef(year=self._start.year, kind=kind),
            **activity_options(),
        )
        self._state.votes[kind] = BudgetVote(
            kind=kind, opened_at=workflow.now(), candidates=candidates
        )
        await self._record(
            VOTE_PHASE,
            "vote_opened",
            Role.SYSTEM,
            f"{kind}: {len(candidates)} projects on the ballot; one ballot per person, "
            "approving any of them",
        )

    async def _close_vote(self, kind: str) -> None:
        """Close and count the kind's box, select by the rulebook's rule, tell each project."""
        vote = self._state.votes.get(kind)
        if vote is None or vote.closed_at is not None:
            return
        tally = await workflow.execute_activity_method(
            BudgetRecords.close_budget_ballot,
            BallotRef(year=self._start.year, kind=kind),
            **counting_options(),
        )
        vote.closed_at = workflow.now()
        vote.ballots, vote.approvals, vote.digest = tally.ballots, tally.approvals, tally.digest
        outcomes = self._select(vote)
        await self._record(
            VOTE_PHASE,
            "vote_closed",
            Role.SYSTEM,
            f"{kind}: {tally.turnout} ballots ({_per_group(tally.ballots)}), digest "
            f"{tally.digest}; rule {vote.rule}: {sum(o['status'] == 'selected' for o in outcomes)}"
            f" selected, {sum(o['status'] == 'dropped' for o in outcomes)} dropped",
        )
        for outcome in outcomes:
            await self._tell_project(
                str(outcome["project_id"]),
                "vote_result",
                {
                    "selected": outcome["status"] == "selected",
                    "rank": outcome["rank"],
                    "score": outcome["score"],
                    "note": f"{kind} vote of {self._start.year}, rule {vote.rule}",
                },
            )

    def _select(self, vote: BudgetVote) -> list[dict[str, Any]]:
        """Apply the rulebook's rule; every candidate's outcome, in rank order per field."""
        allocations = {f.field: f.allocation_krw for f in self._state.fields}
        vote.rule, results = select_vote(
            vote, self._start.rules.rulebook, self._start.drop_ratio, allocations
        )
        vote.results = {field: result.to_dict() for field, result in results.items()}
        return [project for result in vote.results.values() for project in result["projects"]]

    def _until_next_change(self) -> timedelta:
        now = workflow.now()
        ends = [
            end
            for slots in self._state.schedules.values()
            if (end := phase_ends_at([slot.scheduled() for slot in slots], now)) is not None
        ]
        return max(min(ends) - now, timedelta(milliseconds=1))

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            self._start.follow_suggestion and info.is_continue_as_new_suggested()
        ) or info.get_current_history_length() >= self._start.max_history_events

    def _continue_as_new(self) -> None:
        self._state.runs += 1
        workflow.continue_as_new(
            BudgetCycleStart(
                year=self._start.year,
                rules=self._start.rules,
                drop_ratio=self._start.drop_ratio,
                max_history_events=self._start.max_history_events,
                follow_suggestion=self._start.follow_suggestion,
                state=self._state,
                timeline=self._timeline,
            )
        )

    async def _record(
        self, stage: str, event: str, role: Role, note: str, members: BodyMembers | None = None
    ) -> TimelineEntry:
        entry = next_entry(self._timeline, stage, event, role, note)
        self._recording += 1
        try:
            await workflow.execute_activity_method(
                BudgetRecords.project_budget_cycle,
                BudgetCycleProjection(
                    state=copy.deepcopy(self._state), entry=entry, members=members
                ),
                **activity_options(),
            )
        finally:
            self._recording -= 1
        return entry
