"""A district plan (구단위계획형, process.md §8, 003 1-2-④): `district-plan-{id}`, a child of the
cycle `budget-cycle-{year}` (its `enter_district_plan` Update starts it).

    submitted -> negotiating -> negotiated   (two rounds of negotiation, the operations team)
    negotiated -> funded | not_funded        (the funding decision, by the end of August)
    funded -> agreed                         (the agreement, in December after the city council)

Decisions are Updates whose validators refuse a wrong actor (403), a state that does not allow
them (409: a third round, a decision before the second round, an agreement of a plan not
funded) or input that breaks a rule (422: an adjusted cost over the plan's ceiling), with
nothing written. The phase of the cycle's `district` type each belongs to is checked by the API
against Postgres (`budget_cycles.phases`), as for projects: the cycle owns the phases.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

from workflows.common import CaseRecorder, reject, require_idle, require_text, require_writable

with workflow.unsafe.imports_passed_through():
    from activities.district_plans import DistrictPlanRecords
    from models.case import ErrorType, Role, TimelineEntry
    from models.district_plans import (
        FINAL,
        NEGOTIATION_ROUNDS,
        Agreement,
        AgreementRecord,
        DecisionRecord,
        DistrictPlanProjection,
        DistrictPlanStart,
        DistrictPlanState,
        FundingDecision,
        Negotiation,
        NegotiationRecord,
        PlanStatus,
        district_ceiling_krw,
        district_ceiling_refusal,
    )
    from models.rules import DistrictRules


def _krw(amount: int) -> str:
    return f"{amount:,} KRW"


@workflow.defn
class DistrictPlanWorkflow(CaseRecorder):
    @workflow.init
    def __init__(self, start: DistrictPlanStart) -> None:
        self._start = start
        self._state = DistrictPlanState(
            plan_id=start.plan_id,
            year=start.year,
            district=start.district,
            strategic=start.strategic,
            cost_krw=start.cost_krw,
        )
        self._timeline: list[TimelineEntry] = []
        self._recording = 0

    @workflow.query
    def state(self) -> DistrictPlanState:
        return self._state

    @workflow.run
    async def run(self, start: DistrictPlanStart) -> DistrictPlanState:
        ceiling = district_ceiling_krw(self._rules(), start.strategic)
        await self._record(
            "submitted",
            Role.CASEWORKER,
            f"{'strategic ' if start.strategic else ''}district plan of {start.district} for the "
            f"{start.year} cycle (3-year strategy and 1-year plan), {_krw(start.cost_krw)} "
            f"within its ceiling of {_krw(ceiling)}; rulebook {start.rules.name} "
            f"({start.rules.content_hash})",
        )
        await workflow.wait_condition(lambda: self._state.status in FINAL)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    def _rules(self) -> DistrictRules:
        rules = self._start.rules.rulebook.district
        assert rules is not None  # the API pins only a rulebook with [district]
        return rules

    def _require_admin(self, actor_role: str, action: str) -> None:
        if actor_role != Role.ADMIN.value:
            raise reject(ErrorType.FORBIDDEN, f"{action} is the operations team's (admin)")

    def _require_status(self, *allowed: PlanStatus, action: str) -> None:
        if self._state.status not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise reject(
                ErrorType.CONFLICT,
                f"{action} is for a plan that is {wanted}; this one is {self._state.status.value}",
            )

    # ---- negotiation: two rounds ---------------------------------------------------------------

    @workflow.update
    async def negotiate(self, command: Negotiation) -> DistrictPlanState:
        old = self._state.cost_krw
        new = old if command.adjusted_cost_krw is None else command.adjusted_cost_krw
        number = len(self._state.negotiations) + 1
        self._state.negotiations.append(
            NegotiationRecord(
                round=number,
                notes=command.notes,
                old_cost_krw=old,
                new_cost_krw=new,
                at=workflow.now(),
            )
        )
        self._state.cost_krw = new
        self._state.status = (
            PlanStatus.NEGOTIATED if number == NEGOTIATION_ROUNDS else PlanStatus.NEGOTIATING
        )
        cost = f"cost adjusted from {_krw(old)} to {_krw(new)}" if new != old else _krw(old)
        await self._record(
            "negotiated",
            Role.ADMIN,
            f"negotiation round {number} of {NEGOTIATION_ROUNDS}: {cost}; {command.notes}",
        )
        return self._state

    @negotiate.validator
    def _validate_negotiate(self, command: Negotiation) -> None:
        require_writable(command)
        self._require_admin(command.actor_role, "a negotiation round")
        require_idle(self._recording)
        if len(self._state.negotiations) >= NEGOTIATION_ROUNDS:
            raise reject(
                ErrorType.CONFLICT,
                f"the {NEGOTIATION_ROUNDS} rounds of negotiation are recorded already",
            )
        self._require_status(
            PlanStatus.SUBMITTED, PlanStatus.NEGOTIATING, action="a negotiation round"
        )
        require_text(command.notes, "notes")
        if command.adjusted_cost_krw is not None:
            refusal = district_ceiling_refusal(
                self._rules(), self._state.strategic, command.adjusted_cost_krw, "adjusted_cost_krw"
            )
            if refusal is not None:
                raise reject(ErrorType.INVALID, refusal)

    # ---- the funding decision ------------------------------------------------------------------

    @workflow.update
    async def decide(self, command: FundingDecision) -> DistrictPlanState:
        self._state.decision = DecisionRecord(
            funded=command.funded,
            note=command.note,
            cost_krw=self._state.cost_krw,
            at=workflow.now(),
        )
        self._state.status = PlanStatus.FUNDED if command.funded else PlanStatus.NOT_FUNDED
        verdict = f"funded at {_krw(self._state.cost_krw)}" if command.funded else "not funded"
        await self._record("decided", Role.ADMIN, f"{verdict}: {command.note}")
        return self._state

    @decide.validator
    def _validate_decide(self, command: FundingDecision) -> None:
        require_writable(command)
        self._require_admin(command.actor_role, "the funding decision")
        require_idle(self._recording)
        if self._state.status in (PlanStatus.SUBMITTED, PlanStatus.NEGOTIATING):
            raise reject(
                ErrorType.CONFLICT,
                f"the funding decision follows the {NEGOTIATION_ROUNDS} rounds of negotiation; "
                f"{len(self._state.negotiations)} recorded",
            )
        self._require_status(PlanStatus.NEGOTIATED, action="the funding decision")
        require_text(command.note, "note")

    # ---- the agreement -------------------------------------------------------------------------

    @workflow.update
    async def agree(self, command: Agreement) -> DistrictPlanState:
        self._state.agreement = AgreementRecord(
            council_reference=command.council_reference, note=command.note, at=workflow.now()
        )
        self._state.status = PlanStatus.AGREED
        await self._record(
            "agreed",
            Role.ADMIN,
            f"agreement between {self._state.district} and the city after the city council's "
            f"approval ({command.council_reference}), {_krw(self._state.cost_krw)}"
            + (f"; {command.note}" if command.note else ""),
        )
        return self._state

    @agree.validator
    def _validate_agree(self, command: Agreement) -> None:
        require_writable(command)
        self._require_admin(command.actor_role, "the agreement")
        require_idle(self._recording)
        self._require_status(PlanStatus.FUNDED, action="the agreement")
        require_text(command.council_reference, "council_reference")

    # ---- recording -----------------------------------------------------------------------------

    def _stage(self) -> str:
        return self._state.status.value

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        return DistrictPlanRecords.project_district_plan, DistrictPlanProjection(
            state=copy.deepcopy(self._state), entry=entry
        )
