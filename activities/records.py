"""The case records in Postgres: every workflow transition, written idempotently.

Each projection appends one timeline entry, keyed by (case id, seq), and brings the case's row
to the state of that entry unless a newer one was written already: a retried or late
projection never writes twice and never moves a row back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notices import Outbox, rows_for_entry
from models.case import TimelineEntry
from models.deliberation import AskState, ForumState, OpinionTally
from models.deliberation_tables import Ask, Forum
from models.proposal import Projection
from models.tables import Notification, Proposal, TimelineRow

log = logging.getLogger("minju.records")

#: From this attempt on (about 30 s of retries), a failing projection raises the alarm, and
#: again every ALERT_EVERY attempts after that: it is never given up on.
ALERT_FROM_ATTEMPT = 5
ALERT_EVERY = 20
OPERATIONS = "operations"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _tally_columns(tally: OpinionTally | None) -> dict[str, Any]:
    if tally is None:
        return {}
    return {
        "participants": tally.participants,
        "for_count": tally.for_,
        "against_count": tally.against,
        "other_count": tally.other,
        "opinions": tally.opinions,
        "digest": tally.digest,
    }


@dataclasses.dataclass
class ForumProjection:
    state: ForumState
    entry: TimelineEntry


@dataclasses.dataclass
class AskProjection:
    state: AskState
    entry: TimelineEntry


class CaseRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._outbox = Outbox()

    async def _project(
        self,
        table: type[SQLModel],
        case_id: str,
        entry: TimelineEntry,
        values: dict[str, Any],
        also: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> None:
        """Write the entry and the row's columns in one transaction, with `also` (rows the
        entry brings, written idempotently) in the same one; with them, the entry's outbox
        rows (activities/notices.py), whose delivery starts once they are committed."""
        try:
            keys = await self._write(table, case_id, entry, values, also)
            await self._outbox.start(keys)
        except Exception as exc:
            attempt = activity.info().attempt
            if attempt >= ALERT_FROM_ATTEMPT and (attempt - ALERT_FROM_ATTEMPT) % ALERT_EVERY == 0:
                await self._alert_stuck(case_id, entry, attempt, exc)
            raise

    async def _alert_stuck(
        self, case_id: str, entry: TimelineEntry, attempt: int, exc: Exception
    ) -> None:
        """Log, and leave a row for the operations team in the outbox if the database takes it."""
        message = (
            f"the projection of case {case_id} #{entry.seq} ({entry.event}) has failed "
            f"{attempt} times and is still being retried: {type(exc).__name__}: {exc}"
        )
        log.error("projection stuck: %s", message)
        key = f"projection-stuck:{case_id}:{entry.seq}:{attempt}"
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    insert(Notification)
                    .values(
                        key=key,
                        case_id=case_id,
                        recipient=OPERATIONS,
                        kind="projection_stuck",
                        message=message.replace("\x00", "")[:2000],
                        due_at=None,
                        created_at=activity.info().current_attempt_scheduled_time,
                    )
                    .on_conflict_do_nothing(constraint="uq_notifications_key_recipient")
                )
            await self._outbox.start([key])
        except Exception as outbox_exc:  # the database may be the very thing that is down
            log.error(
                "projection stuck: the outbox row could not be written or sent: %s", outbox_exc
            )

    async def _write(
        self,
        table: type[SQLModel],
        case_id: str,
        entry: TimelineEntry,
        values: dict[str, Any],
        also: Callable[[AsyncSession], Awaitable[None]] | None,
    ) -> list[str]:
        async with self._sessions() as session, session.begin():
            if also is not None:
                await also(session)
            await session.execute(
                insert(TimelineRow)
                .values(
                    case_id=case_id,
                    seq=entry.seq,
                    at=entry.at,
                    stage=str(entry.stage),
                    event=entry.event,
                    actor_role=str(entry.actor_role),
                    note=entry.note,
                )
                .on_conflict_do_nothing()
            )
            key = col(table.id)  # type: ignore[attr-defined]
            result = await session.execute(
                update(table)
                .where(key == case_id)
                .where(col(table.projection_seq) < entry.seq)  # type: ignore[attr-defined]
                .values(**values, projection_seq=entry.seq, updated_at=entry.at)
            )
            if result.rowcount == 0 and await session.get(table, case_id) is None:  # type: ignore[attr-defined]
                # The API commits the row right after starting the workflow: retry.
                raise ApplicationError(f"case {case_id} is not recorded yet")
            name = str(table.__tablename__)
            notices = await rows_for_entry(session, name, case_id, entry, values)
            return await self._outbox.write(session, notices, only_reachable=True)

    @activity.defn(name="project_proposal")
    async def project_proposal(self, projection: Projection) -> None:
        state = projection.state
        await self._project(
            Proposal,
            state.proposal_id,
            projection.entry,
            {
                "status": state.status.value,
                "department": state.department,
                "executing_department": state.executing_department,
                "due_at": state.due_at,
                "overdue": state.overdue,
                "supports_open": state.supports_open,
                "decision_reason": state.decision_reason,
                "screening": _jsonable(state.screening),
                "plan": _jsonable(state.plan),
                "vote": _jsonable(state.vote),
                "progress_pct": state.progress_pct,
                "agenda": _jsonable(state.agenda),
            },
        )

    @activity.defn(name="project_forum")
    async def project_forum(self, projection: ForumProjection) -> None:
        state = projection.state
        await self._project(
            Forum,
            state.forum_id,
            projection.entry,
            {
                "status": state.status.value,
                "opens_at": state.opens_at,
                "closes_at": state.closes_at,
                "eligible_for_deliberation": state.eligible_for_deliberation,
                "budget_year": state.budget_year,
                "carried_over": state.carried_over,
                "recommendation": state.recommendation,
                **_tally_columns(state.tally),
            },
        )

    @activity.defn(name="project_ask")
    async def project_ask(self, projection: AskProjection) -> None:
        state = projection.state
        await self._project(
            Ask,
            state.ask_id,
            projection.entry,
            {
                "status": state.status.value,
                "due_at": state.due_at,
                "overdue": state.overdue,
                "review_summary": state.review_summary,
                "review_actions": state.review_actions,
                **_tally_columns(state.tally),
            },
        )
