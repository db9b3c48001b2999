"""Part of `minju simulate`: the year's district plans (구단위계획형) and neighbourhood plans
(동단위계획형), process.md §8 and §6a, on the calendar of the cycle's rulebook.

The rulebook budgets for `district.district_count` (24) of Seoul's 25 districts: the run draws
the one that sits out. From each playing district's counts of planning-type and autonomous
neighbourhoods the city announces its neighbourhood ceiling (January); the district submits a few
neighbourhoods' agendas as their residents' assemblies ranked them (May-June), and the city
reviews them on indicator scores, selecting within the district's ceiling (July). For the
district plans, the city chooses 5-6 strategic districts among the February applicants (early
March); every district submits its plan in early July (one first over its ceiling: refused,
then corrected), two rounds of negotiation cut some (July-August), the funding decision falls at
the end of August and the funded plans are agreed in December, after the city council.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import rulebooks
from minju.simulate.core import Headers, Sim, SimulationError
from models.calendar import seoul_midnight
from models.district_plans import DISTRICT, DISTRICT_DEPT, INDICATOR_MAX, NEIGHBOURHOOD
from models.rules import DistrictRules, NeighbourhoodCeilingRules, NeighbourhoodRules, Rulebook
from models.sortition import DISTRICTS

#: The rulebook the driver's cycle runs on (checked against the cycle before the first step).
RULEBOOK = "seoul-2021-2"
M = 1_000_000
#: District plan costs are whole tens of millions; agenda costs whole millions.
PLAN_UNIT = 10 * M
AGENDA_UNIT = M
#: Days into the agendas phase (from 1 February) of the two rounds of assemblies: May, June.
AGENDA_WAVE_DAYS = (105, 135)
#: The city's quantitative indicators of the neighbourhood review (003 names none).
INDICATORS = ("publicness", "need", "feasibility", "participation")
#: An agenda scoring below this mean is not selected, whatever the ceiling leaves.
SELECTION_SCORE = 60
#: How many districts apply for strategic projects in February (not recorded by the API).
STRATEGIC_APPLICANTS = (8, 12)
#: The share of plans cut in the first round, and adjusted again in the second.
CUT_IN_ROUND_ONE = 0.35
ADJUSTED_IN_ROUND_TWO = 0.25
#: The share of plans the city does not fund at the end of August.
NOT_FUNDED = 0.05

PLAN_THEMES = (
    "care for single-person households",
    "youth jobs and start-ups",
    "a local energy transition",
    "safe routes to school",
    "village community hubs",
    "digital literacy for older residents",
    "reviving the traditional market",
    "green alleys and pocket parks",
    "a neighbourhood care network",
    "cultural spaces in empty shops",
)
AGENDA_TOPICS = (
    "alley lighting",
    "a lunch programme for older residents",
    "a library corner in the community centre",
    "a play street for children",
    "a shared rooftop garden",
    "a recycling station",
    "a walking trail along the stream",
    "a youth hub",
    "safety cameras on school routes",
    "a care network for people living alone",
    "a repair café",
    "benches and shade at the bus stops",
)


@dataclass
class _Agenda:
    title: str
    rank: int
    cost_krw: int
    scores: dict[str, int]

    @property
    def merit(self) -> float:
        """The city's order of selection: the mean score, the assembly's priorities first."""
        return sum(self.scores.values()) / len(self.scores) + 10 / self.rank


@dataclass
class _AgendaSet:
    neighbourhood: str
    agendas: list[_Agenda]
    minutes: str
    id: str = ""


@dataclass
class _District:
    name: str
    planning: int
    autonomous: int
    agenda_sets: list[_AgendaSet] = field(default_factory=list)
    neighbourhood_ceiling_krw: int = 0
    #: Which of the two rounds of assemblies (May, June) the district's agendas come in.
    agenda_wave: int = 0
    strategic: bool = False
    plan_id: str = ""
    cost_krw: int = 0


class _Plans:
    """The part's state between its steps: the rules, the districts and their plans."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.rng: random.Random = sim.rng("plans")
        pinned = rulebooks.load(RULEBOOK)
        self.rulebook_hash = pinned.content_hash
        book = pinned.rulebook
        self.calendar = book.calendar or {}
        self.rules, self.city, self.counting = _rules_of(book)
        self.base = f"/v1/budget-cycles/{sim.year}"
        self.districts = [
            _District(name, 0, 0)
            for name in sorted(
                self.rng.sample(DISTRICTS, self.rules.district_count), key=DISTRICTS.index
            )
        ]
        #: The districts that applied for strategic projects in February.
        self.applicants: list[_District] = []
        self._draw_neighbourhood_counts()

    # ---- the calendar ----------------------------------------------------------------------

    def moment(self, kind: str, phase: str, *, days: float) -> datetime:
        """`days` after the start of `kind`'s `phase` in the cycle's year."""
        window = self.calendar[kind][phase]
        return seoul_midnight(window.start_date(self.sim.year)) + timedelta(days=days)

    def register(self) -> None:
        sim = self.sim
        sim.at(self.moment(NEIGHBOURHOOD, "ceilings", days=7), "plans: ceilings", self.ceilings)
        sim.at(
            self.moment(DISTRICT, "applications", days=10), "plans: applications", self.applications
        )
        sim.at(self.moment(DISTRICT, "selection", days=3), "plans: strategic", self.strategic)
        for wave, days in enumerate(AGENDA_WAVE_DAYS):
            sim.at(
                self.moment(NEIGHBOURHOOD, "agendas", days=days),
                f"plans: agendas {wave + 1}",
                functools.partial(self.agendas, wave),
            )
        sim.at(self.moment(DISTRICT, "submission", days=1), "plans: submission", self.submission)
        sim.at(self.moment(NEIGHBOURHOOD, "review", days=14), "plans: review", self.review)
        sim.at(self.moment(DISTRICT, "negotiation", days=12), "plans: round 1", self.round_one)
        sim.at(self.moment(DISTRICT, "negotiation", days=32), "plans: round 2", self.round_two)
        sim.at(self.moment(DISTRICT, "decision", days=4), "plans: decision", self.decision)
        sim.at(self.moment(DISTRICT, "council", days=29), "plans: agreement", self.agreement)

    async def in_phase(self, kind: str, phase: str) -> None:
        """Wait until the cycle's projection shows `kind` in `phase` (written by an activity)."""

        async def reached() -> bool:
            cycle = await self.sim.get(self.base)
            return bool(cycle["phases"][kind]["phase"] == phase)

        await self.sim.poll(reached, f"the cycle's {kind} plans in their {phase} phase")

    async def caseworker(self, district: _District) -> Headers:
        return await self.sim.official("caseworker", f"{DISTRICT_DEPT}{district.name}")

    async def each(
        self, phase: str, districts: list[_District], work: Callable[[_District], Awaitable[None]]
    ) -> None:
        await self.sim.each_in_phase(f"plans: {phase}", districts, work)

    # ---- neighbourhood plans ---------------------------------------------------------------

    def _draw_neighbourhood_counts(self) -> None:
        """Each district's planning-type and autonomous neighbourhoods, all of them within the
        city's ceiling at the rate per neighbourhood."""
        most = self.city.ceiling_krw // self.counting.krw_per_neighbourhood
        for district in self.districts:
            district.planning = self.rng.randint(2, 6)
            district.autonomous = self.rng.randint(1, self.counting.autonomous_max_per_district)
        while sum(d.planning + d.autonomous for d in self.districts) > most:
            max(self.districts, key=lambda d: (d.planning, d.name)).planning -= 1

    async def ceilings(self) -> None:
        """January: the city announces each district's ceiling from its counts."""
        cycle = await self.sim.get(self.base)
        if (cycle["rulebook"], cycle["rulebook_hash"]) != (RULEBOOK, self.rulebook_hash):
            raise SimulationError(
                f"the {self.sim.year} cycle runs on {cycle['rulebook']} "
                f"({cycle['rulebook_hash']}), not {RULEBOOK} ({self.rulebook_hash})"
            )
        await self.in_phase(NEIGHBOURHOOD, "ceilings")
        body = {
            "districts": [
                {
                    "district": d.name,
                    "planning_neighbourhoods": d.planning,
                    "autonomous_neighbourhoods": d.autonomous,
                }
                for d in self.districts
            ]
        }
        async with self.sim.phase("plans: ceilings", total=1) as bar:
            announced = await self.sim.call(
                "PUT", f"{self.base}/neighbourhood-ceilings", await self.sim.official("admin"), body
            )
            bar.advance()
        by_name = {row["district"]: int(row["ceiling_krw"]) for row in announced["districts"]}
        for district in self.districts:
            district.neighbourhood_ceiling_krw = by_name[district.name]
        self.sim.summary.add(
            "amounts",
            what="neighbourhood ceilings, announced",
            amount_krw=int(announced["total_krw"]),
            ceiling_krw=int(announced["city_ceiling_krw"]),
            within=int(announced["total_krw"]) <= int(announced["city_ceiling_krw"]),
        )
        self._draw_agendas()

    def _draw_agendas(self) -> None:
        """A few neighbourhoods per district, each with 2-4 agendas its residents' assembly
        ranked; together they ask for more than the ceiling, so the review must choose."""
        for district in self.districts:
            district.agenda_wave = self.rng.randrange(len(AGENDA_WAVE_DAYS))
            count = min(district.planning + district.autonomous, self.rng.randint(2, 4))
            ceiling = district.neighbourhood_ceiling_krw
            stem = district.name.removesuffix("-gu")
            for number in sorted(self.rng.sample(range(1, 10), count)):
                neighbourhood = f"{stem} {number}-dong"
                asked = min(ceiling, int(ceiling / count * self.rng.uniform(0.8, 1.6)))
                topics = self.rng.sample(AGENDA_TOPICS, self.rng.randint(2, 4))
                weights = [self.rng.uniform(1, 3) for _ in topics]
                agendas = [
                    _Agenda(
                        title=f"{neighbourhood}: {topic}",
                        rank=rank,
                        cost_krw=max(
                            AGENDA_UNIT,
                            _round_down(asked * weight / sum(weights), AGENDA_UNIT),
                        ),
                        scores={
                            name: self.rng.randint(40, INDICATOR_MAX - 2) for name in INDICATORS
                        },
                    )
                    for rank, (topic, weight) in enumerate(zip(topics, weights, strict=True), 1)
                ]
                voters = self.rng.randint(40, 400)
                minutes = (
                    f"{neighbourhood} residents' assembly (주민총회): {voters} residents ranked "
                    f"{len(agendas)} agendas by vote; the first is "
                    f"{agendas[0].title.split(': ', 1)[1]}"
                )
                district.agenda_sets.append(_AgendaSet(neighbourhood, agendas, minutes))

    async def agendas(self, wave: int) -> None:
        """May or June: the districts of `wave` submit their neighbourhoods' agendas after
        the residents' assemblies."""
        await self.in_phase(NEIGHBOURHOOD, "agendas")

        async def submit(district: _District) -> None:
            who = await self.caseworker(district)
            for agenda_set in district.agenda_sets:
                body = {
                    "neighbourhood": agenda_set.neighbourhood,
                    "agendas": [
                        {"title": a.title, "rank": a.rank, "cost_krw": a.cost_krw}
                        for a in agenda_set.agendas
                    ],
                    "assembly_minutes": agenda_set.minutes,
                }
                answer = await self.sim.call(
                    "POST", f"{self.base}/neighbourhood-agendas", who, body
                )
                agenda_set.id = str(answer["id"])

        await self.each("agendas", [d for d in self.districts if d.agenda_wave == wave], submit)

    async def review(self) -> None:
        """July: the city scores every agenda and selects, best first, within each district's
        ceiling over all its neighbourhoods."""
        await self.in_phase(NEIGHBOURHOOD, "review")
        admin = await self.sim.official("admin")

        async def review_district(district: _District) -> None:
            chosen = _select(district)
            for agenda_set in district.agenda_sets:
                body = {
                    "agendas": [
                        {"rank": a.rank, "scores": a.scores, "selected": id(a) in chosen}
                        for a in agenda_set.agendas
                    ],
                    "note": "scored on the city's quantitative indicators (정량평가)",
                }
                await self.sim.call(
                    "POST", f"/v1/neighbourhood-agendas/{agenda_set.id}/review", admin, body
                )

        await self.each("review", self.districts, review_district)
        listed = (await self.sim.get(f"{self.base}/neighbourhood-agendas"))["items"]
        total = 0
        for district in self.districts:
            sets = [s for s in listed if s["district"] == district.name]
            selected_krw = sum(int(s["selected_krw"]) for s in sets)
            total += selected_krw
            self.sim.summary.add(
                "neighbourhood plans",
                district=district.name,
                neighbourhoods=len(sets),
                agendas=sum(len(s["agendas"]) for s in sets),
                selected=sum(1 for s in sets for a in s["agendas"] if a["selected"]),
                selected_krw=selected_krw,
                ceiling_krw=district.neighbourhood_ceiling_krw,
            )
        self.sim.summary.add(
            "amounts",
            what="neighbourhood plans, selected",
            amount_krw=total,
            ceiling_krw=self.city.ceiling_krw,
            within=total <= self.city.ceiling_krw,
        )

    # ---- district plans --------------------------------------------------------------------

    def ceiling_of(self, district: _District) -> int:
        extra = self.rules.strategic_ceiling_krw if district.strategic else 0
        return self.rules.ceiling_krw + extra

    async def applications(self) -> None:
        """February: every playing district applies for the plan type, some of them apart for
        strategic projects too."""
        await self.in_phase(DISTRICT, "applications")
        self.applicants = self.rng.sample(self.districts, self.rng.randint(*STRATEGIC_APPLICANTS))

        async def apply(district: _District) -> None:
            body = {
                "district": district.name,
                "strategic": district in self.applicants,
                "note": f"{district.name} takes part in the district plans",
            }
            who = await self.sim.official("caseworker", f"district:{district.name}")
            await self.sim.call("POST", f"{self.base}/district-applications", who, body)

        await self.sim.each_in_phase("plans: applications", self.districts, apply)

    async def strategic(self) -> None:
        """Early March: among February's applicants, the city chooses 5-6 strategic districts."""
        await self.in_phase(DISTRICT, "selection")
        applicants = self.applicants
        count = self.rng.randint(self.rules.strategic_count_min, self.rules.strategic_count_max)
        chosen = sorted(self.rng.sample(applicants, count), key=self.districts.index)
        body = {
            "districts": [d.name for d in chosen],
            "note": (
                f"{len(applicants)} districts applied for strategic projects in February; the "
                f"selection board chose {count}"
            ),
        }
        async with self.sim.phase("plans: strategic selection", total=1) as bar:
            await self.sim.call(
                "POST", f"{self.base}/strategic-districts", await self.sim.official("admin"), body
            )
            bar.advance()
        for district in chosen:
            district.strategic = True

    def plan_body(self, district: _District, cost_krw: int) -> dict[str, Any]:
        themes = self.rng.sample(PLAN_THEMES, 2)
        body: dict[str, Any] = {
            "district": district.name,
            "strategic": district.strategic,
            "plan": f"{district.name}, first year: {themes[0]} and {themes[1]}",
            "cost_krw": cost_krw,
        }
        if district.strategic:
            body["strategy"] = (
                f"{district.name}, 3-year strategy (지역사회혁신계획): {themes[0]}, scaled up "
                "district-wide by the third year"
            )
        return body

    def asked_cost(self, district: _District) -> int:
        """What a district asks for: often its whole ceiling, else a little under it."""
        ceiling = self.ceiling_of(district)
        if self.rng.random() < 0.3:
            return ceiling
        return _round_down(ceiling * self.rng.uniform(0.82, 1.0), PLAN_UNIT)

    async def submission(self) -> None:
        """Early July: every district submits its plan; one asks for more than its ceiling, is
        refused and submits a corrected plan a few days later."""
        await self.in_phase(DISTRICT, "submission")
        over = self.rng.choice(self.districts)
        bodies = {d.name: self.plan_body(d, self.asked_cost(d)) for d in self.districts}
        excess = self.rng.choice((50, 120, 200)) * M
        bodies[over.name]["cost_krw"] = self.ceiling_of(over) + excess

        async def submit(district: _District) -> None:
            refused = district is over
            answer = await self.sim.call(
                "POST",
                f"{self.base}/district-plans",
                await self.caseworker(district),
                bodies[district.name],
                expect=(422,) if refused else (201,),
            )
            if refused:
                if answer.get("field") != "cost_krw":
                    raise SimulationError(f"{district.name}'s plan refused otherwise: {answer}")
                return
            district.plan_id, district.cost_krw = str(answer["id"]), int(answer["cost_krw"])

        await self.each("submission", self.districts, submit)
        corrected = {**bodies[over.name], "cost_krw": self.ceiling_of(over)}

        async def resubmit() -> None:
            async with self.sim.phase("plans: submission", total=1) as bar:
                answer = await self.sim.call(
                    "POST", f"{self.base}/district-plans", await self.caseworker(over), corrected
                )
                bar.advance()
            over.plan_id, over.cost_krw = str(answer["id"]), int(answer["cost_krw"])

        self.sim.at(
            self.moment(DISTRICT, "submission", days=6), "plans: corrected submission", resubmit
        )

    async def negotiate(self, rounds: dict[str, tuple[str, int | None]]) -> None:
        """One round for every plan: its notes and, where the round adjusts it, the new cost."""
        await self.in_phase(DISTRICT, "negotiation")
        admin = await self.sim.official("admin")

        async def one(district: _District) -> None:
            notes, adjusted = rounds[district.name]
            body: dict[str, Any] = {"notes": notes}
            if adjusted is not None:
                body["adjusted_cost_krw"] = adjusted
            answer = await self.sim.call(
                "POST", f"/v1/district-plans/{district.plan_id}/negotiations", admin, body
            )
            district.cost_krw = int(answer["cost_krw"])

        await self.each("negotiation", self.districts, one)

    async def round_one(self) -> None:
        """Late July: the first round cuts about a third of the plans by 5-20 %."""
        rounds: dict[str, tuple[str, int | None]] = {}
        for district in self.districts:
            if self.rng.random() < CUT_IN_ROUND_ONE:
                cut = _round_down(district.cost_krw * self.rng.uniform(0.8, 0.95), PLAN_UNIT)
                rounds[district.name] = ("round 1: overlapping events and fees cut", cut)
            else:
                rounds[district.name] = ("round 1: the city's questions answered", None)
        await self.negotiate(rounds)

    async def round_two(self) -> None:
        """Mid-August: the second round trims a few plans further and restores part of some
        cuts; the rest stand as negotiated."""
        rounds: dict[str, tuple[str, int | None]] = {}
        for district in self.districts:
            rounds[district.name] = ("round 2: agreed as negotiated", None)
            if self.rng.random() >= ADJUSTED_IN_ROUND_TWO:
                continue
            ceiling = self.ceiling_of(district)
            if district.cost_krw < ceiling and self.rng.random() < 0.5:
                restored = _round_down((district.cost_krw + ceiling) / 2, PLAN_UNIT)
                rounds[district.name] = ("round 2: part of the cut restored", restored)
            else:
                trimmed = _round_down(district.cost_krw * self.rng.uniform(0.9, 0.97), PLAN_UNIT)
                rounds[district.name] = ("round 2: the pilot scaled down", trimmed)
        await self.negotiate(rounds)

    async def decision(self) -> None:
        """End of August: the city funds the final plans, all but a rare one."""
        await self.in_phase(DISTRICT, "decision")
        admin = await self.sim.official("admin")
        funded = {d.name: self.rng.random() >= NOT_FUNDED for d in self.districts}

        async def decide(district: _District) -> None:
            body = {
                "funded": funded[district.name],
                "note": "the final plan is funded"
                if funded[district.name]
                else "not funded this year: the plan's outcomes are not measurable",
            }
            await self.sim.call(
                "POST", f"/v1/district-plans/{district.plan_id}/decision", admin, body
            )

        await self.each("decision", self.districts, decide)

    async def agreement(self) -> None:
        """December, after the city council: each funded plan's agreement. The budget part
        records the council's decision; played alone, this part records it (no projects)."""
        await self.in_phase(DISTRICT, "council")
        admin = await self.sim.official("admin")
        council = (await self.sim.get(self.base))["decisions"].get("council")
        if council is None:
            body = {
                "adopted_project_ids": [],
                "resolution_ref": f"Seoul Metropolitan Council budget resolution {self.sim.year}",
            }
            await self.sim.call("POST", f"{self.base}/council", admin, body)

            async def recorded() -> bool:
                cycle = await self.sim.get(self.base)
                return cycle["decisions"].get("council") is not None

            await self.sim.poll(recorded, "the city council's decision in the cycle")
            council = (await self.sim.get(self.base))["decisions"]["council"]
        reference = str(council["reference"])[:200]
        plans = (await self.sim.get(f"{self.base}/district-plans"))["items"]
        funded = {p["district"] for p in plans if p["status"] == "funded"}

        async def agree(district: _District) -> None:
            body = {"council_reference": reference, "note": "agreement signed"}
            await self.sim.call(
                "POST", f"/v1/district-plans/{district.plan_id}/agreement", admin, body
            )

        await self.each("agreement", [d for d in self.districts if d.name in funded], agree)
        await self.summarise_district_plans(len(funded))

    async def summarise_district_plans(self, agreed: int) -> None:
        """The rows, read back from the API once every funded plan shows its agreement."""

        async def listed() -> list[dict[str, Any]]:
            return list((await self.sim.get(f"{self.base}/district-plans"))["items"])

        async def all_agreed() -> bool:
            return sum(1 for p in await listed() if p["status"] == "agreed") == agreed

        await self.sim.poll(all_agreed, "every funded district plan agreed")
        funded_krw = 0
        for plan in sorted(await listed(), key=lambda p: DISTRICTS.index(p["district"])):
            funded = bool((plan["decision"] or {}).get("funded"))
            funded_krw += int(plan["cost_krw"]) if funded else 0
            self.sim.summary.add(
                "district plans",
                district=plan["district"],
                strategic=bool(plan["strategic"]),
                cost_krw=int(plan["cost_krw"]),
                ceiling_krw=int(plan["ceiling_krw"]),
                decision="funded" if funded else "not funded",
                agreed=plan["status"] == "agreed",
            )
        strategic = sum(1 for d in self.districts if d.strategic)
        ceiling = (
            self.rules.district_count * self.rules.ceiling_krw
            + strategic * self.rules.strategic_ceiling_krw
        )
        self.sim.summary.add(
            "amounts",
            what="district plans, funded",
            amount_krw=funded_krw,
            ceiling_krw=ceiling,
            within=funded_krw <= ceiling,
        )


def _rules_of(
    book: Rulebook,
) -> tuple[DistrictRules, NeighbourhoodRules, NeighbourhoodCeilingRules]:
    if book.district is None or book.neighbourhood is None or book.neighbourhood_ceiling is None:
        raise SimulationError(f"{RULEBOOK} has no [district], [neighbourhood] and ceilings")
    return book.district, book.neighbourhood, book.neighbourhood_ceiling


def _round_down(amount: float, unit: int) -> int:
    return int(amount // unit) * unit


def _select(district: _District) -> set[int]:
    """The agendas the city selects (by `id()`): best merit first, each scoring at least
    `SELECTION_SCORE` on average, while the district's ceiling holds."""
    left = district.neighbourhood_ceiling_krw
    chosen: set[int] = set()
    candidates = [a for s in district.agenda_sets for a in s.agendas]
    for agenda in sorted(candidates, key=lambda a: (-a.merit, a.title)):
        mean = sum(agenda.scores.values()) / len(agenda.scores)
        if mean >= SELECTION_SCORE and agenda.cost_krw <= left:
            chosen.add(id(agenda))
            left -= agenda.cost_krw
    return chosen


def plan(sim: Sim) -> None:
    """Register this part's steps on the simulation's calendar."""
    _Plans(sim).register()
