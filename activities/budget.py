"""The budget-year cycle's records in Postgres: its row and timeline, written idempotently by
`CaseRecords`' projection (keyed by case id + seq, retried and alerted on in the same way)."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.records import CaseRecords
from models.budget import BudgetCycleProjection, BudgetCycleState
from models.budget_tables import BudgetCycle
from models.ids import budget_cycle_workflow_id


def cycle_columns(state: BudgetCycleState) -> dict[str, Any]:
    """The row's projected columns, as JSON (times ISO 8601, UTC)."""
    return {
        "status": state.status.value,
        "phases": {
            kind: {
                "phase": current.phase,
                "phase_ends_at": None
                if current.phase_ends_at is None
                else current.phase_ends_at.isoformat(),
            }
            for kind, current in state.phases.items()
        },
        "schedules": {
            kind: [
                {
                    "phase": slot.phase,
                    "starts_at": slot.starts_at.isoformat(),
                    "ends_at": slot.ends_at.isoformat(),
                }
                for slot in slots
            ]
            for kind, slots in state.schedules.items()
        },
    }


class BudgetRecords(CaseRecords):
    @activity.defn(name="project_budget_cycle")
    async def project_budget_cycle(self, projection: BudgetCycleProjection) -> None:
        state = projection.state
        await self._project(
            BudgetCycle,
            budget_cycle_workflow_id(state.year),
            projection.entry,
            cycle_columns(state),
        )
