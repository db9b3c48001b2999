"""Verifiable sortition: the pure draw (quotas, reproducibility, groups) and the commit-reveal API.

The API tests create pools and draws over HTTP and re-run the README's snippet against a real
snapshot, so the documented procedure is the tested one. What is public names candidates by
per-draw pseudonyms: the tests look for every person id of the pool in the public JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import subprocess
import sys
import uuid
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from models import sortition
from models.sortition import SortitionError
from models.tables import SortitionDraw
from rulebooks.populations import load_population
from tests.conftest import Stack
from tests.helpers import Api, expect, expect_problem

BOUNDS = [19, 30, 40, 50, 60]
STRATA = sortition.STRATA
SEOUL = load_population("seoul-2019")
WEIGHTS = sortition.weights(SEOUL.rows, STRATA)
README = Path(__file__).resolve().parent.parent / "README.md"


def synthetic_pool(per_share: int, *, prefix: str = "p") -> list[dict[str, str]]:
    """Candidates in every stratum of the Seoul table: ceil(per_share x its share) + 1 each."""
    total = sum(WEIGHTS.values())
    candidates: list[dict[str, str]] = []
    for key, population in sorted(WEIGHTS.items()):
        for _ in range(math.ceil(per_share * population / total) + 1):
            person_id = f"{prefix}{len(candidates):05d}"
            candidates.append({"person_id": person_id, **dict(zip(STRATA, key, strict=True))})
    return candidates


# ---- the pure module ---------------------------------------------------------------------------


def test_age_bands_from_the_rulebook_bounds() -> None:
    assert sortition.band_labels(BOUNDS) == ["19-29", "30-39", "40-49", "50-59", "60+"]
    assert sortition.age_band(2002, 2020, BOUNDS) is None  # 18: not eligible
    assert sortition.age_band(2001, 2020, BOUNDS) == "19-29"
    assert sortition.age_band(1991, 2020, BOUNDS) == "19-29"
    assert sortition.age_band(1990, 2020, BOUNDS) == "30-39"
    assert sortition.age_band(1960, 2020, BOUNDS) == "60+"
    assert sortition.age_band(1900, 2020, BOUNDS) == "60+"
    with pytest.raises(SortitionError):
        sortition.band_labels([30, 19])


def test_hamilton_is_exact_and_breaks_ties_by_key_order() -> None:
    assert sortition.hamilton(10, {("a",): 1, ("b",): 1, ("c",): 1}) == {
        ("a",): 4,
        ("b",): 3,
        ("c",): 3,
    }
    assert sortition.hamilton(7, {("a",): 50, ("b",): 30, ("c",): 20}) == {
        ("a",): 4,  # 3.5
        ("b",): 2,  # 2.1
        ("c",): 1,  # 1.4
    }
    assert sortition.hamilton(5, {("a",): 0, ("b",): 3}) == {("a",): 0, ("b",): 5}


def test_stratum_counts_follow_the_population_table() -> None:
    """3,000+ candidates across the 250 strata, 1,000 drawn: every stratum gets exactly its
    Hamilton quota, which is within 1 of its exact share, and the counts sum to the size."""
    candidates = synthetic_pool(3_000)
    assert len(candidates) > 3_000
    result = sortition.draw(candidates, "seed", size=1_000, strata=STRATA, population=WEIGHTS)
    assert len(result.members) == len(set(result.members)) == 1_000
    total = sum(WEIGHTS.values())
    hamilton = sortition.hamilton(1_000, WEIGHTS)
    drawn = {k: 0 for k in WEIGHTS}
    strata_of = {c["person_id"]: sortition.stratum_of(c, STRATA) for c in candidates}
    for person_id in result.members:
        drawn[strata_of[person_id]] += 1
    for key, population in WEIGHTS.items():
        assert drawn[key] == hamilton[key]
        assert abs(drawn[key] - Fraction(1_000 * population, total)) < 1
    assert sum(c.quota for c in result.counts) == 1_000
    assert {c.stratum: c.quota for c in result.counts} == hamilton
    # By sex alone, the shares hold too: the table is 51.8 % women.
    women = sum(n for k, n in drawn.items() if k[0] == "female")
    assert (
        abs(women - 1_000 * Fraction(sum(w for k, w in WEIGHTS.items() if k[0] == "female"), total))
        < 2
    )


def test_same_pool_and_seed_give_the_same_members_and_another_seed_does_not() -> None:
    candidates = synthetic_pool(300)
    first = sortition.draw(
        candidates, "2020-02-03 agenda", size=20, strata=STRATA, population=WEIGHTS
    )
    shuffled = list(reversed(candidates))
    again = sortition.draw(
        shuffled, "2020-02-03 agenda", size=20, strata=STRATA, population=WEIGHTS
    )
    assert again == first
    other = sortition.draw(
        candidates, "2020-02-03 agenda!", size=20, strata=STRATA, population=WEIGHTS
    )
    assert other.members != first.members
    assert [c.quota for c in other.counts] == [c.quota for c in first.counts]  # seed-free
    assert first.members_digest == hashlib.sha256("\n".join(first.members).encode()).hexdigest()
    # Within a stratum, the lowest tickets win.
    for count in first.counts:
        pool = [
            c["person_id"] for c in candidates if sortition.stratum_of(c, STRATA) == count.stratum
        ]
        lowest = sorted(pool, key=lambda p: sortition.ticket("2020-02-03 agenda", p))[: count.quota]
        assert set(lowest) <= set(first.members)


def test_a_short_stratum_gives_its_shortfall_to_the_others() -> None:
    population: dict[sortition.Stratum, int] = {("female",): 50, ("male",): 30, ("other",): 20}
    candidates = [{"person_id": f"f{i}", "sex": "female"} for i in range(2)]
    candidates += [{"person_id": f"m{i}", "sex": "male"} for i in range(10)]
    candidates += [{"person_id": f"o{i}", "sex": "other"} for i in range(10)]
    # Hamilton of 10 gives 5/3/2; women have 2, so the other 8 go 30:20 -> 4.8/3.2 -> 5/3.
    assert sortition.allocate(10, population, {("female",): 2, ("male",): 10, ("other",): 10}) == {
        ("female",): 2,
        ("male",): 5,
        ("other",): 3,
    }
    result = sortition.draw(candidates, "s", size=10, strata=("sex",), population=population)
    assert [(c.stratum, c.available, c.quota) for c in result.counts] == [
        (("female",), 2, 2),
        (("male",), 10, 5),
        (("other",), 10, 3),
    ]
    assert len(result.members) == 10
    with pytest.raises(SortitionError) as too_many:
        sortition.draw(candidates, "s", size=23, strata=("sex",), population=population)
    assert too_many.value.field == "size"
    # Candidates in a stratum without population are never drawn.
    with pytest.raises(SortitionError):
        sortition.allocate(3, {("a",): 1, ("b",): 0}, {("a",): 2, ("b",): 5})


def test_groups_split_the_square_into_near_equal_mixed_fields() -> None:
    candidates = synthetic_pool(1_500)
    result = sortition.draw(
        candidates, "square", size=1_000, strata=STRATA, population=WEIGHTS, groups=13
    )
    assert result.groups is not None
    assert [len(g) for g in result.groups] == [77] * 12 + [76]
    assert sorted(p for g in result.groups for p in g) == result.members
    sex = {c["person_id"]: c["sex"] for c in candidates}
    for group in result.groups:  # every field gets a mix: about 52 % women
        assert 30 <= sum(sex[p] == "female" for p in group) <= 50


def test_a_pseudonymous_snapshot_draws_by_pseudonym_and_publishes_no_person_id() -> None:
    """Scheme v2: the tickets are over the pseudonyms; the public snapshot has no person ids
    and re-runs to the same pseudonyms; a v1 document (no scheme) still ranks by person id."""
    private = [
        {**c, "pseudonym": hashlib.sha256(f"alias {c['person_id']}".encode()).hexdigest()[:32]}
        for c in synthetic_pool(300)
    ]
    public = sortition.publish(private)
    assert all(set(c) == {"pseudonym", *STRATA} for c in public)
    assert [c["pseudonym"] for c in public] == sorted(c["pseudonym"] for c in private)
    result = sortition.draw(
        public, "s", size=20, strata=STRATA, population=WEIGHTS, groups=3, key="pseudonym"
    )
    alias = {c["person_id"]: c["pseudonym"] for c in private}
    by_id = sortition.draw(private, "s", size=20, strata=STRATA, population=WEIGHTS, groups=3)
    assert set(result.members) <= set(alias.values())
    assert result.members_digest == sortition.members_digest(result.members)
    assert [c.quota for c in result.counts] == [c.quota for c in by_id.counts]
    assert sorted(alias[p] for p in by_id.members) != result.members  # another ranking input
    for count in result.counts:  # the lowest tickets of the pseudonyms win
        same = [c["pseudonym"] for c in public if sortition.stratum_of(c, STRATA) == count.stratum]
        lowest = sorted(same, key=lambda a: sortition.ticket("s", a))[: count.quota]
        assert set(lowest) <= set(result.members)
    document: dict[str, Any] = {
        "scheme": "v2",
        "strata": list(STRATA),
        "size": 20,
        "groups": 3,
        "seed": "s",
        "members": public,
        "counts": [
            {"stratum": dict(zip(STRATA, c.stratum, strict=True)), "population": c.population}
            for c in result.counts
        ],
    }
    assert sortition.reproduce(document) == result
    legacy = {**document, "members": private}
    del legacy["scheme"]
    assert sortition.reproduce(legacy) == by_id
    assert (
        sortition.snapshot_digest(public, key="pseudonym")
        == hashlib.sha256(sortition.canonical_json(public)).hexdigest()
    )
    with pytest.raises(SortitionError, match="no longer published"):
        sortition.reproduce({**document, "scheme": "v1", "members": []})
    with pytest.raises(SortitionError):
        sortition.reproduce({**document, "scheme": "v3"})
    with pytest.raises(SortitionError):
        sortition.publish([{"person_id": "a", "sex": "female"}])


def test_freeze_keeps_the_of_age_and_the_filtered_with_bands_not_birth_years() -> None:
    people = [
        sortition.Person("a", "female", 2001, "Jung-gu", budget_school=True),
        sortition.Person("b", "male", 2002, "Jung-gu", budget_school=True),  # 18 in 2020
        sortition.Person("c", "male", 1950, "Mapo-gu", budget_school=False),
    ]
    assert sortition.freeze(people, strata=STRATA, on_year=2020, bounds=BOUNDS) == [
        {"person_id": "a", "sex": "female", "age_band": "19-29", "district": "Jung-gu"},
        {"person_id": "c", "sex": "male", "age_band": "60+", "district": "Mapo-gu"},
    ]
    assert sortition.freeze(
        people, strata=("sex",), on_year=2020, bounds=BOUNDS, budget_school=True
    ) == [{"person_id": "a", "sex": "female"}]
    assert sortition.random_seats(30, 0.5) == 15
    assert sortition.random_seats(25, 0.5) == 13


def test_population_tables_are_validated() -> None:
    assert len(SEOUL.rows) == 25 * 2 * 5
    assert {r.district for r in SEOUL.rows} == set(sortition.DISTRICTS)
    assert {r.age_band for r in SEOUL.rows} == set(sortition.band_labels(BOUNDS))
    raw = (
        Path(sortition.__file__).parent.parent / "rulebooks/population/seoul-2019.csv"
    ).read_bytes()
    assert SEOUL.digest == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(b"# ILLUSTRATIVE")
    header = "district,sex,age_band,population\n"
    for text, message in [
        ("district,sex,population\n", "columns"),
        (header + "Jung-gu,other,19-29,5\n", "line 2: sex"),
        (header + "# note\nJung-gu,male,19-29,-5\n", "line 3: population"),
        (header + "Jung-gu,male,19-29,5\nJung-gu,male,19-29,6\n", "repeated"),
    ]:
        with pytest.raises(SortitionError, match=message):
            sortition.parse_population(text)
    with pytest.raises(SortitionError):
        load_population("../seoul-2019")


# ---- the API -----------------------------------------------------------------------------------


async def this_year(api: Api) -> int:
    return int((await api.now())[:4])


def pool_members(candidates: list[dict[str, str]], year: int, **extra: Any) -> list[dict[str, Any]]:
    """Pool rows for synthetic candidates: a birth year in the middle of their band."""
    first_year = {"19-29": 21, "30-39": 34, "40-49": 44, "50-59": 54, "60+": 70}
    return [
        {
            "person_id": c["person_id"],
            "sex": c["sex"],
            "birth_year": year - first_year[c["age_band"]],
            "district": c["district"],
            **extra,
        }
        for c in candidates
    ]


def commitment_of(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


async def create_pool(
    api: Api, admin: dict[str, str], name: str, members: list[dict[str, Any]]
) -> Any:
    return expect(
        await api.post("/v1/sortition-pools", admin, {"name": name, "members": members}), 201
    )


#: The re-run snippet of the README's "Verifiable sortition" section, as printed there.
RERUN_SNIPPET = """\
import hashlib, json

snap = json.load(open("snapshot.json", encoding="utf-8"))
seed, strata = snap["seed"], snap["strata"]
assert hashlib.sha256(seed.encode()).hexdigest() == snap["seed_commitment"]
key = {"v1": "person_id", "v2": "pseudonym"}[snap.get("scheme", "v1")]


def ticket(member_id):
    return hashlib.sha256(f"{seed}:{member_id}".encode()).hexdigest()


members = []
for row in snap["counts"]:  # each stratum and its quota
    same = [m[key] for m in snap["members"] if all(m[s] == row["stratum"][s] for s in strata)]
    members += sorted(same, key=ticket)[: row["quota"]]
print(hashlib.sha256("\\n".join(sorted(members)).encode()).hexdigest())  # == members_digest
"""


def readme_snippet() -> str:
    section = README.read_text(encoding="utf-8").split("## Verifiable sortition", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's sortition section has no python snippet"
    return match.group(1)


def test_the_readme_prints_the_tested_snippet() -> None:
    """The snippet the API test runs is the one a citizen reads."""
    assert readme_snippet() == RERUN_SNIPPET


def assert_no_person_ids(document: Any, person_ids: set[str]) -> None:
    """None of these person ids appears anywhere in the JSON text of `document`."""
    text = json.dumps(document, ensure_ascii=False)
    leaked = sorted(p for p in person_ids if p in text)
    assert not leaked, f"person ids in public JSON: {leaked[:5]}"


async def test_agenda_group_commit_reveal_and_verify(
    api: Api, system: Stack, tmp_path: Path
) -> None:
    admin = await api.official("admin")
    year = await this_year(api)
    pool = pool_members(synthetic_pool(150, prefix="citizen-"), year)
    await create_pool(api, admin, "agenda-2020", pool)
    volunteer = await api.citizen(sex="female", birth_year=year - 35, district="Mapo-gu")
    joined_early = expect(
        await api.post("/v1/sortition-pools/agenda-2020/volunteers", volunteer), 201
    )
    person_ids = {m["person_id"] for m in pool} | {joined_early["person_id"]}

    seed = "agenda group, 2020-03-02, 서울"
    body = {
        "purpose": "agenda_selection_group",
        "pool": "agenda-2020",
        "seed_commitment": commitment_of(seed),
    }
    draw = expect(await api.post("/v1/sortitions", admin, body), 201)
    assert draw["status"] == "committed" and draw["size"] == 20  # sortition.agenda_group_size
    assert draw["scheme"] == "v2"
    assert draw["strata"] == ["sex", "age_band", "district"]
    assert draw["members"] is None and draw["seed"] is None and draw["members_count"] is None
    assert draw["rulebook"] == "seoul-2020" and draw["population"] == "seoul-2019"
    assert draw["population_digest"] == SEOUL.digest
    assert sum(c["quota"] for c in draw["counts"]) == 20
    draw_id = draw["id"]

    # The pool is frozen at commit: a later volunteer is not a candidate.
    late = await api.citizen(sex="male", birth_year=year - 25, district="Jung-gu")
    joined = expect(await api.post("/v1/sortition-pools/agenda-2020/volunteers", late), 201)
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/me", headers=late), 404)
    snap = expect(await system.http.get(f"/v1/sortitions/{draw_id}/snapshot"), 200)
    assert snap["scheme"] == "v2"
    assert_no_person_ids(snap, person_ids | {joined["person_id"]})
    aliases = {m["pseudonym"] for m in snap["members"]}
    assert len(aliases) == draw["candidates"] == len(snap["members"])
    early = expect(await system.http.get("/v1/sortition-pools/agenda-2020", headers=admin), 200)
    assert early["volunteers"] == 2 and len(aliases) == early["members"] - 1
    assert all(set(m) == {"pseudonym", "sex", "age_band", "district"} for m in snap["members"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", a) for a in aliases)
    assert snap["members"] == sorted(snap["members"], key=lambda m: m["pseudonym"])
    assert sortition.snapshot_digest(snap["members"], key="pseudonym") == draw["snapshot_digest"]
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/verify"), 409)
    # The early volunteer finds their own entry, and nobody else's.
    mine = expect(await system.http.get(f"/v1/sortitions/{draw_id}/me", headers=volunteer), 200)
    assert mine["person_id"] == joined_early["person_id"] and mine["drawn"] is None
    assert mine["pseudonym"] in aliases
    assert mine["stratum"] == {"sex": "female", "age_band": "30-39", "district": "Mapo-gu"}
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/me"), 401)
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/members", headers=admin), 409)

    # A wrong seed is refused and changes nothing.
    wrong = await api.post(f"/v1/sortitions/{draw_id}/reveal", admin, {"seed": seed + " "})
    expect_problem(wrong, 422, field="seed")
    assert expect(await system.http.get(f"/v1/sortitions/{draw_id}"), 200) == draw
    citizen = await api.citizen()
    expect_problem(await api.post(f"/v1/sortitions/{draw_id}/reveal", citizen, {"seed": seed}), 403)

    revealed = expect(
        await api.post(f"/v1/sortitions/{draw_id}/reveal", admin, {"seed": seed}), 200
    )
    assert revealed["status"] == "revealed" and revealed["seed"] == seed
    assert len(revealed["members"]) == revealed["members_count"] == 20
    assert revealed["member_groups"] is None
    assert set(revealed["members"]) <= aliases
    assert all(c["drawn"] == c["quota"] for c in revealed["counts"])
    assert revealed["members_digest"] == sortition.members_digest(revealed["members"])
    again = await api.post(f"/v1/sortitions/{draw_id}/reveal", admin, {"seed": seed})
    expect_problem(again, 409)

    verified = expect(await system.http.get(f"/v1/sortitions/{draw_id}/verify"), 200)
    assert verified["reproduced"] is True and verified["scheme"] == "v2"
    assert verified["snapshot_matches"] and verified["quotas_match"]
    assert verified["members_digest"] == revealed["members_digest"]

    # Nothing anyone can read names a person: the draw, its snapshot, its verification.
    published = expect(await system.http.get(f"/v1/sortitions/{draw_id}/snapshot"), 200)
    public_draw = expect(await system.http.get(f"/v1/sortitions/{draw_id}"), 200)
    assert public_draw == revealed
    for document in (revealed, published, verified):
        assert_no_person_ids(document, person_ids)

    # Only the admin maps the drawn pseudonyms to the people, to contact them.
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/members", headers=citizen), 403)
    expect_problem(
        await system.http.get(f"/v1/sortitions/{draw_id}/members", headers=volunteer), 403
    )
    auditor = await api.official("auditor")
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/members", headers=auditor), 403)
    expect_problem(await system.http.get(f"/v1/sortitions/{draw_id}/members"), 401)
    roster = expect(await system.http.get(f"/v1/sortitions/{draw_id}/members", headers=admin), 200)
    assert roster["members_digest"] == revealed["members_digest"]
    assert sorted(m["pseudonym"] for m in roster["members"]) == revealed["members"]
    assert {m["person_id"] for m in roster["members"]} <= person_ids
    assert len({m["person_id"] for m in roster["members"]}) == 20
    entries = {m["pseudonym"]: m for m in published["members"]}
    for member in roster["members"]:
        assert member["stratum"] == {s: entries[member["pseudonym"]][s] for s in STRATA}
        assert member["group"] is None
    # ... and a candidate learns whether they were drawn.
    mine = expect(await system.http.get(f"/v1/sortitions/{draw_id}/me", headers=volunteer), 200)
    assert mine["drawn"] is (mine["pseudonym"] in revealed["members"])
    assert mine["drawn"] is (mine["person_id"] in {m["person_id"] for m in roster["members"]})

    # A citizen re-runs it: the README's snippet, as printed, on the published snapshot.
    (tmp_path / "snapshot.json").write_text(json.dumps(published), encoding="utf-8")
    script = tmp_path / "rerun.py"
    script.write_text(RERUN_SNIPPET, encoding="utf-8")
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == revealed["members_digest"]
    assert sortition.reproduce(published).members == revealed["members"]

    # The same snapshot with another seed would have drawn other people.
    assert sortition.reproduce(published, seed + "!").members != revealed["members"]


async def test_budget_square_of_1000_in_13_fields(api: Api, system: Stack) -> None:
    admin = await api.official("admin")
    year = await this_year(api)
    await create_pool(api, admin, "square-2020", pool_members(synthetic_pool(1_400), year))
    body = {
        "purpose": "budget_square",
        "pool": "square-2020",
        "seed_commitment": commitment_of("square"),
        "groups": 13,
    }
    draw = expect(await api.post("/v1/sortitions", admin, body), 201)
    assert draw["size"] == 1_000  # sortition.square_size
    revealed = expect(
        await api.post(f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": "square"}), 200
    )
    assert len(set(revealed["members"])) == 1_000
    assert [len(g) for g in revealed["member_groups"]] == [77] * 12 + [76]
    assert sorted(p for g in revealed["member_groups"] for p in g) == revealed["members"]
    hamilton = sortition.hamilton(1_000, WEIGHTS)
    for count in revealed["counts"]:
        assert (
            count["drawn"] == count["quota"] == hamilton[tuple(count["stratum"][s] for s in STRATA)]
        )
    assert expect(await system.http.get(f"/v1/sortitions/{draw['id']}/verify"), 200)["reproduced"]
    # The admin's roster puts each person in the group their pseudonym is in.
    roster = expect(
        await system.http.get(f"/v1/sortitions/{draw['id']}/members", headers=admin), 200
    )
    groups = revealed["member_groups"]
    assert all(m["pseudonym"] in groups[m["group"]] for m in roster["members"])
    assert len({m["person_id"] for m in roster["members"]}) == 1_000


async def test_council_half_is_drawn_from_budget_school_graduates(api: Api, system: Stack) -> None:
    admin = await api.official("admin")
    year = await this_year(api)
    candidates = synthetic_pool(200)
    graduates = pool_members(candidates[::3], year, budget_school=True)
    others = pool_members([c for i, c in enumerate(candidates) if i % 3], year)
    await create_pool(api, admin, "council-welfare", graduates + others)
    body = {
        "purpose": "citizen_council",
        "council_size": 30,  # 5:5 -> 15 drawn
        "strata": ["sex", "age_band"],
        "pool": "council-welfare",
        "seed_commitment": commitment_of("welfare"),
    }
    draw = expect(await api.post("/v1/sortitions", admin, body), 201)
    assert draw["size"] == 15 and draw["filter"] == {"budget_school": True}
    assert draw["candidates"] == len(graduates)
    revealed = expect(
        await api.post(f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": "welfare"}), 200
    )
    assert len(revealed["members"]) == 15
    assert all(set(c["stratum"]) == {"sex", "age_band"} for c in revealed["counts"])
    roster = expect(
        await system.http.get(f"/v1/sortitions/{draw['id']}/members", headers=admin), 200
    )
    assert {m["person_id"] for m in roster["members"]} <= {g["person_id"] for g in graduates}
    assert len(roster["members"]) == 15
    assert all(set(m["stratum"]) == {"sex", "age_band"} for m in roster["members"])
    assert_no_person_ids(revealed, {m["person_id"] for m in graduates + others})


async def test_pools_volunteers_and_bad_input(api: Api, system: Stack) -> None:
    admin = await api.official("admin")
    year = await this_year(api)
    good = {"person_id": "x1", "sex": "female", "birth_year": year - 40, "district": "Jung-gu"}
    for members, field in [
        ([good, {**good, "person_id": "x2", "district": "Gotham"}], "members.1.district"),
        ([{**good, "sex": "other"}], "members.0.sex"),
        ([{**good, "birth_year": 1800}], "members.0.birth_year"),
        ([{**good, "birth_year": year + 1}], "members.0.birth_year"),
        ([good, good], "members.1.person_id"),
        ([{**good, "person_id": "a\nb"}], "members.0.person_id"),
    ]:
        bad = await api.post("/v1/sortition-pools", admin, {"name": "p", "members": members})
        expect_problem(bad, 422, field=field)
    citizen = await api.citizen()
    expect_problem(
        await api.post("/v1/sortition-pools", citizen, {"name": "p", "members": []}), 403
    )
    created = await create_pool(api, admin, "p", [good])
    assert created["members"] == 1
    expect_problem(await api.post("/v1/sortition-pools", admin, {"name": "p", "members": []}), 409)

    # Volunteers: eligible citizens with the attributes in their token, once.
    claims: dict[str, Any] = {"sex": "male", "birth_year": year - 30, "district": "Nowon-gu"}
    volunteer = await api.citizen(**claims, budget_school=True)
    expect(await api.post("/v1/sortition-pools/p/volunteers", volunteer), 201)
    expect_problem(await api.post("/v1/sortition-pools/p/volunteers", volunteer), 409)
    official = await api.citizen(**claims, public_official=True)
    expect_problem(await api.post("/v1/sortition-pools/p/volunteers", official), 403)
    no_birth_year = await api.citizen(sex="male", district="Nowon-gu")
    expect_problem(
        await api.post("/v1/sortition-pools/p/volunteers", no_birth_year), 422, field="birth_year"
    )
    expect_problem(
        await api.post("/v1/sortition-pools/nope/volunteers", await api.citizen(**claims)), 404
    )
    summary = expect(await system.http.get("/v1/sortition-pools/p", headers=admin), 200)
    assert (summary["members"], summary["volunteers"], summary["budget_school"]) == (2, 1, 1)
    assert {(s["sex"], s["age_band"], s["district"]) for s in summary["strata"]} == {
        ("female", "40-49", "Jung-gu"),
        ("male", "30-39", "Nowon-gu"),
    }
    expect_problem(await system.http.get("/v1/sortition-pools/p", headers=citizen), 403)

    # Draw requests.
    base: dict[str, Any] = {
        "purpose": "other",
        "size": 2,
        "pool": "p",
        "seed_commitment": commitment_of("s"),
    }
    changes: list[tuple[dict[str, Any], str]] = [
        ({"size": 3}, "size"),
        ({"size": None}, "size"),
        ({"strata": ["sex", "income"]}, "strata.1"),
        ({"strata": ["sex", "sex"]}, "strata.1"),
        ({"seed_commitment": commitment_of("s").upper()}, "seed_commitment"),
        ({"seed_commitment": "abc"}, "seed_commitment"),
        ({"pool": "nope"}, "pool"),
        ({"population": "atlantis"}, "population"),
        ({"rulebook": "seoul-2018"}, "rulebook"),
        ({"groups": 3}, "groups"),
    ]
    for change, field in changes:
        request = {k: v for k, v in {**base, **change}.items() if v is not None}
        expect_problem(await api.post("/v1/sortitions", admin, request), 422, field=field)
    expect_problem(await api.post("/v1/sortitions", citizen, base), 403)
    expect_problem(await system.http.get("/v1/sortitions/no-such-draw"), 404)

    # Idempotency-Key: a retried commit returns the first draw.
    keyed = {**admin, "Idempotency-Key": "draw-1"}
    first = expect(await system.http.post("/v1/sortitions", json=base, headers=keyed), 201)
    second = expect(await system.http.post("/v1/sortitions", json=base, headers=keyed), 201)
    assert first["id"] == second["id"]


async def legacy_draw(
    system: Stack, pool: str, candidates: list[dict[str, str]], seed: str, *, revealed: bool
) -> str:
    """A scheme-v1 draw as the code before pseudonyms stored it: the snapshot is the candidates
    by person id, its digest and the tickets over person ids (and, if `revealed`, the result)."""
    strata = list(STRATA)
    quotas = sortition.quotas(candidates, size=20, strata=strata, population=WEIGHTS)
    result = sortition.draw(candidates, seed, size=20, strata=strata, population=WEIGHTS)
    now = datetime.fromisoformat(await Api(system.http).now())
    row = SortitionDraw(
        id=str(uuid.uuid4()),
        purpose="agenda_selection_group",
        size=20,
        strata=strata,
        groups=None,
        filter={},
        pool=pool,
        rulebook="seoul-2020",
        rulebook_hash="0" * 64,
        reference_year=now.year,
        age_bands=sortition.band_labels(BOUNDS),
        population=SEOUL.name,
        population_digest=SEOUL.digest,
        seed_commitment=commitment_of(seed),
        snapshot=candidates,
        snapshot_digest=sortition.snapshot_digest(candidates),
        counts=[
            {
                "stratum": dict(zip(strata, q.stratum, strict=True)),
                "population": q.population,
                "available": q.available,
                "quota": q.quota,
                "drawn": q.quota if revealed else None,
            }
            for q in quotas
        ],
        created_by="admin-before-the-upgrade",
        created_at=now,
    )
    if revealed:
        row.status, row.seed, row.revealed_at = "revealed", seed, now
        row.members, row.members_digest = result.members, result.members_digest
    async with system.sessions() as session, session.begin():
        session.add(row)
    return row.id


async def test_draws_committed_before_pseudonyms_still_verify_and_publish_no_ids(
    api: Api, system: Stack
) -> None:
    """A scheme-v1 draw (tickets over person ids) keeps its scheme: revealed before or after
    the upgrade, it verifies, and its public views show no person id (so nobody outside the
    server can re-run it: its snapshot lists no candidates)."""
    admin = await api.official("admin")
    year = await this_year(api)
    candidates = synthetic_pool(150, prefix="legacy-")
    await create_pool(api, admin, "legacy", pool_members(candidates, year))
    person_ids = {c["person_id"] for c in candidates}
    done = await legacy_draw(system, "legacy", candidates, "old seed", revealed=True)
    pending = await legacy_draw(system, "legacy", candidates, "old seed 2", revealed=False)
    expected = sortition.draw(candidates, "old seed 2", size=20, strata=STRATA, population=WEIGHTS)

    revealed = expect(
        await api.post(f"/v1/sortitions/{pending}/reveal", admin, {"seed": "old seed 2"}), 200
    )
    assert revealed["scheme"] == "v1" and revealed["members_digest"] == expected.members_digest
    for draw_id in (done, pending):
        verified = expect(await system.http.get(f"/v1/sortitions/{draw_id}/verify"), 200)
        assert verified["scheme"] == "v1"
        assert verified["reproduced"] and verified["snapshot_matches"], verified
        public = expect(await system.http.get(f"/v1/sortitions/{draw_id}"), 200)
        assert public["members"] is None and public["members_count"] == 20
        snap = expect(await system.http.get(f"/v1/sortitions/{draw_id}/snapshot"), 200)
        assert snap["scheme"] == "v1" and snap["members"] == []
        for document in (public, snap, verified):
            assert_no_person_ids(document, person_ids)
        with pytest.raises(SortitionError, match="no longer published"):
            sortition.reproduce(snap)
    roster = expect(await system.http.get(f"/v1/sortitions/{pending}/members", headers=admin), 200)
    assert [m["person_id"] for m in roster["members"]] == expected.members
    assert all(m["pseudonym"] is None for m in roster["members"])
    citizen = await api.citizen()
    expect_problem(await system.http.get(f"/v1/sortitions/{done}/members", headers=citizen), 403)
    # A tampered legacy result no longer verifies.
    async with system.sessions() as session, session.begin():
        row = await session.get(SortitionDraw, done)
        assert row is not None and row.members is not None
        outsider = next(c for c in sorted(person_ids) if c not in row.members)
        row.members = sorted([*row.members[1:], outsider])
        session.add(row)
    verified = expect(await system.http.get(f"/v1/sortitions/{done}/verify"), 200)
    assert verified["reproduced"] is False
