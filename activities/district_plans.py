"""A district plan's side effects: its row and timeline in Postgres, written idempotently by
`CaseRecords`' projection (keyed by case id + seq, retried and alerted on in the same way)."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.projects import _jsonable
from activities.records import CaseRecords
from models.district_plans import DistrictPlan, DistrictPlanProjection, DistrictPlanState


def plan_columns(state: DistrictPlanState) -> dict[str, Any]:
    """The row's projected columns, as JSON (times ISO 8601, UTC)."""
    return {
        "status": state.status.value,
        "cost_krw": state.cost_krw,
        "negotiations": _jsonable(state.negotiations),
        "decision": _jsonable(state.decision),
        "agreement": _jsonable(state.agreement),
    }


class DistrictPlanRecords(CaseRecords):
    @activity.defn(name="project_district_plan")
    async def project_district_plan(self, projection: DistrictPlanProjection) -> None:
        state = projection.state
        await self._project(DistrictPlan, state.plan_id, projection.entry, plan_columns(state))
