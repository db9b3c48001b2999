"""The vocabulary every case kind shares (proposal, forum, ask, budget cycle, project).

Who acts (`Role`, `Actor`), why an Update was refused (`ErrorType`), one transition of a case
(`TimelineEntry`) and a notification (`Notice`). Plain dataclasses: Temporal's default converter
carries them and the workflow sandbox imports them. They hold ids, never personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    CITIZEN = "citizen"
    CASEWORKER = "caseworker"
    COMMITTEE = "committee"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"


class ErrorType(StrEnum):
    """`ApplicationError.type` of an update rejected by its validator; the API maps it to HTTP."""

    CONFLICT = "Conflict"  # 409: the current stage does not allow it
    FORBIDDEN = "Forbidden"  # 403: not this actor's case
    INVALID = "Invalid"  # 422: the input breaks a rule
    BUSY = "Busy"  # 503 after retries: another transition of the case is still being recorded


@dataclass
class Actor:
    role: Role
    person_id: str
    department: str | None = None


@dataclass
class TimelineEntry:
    seq: int
    at: datetime
    stage: str
    event: str
    actor_role: Role
    note: str = ""


@dataclass
class Notice:
    """A notification outbox row; `key` makes it idempotent."""

    key: str
    case_id: str
    recipients: list[str] = field(default_factory=list)
    kind: str = ""
    message: str = ""
    due_at: datetime | None = None
