"""Bearer JWTs: who the caller is, what role they act in, and whether they may take part.

In production the city's identity provider signs the tokens; in dev and simulated mode
`POST /v1/dev/tokens` does, with the same key (`MINJU_JWT_SECRET`).

A token is accepted only if it is signed with HS256 by that key, says who issued it (`iss`,
MINJU_JWT_ISSUER) and whom it is for (`aud`, MINJU_JWT_AUDIENCE), when it was issued (`iat`)
and when it expires (`exp`). Its text claims are ids and codes that end up in the database and
in logs, so one holding a control character or a bidirectional override, or too long, is
refused as a whole (401) instead of failing later.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from api.errors import Problem
from minju.config import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from models.case import Actor, Role

ALGORITHM = "HS256"
RESIDENCIES = ("resident", "worker", "student", "organisation")
#: Registered claims every token must carry.
REQUIRED_CLAIMS = ("sub", "iss", "aud", "iat", "exp")
#: Claims that must be text when present, and how long each may be.
TEXT_CLAIMS = {"sub": 200, "role": 200, "dept": 200, "residency": 200, "sex": 200, "district": 200}
#: Seconds of clock skew tolerated between the issuer and this server (exp, iat).
LEEWAY_SECONDS = 30
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    dept: str | None = None
    residency: str | None = None
    public_official: bool = False
    sex: str | None = None
    birth_year: int | None = None
    district: str | None = None
    budget_school: bool = False

    def actor(self) -> Actor:
        return Actor(role=self.role, person_id=self.sub, department=self.dept)

    def participation_refusal(self) -> str | None:
        """Why this person may not propose, support or vote (process.md, eligibility)."""
        if self.role is not Role.CITIZEN:
            return "only citizens may propose, support and vote"
        if self.public_official:
            return (
                "public officials of Seoul City, its districts and city-funded institutions "
                "may not propose, support or vote"
            )
        if self.residency not in RESIDENCIES:
            return "only people who live, work or study in Seoul, or organisations located there"
        return None


def claim_problem(name: str, value: object) -> str | None:
    """Why the text claim `name` cannot be used (None if it can): the one check for tokens
    received and for tokens `POST /v1/dev/tokens` is asked to issue."""
    if not isinstance(value, str):
        return f"{name} must be a string"
    if name == "sub" and not value.strip():
        return "sub must not be empty"
    limit = TEXT_CLAIMS.get(name, 200)
    if len(value) > limit:
        return f"{name} is longer than {limit} characters"
    for position, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            return (
                f"{name} must not contain control characters, lone surrogates or bidirectional "
                f"overrides (found U+{ord(char):04X} at position {position})"
            )
    return None


def issue_token(
    secret: str,
    claims: dict[str, Any],
    *,
    issuer: str = DEFAULT_JWT_ISSUER,
    audience: str = DEFAULT_JWT_AUDIENCE,
    ttl: timedelta = timedelta(days=30),
) -> str:
    now = datetime.now(UTC)
    payload = {
        **claims,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def _principal_from(request: Request) -> Principal | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "the Authorization header must be 'Bearer <token>'")
    settings = request.app.state.ctx.settings
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError as exc:
        raise Problem(401, f"invalid token: {exc}") from exc
    for name in TEXT_CLAIMS:
        if claims.get(name) is not None and (reason := claim_problem(name, claims[name])):
            raise Problem(401, f"invalid token: {reason}")
    try:
        role = Role(claims.get("role", ""))
    except ValueError as exc:
        raise Problem(401, f"invalid token: unknown role {claims.get('role')!r}") from exc
    if role is Role.SYSTEM:
        raise Problem(401, "invalid token: role 'system' is not for people")
    if role is Role.CASEWORKER and not claims.get("dept"):
        raise Problem(401, "invalid token: a caseworker token needs a 'dept' claim")
    birth_year = claims.get("birth_year")
    return Principal(
        sub=str(claims["sub"]),
        role=role,
        dept=claims.get("dept"),
        residency=claims.get("residency"),
        public_official=bool(claims.get("public_official", False)),
        sex=claims.get("sex"),
        birth_year=int(birth_year) if isinstance(birth_year, int) else None,
        district=claims.get("district"),
        budget_school=bool(claims.get("budget_school", False)),
    )


async def current_principal(request: Request) -> Principal:
    principal = _principal_from(request)
    if principal is None:
        raise Problem(401, "this endpoint needs a bearer token")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Problem(403, f"this action is for the role(s): {allowed}")


def require_eligible(principal: Principal) -> None:
    refusal = principal.participation_refusal()
    if refusal is not None:
        raise Problem(403, refusal)
