"""Sortition: pools, commit-reveal draws and their verification (models/sortition.py does the
drawing). Callable from the routers and from activities: each function takes a session factory
(or a session) and the time, never the request.

- `create_pool`, `join_pool`, `pool_summary`: the people a draw may pick from.
- `commit_draw`: freezes the pool into the draw's snapshot and records the seed commitment,
  the quotas and the digests; `reveal_draw`: checks the seed and draws; `verify_draw`: re-runs
  the draw from the published snapshot document, as a citizen would.
- `draw_members` (admin) and `my_entry` (the candidate themself): the only views that join a
  pseudonym to a person.

Personal data (design.md, principle 7): a draw's stored `snapshot` is private; it keeps, per
candidate, the `person_id`, the random `pseudonym` given at commit (scheme "v2") and the
strata. Everything public (`to_out`, `snapshot`, `verify_draw`) shows pseudonyms only; the
stored `members` and `member_groups` are person ids, for the code that seats the drawn people.
A scheme-"v1" draw (committed before pseudonyms) ranks by person id: it keeps its scheme and its
digests, verifies on the server, and publishes neither its candidates nor its members.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

import rulebooks
from api.errors import Problem, not_found
from api.schemas import Body, SeoulTime
from models import sortition
from models.calendar import in_seoul
from models.rules import PinnedRules
from models.tables import SortitionDraw, SortitionPool, SortitionPoolMember
from rulebooks.populations import DEFAULT_POPULATION, load_population

DEFAULT_RULEBOOK = "seoul-2020"
MAX_POOL_MEMBERS = 100_000

Sessions = async_sessionmaker[AsyncSession]


def _district(value: str) -> str:
    if value not in sortition.DISTRICTS:
        raise ValueError("not one of Seoul's 25 autonomous districts (e.g. 'Gangnam-gu')")
    return value


PoolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
# Member ids are joined by "\n" in the members digest: no control characters.
PersonId = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,200}$")]
District = Annotated[str, AfterValidator(_district)]
Sex = Literal["female", "male"]
BirthYear = Annotated[int, Field(ge=1900, le=2100)]
Purpose = Literal["agenda_selection_group", "budget_square", "citizen_council", "other"]
StratumName = Literal["sex", "age_band", "district"]
Count = Annotated[int, Field(ge=1, le=MAX_POOL_MEMBERS)]


def _all_strata() -> list[StratumName]:
    return ["sex", "age_band", "district"]


# ---- bodies ------------------------------------------------------------------------------------


class PoolMemberIn(Body):
    person_id: PersonId
    sex: Sex
    birth_year: BirthYear
    district: District
    budget_school: bool = False


class PoolCreate(Body):
    name: PoolName
    members: Annotated[list[PoolMemberIn], Field(max_length=MAX_POOL_MEMBERS)] = Field(
        default_factory=list
    )


class PoolStratum(BaseModel):
    sex: str
    age_band: str | None  # null: younger than the first band, not drawable
    district: str
    members: int
    budget_school: int


class PoolOut(BaseModel):
    name: str
    created_at: SeoulTime
    members: int
    volunteers: int
    budget_school: int
    reference_year: int
    strata: list[PoolStratum]


class VolunteerOut(BaseModel):
    pool: str
    person_id: str
    joined_at: SeoulTime


class DrawFilter(Body):
    #: true: only budget-school graduates (the random half of a citizen council).
    budget_school: bool | None = None


class DrawCreate(Body):
    purpose: Purpose
    #: Default from the rulebook: `sortition.agenda_group_size` for the agenda selection group,
    #: `sortition.square_size` for the Budget Square, `council.random_share` x `council_size`
    #: for a citizen council.
    size: Count | None = None
    council_size: Count | None = None
    strata: list[StratumName] = Field(default_factory=_all_strata)
    pool: PoolName
    seed_commitment: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    groups: Annotated[int, Field(ge=1, le=1_000)] | None = None
    #: Default for a citizen council: {"budget_school": true}.
    filter: DrawFilter | None = None
    population: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")] = (
        DEFAULT_POPULATION
    )
    rulebook: Annotated[str, StringConstraints(min_length=1, max_length=100)] = DEFAULT_RULEBOOK


class SeedReveal(Body):
    seed: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]


Scheme = Literal["v1", "v2"]


class StratumCountOut(BaseModel):
    stratum: dict[str, str]
    population: int
    available: int
    quota: int
    drawn: int | None


class DrawOut(BaseModel):
    """The public view of a draw. `members` and `member_groups` are pseudonyms (null until the
    reveal, and always null for a scheme-"v1" draw, whose ids are person ids)."""

    id: str
    purpose: str
    status: Literal["committed", "revealed"]
    #: "v2": tickets, members and digests are over per-draw pseudonyms; "v1": over person ids.
    scheme: Scheme
    size: int
    strata: list[str]
    groups: int | None
    filter: dict[str, Any]
    pool: str
    rulebook: str
    rulebook_hash: str
    reference_year: int
    age_bands: list[str]
    population: str
    population_digest: str
    seed_commitment: str
    snapshot_digest: str
    candidates: int
    counts: list[StratumCountOut]
    seed: str | None
    members: list[str] | None
    members_count: int | None
    member_groups: list[list[str]] | None
    members_digest: str | None
    created_at: SeoulTime
    revealed_at: SeoulTime | None


class SnapshotOut(BaseModel):
    """Everything needed to re-run the draw (`models.sortition.reproduce` reads this): for a
    scheme-"v2" draw, `members` lists every candidate as `{pseudonym, <strata>}`; for a
    scheme-"v1" draw it is empty (its candidates' ids are person ids)."""

    draw_id: str
    status: str
    scheme: Scheme
    size: int
    strata: list[str]
    groups: int | None
    filter: dict[str, Any]
    reference_year: int
    age_bands: list[str]
    population: str
    population_digest: str
    seed_commitment: str
    seed: str | None
    snapshot_digest: str
    members_digest: str | None
    counts: list[StratumCountOut]
    members: list[dict[str, str]]


class VerifyOut(BaseModel):
    draw_id: str
    scheme: Scheme
    reproduced: bool
    members_digest: str  # of the re-run
    recorded_members_digest: str
    commitment_matches: bool
    snapshot_matches: bool
    quotas_match: bool


class DrawMemberOut(BaseModel):
    person_id: str
    pseudonym: str | None  # null for a scheme-"v1" draw
    group: int | None  # index into `member_groups` (from 0), null without groups
    stratum: dict[str, str]


class DrawMembersOut(BaseModel):
    """Admin only: who was drawn, to contact them."""

    draw_id: str
    scheme: Scheme
    members_digest: str
    members: list[DrawMemberOut]


class MyEntryOut(BaseModel):
    """The caller's own entry in a draw's snapshot."""

    draw_id: str
    scheme: Scheme
    status: Literal["committed", "revealed"]
    person_id: str
    pseudonym: str | None  # null for a scheme-"v1" draw
    stratum: dict[str, str]
    drawn: bool | None  # null until the reveal
    group: int | None  # index into `member_groups` (from 0) if drawn into a group


# ---- pools -------------------------------------------------------------------------------------


def _bands(pinned: PinnedRules) -> list[int]:
    if pinned.rulebook.sortition is None:
        raise Problem(422, f"rulebook {pinned.name} has no sortition rules", field="rulebook")
    return list(pinned.rulebook.sortition.age_bands)


def _rules(name: str, rulebook_dirs: Sequence[str]) -> PinnedRules:
    try:
        return rulebooks.load(name, rulebook_dirs)
    except rulebooks.RulebookError as exc:
        raise Problem(422, str(exc), field="rulebook") from exc


async def create_pool(
    sessions: Sessions, body: PoolCreate, *, created_by: str, now: datetime
) -> PoolOut:
    """A new pool with its first members (source "admin"); 409 if the name is taken."""
    seen: set[str] = set()
    for i, member in enumerate(body.members):
        if member.person_id in seen:
            raise Problem(422, "this person is listed twice", field=f"members.{i}.person_id")
        if member.birth_year > in_seoul(now).year:
            raise Problem(422, "birth year in the future", field=f"members.{i}.birth_year")
        seen.add(member.person_id)
    async with sessions() as session, session.begin():
        created = await session.execute(
            insert(SortitionPool)
            .values(name=body.name, created_by=created_by, created_at=now)
            .on_conflict_do_nothing()
            .returning(col(SortitionPool.name))
        )
        if created.first() is None:
            raise Problem(409, f"a pool named {body.name!r} exists")
        if body.members:
            await session.execute(
                insert(SortitionPoolMember),
                [
                    {**m.model_dump(), "pool": body.name, "source": "admin", "joined_at": now}
                    for m in body.members
                ],
            )
    async with sessions() as session:
        return await pool_summary(session, body.name, on_year=in_seoul(now).year)


async def join_pool(
    sessions: Sessions, name: str, person: sortition.Person, *, now: datetime
) -> VolunteerOut:
    """A volunteer joins with the attributes of their token; 409 if already in the pool."""
    async with sessions() as session, session.begin():
        if await session.get(SortitionPool, name) is None:
            raise not_found("sortition pool")
        joined = await session.execute(
            insert(SortitionPoolMember)
            .values(
                pool=name,
                person_id=person.person_id,
                sex=person.sex,
                birth_year=person.birth_year,
                district=person.district,
                budget_school=person.budget_school,
                source="volunteer",
                joined_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(SortitionPoolMember.person_id))
        )
        if joined.first() is None:
            raise Problem(409, "you are already in this pool")
    return VolunteerOut(pool=name, person_id=person.person_id, joined_at=now)


async def pool_summary(
    session: AsyncSession, name: str, *, on_year: int, rulebook_dirs: Sequence[str] = ()
) -> PoolOut:
    """Member counts per (sex, age band on `on_year`, district); no personal data."""
    pool = await session.get(SortitionPool, name)
    if pool is None:
        raise not_found("sortition pool")
    bounds = _bands(_rules(DEFAULT_RULEBOOK, rulebook_dirs))
    m = SortitionPoolMember
    columns = (col(m.sex), col(m.birth_year), col(m.district), col(m.budget_school), col(m.source))
    rows = await session.execute(
        sa.select(*columns, sa.func.count()).where(col(m.pool) == name).group_by(*columns)
    )
    members: Counter[tuple[str, str | None, str]] = Counter()
    graduates: Counter[tuple[str, str | None, str]] = Counter()
    volunteers = 0
    for sex, birth_year, district, budget_school, source, n in rows:
        key = (sex, sortition.age_band(birth_year, on_year, bounds), district)
        members[key] += n
        graduates[key] += n if budget_school else 0
        volunteers += n if source == "volunteer" else 0
    return PoolOut(
        name=name,
        created_at=pool.created_at,
        members=sum(members.values()),
        volunteers=volunteers,
        budget_school=sum(graduates.values()),
        reference_year=on_year,
        strata=[
            PoolStratum(
                sex=k[0], age_band=k[1], district=k[2], members=n, budget_school=graduates[k]
            )
            for k, n in sorted(members.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))
        ],
    )


# ---- draws -------------------------------------------------------------------------------------


def _size(body: DrawCreate, pinned: PinnedRules) -> int:
    book = pinned.rulebook
    if body.size is not None:
        if body.council_size is not None:
            raise Problem(422, "give size or council_size, not both", field="council_size")
        return body.size
    if body.purpose == "citizen_council":
        if body.council_size is None or book.council is None:
            raise Problem(422, "a citizen council draw needs size or council_size", field="size")
        seats = sortition.random_seats(body.council_size, book.council.random_share)
        if seats < 1:
            raise Problem(422, "this council has no randomly drawn seats", field="council_size")
        return seats
    if book.sortition is not None and body.purpose == "agenda_selection_group":
        return book.sortition.agenda_group_size
    if book.sortition is not None and body.purpose == "budget_square":
        return book.sortition.square_size
    raise Problem(422, "size is required for this purpose", field="size")


def _counts(rows: list[dict[str, Any]]) -> list[StratumCountOut]:
    return [StratumCountOut.model_validate(r) for r in rows]


def scheme_of(row: SortitionDraw) -> Scheme:
    """Scheme "v2" when the frozen candidates carry pseudonyms (given at the commit, never
    changed), "v1" for a draw committed before pseudonyms."""
    if row.snapshot and all("pseudonym" in c for c in row.snapshot):
        return "v2"
    return "v1"


def _status(row: SortitionDraw) -> Literal["committed", "revealed"]:
    return "revealed" if row.status == "revealed" else "committed"


def _pseudonyms(row: SortitionDraw) -> dict[str, str]:
    """person id -> pseudonym (scheme v2); empty for a scheme-v1 draw."""
    return {c["person_id"]: c["pseudonym"] for c in row.snapshot if "pseudonym" in c}


def _public_members(row: SortitionDraw) -> tuple[list[str] | None, list[list[str]] | None]:
    if row.members is None or scheme_of(row) == "v1":
        return None, None
    alias = _pseudonyms(row)
    groups = row.member_groups
    return (
        sorted(alias[p] for p in row.members),
        None if groups is None else [sorted(alias[p] for p in g) for g in groups],
    )


def to_out(row: SortitionDraw) -> DrawOut:
    """The public view: pseudonyms, never person ids."""
    members, groups = _public_members(row)
    return DrawOut(
        **row.model_dump(
            exclude={"snapshot", "counts", "status", "members", "member_groups", "created_by"}
        ),
        status=_status(row),
        scheme=scheme_of(row),
        candidates=len(row.snapshot),
        counts=_counts(row.counts),
        members=members,
        members_count=None if row.members is None else len(row.members),
        member_groups=groups,
    )


def _new_pseudonyms(n: int) -> list[str]:
    """`n` distinct random pseudonyms (128 bits each, hex): no function of the person, so
    nobody can recompute or look one up, and unlinkable from one draw to the next."""
    drawn: set[str] = set()
    while len(drawn) < n:
        drawn.add(secrets.token_hex(16))
    return sorted(drawn)


async def load_draw(session: AsyncSession, draw_id: str, *, lock: bool = False) -> SortitionDraw:
    query = select(SortitionDraw).where(col(SortitionDraw.id) == draw_id)
    row = (await session.exec(query.with_for_update() if lock else query)).one_or_none()
    if row is None:
        raise not_found("draw")
    return row


async def commit_draw(
    sessions: Sessions,
    body: DrawCreate,
    *,
    created_by: str,
    now: datetime,
    rulebook_dirs: Sequence[str] = (),
) -> DrawOut:
    """Freeze the pool (the candidates: of age in this Seoul year, passing the filter, reduced
    to id + strata), compute the quotas, and record them with the seed commitment."""
    pinned = _rules(body.rulebook, rulebook_dirs)
    bounds = _bands(pinned)
    size = _size(body, pinned)
    if body.groups is not None and body.groups > size:
        raise Problem(422, f"groups ({body.groups}) is more than the size ({size})", field="groups")
    criteria = body.filter or DrawFilter(
        budget_school=True if body.purpose == "citizen_council" else None
    )
    try:
        strata = sortition.check_strata(body.strata)
        table = load_population(body.population, rulebook_dirs)
    except sortition.SortitionError as exc:
        raise Problem(422, str(exc), field=exc.field) from exc
    labels = sortition.band_labels(bounds)
    if "age_band" in strata and {r.age_band for r in table.rows} != set(labels):
        raise Problem(
            422,
            f"population table {table.name} does not use the age bands {', '.join(labels)} "
            f"of rulebook {pinned.name}",
            field="population",
        )
    population = sortition.weights(table.rows, strata)
    year = in_seoul(now).year
    async with sessions() as session, session.begin():
        if await session.get(SortitionPool, body.pool) is None:
            raise Problem(422, f"no sortition pool named {body.pool!r}", field="pool")
        people = (
            await session.exec(
                select(SortitionPoolMember).where(col(SortitionPoolMember.pool) == body.pool)
            )
        ).all()
        frozen = sortition.freeze(
            (
                sortition.Person(p.person_id, p.sex, p.birth_year, p.district, p.budget_school)
                for p in people
            ),
            strata=strata,
            on_year=year,
            bounds=bounds,
            budget_school=criteria.budget_school,
        )
        # Scheme v2: each candidate gets a fresh random pseudonym, made here, after the seed is
        # committed to; the draw ranks and publishes pseudonyms, never person ids.
        candidates = [
            {**c, "pseudonym": alias}
            for c, alias in zip(frozen, _new_pseudonyms(len(frozen)), strict=True)
        ]
        public = sortition.publish(candidates)
        try:
            quotas = sortition.quotas(
                public, size=size, strata=strata, population=population, key="pseudonym"
            )
        except sortition.SortitionError as exc:
            detail = f"{exc} (pool {body.pool!r}: {len(candidates)} eligible candidates)"
            raise Problem(422, detail, field=exc.field) from exc
        row = SortitionDraw(
            id=str(uuid.uuid4()),
            purpose=body.purpose,
            size=size,
            strata=list(strata),
            groups=body.groups,
            filter=criteria.model_dump(exclude_none=True),
            pool=body.pool,
            rulebook=pinned.name,
            rulebook_hash=pinned.content_hash,
            reference_year=year,
            age_bands=labels,
            population=table.name,
            population_digest=table.digest,
            seed_commitment=body.seed_commitment,
            snapshot=candidates,
            snapshot_digest=sortition.snapshot_digest(public, key="pseudonym"),
            counts=[
                {
                    "stratum": dict(zip(strata, q.stratum, strict=True)),
                    "population": q.population,
                    "available": q.available,
                    "quota": q.quota,
                    "drawn": None,
                }
                for q in quotas
            ],
            created_by=created_by,
            created_at=now,
        )
        session.add(row)
    return to_out(row)


async def reveal_draw(sessions: Sessions, draw_id: str, seed: str, *, now: datetime) -> DrawOut:
    """Check sha256(seed) against the commitment (422, nothing changes), then draw."""
    async with sessions() as session, session.begin():
        row = await load_draw(session, draw_id, lock=True)
        if row.status == "revealed":
            raise Problem(409, "this draw is already revealed")
        if sortition.commitment(seed) != row.seed_commitment:
            raise Problem(422, "sha256(seed) does not match the seed_commitment", field="seed")
        result = sortition.reproduce(_document(row), seed)
        drawn = {q.stratum: q.quota for q in result.counts}
        strata = row.strata
        row.counts = [
            {**c, "drawn": drawn[tuple(c["stratum"][s] for s in strata)]} for c in row.counts
        ]
        members, groups = _people(row, result)
        row.seed = seed
        row.members = members
        row.member_groups = groups
        row.members_digest = result.members_digest
        row.status = "revealed"
        row.revealed_at = now
        session.add(row)
    return to_out(row)


def _people(row: SortitionDraw, result: sortition.Draw) -> tuple[list[str], list[list[str]] | None]:
    """A draw's result (ids of its scheme) as person ids, sorted, for the stored members."""
    if scheme_of(row) == "v1":
        return result.members, result.groups
    person = {alias: person_id for person_id, alias in _pseudonyms(row).items()}
    groups = result.groups
    return (
        sorted(person[m] for m in result.members),
        None if groups is None else [sorted(person[m] for m in g) for g in groups],
    )


def _document(row: SortitionDraw) -> dict[str, Any]:
    """The snapshot document the draw is run from: the published one for scheme v2; for v1,
    the published one with the stored candidates (person ids) put back, server-side only."""
    document = snapshot(row).model_dump()
    if scheme_of(row) == "v1":
        document["members"] = row.snapshot
    return document


def snapshot(row: SortitionDraw) -> SnapshotOut:
    """The public snapshot: pseudonyms and strata (scheme v2); no candidates for v1."""
    scheme = scheme_of(row)
    return SnapshotOut(
        draw_id=row.id,
        status=row.status,
        scheme=scheme,
        size=row.size,
        strata=row.strata,
        groups=row.groups,
        filter=row.filter,
        reference_year=row.reference_year,
        age_bands=row.age_bands,
        population=row.population,
        population_digest=row.population_digest,
        seed_commitment=row.seed_commitment,
        seed=row.seed,
        snapshot_digest=row.snapshot_digest,
        members_digest=row.members_digest,
        counts=_counts(row.counts),
        members=sortition.publish(row.snapshot) if scheme == "v2" else [],
    )


async def verify_draw(session: AsyncSession, draw_id: str) -> VerifyOut:
    """Re-run a revealed draw from its published snapshot and seed; 409 before the reveal."""
    row = await load_draw(session, draw_id)
    if row.seed is None or row.members_digest is None:
        raise Problem(409, "the seed is not revealed yet: there is nothing to verify")
    document = _document(row)
    key = sortition.scheme_key(document)
    result = sortition.reproduce(document, row.seed)
    recorded_quotas = [(c["stratum"], c["quota"]) for c in document["counts"]]
    quotas = [(dict(zip(row.strata, q.stratum, strict=True)), q.quota) for q in result.counts]
    checks = {
        "commitment_matches": sortition.commitment(row.seed) == row.seed_commitment,
        "snapshot_matches": sortition.snapshot_digest(document["members"], key=key)
        == row.snapshot_digest,
        "quotas_match": quotas == recorded_quotas,
    }
    members, groups = _people(row, result)
    same_members = (
        result.members_digest == row.members_digest
        and members == row.members
        and groups == row.member_groups
    )
    return VerifyOut(
        draw_id=row.id,
        scheme=scheme_of(row),
        reproduced=same_members and all(checks.values()),
        members_digest=result.members_digest,
        recorded_members_digest=row.members_digest,
        **checks,
    )


# ---- who is who: the drawn people (admin) and one's own entry -----------------------------------


def _group_of(row: SortitionDraw) -> dict[str, int]:
    return {p: i for i, group in enumerate(row.member_groups or []) for p in group}


def draw_members(row: SortitionDraw) -> DrawMembersOut:
    """Admin only: each drawn person with their pseudonym, group and stratum; 409 before the
    reveal."""
    if row.members is None or row.members_digest is None:
        raise Problem(409, "the draw is not revealed yet: nobody is drawn")
    entry = {c["person_id"]: c for c in row.snapshot}
    group = _group_of(row)
    return DrawMembersOut(
        draw_id=row.id,
        scheme=scheme_of(row),
        members_digest=row.members_digest,
        members=[
            DrawMemberOut(
                person_id=p,
                pseudonym=entry[p].get("pseudonym"),
                group=group.get(p),
                stratum={s: entry[p][s] for s in row.strata},
            )
            for p in row.members
        ],
    )


def my_entry(row: SortitionDraw, person_id: str) -> MyEntryOut:
    """The caller's own entry: their pseudonym and whether they were drawn; 404 if they are not
    a candidate of this draw (the draw's candidates are nobody else's business)."""
    entry = next((c for c in row.snapshot if c["person_id"] == person_id), None)
    if entry is None:
        raise Problem(404, "you are not a candidate of this draw (not in its frozen pool)")
    revealed = row.members is not None
    return MyEntryOut(
        draw_id=row.id,
        scheme=scheme_of(row),
        status=_status(row),
        person_id=person_id,
        pseudonym=entry.get("pseudonym"),
        stratum={s: entry[s] for s in row.strata},
        drawn=(person_id in (row.members or [])) if revealed else None,
        group=_group_of(row).get(person_id),
    )
