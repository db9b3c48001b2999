"""Sortition (api.md, "Sortition"): pools, commit-reveal draws, and their public verification.

The operations team (admin) loads pools, commits to a seed and reveals it; citizens volunteer
into pools; anyone reads a draw, its frozen snapshot, and re-runs it (`.../verify`). What anyone
reads names candidates and members by per-draw pseudonyms only; the admin maps the drawn
pseudonyms to people (`.../members`), and each candidate can look up their own (`.../me`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import sortition_service as service
from api.auth import CurrentPrincipal, Principal, require_eligible, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem
from api.idempotency import IdempotencyKey, run_once
from api.sortition_service import (
    DrawCreate,
    DrawMembersOut,
    DrawOut,
    MyEntryOut,
    PoolCreate,
    PoolOut,
    SeedReveal,
    SnapshotOut,
    VerifyOut,
    VolunteerOut,
)
from models import sortition
from models.calendar import in_seoul
from models.case import Role

router = APIRouter(prefix="/v1", tags=["sortition"])


@router.post("/sortition-pools", status_code=201, response_model=PoolOut)
async def create_pool(
    body: PoolCreate, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """A pool of candidates, e.g. the people a polling agency recommends; 409 if the name
    exists."""
    require_role(principal, Role.ADMIN)
    now = await ctx.clock.now()
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        "POST /v1/sortition-pools",
        body,
        lambda unit: service.create_pool(unit.sessions, body, created_by=principal.sub, now=now),
    )


def _volunteer(principal: Principal) -> sortition.Person:
    """The caller as a candidate, from the claims of their token (422 names a missing one)."""
    require_eligible(principal)
    for claim in ("sex", "birth_year", "district"):
        if getattr(principal, claim) is None:
            raise Problem(422, f"your token has no {claim!r} claim", field=claim)
    if principal.sex not in sortition.SEXES:
        raise Problem(422, "the 'sex' claim must be female or male", field="sex")
    if principal.district not in sortition.DISTRICTS:
        raise Problem(422, "the 'district' claim is not a district of Seoul", field="district")
    assert principal.sex and principal.birth_year and principal.district
    return sortition.Person(
        person_id=principal.sub,
        sex=principal.sex,
        birth_year=principal.birth_year,
        district=principal.district,
        budget_school=principal.budget_school,
    )


@router.post("/sortition-pools/{name}/volunteers", status_code=201, response_model=VolunteerOut)
async def volunteer(
    name: str, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """The caller joins the pool with the attributes of their token; 409 twice."""
    person = _volunteer(principal)
    now = await ctx.clock.now()
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST volunteers {name}",
        {},
        lambda unit: service.join_pool(unit.sessions, name, person, now=now),
    )


@router.get("/sortition-pools/{name}", response_model=PoolOut)
async def get_pool(name: str, ctx: Ctx, session: Session, principal: CurrentPrincipal) -> PoolOut:
    """Counts per (sex, age band this year, district); no personal data."""
    require_role(principal, Role.ADMIN)
    year = in_seoul(await ctx.clock.now()).year
    return await service.pool_summary(
        session, name, on_year=year, rulebook_dirs=ctx.settings.extra_rulebook_dirs
    )


@router.post("/sortitions", status_code=201, response_model=DrawOut)
async def commit_draw(
    body: DrawCreate, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Commit to sha256(seed): the pool is frozen into the draw's snapshot now."""
    require_role(principal, Role.ADMIN)

    async def commit(unit: AppContext) -> DrawOut:
        return await service.commit_draw(
            unit.sessions,
            body,
            created_by=principal.sub,
            now=await ctx.clock.now(),
            rulebook_dirs=ctx.settings.extra_rulebook_dirs,
        )

    return await run_once(ctx, principal, idempotency_key, "POST /v1/sortitions", body, commit)


@router.post("/sortitions/{draw_id}/reveal", response_model=DrawOut)
async def reveal_draw(
    draw_id: str, body: SeedReveal, ctx: Ctx, principal: CurrentPrincipal
) -> DrawOut:
    """422 if sha256(seed) is not the commitment (nothing changes); 409 once revealed."""
    require_role(principal, Role.ADMIN)
    return await service.reveal_draw(ctx.sessions, draw_id, body.seed, now=await ctx.clock.now())


@router.get("/sortitions/{draw_id}", response_model=DrawOut)
async def get_draw(draw_id: str, session: Session) -> DrawOut:
    """Anyone: the draw; `seed`, `members` and `member_groups` are null until the reveal, and
    members are named by their pseudonyms (scheme "v2"; a "v1" draw publishes only
    `members_count`)."""
    return service.to_out(await service.load_draw(session, draw_id))


@router.get("/sortitions/{draw_id}/snapshot", response_model=SnapshotOut)
async def get_snapshot(draw_id: str, session: Session) -> SnapshotOut:
    """Anyone: the frozen candidates (pseudonyms and strata; age bands, not birth years; no
    person ids), quotas and population weights: with the seed, enough to re-run the draw
    (README)."""
    return service.snapshot(await service.load_draw(session, draw_id))


@router.get("/sortitions/{draw_id}/verify", response_model=VerifyOut)
async def verify_draw(draw_id: str, session: Session) -> VerifyOut:
    """Anyone: re-run the draw from the snapshot and the seed; 409 before the reveal."""
    return await service.verify_draw(session, draw_id)


@router.get("/sortitions/{draw_id}/members", response_model=DrawMembersOut)
async def get_members(
    draw_id: str, session: Session, principal: CurrentPrincipal
) -> DrawMembersOut:
    """Admin only: the drawn people (person id, pseudonym, group, stratum), to contact them;
    409 before the reveal."""
    require_role(principal, Role.ADMIN)
    return service.draw_members(await service.load_draw(session, draw_id))


@router.get("/sortitions/{draw_id}/me", response_model=MyEntryOut)
async def get_my_entry(draw_id: str, session: Session, principal: CurrentPrincipal) -> MyEntryOut:
    """The caller's own entry in the draw: their pseudonym, stratum and, after the reveal,
    whether they were drawn; 404 if they were not a candidate."""
    return service.my_entry(await service.load_draw(session, draw_id), principal.sub)
