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
    reject,
    require_idle,
    require_text,
    require_writable,
)

with workflow.unsafe.imports_passed_through():
    from activities.budget import BudgetRecords
    from models.budget import (
        VOTE_PHASE,
        BallotRef,
        BudgetCycleProjection,
        BudgetCycleStart,
        BudgetCycleState,
        BudgetVote,
        CyclePhase,
        CycleStatus,
        PhaseOverride,
        PhaseSlot,
        select_vote,
    )
    from models.calendar import (
        CLOSED,
        in_seoul,
        move_phase_end,
        phase_at,
        phase_ends_at,
        phase_schedule,
    )
    from models.case import ErrorType, Role, TimelineEntry
    from models.ids import project_workflow_id

    # Imported here so the sandbox knows the module when it resolves the start's types.
    from models.rules import PinnedRules  # noqa: F401


BALLOT_BOXES_PATCH = "budget-cycle-ballot-boxes"


def _per_group(counts: dict[str, int]) -> str:
    return ", ".join(f"{group} {n}" for group, n in sorted(counts.items())) or "none"


def _shown(moment: datetime | None) -> str:
    return "never" if moment is None else in_seoul(moment).isoformat()


@workflow.defn
class BudgetCycleWorkflow(Settles):
    @workflow.init
    def __init__(self, start: BudgetCycleStart) -> None:
        self._start = start
        self._state = start.state or BudgetCycleState(year=start.year)
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
        self._state.status = CycleStatus.CLOSED
        # The calendar is over. THE place for what later issues add after it (execution in
        # Y+1, settlement): wait here for their signals instead of returning.
        await workflow.wait_condition(workflow.all_handlers_finished)
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

    async def _announce_changes(self) -> None:
        """Record each type whose phase at `workflow.now()` differs from the one announced."""
        now = workflow.now()
        for kind, slots in self._state.schedules.items():
            schedule = [slot.scheduled() for slot in slots]
            phase = phase_at(schedule, now)
            current = self._state.phases.get(kind)
            if current is not None and current.phase == phase:
                continue
            ends_at = phase_ends_at(schedule, now)
            self._state.phases[kind] = CyclePhase(phase=phase, phase_ends_at=ends_at)
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
            if phase != VOTE_PHASE and (current is None or current.phase != VOTE_PHASE):
                continue
            # Cycles that passed a vote phase before ballot boxes existed replay without them.
            if not workflow.patched(BALLOT_BOXES_PATCH):
                continue
            if current is not None and current.phase == VOTE_PHASE:
                await self._close_vote(kind)
            if phase == VOTE_PHASE:
                await self._open_vote(kind)

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
            project = workflow.get_external_workflow_handle(
                project_workflow_id(str(outcome["project_id"]))
            )
            try:
                await project.signal(
                    "vote_result",
                    {
                        "selected": outcome["status"] == "selected",
                        "rank": outcome["rank"],
                        "score": outcome["score"],
                        "note": f"{kind} vote of {self._start.year}, rule {vote.rule}",
                    },
                )
            except Exception:
                # a project whose workflow is gone keeps its result here and in the results
                workflow.logger.warning("vote result not delivered to %s", outcome["project_id"])

    def _select(self, vote: BudgetVote) -> list[dict[str, Any]]:
        """Apply the rulebook's rule; every candidate's outcome, in rank order per field."""
        vote.rule, results = select_vote(vote, self._start.rules.rulebook, self._start.drop_ratio)
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
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._start.max_history_events
        )

    def _continue_as_new(self) -> None:
        self._state.runs += 1
        workflow.continue_as_new(
            BudgetCycleStart(
                year=self._start.year,
                rules=self._start.rules,
                drop_ratio=self._start.drop_ratio,
                max_history_events=self._start.max_history_events,
                state=self._state,
                timeline=self._timeline,
            )
        )

    async def _record(self, stage: str, event: str, role: Role, note: str) -> TimelineEntry:
        entry = next_entry(self._timeline, stage, event, role, note)
        self._recording += 1
        try:
            await workflow.execute_activity_method(
                BudgetRecords.project_budget_cycle,
                BudgetCycleProjection(state=copy.deepcopy(self._state), entry=entry),
                **activity_options(),
            )
        finally:
            self._recording -= 1
        return entry
