"""What every case workflow shares: activity options, refusals, and deadline escalation.

A missed deadline is recorded, the responsible department and the operations team are
notified, reminders repeat, and the case keeps waiting for the answer the rules require
(design.md, principle 4). It never decides by itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notices import Notices
    from models.calendar import in_seoul
    from models.case import ErrorType, Notice, Role, TimelineEntry
    from models.text import unwritable_reason

#: An activity whose worker died is tried again on another after this long: a projection
#: or a notice is one short transaction, so a short bound costs nothing and lets a case go on
#: within seconds of a worker being killed (an attempt still running is harmless: every
#: activity is idempotent).
ACTIVITY_TIMEOUT = timedelta(seconds=10)
#: Counting a box may take minutes; it heartbeats (activities.heartbeating) instead, and is
#: tried again that long after its worker's last heartbeat.
COUNTING_TIMEOUT = timedelta(minutes=30)
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
#: Every activity talks to Postgres, and a case never fails because Postgres was away for a
#: while: activities are retried with backoff for as long as it takes (no schedule-to-close
#: bound, no attempt limit; design.md, principle 3). Errors retrying cannot fix are raised
#: non-retryable by the activity itself, and `CaseRecords` raises the alarm when a projection
#: keeps failing. (On the time-skipping server an advance of the clock skips over backoff
#: waits, but never past the time it was asked to reach.)
#: The backoff stops growing at 10 s, so that a projection lands within seconds of Postgres
#: coming back, however long it was away.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
OPERATIONS = "operations"

Record = Callable[[str, Role, str], Awaitable[TimelineEntry]]


class ActivityOptions(TypedDict):
    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy


class CountingOptions(ActivityOptions):
    heartbeat_timeout: timedelta


def activity_options() -> ActivityOptions:
    return ActivityOptions(start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY)


def counting_options() -> CountingOptions:
    """For an activity that counts a box inside `activities.heartbeating()`."""
    return CountingOptions(
        start_to_close_timeout=COUNTING_TIMEOUT,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )


def reject(kind: ErrorType, message: str) -> ApplicationError:
    """Refuse an Update in its validator: the API maps `kind` to 409/403/422."""
    return ApplicationError(message, type=kind.value, non_retryable=True)


def require_text(value: str, name: str) -> None:
    if not value or not value.strip():
        raise reject(ErrorType.INVALID, f"{name} is mandatory")


def require_writable(command: Any, name: str = "command") -> None:
    """Whatever a validator accepts must be writable: no string anywhere in the command may
    hold what Postgres cannot store (models.text), or its projection could never succeed."""
    if isinstance(command, str):
        reason = unwritable_reason(command)
        if reason is not None:
            raise reject(ErrorType.INVALID, f"{name} {reason}")
    elif dataclasses.is_dataclass(command) and not isinstance(command, type):
        for field in dataclasses.fields(command):
            require_writable(getattr(command, field.name), field.name)
    elif isinstance(command, dict):
        for key, value in command.items():
            require_writable(key, name)
            require_writable(value, f"{name}.{key}")
    elif isinstance(command, list | tuple):
        for value in command:
            require_writable(value, name)


def require_idle(recording: int) -> None:
    """Refuse a decision while another transition of the case is being recorded, so no
    decision is ever taken on a state that Postgres does not show yet."""
    if recording:
        raise reject(
            ErrorType.BUSY, "the case's previous transition is still being recorded; retry"
        )


async def await_answer(
    answered: Callable[[], bool],
    *,
    due_at: datetime,
    reminder: timedelta,
    case_id: str,
    stage: str,
    party: str,
    mark_overdue: Callable[[], None],
    record: Record,
    until: datetime | None = None,
) -> None:
    """Wait until `answered()`; past `due_at`, escalate once, then remind every `reminder`.
    With `until`, stop waiting (answered or not) once the clock reaches it: the caller has a
    later deadline of its own from then on."""
    timeout = max(due_at - workflow.now(), timedelta(0))
    first = True
    due = in_seoul(due_at).isoformat()
    while True:
        if until is not None:
            timeout = max(min(timeout, until - workflow.now()), timedelta(0))
        try:
            await workflow.wait_condition(answered, timeout=timeout)
            return
        except TimeoutError:
            pass
        if until is not None and workflow.now() >= until:
            return
        event = "deadline_missed" if first else "reminder_sent"
        if first:
            mark_overdue()
        entry = await record(
            event,
            Role.SYSTEM,
            f"{stage} answer from {party} was due {due}; {party} and the operations team notified",
        )
        await workflow.execute_activity_method(
            Notices.enqueue,
            Notice(
                key=f"{workflow.info().workflow_id}:{entry.seq}",
                case_id=case_id,
                recipients=[f"department:{party}", OPERATIONS],
                kind=event,
                message=f"Case {case_id}: the {stage} answer was due {due} and has not come.",
                due_at=due_at,
            ),
            **activity_options(),
        )
        first = False
        timeout = reminder


async def tell_case(workflow_id: str, signal: str, payload: Any) -> bool:
    """Signal another case's workflow; False (logged) when it is not there to hear it (not
    started yet, or finished): the sender has recorded what it sent, and the receiver reads
    the sender's projection when it starts."""
    try:
        await workflow.get_external_workflow_handle(workflow_id).signal(signal, payload)
    except Exception:
        workflow.logger.warning("%s not delivered to %s", signal, workflow_id)
        return False
    return True


def next_entry(
    timeline: list[TimelineEntry], stage: str, event: str, role: Role, note: str
) -> TimelineEntry:
    """Append a case's next timeline entry: its sequence number, the workflow's time, the stage.

    The caller projects it (with a copy of the state) through its case kind's activity.
    """
    entry = TimelineEntry(
        seq=len(timeline) + 1,
        at=workflow.now(),
        stage=stage,
        event=event,
        actor_role=role,
        note=note,
    )
    timeline.append(entry)
    return entry


#: The no-op signal the API sends to a case that refused a decision as busy (see `Settles`).
SETTLE_SIGNAL = "settle"


class Settles:
    """A workflow task that delivers an Update runs its validator before it applies what else
    the task carries, such as the completion of the projection the case is waiting for; if the
    validator then refuses the decision as busy, the server drops that task, and on a worker
    without a workflow cache (simulated mode) every retry of the decision would meet the same
    completion again and be refused forever. A signal's task is never dropped: the API sends
    this no-op signal after a busy refusal, so the pending completion is applied before the
    decision is retried."""

    @workflow.signal(name=SETTLE_SIGNAL)
    def settle(self) -> None:
        """Apply what is pending; nothing else."""


class CaseRecorder(Settles):
    """What every case workflow records its transitions with: the next timeline entry, and its
    projection (with a copy of the state) through the case kind's idempotent activity. While a
    projection runs, `_recording` is non-zero and decisions are refused as busy
    (`require_idle`), so no decision is taken on a state Postgres does not show yet.

    A subclass sets `_timeline` and `_recording = 0` in its `__init__`, and says its current
    stage and how an entry is projected."""

    _timeline: list[TimelineEntry]
    _recording: int

    def _stage(self) -> str:
        raise NotImplementedError

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        """The projection activity of this case kind, and its argument for `entry`."""
        raise NotImplementedError

    async def _record(self, event: str, role: Role, note: str) -> TimelineEntry:
        entry = next_entry(self._timeline, self._stage(), event, role, note)
        self._recording += 1
        try:
            project, projection = self._projection(entry)
            await workflow.execute_activity_method(project, projection, **activity_options())
        finally:
            self._recording -= 1
        return entry


async def outlive_children(
    children: list[workflow.ChildWorkflowHandle[Any, Any]], patch: str
) -> None:
    """Close only after the children this run started (a proposal's forum, a cycle's projects
    and plans, abandoned on close so that they outlive it) have closed.

    On the time-skipping test server a child that closes after its parent leaves the server's
    clock locked for good: it then moves at wall speed, so a simulated year never ends
    (sdk-java #1539, sdk-typescript #1101). On a real server waiting changes nothing a case
    shows: the parent has nothing more to do, and the children run as before. Behind `patch`
    for the runs that closed without waiting."""
    if children and workflow.patched(patch):
        await asyncio.gather(*children, return_exceptions=True)
