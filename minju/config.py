"""Runtime configuration, read from the environment (never from files in the repo).

`minju up` fills in what it starts itself (the embedded Postgres URL, the local Temporal
address); `minju worker` / `minju api` in production take everything from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from enum import StrEnum

#: Who signs the bearer tokens (`iss`) and whom they are for (`aud`): the defaults are what
#: `POST /v1/dev/tokens` issues; a city identity provider sets its own through
#: MINJU_JWT_ISSUER / MINJU_JWT_AUDIENCE.
DEFAULT_JWT_ISSUER = "minju"
DEFAULT_JWT_AUDIENCE = "minju-api"


class ClockMode(StrEnum):
    REAL = "real"
    SIMULATED = "simulated"


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls_cert: str | None = None
    temporal_tls_key: str | None = None
    temporal_tls_ca: str | None = None
    temporal_api_key: str | None = None
    task_queue: str = "minju"
    jwt_secret: str = ""
    jwt_issuer: str = DEFAULT_JWT_ISSUER
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
    dev_endpoints: bool = False
    clock_mode: ClockMode = ClockMode.REAL
    extra_rulebook_dirs: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL", ""),
            temporal_address=env.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            temporal_tls_cert=env.get("TEMPORAL_TLS_CERT") or None,
            temporal_tls_key=env.get("TEMPORAL_TLS_KEY") or None,
            temporal_tls_ca=env.get("TEMPORAL_TLS_CA") or None,
            temporal_api_key=env.get("TEMPORAL_API_KEY") or None,
            task_queue=env.get("MINJU_TASK_QUEUE", "minju"),
            jwt_secret=env.get("MINJU_JWT_SECRET", ""),
            jwt_issuer=env.get("MINJU_JWT_ISSUER") or DEFAULT_JWT_ISSUER,
            jwt_audience=env.get("MINJU_JWT_AUDIENCE") or DEFAULT_JWT_AUDIENCE,
            dev_endpoints=_flag("MINJU_DEV_ENDPOINTS"),
            clock_mode=ClockMode(env.get("MINJU_CLOCK", ClockMode.REAL.value)),
            extra_rulebook_dirs=tuple(
                d for d in env.get("MINJU_RULEBOOK_DIRS", "").split(os.pathsep) if d
            ),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def sqlalchemy_url(self) -> str:
        """The DATABASE_URL in the form SQLAlchemy's asyncpg dialect expects."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
