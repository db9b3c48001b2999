"""Where each notification recipient is reached (migration 0018; activities/channels.py).

One row per recipient as the outbox names it: `person:<sub>` (set by the person,
`PUT /v1/me/contact`) or `department:<dept>` (set by an admin,
`PUT /v1/admin/departments/{dept}/contact`). `channels` lists the channels to try, in order of
preference: the first that takes the message delivers it. The webhook's signing secret is
stored sealed (AES-GCM under MINJU_NOTIFY_SECRET_KEY, bound to the recipient), never in clear.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class NotificationContact(SQLModel, table=True):
    __tablename__ = "notification_contacts"

    recipient: str = Field(primary_key=True)
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    webhook_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    updated_by: str
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
