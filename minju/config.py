"""Runtime configuration, read from the environment (never from files in the repo).

`minju up` fills in what it starts itself (the embedded Postgres URL, the local Temporal
address); `minju worker` / `minju api` in production take everything from the environment.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Who signs the bearer tokens (`iss`) and whom they are for (`aud`): the defaults are what
#: `POST /v1/dev/tokens` issues; a city identity provider sets its own through
#: MINJU_JWT_ISSUER / MINJU_JWT_AUDIENCE.
DEFAULT_JWT_ISSUER = "minju"
DEFAULT_JWT_AUDIENCE = "minju-api"


#: AES-256: every payload key is this many bytes.
PAYLOAD_KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ClockMode(StrEnum):
    REAL = "real"
    SIMULATED = "simulated"


@dataclass(frozen=True)
class PayloadKey:
    """One key of MINJU_PAYLOAD_KEYS: its id (written, in clear, beside each payload it
    encrypts) and the key itself (kept out of reprs and logs)."""

    kid: str
    key: bytes = field(repr=False)


def parse_payload_keys(value: str) -> tuple[PayloadKey, ...]:
    """`kid:base64key,kid:base64key`: the first encrypts, all decrypt. The errors name the
    entry and its id, never the key."""
    keys: list[PayloadKey] = []
    for position, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue
        kid, colon, encoded = entry.partition(":")
        kid = kid.strip()
        if not colon or not _KEY_ID.fullmatch(kid):
            raise ValueError(
                f"entry {position} is not 'kid:base64key' with a key id of 1 to 64 letters, "
                "digits, '.', '_' or '-'"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise ValueError(f"the key of key id {kid!r} is not base64") from None
        if len(key) != PAYLOAD_KEY_BYTES:
            raise ValueError(
                f"the key of key id {kid!r} is {len(key)} bytes, not {PAYLOAD_KEY_BYTES} (AES-256)"
            )
        if any(k.kid == kid for k in keys):
            raise ValueError(f"key id {kid!r} is given twice")
        keys.append(PayloadKey(kid, key))
    return tuple(keys)


def parse_origins(value: str) -> tuple[str, ...]:
    """Comma-separated browser origins (`scheme://host[:port]`, as a browser sends them)."""
    origins = []
    for origin in (o.strip() for o in value.split(",")):
        if not origin:
            continue
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme not in ("http", "https") or not parts.netloc or origin != exact:
            raise ValueError(
                f"{origin!r} is not an origin: scheme://host[:port], with no path or trailing slash"
            )
        origins.append(origin)
    return tuple(origins)


class Settings(BaseSettings):
    """Every setting, from the environment variable named beside it (`Settings.from_env()`), or
    given explicitly (`Settings(database_url=...)`, which still reads the others from it).
    Invalid values (`MINJU_CLOCK=weekly`, `MINJU_DEV_ENDPOINTS=maybe`) are a ValueError naming
    the variable, never quoting its value (some are secrets: keys, the JWT secret)."""

    model_config = SettingsConfigDict(
        frozen=True, populate_by_name=True, extra="forbid", hide_input_in_errors=True
    )

    database_url: str = Field("", validation_alias="DATABASE_URL")
    temporal_address: str = Field("127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_tls_cert: str | None = Field(None, validation_alias="TEMPORAL_TLS_CERT")
    temporal_tls_key: str | None = Field(None, validation_alias="TEMPORAL_TLS_KEY")
    temporal_tls_ca: str | None = Field(None, validation_alias="TEMPORAL_TLS_CA")
    temporal_api_key: str | None = Field(None, validation_alias="TEMPORAL_API_KEY")
    task_queue: str = Field("minju", validation_alias="MINJU_TASK_QUEUE")
    jwt_secret: str = Field("", validation_alias="MINJU_JWT_SECRET")
    jwt_issuer: str = Field(DEFAULT_JWT_ISSUER, validation_alias="MINJU_JWT_ISSUER")
    jwt_audience: str = Field(DEFAULT_JWT_AUDIENCE, validation_alias="MINJU_JWT_AUDIENCE")
    dev_endpoints: bool = Field(False, validation_alias="MINJU_DEV_ENDPOINTS")
    clock_mode: ClockMode = Field(ClockMode.REAL, validation_alias="MINJU_CLOCK")
    #: Connections each process keeps open to PostgreSQL (MINJU_DB_POOL_SIZE), and how many more
    #: it opens for a burst (MINJU_DB_POOL_OVERFLOW), closing them again when they come back.
    db_pool_size: int = Field(10, ge=1, validation_alias="MINJU_DB_POOL_SIZE")
    db_pool_overflow: int = Field(10, ge=0, validation_alias="MINJU_DB_POOL_OVERFLOW")
    #: MINJU_ACCESS_LOG=false: no log line per request (7 % of the ballot path's throughput in
    #: one bench run) where a proxy in front keeps the access log.
    access_log: bool = Field(True, validation_alias="MINJU_ACCESS_LOG")
    #: MINJU_WORKER_CACHE: how many workflows the worker keeps in memory between their tasks
    #: (the SDK's default, 1,000, when unset on the real clock; 0 on the simulated clock, see
    #: worker.create_worker). `minju simulate` sets it for the stack it starts.
    worker_cache: int | None = Field(None, ge=0, validation_alias="MINJU_WORKER_CACHE")
    #: MINJU_CYCLE_MAX_HISTORY_EVENTS: a new budget cycle's run continues as new once its history
    #: holds this many events (models.budget.MAX_HISTORY_EVENTS by default, 2,000), or when the
    #: server suggests it, whichever comes first; at most 40,000 (Temporal's limit is 51,200).
    cycle_max_history_events: int = Field(
        2_000, ge=100, le=40_000, validation_alias="MINJU_CYCLE_MAX_HISTORY_EVENTS"
    )
    #: MINJU_CYCLE_FOLLOW_SUGGESTION=false: a new cycle's run does not continue as new when
    #: the server suggests it (history size), only at MINJU_CYCLE_MAX_HISTORY_EVENTS; for a
    #: simulated year only (models.budget.BudgetCycleStart.follow_suggestion).
    cycle_follow_suggestion: bool = Field(True, validation_alias="MINJU_CYCLE_FOLLOW_SUGGESTION")
    #: MINJU_RULEBOOK_DIRS: directories separated by the OS path separator (":").
    extra_rulebook_dirs: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="MINJU_RULEBOOK_DIRS"
    )
    #: MINJU_PAYLOAD_KEYS: `kid:base64key,...` (32-byte keys): Temporal payloads are encrypted
    #: with the first and decrypted with any (older keys stay for replay); empty: no
    #: encryption. See minju.codec.
    payload_keys: Annotated[tuple[PayloadKey, ...], NoDecode] = Field(
        (), validation_alias="MINJU_PAYLOAD_KEYS"
    )
    #: MINJU_CODEC_CORS_ORIGINS: comma-separated origins (e.g. the Temporal UI's,
    #: `https://temporal.example.org`) whose pages may call /v1/codec/*; empty: none.
    codec_cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="MINJU_CODEC_CORS_ORIGINS"
    )

    @field_validator(
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_ca",
        "temporal_api_key",
        mode="before",
    )
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("jwt_issuer", "jwt_audience", mode="before")
    @classmethod
    def _default_if_empty(cls, value: object, info: ValidationInfo) -> object:
        if value == "":
            return DEFAULT_JWT_ISSUER if info.field_name == "jwt_issuer" else DEFAULT_JWT_AUDIENCE
        return value

    @field_validator("extra_rulebook_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(d for d in value.split(os.pathsep) if d)
        return value

    @field_validator("payload_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        return parse_payload_keys(value) if isinstance(value, str) else value

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return parse_origins(value) if isinstance(value, str) else value

    @classmethod
    def from_env(cls) -> Settings:
        return cls()

    def with_(self, **changes: object) -> Settings:
        return self.model_copy(update=changes)

    @property
    def sqlalchemy_url(self) -> str:
        """The DATABASE_URL in the form SQLAlchemy's asyncpg dialect expects."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
