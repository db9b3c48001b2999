"""The budget-year cycle's side effects: its row and timeline, written idempotently by
`CaseRecords`' projection (keyed by case id + seq, retried and alerted on in the same way), and
its ballot boxes (models/ballot_box.py): opened with the candidates of the moment, closed and
counted at the end of the vote."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import heartbeating
from activities.records import CaseRecords
from models.ballot_box import BoxTally, budget_box_id, close_box, count_box, open_box
from models.budget import (
    BALLOT_STATUS,
    BallotCandidate,
    BallotRef,
    BudgetCycleProjection,
    cycle_columns,
)
from models.budget_bodies import add_members
from models.budget_tables import BudgetCycle
from models.ids import budget_cycle_workflow_id


class BudgetRecords(CaseRecords):
    @activity.defn(name="project_budget_cycle")
    async def project_budget_cycle(self, projection: BudgetCycleProjection) -> None:
        state = projection.state
        members = projection.members

        async def write_members(session: AsyncSession) -> None:
            if members is not None:
                await add_members(session, members.year, members.body, members.members)

        await self._project(
            BudgetCycle,
            budget_cycle_workflow_id(state.year),
            projection.entry,
            cycle_columns(state),
            write_members,
        )

    @activity.defn(name="submitted_projects")
    async def submitted_projects(self, ref: BallotRef) -> list[str]:
        """The ids of the kind's projects of the year still `submitted` (sorted)."""
        async with self._sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT id FROM budget_projects WHERE year = :year AND kind = :kind "
                    "AND status = 'submitted' ORDER BY id"
                ),
                {"year": ref.year, "kind": ref.kind},
            )
            return [r.id for r in rows]

    @activity.defn(name="open_budget_ballot")
    async def open_budget_ballot(self, ref: BallotRef) -> list[BallotCandidate]:
        """Open the kind's box with the projects on the ballot (`BALLOT_STATUS` of the kind)
        and return them; idempotent: a box already opened keeps its options, which are returned."""
        now = activity.info().current_attempt_scheduled_time
        box_id = budget_box_id(ref.year, ref.kind)
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    text(
                        "SELECT id, field, cost_krw, title FROM budget_projects "
                        "WHERE year = :year AND kind = :kind AND status = :status "
                        "ORDER BY id"
                    ),
                    {"year": ref.year, "kind": ref.kind, "status": BALLOT_STATUS[ref.kind]},
                )
            ).all()
            candidates = [
                BallotCandidate(project_id=r.id, field=r.field, cost_krw=r.cost_krw, title=r.title)
                for r in rows
            ]
            await open_box(
                session,
                box_id,
                kind="budget",
                case_id=budget_cycle_workflow_id(ref.year),
                options=[c.project_id for c in candidates],
                now=now,
            )
            opened = (
                await session.execute(
                    text("SELECT options FROM ballot_boxes WHERE id = :id"), {"id": box_id}
                )
            ).scalar_one()
        by_id = {c.project_id: c for c in candidates}
        return [by_id[o] for o in opened if o in by_id]

    @activity.defn(name="close_budget_ballot")
    async def close_budget_ballot(self, ref: BallotRef) -> BoxTally:
        """Close the kind's box (no ballot after this commits) and count it; idempotent."""
        closed_at = activity.info().current_attempt_scheduled_time
        box_id = budget_box_id(ref.year, ref.kind)
        async with heartbeating(), self._sessions() as session, session.begin():
            await close_box(session, box_id, now=closed_at)
            return await count_box(session, box_id)
