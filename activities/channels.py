"""The channels a notification is delivered through: e-mail (SMTP), a signed webhook for
department systems, and an SMS gateway, behind one `Channel` interface.

A channel's `send` returns when the message was taken, or raises `DeliveryError`: permanent
(`permanent=True`: a 4xx answer, an address refused, the channel not configured), recorded as
failed and never retried, or transient (a 5xx answer, a timeout, a connection refused),
retried by the delivery activity's Temporal retry policy with backoff (activities/notices.py).

Settings come from the environment (`NotifySettings`, MINJU_* variables; never from files in
the repo):

- MINJU_SMTP_HOST, MINJU_SMTP_PORT (25), MINJU_SMTP_FROM, MINJU_SMTP_TLS (`none`, `starttls`
  or `ssl`), MINJU_SMTP_USER / MINJU_SMTP_PASSWORD (login only when both are set);
- MINJU_SMS_GATEWAY_URL (POST JSON `{to, from, text, reference}`), MINJU_SMS_GATEWAY_TOKEN
  (sent as a bearer token), MINJU_SMS_SENDER;
- MINJU_NOTIFY_SECRET_KEY: the key the departments' webhook secrets are sealed with;
- MINJU_NOTIFY_TIMEOUT (seconds per request), MINJU_NOTIFY_ATTEMPTS (tries per notification),
  MINJU_NOTIFY_RETRY_SECONDS / MINJU_NOTIFY_RETRY_MAX_SECONDS (the retry backoff).

Webhook secrets are stored in Postgres sealed with AES-GCM under MINJU_NOTIFY_SECRET_KEY (the
recipient is the associated data, so a sealed secret cannot be moved to another department)
rather than one environment variable per department: departments are data an admin adds and
rotates through the API, without redeploying workers, and a database dump or backup does not
hold a usable secret. The key itself lives only in the environment of the API and the worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from typing import Protocol

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIGNATURE_HEADER = "X-Minju-Signature"
TIMESTAMP_HEADER = "X-Minju-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Answers that say "later", not "never": retried like a 5xx.
RETRYABLE_4XX = frozenset({408, 425, 429})
_NONCE_BYTES = 12


class SmtpTls(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class NotifySettings(BaseSettings):
    """Delivery settings, from the MINJU_* variable named beside each (read apart from
    `minju.config.Settings`, which the rest of the engine shares)."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    smtp_host: str | None = Field(None, validation_alias="MINJU_SMTP_HOST")
    smtp_port: int = Field(25, ge=1, le=65535, validation_alias="MINJU_SMTP_PORT")
    smtp_from: str = Field("minju@localhost", validation_alias="MINJU_SMTP_FROM")
    smtp_tls: SmtpTls = Field(SmtpTls.NONE, validation_alias="MINJU_SMTP_TLS")
    smtp_user: str | None = Field(None, validation_alias="MINJU_SMTP_USER")
    smtp_password: str | None = Field(None, validation_alias="MINJU_SMTP_PASSWORD")
    sms_gateway_url: str | None = Field(None, validation_alias="MINJU_SMS_GATEWAY_URL")
    sms_gateway_token: str | None = Field(None, validation_alias="MINJU_SMS_GATEWAY_TOKEN")
    sms_sender: str = Field("minju", validation_alias="MINJU_SMS_SENDER")
    secret_key: str | None = Field(None, validation_alias="MINJU_NOTIFY_SECRET_KEY")
    timeout_seconds: float = Field(10.0, gt=0, le=300, validation_alias="MINJU_NOTIFY_TIMEOUT")
    attempts: int = Field(8, ge=1, le=50, validation_alias="MINJU_NOTIFY_ATTEMPTS")
    retry_seconds: float = Field(2.0, gt=0, validation_alias="MINJU_NOTIFY_RETRY_SECONDS")
    retry_max_seconds: float = Field(600.0, gt=0, validation_alias="MINJU_NOTIFY_RETRY_MAX_SECONDS")

    @field_validator(
        "smtp_host",
        "smtp_user",
        "smtp_password",
        "sms_gateway_url",
        "sms_gateway_token",
        "secret_key",
        mode="before",
    )
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        return None if value == "" else value


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    """What one recipient is told: the notification `key` and the `recipient` identify it."""

    key: str
    recipient: str
    case_id: str
    kind: str
    subject: str
    body: str
    due_at: str | None
    created_at: str

    @property
    def idempotency_key(self) -> str:
        """One per notification and recipient: a retried delivery is recognised by it."""
        return f"{self.key}/{self.recipient}"


@dataclass(frozen=True)
class Contact:
    recipient: str
    email: str | None
    phone: str | None
    webhook_url: str | None
    #: In clear, unsealed for this delivery only; never in a repr or a log line.
    webhook_secret: str | None = field(repr=False)
    channels: tuple[str, ...]


class Channel(Protocol):
    name: str

    def reaches(self, contact: Contact) -> bool:
        """Whether the contact has what this channel needs (an address, a number, a URL)."""

    async def send(self, contact: Contact, message: Message) -> None:
        """Deliver, or raise `DeliveryError`."""


# ---- sealing the webhook secrets ------------------------------------------------------------


def _aead(key: str) -> AESGCM:
    return AESGCM(hashlib.sha256(key.encode()).digest())


def seal(key: str, recipient: str, secret: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _aead(key).encrypt(nonce, secret.encode(), recipient.encode())


def unseal(key: str, recipient: str, sealed: bytes) -> str:
    try:
        plain = _aead(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], recipient.encode())
    except InvalidTag as exc:
        raise DeliveryError(
            f"the webhook secret of {recipient} does not open with MINJU_NOTIFY_SECRET_KEY "
            "(the key changed?): set it again",
            permanent=True,
        ) from exc
    return plain.decode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`: what a receiver recomputes."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# ---- the channels ---------------------------------------------------------------------------


def _http_failure(what: str, response: httpx.Response) -> DeliveryError:
    status = response.status_code
    permanent = 400 <= status < 500 and status not in RETRYABLE_4XX
    return DeliveryError(f"{what} answered {status}: {response.text[:200]}", permanent=permanent)


async def _post(
    client: httpx.AsyncClient, what: str, url: str, body: bytes, headers: dict[str, str]
) -> None:
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{what} timed out: {type(exc).__name__}", permanent=False) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{what} unreachable: {exc!r}", permanent=False) from exc
    if not response.is_success:
        raise _http_failure(what, response)


class EmailChannel:
    """E-mail over SMTP with the standard library, in a thread (smtplib blocks)."""

    name = "email"

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.email)

    async def send(self, contact: Contact, message: Message) -> None:
        if not self._settings.smtp_host:
            raise DeliveryError("e-mail is not configured (MINJU_SMTP_HOST)", permanent=True)
        assert contact.email is not None
        await asyncio.to_thread(self._send, contact.email, message)

    def _send(self, to: str, message: Message) -> None:
        s = self._settings
        assert s.smtp_host is not None
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = to
        mail["Subject"] = message.subject
        # Lets a mail system drop a retried delivery's duplicate.
        mail["Message-ID"] = (
            f"<{hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]}@minju.notifications>"
        )
        mail.set_content(message.body)
        try:
            smtp: smtplib.SMTP
            if s.smtp_tls is SmtpTls.SSL:
                smtp = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    timeout=s.timeout_seconds,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds)
            with smtp:
                if s.smtp_tls is SmtpTls.STARTTLS:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_user and s.smtp_password:
                    smtp.login(s.smtp_user, s.smtp_password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the SMTP server refused {to}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"the SMTP server answered {exc.smtp_code}: {exc.smtp_error!r}",
                permanent=exc.smtp_code >= 500,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", permanent=False) from exc


class WebhookChannel:
    """A department system's webhook: POST JSON, signed, with an idempotency key."""

    name = "webhook"

    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient) -> None:
        self._client = client

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.webhook_url)

    async def send(self, contact: Contact, message: Message) -> None:
        assert contact.webhook_url is not None
        if not contact.webhook_secret:
            raise DeliveryError(f"{contact.recipient} has no webhook secret", permanent=True)
        body = json.dumps(
            {
                "key": message.key,
                "recipient": message.recipient,
                "case_id": message.case_id,
                "kind": message.kind,
                "subject": message.subject,
                "message": message.body,
                "due_at": message.due_at,
                "created_at": message.created_at,
            },
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(contact.webhook_secret, timestamp, body),
            IDEMPOTENCY_HEADER: message.idempotency_key,
        }
        await _post(self._client, "the webhook", contact.webhook_url, body, headers)


class SmsChannel:
    """An SMS gateway over HTTP: POST JSON `{to, from, text, reference}` to
    MINJU_SMS_GATEWAY_URL, with the idempotency key in a header and `reference`."""

    name = "sms"

    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.phone)

    async def send(self, contact: Contact, message: Message) -> None:
        url = self._settings.sms_gateway_url
        if not url:
            raise DeliveryError("SMS is not configured (MINJU_SMS_GATEWAY_URL)", permanent=True)
        text = f"{message.subject}: {message.body}"
        body = json.dumps(
            {
                "to": contact.phone,
                "from": self._settings.sms_sender,
                "text": text[:600],
                "reference": message.idempotency_key,
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: message.idempotency_key,
        }
        if self._settings.sms_gateway_token:
            headers["Authorization"] = f"Bearer {self._settings.sms_gateway_token}"
        await _post(self._client, "the SMS gateway", url, body, headers)


def channels(settings: NotifySettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    found: list[Channel] = [
        EmailChannel(settings),
        WebhookChannel(settings, client),
        SmsChannel(settings, client),
    ]
    return {c.name: c for c in found}
