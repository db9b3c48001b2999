"""The notification outbox and its delivery.

**What goes into the outbox.** Every projected transition (`CaseRecords._project`,
activities/records.py) that someone must know about adds outbox rows in the same transaction
as its timeline row, keyed `<case id>:<seq>` (unique with the recipient), so a retried
projection writes them once; nothing in the workflows changed for it (a recorded history
replays as before). A transition's row is written only for a recipient who can be reached (a
contact with a channel chosen; for a group, at least one member with one): the timeline is its
record already, and a row nobody could ever receive would only fill the table. The
escalations and an ask's results are still enqueued by their workflows (`enqueue_notice`,
keyed `<workflow id>:<seq>`) for every recipient, as the record principle 4 asks for, those
who cannot be reached as `no_contact`. Who is told what (P the proposer
`person:<sub>`, D the department in charge `department:<dept>` (for a proposal the reviewing
one, then the executing one), S the supporters `supporters:<proposal>`, V the voters
`voters:<box>`, C a forum's or ask's participants `participants:<case>`):

| case     | event(s)                                              | to            |
|----------|-------------------------------------------------------|---------------|
| proposal | support_threshold_reached (accepted for review)       | P             |
| proposal | support_window_closed                                 | P             |
| proposal | forum_threshold_reached, forum_decided, forum_declined| P, S          |
| proposal | department_assigned                                   | P, D          |
| proposal | review_accepted, review_rejected (the decision)       | P, S          |
| proposal | screening_advanced                                    | P             |
| proposal | screening_dropped, plan_discarded                     | P, S          |
| proposal | plan_submitted, plan_revised, plan_revision_requested | P, D          |
| proposal | plan_appropriate (the vote opens)                     | P, S, D       |
| proposal | vote_closed (the result: executing or not_passed)     | P, S, V, D    |
| proposal | final_report (completed)                              | P, S          |
| proposal | deadline_missed (overdue; D and operations are told   | P             |
|          | by the escalation itself, reminders go to them only)  |               |
| proposal | withdrawn                                             | S, D          |
| forum    | opened (of a proposal's forum)                        | P, S of it    |
| forum    | closed                                                | C, P          |
| forum    | recommendation_published                              | C             |
| ask      | review_published                                      | C             |
| project  | every change of stage (D: the executing department)   | P, D          |
| project  | executing_department_named                            | D             |

A budget cycle's phases are public announcements, not anyone's case: they notify nobody.

**Groups are expanded at delivery**, from `supports`, `ballot_participations` (who voted,
never what: the message is the same text for every voter, and no row, message or log line
names a choice; design.md, principle 7) and `participations`, into rows of the members who
have a contact, with the group's key (a person in two groups is told once), inserted in one
statement in person order: neither their order nor their time says anything of a ballot.

**Delivery.** After its transaction commits, the writer starts one small `NotificationDelivery`
workflow per key (workflows/delivery.py; id `notify-<key>`, refused as a duplicate when it ran
already, so a retried projection starts it once) if any row of the key can reach someone. It
runs `deliver_notifications` under Temporal's retry policy: each attempt delivers the key's
rows still pending, records each one's attempt, channel, error and `delivered_at`, and fails
(to be retried with backoff) while some delivery failed in a way a retry may fix (5xx,
timeout, connection refused); a permanent failure (4xx, an address refused) is recorded as
failed and not retried; on the last attempt (MINJU_NOTIFY_ATTEMPTS) what still fails is
recorded as failed. A recipient's channels are tried in its order of preference: the first
that takes the message delivers it.

Why a workflow per batch rather than sending from the projection, a dispatcher or a loop in
the worker: the case's workflow only waits for its projection, which only writes rows and
starts a workflow, so a dead SMTP server or webhook never delays or fails a case; the retries
are Temporal's, durable across worker restarts, visible per batch; a batch has no timer at all
and a bounded number of retries, so on the simulated clock (the time-skipping server) nothing
periodic makes the clock jump or an advance replay thousands of wake-ups, and a batch never
outlives a parent (it has none: started by a client, not a child). A long-lived dispatcher
would need a periodic timer or a signal per batch into one history (principle 2), and a loop
in the worker process would re-implement durable retries and be invisible to Temporal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities import heartbeating
from activities.channels import (
    Channel,
    Contact,
    DeliveryError,
    Message,
    NotifySettings,
    channels,
    unseal,
)
from models.ballot_box import proposal_box_id
from models.calendar import in_seoul
from models.case import Notice, TimelineEntry
from models.tables import Notification

log = logging.getLogger("minju.notices")

DELIVERY_WORKFLOW = "NotificationDelivery"
#: Deliveries one attempt runs at once.
PARALLEL_SENDS = 10
#: Who `operations` is reached as: the operations team's contact, set like a department's.
OPERATIONS_CONTACT = "department:operations"

PROPOSER, DEPARTMENT, SUPPORTERS, VOTERS, PARTICIPANTS = "P", "D", "S", "V", "C"


@dataclass(frozen=True)
class Rule:
    to: str
    says: str


PROPOSAL_RULES: dict[str, Rule] = {
    "support_threshold_reached": Rule("P", "has the supports it needs and goes to review"),
    "support_window_closed": Rule("P", "did not reach the forum threshold in time"),
    "forum_threshold_reached": Rule("PS", "reached the forum threshold: agenda selection"),
    "forum_decided": Rule("PS", "will be discussed in a public forum"),
    "forum_declined": Rule("PS", "will not be discussed in a public forum"),
    "department_assigned": Rule("PD", "was assigned to a department for review"),
    "review_accepted": Rule("PS", "was accepted by the department"),
    "review_rejected": Rule("PS", "was rejected by the department"),
    "screening_advanced": Rule("P", "passed the committee's screening"),
    "screening_dropped": Rule("PS", "was dropped at the committee's screening"),
    "plan_submitted": Rule("PD", "has an execution plan to check"),
    "plan_revised": Rule("PD", "has a revised execution plan to check"),
    "plan_revision_requested": Rule("PD", "has an execution plan to revise"),
    "plan_discarded": Rule("PS", "was discarded at the appropriateness check"),
    "plan_appropriate": Rule("PSD", "is put to the vote: the vote is open"),
    "vote_closed": Rule("PSVD", "has a vote result: the vote is closed"),
    "final_report": Rule("PS", "is completed"),
    "deadline_missed": Rule("P", "is overdue: the answer due has not come"),
    "withdrawn": Rule("SD", "was withdrawn by its proposer"),
}
FORUM_RULES: dict[str, Rule] = {
    "opened": Rule("PS", "is open for opinions"),
    "closed": Rule("CP", "is closed"),
    "recommendation_published": Rule("C", "has its recommendation published"),
}
ASK_RULES: dict[str, Rule] = {
    "review_published": Rule("C", "has the department's review published"),
}
PROJECT_STAGE_RULE = Rule("PD", "is now")
PROJECT_DEPARTMENT_RULE = Rule("D", "has its executing department named")

#: Members of a group recipient, by its prefix: person ids, never anything else.
GROUPS: dict[str, str] = {
    "supporters": "SELECT person_id FROM supports WHERE proposal_id = :group_id",
    "voters": "SELECT person_id FROM ballot_participations WHERE box_id = :group_id",
    "participants": "SELECT person_id FROM participations WHERE case_id = :group_id",
}
#: Whether `{who}` (an SQL expression) has a contact with a channel chosen.
_REACHABLE = (
    "SELECT 1 FROM notification_contacts c WHERE c.recipient = {who} "
    "AND jsonb_array_length(c.channels) > 0"
)
#: A group member's recipient, in SQL over the member query `m`.
_MEMBER = "'person:' || m.person_id"


@dataclass
class DeliveryBatch:
    """The delivery workflow's input: which key, and its retry policy. Ids only."""

    key: str
    attempts: int
    retry_seconds: float
    retry_max_seconds: float


@dataclass
class DeliveryReport:
    delivered: int
    failed: int
    no_contact: int
    retrying: int


@dataclass(frozen=True)
class OutboxRow:
    key: str
    case_id: str
    recipient: str
    kind: str
    message: str
    due_at: datetime | None
    created_at: datetime


def group_of(recipient: str) -> tuple[str, str] | None:
    prefix, _, group_id = recipient.partition(":")
    return (prefix, group_id) if prefix in GROUPS and group_id else None


def contact_of(recipient: str) -> str:
    return OPERATIONS_CONTACT if recipient == "operations" else recipient


# ---- which transitions notify whom -----------------------------------------------------------


async def _one(session: AsyncSession, sql: str, **params: Any) -> Any:
    return (await session.execute(text(sql), params)).first()


async def rows_for_entry(
    session: AsyncSession, table: str, case_id: str, entry: TimelineEntry, values: dict[str, Any]
) -> list[OutboxRow]:
    """The outbox rows `entry` of the case calls for (see the table above); none for most."""
    recipients: list[str] = []
    origin: str | None = None
    what = "Proposal"
    rule: Rule | None = None
    department: str | None = None
    title: str | None = None
    proposer: str | None = None
    if table == "proposals":
        rule = PROPOSAL_RULES.get(entry.event)
        if rule is None:
            return []
        row = await _one(
            session, "SELECT title, proposer_id FROM proposals WHERE id = :id", id=case_id
        )
        title, proposer = (row.title, row.proposer_id) if row else (None, None)
        department = values.get("executing_department") or values.get("department")
        if entry.event in ("department_assigned", "withdrawn"):
            department = values.get("department")
        origin = case_id
    elif table == "forums":
        what = "Forum"
        rule = FORUM_RULES.get(entry.event)
        if rule is None:
            return []
        row = await _one(
            session,
            "SELECT f.title, f.origin_proposal_id, p.proposer_id FROM forums f "
            "LEFT JOIN proposals p ON p.id = f.origin_proposal_id WHERE f.id = :id",
            id=case_id,
        )
        title = row.title if row else None
        origin = row.origin_proposal_id if row else None
        proposer = row.proposer_id if row else None
    elif table == "asks":
        what = "Seoul asks"
        rule = ASK_RULES.get(entry.event)
        if rule is None:
            return []
        row = await _one(session, "SELECT title FROM asks WHERE id = :id", id=case_id)
        title = row.title if row else None
    elif table == "budget_projects":
        what = "Budget project"
        execution = values.get("execution") or {}
        department = execution.get("department") if isinstance(execution, dict) else None
        if entry.event == "executing_department_named":
            rule = PROJECT_DEPARTMENT_RULE
        else:
            previous = await _one(
                session,
                "SELECT stage FROM timeline_entries WHERE case_id = :id AND seq = :seq",
                id=case_id,
                seq=entry.seq - 1,
            )
            if entry.seq == 1 or (previous is not None and previous.stage == entry.stage):
                return []
            rule = Rule(PROJECT_STAGE_RULE.to, f"{PROJECT_STAGE_RULE.says} {entry.stage}")
        row = await _one(
            session, "SELECT title, proposer_id FROM budget_projects WHERE id = :id", id=case_id
        )
        title, proposer = (row.title, row.proposer_id) if row else (None, None)
    if rule is None:
        return []
    for audience in rule.to:
        if audience == PROPOSER and proposer:
            recipients.append(f"person:{proposer}")
        elif audience == DEPARTMENT and department:
            recipients.append(f"department:{department}")
        elif audience == SUPPORTERS and origin:
            recipients.append(f"supporters:{origin}")
        elif audience == VOTERS and table == "proposals":
            recipients.append(f"voters:{proposal_box_id(case_id)}")
        elif audience == PARTICIPANTS:
            recipients.append(f"participants:{case_id}")
    subject = f"{what} {case_id} {rule.says}"
    body = "\n".join(
        line
        for line in (
            f"{what} {case_id}" + (f" ({title})" if title else "") + f" {rule.says}.",
            f"Stage: {entry.stage}; event: {entry.event}; at {in_seoul(entry.at).isoformat()}.",
            entry.note,
        )
        if line
    )
    return [
        OutboxRow(
            key=f"{case_id}:{entry.seq}",
            case_id=case_id,
            recipient=recipient,
            kind=entry.event,
            message=f"{subject}\n{body}".replace("\x00", "")[:4000],
            due_at=values.get("due_at") if isinstance(values.get("due_at"), datetime) else None,
            created_at=entry.at,
        )
        for recipient in dict.fromkeys(recipients)
    ]


# ---- writing rows and starting their delivery -----------------------------------------------


class Outbox:
    """Writes outbox rows (in the caller's transaction) and starts their delivery (after it)."""

    def __init__(self, settings: NotifySettings | None = None) -> None:
        self.settings = settings or NotifySettings()

    async def write(
        self, session: AsyncSession, rows: Sequence[OutboxRow], *, only_reachable: bool
    ) -> list[str]:
        """Insert the rows once and return the keys with a row to deliver. With
        `only_reachable` (a transition's notices) only the rows of recipients who can be
        reached are written; otherwise (an escalation: its record is owed whoever reads it)
        every row is, those nobody can be reached for as `no_contact`."""
        reachable = [r for r in rows if await self._reachable(session, r.recipient)]
        written = reachable if only_reachable else list(rows)
        if not written:
            return []
        await session.execute(
            insert(Notification)
            .values(
                [
                    {
                        "key": r.key,
                        "case_id": r.case_id,
                        "recipient": r.recipient,
                        "kind": r.kind,
                        "message": r.message,
                        "due_at": r.due_at,
                        "created_at": r.created_at,
                        "status": "pending" if r in reachable else "no_contact",
                    }
                    for r in written
                ]
            )
            .on_conflict_do_nothing(constraint="uq_notifications_key_recipient")
        )
        return sorted({r.key for r in reachable})

    @staticmethod
    async def _reachable(session: AsyncSession, recipient: str) -> bool:
        group = group_of(recipient)
        if group is None:
            sql = f"SELECT EXISTS ({_REACHABLE.format(who=':who')})"
            params = {"who": contact_of(recipient)}
        else:
            members = GROUPS[group[0]]
            sql = (
                f"SELECT EXISTS (SELECT 1 FROM ({members}) m WHERE EXISTS "
                f"({_REACHABLE.format(who=_MEMBER)}))"
            )
            params = {"group_id": group[1]}
        return bool((await session.execute(text(sql), params)).scalar_one())

    async def start(self, keys: Iterable[str]) -> None:
        """Start each key's delivery workflow once (from an activity: its client and queue)."""
        info = activity.info()
        client = activity.client()
        for key in keys:
            batch = DeliveryBatch(
                key=key,
                attempts=self.settings.attempts,
                retry_seconds=self.settings.retry_seconds,
                retry_max_seconds=self.settings.retry_max_seconds,
            )
            try:
                await client.start_workflow(
                    DELIVERY_WORKFLOW,
                    batch,
                    id=f"notify-{key}",
                    task_queue=info.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            except WorkflowAlreadyStartedError:
                pass


# ---- delivering ----------------------------------------------------------------------------


@dataclass
class _Outcome:
    id: int
    status: str
    channel: str | None = None
    error: str | None = None


class Notices:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: NotifySettings | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = Outbox(settings)
        self._settings = self._outbox.settings

    @activity.defn(name="enqueue_notice")
    async def enqueue(self, notice: Notice) -> None:
        created_at = activity.info().current_attempt_scheduled_time
        rows = [
            OutboxRow(
                key=notice.key,
                case_id=notice.case_id,
                recipient=recipient,
                kind=notice.kind,
                message=notice.message,
                due_at=notice.due_at,
                created_at=created_at,
            )
            for recipient in notice.recipients
        ]
        async with self._sessions() as session, session.begin():
            keys = await self._outbox.write(session, rows, only_reachable=False)
        await self._outbox.start(keys)

    @activity.defn(name="deliver_notifications")
    async def deliver(self, batch: DeliveryBatch) -> DeliveryReport:
        """Deliver the key's pending rows (groups expanded first); raise, to be retried with
        backoff, while a delivery failed in a way a retry may fix, except on the last attempt."""
        info = activity.info()
        now = info.current_attempt_scheduled_time
        last = info.attempt >= batch.attempts
        async with heartbeating():
            await self._expand(batch.key, now)
            async with self._sessions() as session:
                pending = (
                    await session.execute(
                        text(
                            "SELECT n.id, n.key, n.case_id, n.recipient, n.kind, n.message, "
                            "n.due_at, n.created_at, c.recipient AS contact, c.email, c.phone, "
                            "c.webhook_url, c.webhook_secret, c.channels "
                            "FROM notifications n LEFT JOIN notification_contacts c "
                            "ON c.recipient = CASE WHEN n.recipient = 'operations' "
                            f"THEN '{OPERATIONS_CONTACT}' ELSE n.recipient END "
                            "WHERE n.key = :key AND n.status = 'pending' ORDER BY n.id"
                        ),
                        {"key": batch.key},
                    )
                ).all()
            limit = asyncio.Semaphore(PARALLEL_SENDS)
            async with httpx.AsyncClient(timeout=self._settings.timeout_seconds) as client:
                by_name = channels(self._settings, client)

                async def one(row: Any) -> _Outcome:
                    async with limit:
                        outcome = await self._send(row, by_name)
                        if outcome.status == "retry" and last:
                            outcome.status = "failed"
                        await self._record(outcome, now)
                        return outcome

                outcomes = await asyncio.gather(*(one(r) for r in pending))
        report = DeliveryReport(
            delivered=sum(o.status == "delivered" for o in outcomes),
            failed=sum(o.status == "failed" for o in outcomes),
            no_contact=sum(o.status == "no_contact" for o in outcomes),
            retrying=sum(o.status == "retry" for o in outcomes),
        )
        if report.retrying:
            errors = "; ".join(sorted({o.error or "" for o in outcomes if o.status == "retry"}))
            raise ApplicationError(
                f"{report.retrying} deliveries of {batch.key} will be retried: {errors[:500]}"
            )
        return report

    async def _expand(self, key: str, now: datetime) -> None:
        """Expand the key's pending group rows into rows of their members who have a contact,
        in one statement each, in person order; the group row becomes `expanded`."""
        async with self._sessions() as session, session.begin():
            groups = (
                await session.execute(
                    text(
                        "SELECT id, recipient FROM notifications "
                        "WHERE key = :key AND status = 'pending' FOR UPDATE"
                    ),
                    {"key": key},
                )
            ).all()
            for group_row in groups:
                group = group_of(group_row.recipient)
                if group is None:
                    continue
                members = GROUPS[group[0]]
                await session.execute(
                    text(
                        "INSERT INTO notifications (key, case_id, recipient, kind, message, "
                        "due_at, created_at, expanded_from) "
                        f"SELECT g.key, g.case_id, {_MEMBER}, g.kind, g.message, "
                        "g.due_at, g.created_at, g.recipient "
                        f"FROM notifications g CROSS JOIN ({members}) m "
                        "WHERE g.id = :id AND EXISTS ("
                        f"{_REACHABLE.format(who=_MEMBER)}"
                        ") ORDER BY m.person_id "
                        "ON CONFLICT ON CONSTRAINT uq_notifications_key_recipient DO NOTHING"
                    ),
                    {"id": group_row.id, "group_id": group[1]},
                )
                await session.execute(
                    text(
                        "UPDATE notifications SET status = 'expanded', delivered_at = :now, "
                        "attempts = attempts + 1 WHERE id = :id"
                    ),
                    {"id": group_row.id, "now": now},
                )

    async def _send(self, row: Any, by_name: dict[str, Channel]) -> _Outcome:
        if row.contact is None or not row.channels:
            return _Outcome(row.id, "no_contact")
        try:
            secret = None
            if row.webhook_secret is not None and "webhook" in row.channels:
                if not self._settings.secret_key:
                    raise DeliveryError(
                        "MINJU_NOTIFY_SECRET_KEY is not set: webhook secrets cannot be opened",
                        permanent=True,
                    )
                secret = unseal(self._settings.secret_key, row.contact, bytes(row.webhook_secret))
        except DeliveryError as exc:
            return _Outcome(row.id, "failed", error=str(exc))
        contact = Contact(
            recipient=row.contact,
            email=row.email,
            phone=row.phone,
            webhook_url=row.webhook_url,
            webhook_secret=secret,
            channels=tuple(row.channels),
        )
        subject, _, body = row.message.partition("\n")
        message = Message(
            key=row.key,
            recipient=row.recipient,
            case_id=row.case_id,
            kind=row.kind,
            subject=subject,
            body=body or subject,
            due_at=row.due_at.isoformat() if row.due_at else None,
            created_at=row.created_at.isoformat(),
        )
        errors: list[DeliveryError] = []
        for name in contact.channels:
            channel = by_name.get(name)
            if channel is None or not channel.reaches(contact):
                continue
            try:
                await channel.send(contact, message)
            except DeliveryError as exc:
                log.warning("delivery %s via %s failed: %s", message.idempotency_key, name, exc)
                errors.append(exc)
                continue
            return _Outcome(row.id, "delivered", channel=name)
        if not errors:
            return _Outcome(row.id, "no_contact", error="no chosen channel reaches the contact")
        error = "; ".join(str(e) for e in errors)
        retry = any(not e.permanent for e in errors)
        return _Outcome(row.id, "retry" if retry else "failed", error=error)

    async def _record(self, outcome: _Outcome, now: datetime) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE notifications SET attempts = attempts + 1, "
                    "status = :status, last_error = :error, channel = :channel, "
                    "delivered_at = :delivered_at WHERE id = :id AND status = 'pending'"
                ),
                {
                    "id": outcome.id,
                    "status": "pending" if outcome.status == "retry" else outcome.status,
                    "error": outcome.error[:2000] if outcome.error else None,
                    "channel": outcome.channel,
                    "delivered_at": now if outcome.status == "delivered" else None,
                },
            )
