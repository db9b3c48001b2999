"""Where notifications reach people and departments (activities/notices.py delivers them).

- `GET|PUT /v1/me/contact`: a citizen's own e-mail address and phone number, and the channels
  to use in order of preference (`[]`: no notifications). Only their own: the recipient is the
  token's subject.
- `GET|PUT /v1/admin/departments/{dept}/contact`: an admin sets a department's webhook (URL
  and signing secret), e-mail address and channels. The secret is stored sealed with
  MINJU_NOTIFY_SECRET_KEY and never shown again (`has_webhook_secret` says whether one is set);
  a PUT without one keeps the stored secret.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.dialects.postgresql import insert

from activities.channels import NotifySettings, seal
from api.auth import CurrentPrincipal, require_role
from api.context import Ctx
from api.errors import Problem, unavailable
from api.schemas import Body, SeoulTime
from models.case import Role
from models.notification_tables import NotificationContact

router = APIRouter(prefix="/v1", tags=["notifications"])

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")

Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=8, max_length=16, pattern=_PHONE)
]
DeptPath = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\s/:][^/:]*$")]
PersonChannel = Literal["email", "sms"]
DepartmentChannel = Literal["webhook", "email", "sms"]


class MyContact(Body):
    email: Email | None = None
    phone: Phone | None = Field(None, description="E.164, e.g. +821012345678")
    channels: list[PersonChannel] = Field(
        max_length=2, description="In order of preference; [] for no notifications."
    )


def _webhook_only() -> list[DepartmentChannel]:
    return ["webhook"]


class DepartmentContact(Body):
    webhook_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    webhook_secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] | None = Field(
        None, description="Signs each webhook call (X-Minju-Signature); write-only."
    )
    email: Email | None = None
    phone: Phone | None = None
    channels: list[DepartmentChannel] = Field(
        default_factory=_webhook_only, max_length=3, description="In order of preference."
    )


class ContactOut(BaseModel):
    recipient: str
    email: str | None
    phone: str | None
    webhook_url: str | None = None
    has_webhook_secret: bool = False
    channels: list[str]
    #: None while nothing was set (and nothing is sent).
    updated_at: SeoulTime | None


def _out(row: NotificationContact | None, recipient: str) -> ContactOut:
    if row is None:
        return ContactOut(recipient=recipient, email=None, phone=None, channels=[], updated_at=None)
    return ContactOut(
        recipient=row.recipient,
        email=row.email,
        phone=row.phone,
        webhook_url=row.webhook_url,
        has_webhook_secret=row.webhook_secret is not None,
        channels=list(row.channels),
        updated_at=row.updated_at,
    )


def _check_channels(channels: list[str], present: dict[str, object]) -> None:
    if len(set(channels)) != len(channels):
        raise Problem(422, "channels: each channel once", field="channels")
    needs = {"email": "email", "sms": "phone", "webhook": "webhook_url"}
    for channel in channels:
        if not present.get(needs[channel]):
            raise Problem(
                422, f"the {channel} channel needs {needs[channel]}", field=needs[channel]
            )


def _check_email(email: str | None) -> None:
    if email is not None and not _EMAIL.match(email):
        raise Problem(422, "email is not an e-mail address", field="email")


async def _save(ctx: Ctx, row: NotificationContact) -> NotificationContact:
    values = row.model_dump()
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            insert(NotificationContact)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["recipient"],
                set_={k: v for k, v in values.items() if k != "recipient"},
            )
        )
    return row


async def _load(ctx: Ctx, recipient: str) -> NotificationContact | None:
    async with ctx.sessions() as session:
        return await session.get(NotificationContact, recipient)


@router.get("/me/contact", response_model=ContactOut)
async def my_contact(ctx: Ctx, principal: CurrentPrincipal) -> ContactOut:
    """The caller's own contact (citizens); empty (no channels) until they set one."""
    require_role(principal, Role.CITIZEN)
    recipient = f"person:{principal.sub}"
    return _out(await _load(ctx, recipient), recipient)


@router.put("/me/contact", response_model=ContactOut)
async def set_my_contact(body: MyContact, ctx: Ctx, principal: CurrentPrincipal) -> ContactOut:
    """Set the caller's own e-mail address, phone number and channels (citizens); replaces
    what was set before."""
    require_role(principal, Role.CITIZEN)
    _check_email(body.email)
    _check_channels(list(body.channels), {"email": body.email, "phone": body.phone})
    row = NotificationContact(
        recipient=f"person:{principal.sub}",
        email=body.email,
        phone=body.phone,
        channels=list(body.channels),
        updated_by=principal.sub,
        updated_at=await ctx.clock.now(),
    )
    return _out(await _save(ctx, row), row.recipient)


@router.get("/admin/departments/{dept}/contact", response_model=ContactOut)
async def department_contact(dept: DeptPath, ctx: Ctx, principal: CurrentPrincipal) -> ContactOut:
    """A department's contact, without its webhook secret (admins); empty until set."""
    require_role(principal, Role.ADMIN)
    recipient = f"department:{dept}"
    return _out(await _load(ctx, recipient), recipient)


@router.put("/admin/departments/{dept}/contact", response_model=ContactOut)
async def set_department_contact(
    dept: DeptPath, body: DepartmentContact, ctx: Ctx, principal: CurrentPrincipal
) -> ContactOut:
    """Set a department's webhook, e-mail address and channels (admins); `operations` is the
    operations team, told of every escalation."""
    require_role(principal, Role.ADMIN)
    recipient = f"department:{dept}"
    _check_email(body.email)
    if body.webhook_url is not None:
        parts = urlsplit(body.webhook_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise Problem(422, "webhook_url must be an http(s) URL", field="webhook_url")
    _check_channels(
        list(body.channels),
        {"email": body.email, "phone": body.phone, "webhook_url": body.webhook_url},
    )
    sealed: bytes | None = None
    if body.webhook_secret is not None:
        key = NotifySettings().secret_key
        if not key:
            raise unavailable(
                "webhook secrets cannot be stored: MINJU_NOTIFY_SECRET_KEY is not set"
            )
        sealed = seal(key, recipient, body.webhook_secret)
    elif body.webhook_url is not None:
        stored = await _load(ctx, recipient)
        sealed = stored.webhook_secret if stored is not None else None
        if sealed is None:
            raise Problem(422, "a webhook needs its webhook_secret", field="webhook_secret")
    row = NotificationContact(
        recipient=recipient,
        email=body.email,
        phone=body.phone,
        webhook_url=body.webhook_url,
        webhook_secret=sealed,
        channels=list(body.channels),
        updated_by=principal.sub,
        updated_at=await ctx.clock.now(),
    )
    return _out(await _save(ctx, row), row.recipient)
