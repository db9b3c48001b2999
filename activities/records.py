"""The case records in Postgres: every workflow transition, written idempotently."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.proposal import Projection
from models.tables import Proposal, TimelineRow


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class CaseRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="project_proposal")
    async def project_proposal(self, projection: Projection) -> None:
        """Append the timeline entry and bring the proposal row to this state.

        Keyed by (case id, seq): a retried or late projection never writes twice and never
        moves the row back to an older state.
        """
        state, entry = projection.state, projection.entry
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(TimelineRow)
                .values(
                    case_id=state.proposal_id,
                    seq=entry.seq,
                    at=entry.at,
                    stage=entry.stage.value,
                    event=entry.event,
                    actor_role=entry.actor_role.value,
                    note=entry.note,
                )
                .on_conflict_do_nothing()
            )
            result = await session.execute(
                update(Proposal)
                .where(Proposal.id == state.proposal_id)  # type: ignore[arg-type]
                .where(Proposal.projection_seq < entry.seq)  # type: ignore[arg-type]
                .values(
                    status=state.status.value,
                    department=state.department,
                    executing_department=state.executing_department,
                    due_at=state.due_at,
                    overdue=state.overdue,
                    supports_open=state.supports_open,
                    decision_reason=state.decision_reason,
                    screening=_jsonable(state.screening),
                    plan=_jsonable(state.plan),
                    vote=_jsonable(state.vote),
                    progress_pct=state.progress_pct,
                    projection_seq=entry.seq,
                    updated_at=entry.at,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                exists = await session.get(Proposal, state.proposal_id)
                if exists is None:
                    # The API commits the row right after starting the workflow: retry.
                    raise ApplicationError(f"proposal {state.proposal_id} is not recorded yet")
