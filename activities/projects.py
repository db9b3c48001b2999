"""A budget project's side effects: its row and timeline in Postgres, written idempotently by
`CaseRecords`' projection (keyed by case id + seq, retried and alerted on in the same way)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any

from temporalio import activity

from activities.records import CaseRecords
from models.project import ProjectProjection, ProjectState, ProjectStatus
from models.project_tables import BudgetProject


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


#: A project the vote selected stays selected while it is executed and once completed.
SELECTED_STATUSES = frozenset(
    {ProjectStatus.SELECTED, ProjectStatus.EXECUTING, ProjectStatus.COMPLETED}
)


def project_columns(state: ProjectState) -> dict[str, Any]:
    """The row's projected columns, as JSON (times ISO 8601, UTC)."""
    selected = None
    if state.status in SELECTED_STATUSES:
        selected = True
    elif state.status is ProjectStatus.DROPPED:
        selected = False
    return {
        "status": state.status.value,
        "cost_krw": state.cost_krw,
        "eligibility": _jsonable(state.eligibility),
        "review": _jsonable(state.review),
        "objections": _jsonable(state.objections),
        "vote": _jsonable(state.vote),
        "selected": selected,
        "execution": _jsonable(state.execution),
        "evaluation": _jsonable(state.evaluation),
    }


class ProjectRecords(CaseRecords):
    @activity.defn(name="project_budget_project")
    async def project_budget_project(self, projection: ProjectProjection) -> None:
        state = projection.state
        await self._project(
            BudgetProject, state.project_id, projection.entry, project_columns(state)
        )
