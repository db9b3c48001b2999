"""Verifiable sortition: stratified random draws anyone can re-run (process.md §4-5).

Pure and deterministic: stdlib only, no I/O, no `random`, so it runs inside the workflow
sandbox as well as on a citizen's laptop. A draw is a function of the frozen snapshot (the
candidates, each reduced to an id and the requested strata), the seed, the size, the strata,
the population weights and the number of groups, and of nothing else:

1. **Quotas** (`allocate`): the size is apportioned to the strata in proportion to their
   population by largest remainder (Hamilton). A stratum with fewer candidates than its quota
   keeps them all, and what is left is apportioned again, by the same rule, among the others,
   until every quota fits. Ties go to the smaller stratum key (tuples of strings, compared as
   Python compares them).
2. **Selection**: within a stratum, candidates are ranked by their ticket,
   `sha256(seed + ":" + id)` in hex (UTF-8), ascending; the first `quota` are drawn.
3. **Result**: the member ids sorted; `members_digest` is the SHA-256 (hex) of the sorted ids
   joined by "\\n" (no trailing newline).
4. **Groups** (optional): the drawn members, ordered by (stratum key, ticket), are dealt round
   robin, the i-th (from 0) to group i mod N; group sizes differ by at most one and each group
   gets a near-proportional share of every stratum.

**Which id** (the draw's `scheme`): in scheme "v2" the id is the candidate's `pseudonym`, a
random value drawn for this draw alone when it is committed (`publish` makes the public
snapshot: pseudonyms and strata, no person ids); only the server keeps which person has which
pseudonym. In scheme "v1" (draws committed before pseudonyms) the id is the `person_id`, and
every digest above is over person ids; such draws keep their scheme and still re-run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any

SEXES = ("female", "male")
#: Seoul's 25 autonomous districts (자치구), in the romanisation the city uses.
DISTRICTS = (
    "Jongno-gu", "Jung-gu", "Yongsan-gu", "Seongdong-gu", "Gwangjin-gu", "Dongdaemun-gu",
    "Jungnang-gu", "Seongbuk-gu", "Gangbuk-gu", "Dobong-gu", "Nowon-gu", "Eunpyeong-gu",
    "Seodaemun-gu", "Mapo-gu", "Yangcheon-gu", "Gangseo-gu", "Guro-gu", "Geumcheon-gu",
    "Yeongdeungpo-gu", "Dongjak-gu", "Gwanak-gu", "Seocho-gu", "Gangnam-gu", "Songpa-gu",
    "Gangdong-gu",
)  # fmt: skip
#: The strata a draw may use, in the order a stratum key lists them.
STRATA = ("sex", "age_band", "district")
POPULATION_COLUMNS = ("district", "sex", "age_band", "population")

Stratum = tuple[str, ...]
#: {"person_id" and/or "pseudonym": ..., and one entry per stratum of the draw}
Candidate = Mapping[str, str]

#: A draw's scheme names the candidate key its tickets, members and digests are computed over.
PERSON_ID_SCHEME = "v1"
PSEUDONYM_SCHEME = "v2"
ID_KEYS = {PERSON_ID_SCHEME: "person_id", PSEUDONYM_SCHEME: "pseudonym"}


class SortitionError(ValueError):
    """A draw that cannot be made as asked; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ---- hashes ------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def commitment(seed: str) -> str:
    """What the admin publishes before the draw: sha256 of the seed's UTF-8 bytes, in hex."""
    return sha256_hex(seed.encode("utf-8"))


def ticket(seed: str, member_id: str) -> str:
    """The rank of a candidate within its stratum: sha256(seed + ":" + id), UTF-8, hex."""
    return sha256_hex(seed.encode("utf-8") + b":" + member_id.encode("utf-8"))


def members_digest(member_ids: Iterable[str]) -> str:
    return sha256_hex("\n".join(sorted(member_ids)).encode("utf-8"))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def snapshot_digest(candidates: Sequence[Candidate], *, key: str = "person_id") -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the candidates sorted by
    `key` (the id of the draw's scheme)."""
    return sha256_hex(canonical_json(sorted(candidates, key=lambda c: c[key])))


def publish(candidates: Iterable[Candidate]) -> list[dict[str, str]]:
    """The public snapshot of a scheme-v2 draw: each candidate without its `person_id` (its
    `pseudonym` and strata only), sorted by pseudonym."""
    public = [{k: v for k, v in c.items() if k != "person_id"} for c in candidates]
    if not all("pseudonym" in c for c in public):
        raise SortitionError("every candidate of a pseudonymous draw needs a pseudonym")
    return sorted(public, key=lambda c: c["pseudonym"])


# ---- who is a candidate ------------------------------------------------------------------------


def band_labels(bounds: Sequence[int]) -> list[str]:
    """Age-band labels from the rulebook's lower bounds: [19, 30, 60] -> 19-29, 30-59, 60+."""
    if not bounds or any(a >= b for a, b in pairwise(bounds)):
        raise SortitionError("age bands must be strictly increasing lower bounds")
    return [*(f"{lo}-{hi - 1}" for lo, hi in pairwise(bounds)), f"{bounds[-1]}+"]


def age_band(birth_year: int, on_year: int, bounds: Sequence[int]) -> str | None:
    """The band of age `on_year - birth_year`; None (not eligible) below the first band."""
    age = on_year - birth_year
    for lower, label in reversed(list(zip(bounds, band_labels(bounds), strict=True))):
        if age >= lower:
            return label
    return None


@dataclass(frozen=True)
class Person:
    person_id: str
    sex: str
    birth_year: int
    district: str
    budget_school: bool = False


def check_strata(strata: Iterable[str]) -> tuple[str, ...]:
    """The strata in canonical order (sex, age_band, district); unknown or repeated ones fail."""
    given = list(strata)
    for i, name in enumerate(given):
        if name not in STRATA:
            raise SortitionError(
                f"unknown stratum {name!r}; use {', '.join(STRATA)}", field=f"strata.{i}"
            )
        if given.index(name) != i:
            raise SortitionError(f"stratum {name!r} is listed twice", field=f"strata.{i}")
    return tuple(s for s in STRATA if s in given)


def freeze(
    people: Iterable[Person],
    *,
    strata: Sequence[str],
    on_year: int,
    bounds: Sequence[int],
    budget_school: bool | None = None,
) -> list[dict[str, str]]:
    """The candidates of a draw as published: people of age on `on_year` (and, with the
    filter, only those whose `budget_school` equals it), each reduced to the id and the draw's
    strata (a birth year becomes its age band), sorted by id."""
    candidates = []
    for person in people:
        band = age_band(person.birth_year, on_year, bounds)
        if band is None or (budget_school is not None and person.budget_school != budget_school):
            continue
        attributes = {"sex": person.sex, "age_band": band, "district": person.district}
        candidates.append({"person_id": person.person_id, **{s: attributes[s] for s in strata}})
    return sorted(candidates, key=lambda c: c["person_id"])


def stratum_of(candidate: Candidate, strata: Sequence[str]) -> Stratum:
    return tuple(candidate[s] for s in strata)


# ---- the population table ----------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationRow:
    district: str
    sex: str
    age_band: str
    population: int


def parse_population(text: str) -> list[PopulationRow]:
    """A CSV with the columns district,sex,age_band,population; lines starting with '#' are
    comments. Any table with these columns works, e.g. a reshaped official export."""
    numbered = [
        (n, line)
        for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise SortitionError("population table: empty")
    records = list(csv.reader(line for _, line in numbered))
    if tuple(c.strip() for c in records[0]) != POPULATION_COLUMNS:
        raise SortitionError(
            f"population table: the columns must be {','.join(POPULATION_COLUMNS)}"
        )
    rows: list[PopulationRow] = []
    seen: set[tuple[str, str, str]] = set()
    for (n, _), record in zip(numbered[1:], records[1:], strict=True):
        fields = [c.strip() for c in record]
        if len(fields) != 4 or not all(fields[:3]):
            raise SortitionError(f"population table, line {n}: expected 4 non-empty values")
        district, sex, band, count = fields
        if sex not in SEXES:
            raise SortitionError(f"population table, line {n}: sex must be female or male")
        if not count.isdigit():
            raise SortitionError(f"population table, line {n}: population must be an integer >= 0")
        if (district, sex, band) in seen:
            raise SortitionError(f"population table, line {n}: {district},{sex},{band} repeated")
        seen.add((district, sex, band))
        rows.append(PopulationRow(district, sex, band, int(count)))
    return rows


def weights(rows: Iterable[PopulationRow], strata: Sequence[str]) -> dict[Stratum, int]:
    """The population of each stratum of the draw (the table summed over the other columns)."""
    totals: Counter[Stratum] = Counter()
    for row in rows:
        attributes = {"sex": row.sex, "age_band": row.age_band, "district": row.district}
        totals[tuple(attributes[s] for s in strata)] += row.population
    return dict(totals)


# ---- quotas ------------------------------------------------------------------------------------


def hamilton(size: int, population: Mapping[Stratum, int]) -> dict[Stratum, int]:
    """Largest remainder: floor of each exact share, then one more seat to the largest
    remainders (exact integer arithmetic), ties to the smaller stratum key."""
    total = sum(population.values())
    if size == 0:
        return dict.fromkeys(population, 0)
    if total <= 0:
        raise SortitionError("the population table has nobody in these strata", field="population")
    seats = {k: size * w // total for k, w in population.items()}
    left = size - sum(seats.values())
    for k in sorted(population, key=lambda k: (-(size * population[k] % total), k))[:left]:
        seats[k] += 1
    return seats


def allocate(
    size: int, population: Mapping[Stratum, int], available: Mapping[Stratum, int]
) -> dict[Stratum, int]:
    """Hamilton quotas that fit the candidates: a stratum short of its quota is capped at what
    it has, and the rest of the size is apportioned again among the others, until none is
    short. Only strata with population in the table get seats."""
    capacity = sum(available.get(k, 0) for k, w in population.items() if w > 0)
    if size > capacity:
        raise SortitionError(
            f"size {size} is more than the {capacity} candidates in the population's strata",
            field="size",
        )
    capped: dict[Stratum, int] = {}
    while True:
        free = {k: w for k, w in population.items() if k not in capped}
        seats = hamilton(size - sum(capped.values()), free)
        short = [k for k, n in seats.items() if n > available.get(k, 0)]
        if not short:
            return {**capped, **seats}
        for k in short:
            capped[k] = available.get(k, 0)


def random_seats(council_size: int, share: float) -> int:
    """A citizen council's drawn seats: `council.random_share` x size, rounded half up."""
    return int(Fraction(str(share)) * council_size + Fraction(1, 2))


# ---- the draw ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StratumCount:
    stratum: Stratum
    population: int
    available: int
    quota: int


@dataclass(frozen=True)
class Draw:
    counts: list[StratumCount]
    members: list[str]  # sorted
    members_digest: str
    groups: list[list[str]] | None  # each sorted


def quotas(
    candidates: Sequence[Candidate],
    *,
    size: int,
    strata: Sequence[str],
    population: Mapping[Stratum, int],
    key: str = "person_id",
) -> list[StratumCount]:
    """Every stratum with population or candidates, by key, with its quota. Seed-free: it is
    published when the draw is committed. `key` names each candidate's id (see `ID_KEYS`)."""
    ids = [c[key] for c in candidates]
    if len(set(ids)) != len(ids):
        raise SortitionError("a candidate is in the snapshot twice", field="pool")
    available = Counter(stratum_of(c, strata) for c in candidates)
    seats = allocate(size, population, available)
    keys = sorted({k for k, w in population.items() if w > 0} | set(available))
    return [
        StratumCount(k, population.get(k, 0), available.get(k, 0), seats.get(k, 0)) for k in keys
    ]


def deal(ordered: Sequence[str], groups: int) -> list[list[str]]:
    """Round robin: the i-th (from 0) goes to group i mod `groups`; each group sorted."""
    dealt: list[list[str]] = [[] for _ in range(groups)]
    for i, member_id in enumerate(ordered):
        dealt[i % groups].append(member_id)
    return [sorted(group) for group in dealt]


def draw(
    candidates: Sequence[Candidate],
    seed: str,
    *,
    size: int,
    strata: Sequence[str],
    population: Mapping[Stratum, int],
    groups: int | None = None,
    key: str = "person_id",
) -> Draw:
    """Draw `size` candidates; `key` names each candidate's id (see `ID_KEYS`), and the members,
    groups and digest are of those ids."""
    if groups is not None and not 1 <= groups <= size:
        raise SortitionError("groups must be between 1 and the size", field="groups")
    counts = quotas(candidates, size=size, strata=strata, population=population, key=key)
    by_stratum: dict[Stratum, list[str]] = {}
    for c in candidates:
        by_stratum.setdefault(stratum_of(c, strata), []).append(c[key])
    chosen: list[str] = []  # by stratum key, then ticket
    for count in counts:
        ranked = sorted((ticket(seed, mid), mid) for mid in by_stratum.get(count.stratum, []))
        chosen += [mid for _, mid in ranked[: count.quota]]
    return Draw(
        counts=counts,
        members=sorted(chosen),
        members_digest=members_digest(chosen),
        groups=deal(chosen, groups) if groups else None,
    )


def scheme_key(snapshot: Mapping[str, Any]) -> str:
    """The candidate key a snapshot document's draw ranks by: its `scheme` ("v1" if absent,
    as in the documents published before schemes existed)."""
    scheme = snapshot.get("scheme") or PERSON_ID_SCHEME
    if scheme not in ID_KEYS:
        raise SortitionError(f"unknown sortition scheme {scheme!r}", field="scheme")
    return ID_KEYS[scheme]


def reproduce(snapshot: Mapping[str, Any], seed: str | None = None) -> Draw:
    """Re-run a draw from its published snapshot document (GET /v1/sortitions/{id}/snapshot):
    the quotas are recomputed from the population column of `counts`, not taken on trust."""
    key = scheme_key(snapshot)
    if not snapshot["members"] and int(snapshot["size"]) > 0:
        raise SortitionError(
            "this snapshot lists no candidates: a scheme-v1 draw's candidates are person ids, "
            "which are no longer published (GET .../verify re-runs it on the server)",
            field="members",
        )
    strata = tuple(snapshot["strata"])
    population = {
        tuple(row["stratum"][s] for s in strata): int(row["population"])
        for row in snapshot["counts"]
    }
    return draw(
        snapshot["members"],
        snapshot["seed"] if seed is None else seed,
        size=int(snapshot["size"]),
        strata=strata,
        population=population,
        groups=snapshot.get("groups"),
        key=key,
    )
