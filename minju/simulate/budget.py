"""Part of `minju simulate`: the budget year's three proposal types (process.md §5-7, §6a).

December of Y-1: the sortition pools and the draws (a graduates' pool per field for the
councils' random half, a citizens' pool for the Budget Square). January: the fields and their
allocations, the councils (5 active : 5 drawn) and the Square; the metropolitan and governance
calls. February: the departments' programmes and the councils' new items. March: the
shortlists (130 % of each allocation) and the eligibility screening. April-July: the council
review, the Square's opinions, deliberation (continue / resize / end), objections answered with
adjusted costs. 20 July: the deliberative vote; 1 August: the metropolitan and governance vote,
online and through the channels' batches (mVoting, on-site, paper); then the results, the
general assembly and, in December, the city council. What each vote selected is left in
`sim.shared["selected_projects"]` for the execution in Y+1.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from minju.simulate.core import Citizen, Sim, SimulationError
from models.sortition import DISTRICTS

BILLION = 1_000_000_000
MILLION = 1_000_000
FIELDS = ("welfare", "transport", "culture", "environment", "housing", "safety")
#: Shares of the projects and of the ballots per type.
PROJECT_SHARES = {"deliberative": 0.4, "metro": 0.4, "governance": 0.2}
BALLOT_SHARES = {"deliberative": 0.35, "metro": 0.45, "governance": 0.20}
#: How the ballots that do not come online are split between the channels.
CHANNEL_SHARES = (("mvoting", 0.70), ("onsite", 0.20), ("paper", 0.10))
#: Lines per channel batch (one request, one transaction).
BATCH_LINES = 50_000
#: Of the lines of the channels' batches, the share from people who voted online already (a
#: channel does not know it: the intake refuses them, reporting each by line).
DUPLICATE_SHARE = 0.002
#: The rulebook's figures this part plans with (seoul-2021-2).
METRO_TOTAL_KRW = 30 * BILLION
METRO_CAP_KRW = 4 * BILLION
EVENT_CAP_KRW = 300 * MILLION
GOVERNANCE_CEILING_KRW = 10 * BILLION
SHORTLIST_RATIO = 1.30
LEVEL_TOLERANCE = 0.05
COUNCIL_ACTIVE = 5
COUNCIL_DRAWN = 5
SQUARE_SIZE = 1_000
#: The Square's pool: at most this many citizens (a pool holds at most 100,000).
SQUARE_POOL_MAX = 20_000
SCORE_NAMES = ("necessity", "feasibility", "impact", "inclusiveness")

_TOPICS = {
    "welfare": ("care visits for people living alone", "barrier-free community centres"),
    "transport": ("night buses for shift workers", "safer school routes"),
    "culture": ("neighbourhood libraries open late", "street festivals for every season"),
    "environment": ("shade trees along main roads", "rain gardens against floods"),
    "housing": ("repairs for old rented homes", "shared housing for young people"),
    "safety": ("lighting in dark alleys", "flood alarms for semi-basement homes"),
}
_PLACES = ("the Han riverside", "old town lanes", "new estates", "market streets", "hillsides")


@dataclass
class Project:
    kind: str
    field: str
    title: str
    cost_krw: int
    districts: list[str]
    event: bool = False
    #: The department entering an existing programme (deliberative) or proposing jointly
    #: (governance); None for a citizen's metropolitan proposal or a council's new item.
    department: str | None = None
    proposer: Citizen | None = None
    id: str = ""
    #: What happens to it: "shortlist" / "left_out" (deliberative); "ineligible",
    #: "over_cap", "not_advanced", "candidate" (metro, governance).
    fate: str = ""
    status: str = ""


@dataclass
class Plan:
    """Everything the part decided up front from its random stream."""

    projects: list[Project] = field(default_factory=list)
    allocations: dict[str, int] = field(default_factory=dict)
    councils: dict[str, list[Citizen]] = field(default_factory=dict)
    graduates: dict[str, list[Citizen]] = field(default_factory=dict)
    draws: dict[str, str] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    ballot_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: Counter[tuple[str, str]] = field(default_factory=Counter)


def plan(sim: Sim) -> None:
    """Register this part's steps on the simulation's calendar."""
    rng = sim.rng("budget")
    decided = _decide(sim, rng)
    year = sim.year
    base = f"/v1/budget-cycles/{year}"
    state = _State(sim, decided, base)
    sim.at(sim.seoul(12, 20, year_offset=-1), "budget: sortition", state.sortition)
    sim.at(sim.seoul(1, 2), "budget: fields and bodies", state.fields_and_bodies)
    sim.at(sim.seoul(1, 10), "budget: metropolitan and governance calls", state.calls)
    sim.at(sim.seoul(2, 5), "budget: deliberative entries", state.deliberative_entries)
    sim.at(sim.seoul(3, 2), "budget: shortlists and screening", state.shortlists_and_screening)
    sim.at(sim.seoul(3, 20), "budget: the Square's opinions", state.square_opinions)
    sim.at(sim.seoul(4, 16), "budget: council review", state.council_review)
    sim.at(sim.seoul(5, 10), "budget: deliberation", state.deliberation)
    sim.at(sim.seoul(7, 2), "budget: objections", state.objections)
    sim.at(sim.seoul(7, 20, hours=1), "budget: deliberative vote", state.deliberative_vote)
    sim.at(sim.seoul(8, 1, hours=1), "budget: metropolitan vote", state.metro_vote)
    sim.at(sim.seoul(8, 21, hours=1), "budget: results and assembly", state.results)
    sim.at(sim.seoul(12, 2), "budget: city council", state.city_council)


# ---- what is decided up front --------------------------------------------------------------


def _decide(sim: Sim, rng: random.Random) -> Plan:
    decided = Plan()
    total = sim.sizes.projects
    counts = {
        kind: max(len(FIELDS) * 4 if kind == "deliberative" else 2, round(total * share))
        for kind, share in PROJECT_SHARES.items()
    }
    citizens = sim.citizens
    graduates = [c for c in citizens if c.budget_school]
    others = [c for c in citizens if not c.budget_school]
    if len(graduates) < len(FIELDS) * COUNCIL_DRAWN * 2:
        raise SimulationError(
            f"{len(graduates)} budget-school graduates among {len(citizens)} citizens: too few "
            f"for {len(FIELDS)} councils; raise --citizens"
        )
    rng.shuffle(graduates)
    share = len(graduates) // len(FIELDS)
    for number, name in enumerate(FIELDS):
        decided.graduates[name] = graduates[number * share : (number + 1) * share]
        decided.councils[name] = others[number * COUNCIL_ACTIVE : (number + 1) * COUNCIL_ACTIVE]
    proposers = others[len(FIELDS) * COUNCIL_ACTIVE :]

    for number in range(counts["deliberative"]):
        name = FIELDS[number % len(FIELDS)]
        council_item = number % 5 == 4
        decided.projects.append(
            Project(
                kind="deliberative",
                field=name,
                title=_title(rng, name, number),
                cost_krw=rng.randrange(200, 3_000) * MILLION,
                districts=[],
                department=None if council_item else f"{name}-policy",
                proposer=decided.councils[name][0] if council_item else None,
            )
        )
    for name in FIELDS:
        items = [p for p in decided.projects if p.kind == "deliberative" and p.field == name]
        left_out = items[-1]
        for item in items:
            item.fate = "left_out" if item is left_out else "shortlist"
        listed = sum(p.cost_krw for p in items if p.fate == "shortlist")
        decided.allocations[name] = round(listed / SHORTLIST_RATIO)

    metro_costs = _spread(rng, counts["metro"], METRO_TOTAL_KRW, METRO_CAP_KRW - MILLION)
    for number, cost in enumerate(metro_costs):
        name = FIELDS[number % len(FIELDS)]
        event = number % 7 == 3
        project = Project(
            kind="metro",
            field=name,
            title=_title(rng, name, 1_000 + number),
            cost_krw=min(cost, EVENT_CAP_KRW - MILLION) if event else cost,
            districts=rng.sample(DISTRICTS, rng.randint(2, 6)),
            event=event,
            proposer=proposers[number % len(proposers)],
            fate="candidate",
        )
        decided.projects.append(project)
    metro = [p for p in decided.projects if p.kind == "metro"]
    metro[0].fate, metro[0].cost_krw = "over_cap", METRO_CAP_KRW  # exactly the cap: over it
    metro[1].fate = "ineligible"
    if len(metro) > 3:
        metro[2].fate = "not_advanced"

    governance_budget = GOVERNANCE_CEILING_KRW * 9 // 10
    governance_costs = _spread(rng, counts["governance"], governance_budget, 3 * BILLION)
    for number, cost in enumerate(governance_costs):
        name = FIELDS[(number + 2) % len(FIELDS)]
        decided.projects.append(
            Project(
                kind="governance",
                field=name,
                title=_title(rng, name, 2_000 + number),
                cost_krw=cost,
                districts=rng.sample(DISTRICTS, rng.randint(2, 5)),
                department=f"{name}-policy",
                proposer=proposers[(len(metro) + number) % len(proposers)],
                fate="candidate",
            )
        )
    governance = [p for p in decided.projects if p.kind == "governance"]
    governance[-1].fate = "not_advanced"
    return decided


def _spread(rng: random.Random, count: int, total: int, cap: int) -> list[int]:
    """`count` costs adding up to about `total`, each below `cap`, in whole millions."""
    weights = [rng.lognormvariate(0, 0.6) for _ in range(count)]
    scale = total / sum(weights)
    return [max(50 * MILLION, min(cap, round(w * scale / MILLION) * MILLION)) for w in weights]


def _title(rng: random.Random, field_name: str, number: int) -> str:
    topic = rng.choice(_TOPICS[field_name])
    return f"{topic.capitalize()} in {rng.choice(_PLACES)} (#{number})"


# ---- the steps ------------------------------------------------------------------------------


class _State:
    def __init__(self, sim: Sim, decided: Plan, base: str) -> None:
        self.sim, self.decided, self.base = sim, decided, base
        self.rng = sim.rng("budget: steps")
        self.by_person = {c.person_id: c for c in sim.citizens}

    def _of(self, kind: str, *fates: str) -> list[Project]:
        return [
            p for p in self.decided.projects if p.kind == kind and (not fates or p.fate in fates)
        ]

    async def sortition(self) -> None:
        sim, decided = self.sim, self.decided
        admin = await sim.official("admin")
        async with sim.phase("budget: sortition (pools and draws)", total=len(FIELDS) + 1) as bar:
            for name in FIELDS:
                pool = f"{sim.run_tag}-{sim.year}-graduates-{name}"
                await _pool(sim, admin, pool, decided.graduates[name])
                decided.draws[name] = await _draw(
                    sim, admin, pool, "citizen_council", COUNCIL_DRAWN, ["sex"], f"council {name}"
                )
                bar.advance()
            citizens = sim.citizens[: min(len(sim.citizens), SQUARE_POOL_MAX)]
            pool = f"{sim.run_tag}-{sim.year}-citizens"
            await _pool(sim, admin, pool, citizens)
            decided.draws["square"] = await _draw(
                sim, admin, pool, "budget_square", SQUARE_SIZE, ["sex", "age_band"], "square"
            )
            bar.advance()
        for body, draw_id in decided.draws.items():
            roster = await sim.call(
                "GET", f"/v1/sortitions/{draw_id}/members", admin, expect=(200,)
            )
            decided.members[body] = sorted(m["person_id"] for m in roster["members"])
        sim.summary.add(
            "bodies", body="Budget Square", drawn=len(decided.members["square"]), active=0
        )

    async def fields_and_bodies(self) -> None:
        sim, decided = self.sim, self.decided
        admin = await sim.official("admin")
        await _wait_phase(sim, "deliberative", "allocation")
        fields = [{"field": n, "allocation_krw": a} for n, a in decided.allocations.items()]
        await sim.call("PUT", f"{self.base}/fields", admin, {"fields": fields})
        async with sim.phase("budget: councils and the Square", total=len(FIELDS) + 1) as bar:
            for name in FIELDS:
                body = {
                    "field": name,
                    "active_member_ids": [c.person_id for c in decided.councils[name]],
                    "draw_id": decided.draws[name],
                }
                formed = await sim.call("POST", f"{self.base}/councils", admin, body)
                sim.summary.add(
                    "bodies", body=f"{name} council", drawn=formed["drawn"], active=formed["active"]
                )
                bar.advance()
            await sim.call(
                "POST", f"{self.base}/square", admin, {"draw_id": decided.draws["square"]}
            )
            bar.advance()

    async def calls(self) -> None:
        await _wait_phase(self.sim, "metro", "call")
        await _wait_phase(self.sim, "governance", "call")
        projects = self._of("metro") + self._of("governance")
        await self.sim.each_in_phase(
            "budget: metro and governance proposals", projects, self._enter
        )

    async def deliberative_entries(self) -> None:
        await _wait_phase(self.sim, "deliberative", "forming")
        projects = self._of("deliberative")
        await self.sim.each_in_phase("budget: deliberative entries", projects, self._enter)

    async def _enter(self, project: Project) -> None:
        sim = self.sim
        if project.proposer is not None:
            who = await sim.citizen(project.proposer)
        else:
            who = await sim.official("caseworker", project.department)
        body: dict[str, Any] = {
            "title": project.title,
            "body": f"{project.title}: what the proposers want built, where and for whom.",
            "field": project.field,
            "kind": project.kind,
            "cost_krw": project.cost_krw,
            "event": project.event,
            "districts": project.districts,
        }
        if project.kind == "governance":
            body["department"] = project.department
        entered = await sim.call("POST", f"{self.base}/projects", who, body)
        project.id = str(entered["id"])
        await _projected(sim, project.id)

    async def shortlists_and_screening(self) -> None:
        sim, decided = self.sim, self.decided
        await _wait_phase(sim, "deliberative", "shortlist")
        for name in FIELDS:
            member = await sim.citizen(decided.councils[name][1])
            listed = [p.id for p in self._of("deliberative", "shortlist") if p.field == name]
            await sim.call(
                "PUT", f"{self.base}/fields/{name}/shortlist", member, {"project_ids": listed}
            )
        await _wait_phase(sim, "metro", "screening")
        await _wait_phase(sim, "governance", "screening")
        admin = await sim.official("admin")
        projects = self._of("metro") + self._of("governance")

        async def screen(project: Project) -> None:
            path = f"/v1/projects/{project.id}/screening"
            if project.fate == "over_cap":
                refused = await sim.call(
                    "POST", path, admin, {"eligible": True, "reason": ""}, expect=(422,)
                )
                sim.summary.add(
                    "refusals", what="screening at the cap", detail=refused["detail"][:90]
                )
            eligible = project.fate not in ("ineligible", "over_cap")
            reason = "" if eligible else "not a city affair of two districts, or over the cap"
            await sim.call("POST", path, admin, {"eligible": eligible, "reason": reason})

        await sim.each_in_phase("budget: eligibility screening", projects, screen)

    async def square_opinions(self) -> None:
        sim = self.sim
        square = self.decided.members["square"]
        listed = self._of("deliberative", "shortlist")
        opinions = [
            (listed[i % len(listed)], square[i % len(square)]) for i in range(len(listed) * 3)
        ]

        async def give(pair: tuple[Project, str]) -> None:
            project, person = pair
            who = await sim.citizen(self.by_person[person])
            body = {"body": f"Square member's view on {project.title}: worth it for my block."}
            await sim.call("POST", f"/v1/projects/{project.id}/opinions", who, body)

        await sim.each_in_phase("budget: the Square's opinions", opinions, give)

    async def council_review(self) -> None:
        sim = self.sim
        await _wait_phase(sim, "metro", "council_review")
        await _wait_phase(sim, "governance", "council_review")
        committee = await sim.official("committee")
        projects = self._of("metro", "candidate", "not_advanced")
        projects += self._of("governance", "candidate", "not_advanced")

        async def review(project: Project) -> None:
            advance = project.fate == "candidate"
            scores = {name: self.rng.randint(40, 95) for name in SCORE_NAMES}
            body = {"advance": advance, "scores": scores, "note": "public-private council review"}
            await sim.call("POST", f"/v1/projects/{project.id}/review", committee, body)

        await sim.each_in_phase("budget: council review", projects, review)

    async def deliberation(self) -> None:
        sim, decided = self.sim, self.decided
        await _wait_phase(sim, "deliberative", "deliberation")
        listed = self._of("deliberative", "shortlist")
        actions = []
        for number, project in enumerate(listed):
            if number % 9 == 4:
                new_cost = project.cost_krw * 9 // 10 // MILLION * MILLION
                actions.append(
                    (
                        project,
                        {
                            "action": "resize",
                            "cost_krw": new_cost,
                            "note": "the council trimmed it",
                        },
                    )
                )
                project.cost_krw = new_cost
            elif number % 13 == 7:
                actions.append((project, {"action": "end", "note": "merged into another"}))
                project.fate = "ended"
            else:
                actions.append((project, {"action": "continue", "note": "keep it on the list"}))

        async def act(pair: tuple[Project, dict[str, Any]]) -> None:
            project, body = pair
            member = await sim.citizen(decided.councils[project.field][2])
            await sim.call("POST", f"/v1/projects/{project.id}/deliberation", member, body)

        await sim.each_in_phase("budget: deliberation", actions, act)

    async def objections(self) -> None:
        sim = self.sim
        await _wait_phase(sim, "metro", "objections")
        await _wait_phase(sim, "governance", "objections")
        admin = await sim.official("admin")
        candidates = self._of("metro", "candidate") + self._of("governance", "candidate")
        objected = candidates[:: max(1, len(candidates) // 5)]

        async def object_and_answer(project: Project) -> None:
            objector = await sim.citizen(sim.citizens[-1 - candidates.index(project)])
            path = f"/v1/projects/{project.id}/objections"
            made = await sim.call("POST", path, objector, {"body": "Too dear for what it does."})
            lowered = project.cost_krw * 8 // 10 // MILLION * MILLION
            body = {
                "answer": "the council agrees to a smaller first phase",
                "adjusted_cost_krw": lowered,
            }
            await sim.call("POST", f"{path}/{made['id']}/answer", admin, body)
            project.cost_krw = lowered

        await sim.each_in_phase("budget: objections", objected, object_and_answer)

    async def deliberative_vote(self) -> None:
        await _wait_phase(self.sim, "deliberative", "vote")
        await self._vote("deliberative", self._of("deliberative", "shortlist"))

    async def metro_vote(self) -> None:
        deliberative = await self._results("deliberative")
        self._record_results("deliberative", deliberative)
        await _wait_phase(self.sim, "metro", "vote")
        await _wait_phase(self.sim, "governance", "vote")
        await self._vote("metro", self._of("metro", "candidate"))
        await self._vote("governance", self._of("governance", "candidate"))

    async def _vote(self, kind: str, on_ballot: Sequence[Project]) -> None:
        """This kind's ballots: online from citizens, the rest through the channels."""
        sim = self.sim
        rng = sim.rng(f"budget: ballots {kind}")
        count = round(sim.sizes.ballots * BALLOT_SHARES[kind])
        online = round(count * sim.sizes.online_share)
        citizens = sim.citizens
        voters = _voters(rng, citizens, count, online)
        weights = [rng.paretovariate(1.5) for _ in on_ballot]
        ids = [p.id for p in on_ballot]

        def choices() -> list[str]:
            picked = set(rng.choices(ids, weights=weights, k=rng.randint(1, min(5, len(ids)))))
            return sorted(picked)

        online_ballots = [(citizens[i], choices()) for i in voters[:online]]
        path = f"{self.base}/ballots"

        async def cast(ballot: tuple[Citizen, list[str]]) -> None:
            person, project_ids = ballot
            who = await sim.citizen(person)
            await sim.call("POST", path, who, {"kind": kind, "project_ids": project_ids})
            self.decided.ballot_counts[(kind, "online")] += 1

        async with sim.phase(f"budget: {kind} ballots online", total=online) as bar:
            await sim.each(online_ballots, cast, bar)

        lines = []
        for index in voters[online:]:
            person_id, group = _person(sim, index)
            lines.append((person_id, group, choices()))
        if online_ballots:
            for number in range(round(len(lines) * DUPLICATE_SHARE)):
                person, project_ids = online_ballots[number % len(online_ballots)]
                lines.append((person.person_id, person.group, project_ids))
            rng.shuffle(lines)
        async with sim.phase(f"budget: {kind} ballots in batches", total=len(lines)) as bar:
            start = 0
            for channel, share in CHANNEL_SHARES:
                end = (
                    len(lines)
                    if channel == CHANNEL_SHARES[-1][0]
                    else start + round(len(lines) * share)
                )
                await self._send_batches(kind, channel, lines[start:end], bar)
                start = end

    async def _send_batches(
        self, kind: str, channel: str, lines: list[tuple[str, str, list[str]]], bar: Any
    ) -> None:
        sim = self.sim
        account = await sim.official("caseworker", f"channel:{channel}")
        for start in range(0, len(lines), BATCH_LINES):
            chunk = lines[start : start + BATCH_LINES]
            csv = "person_id,group,project_ids\n" + "".join(
                f"{person},{group},{';'.join(ids)}\n" for person, group, ids in chunk
            )
            key = hashlib.sha256(f"{sim.run_tag}:{kind}:{channel}:{start}".encode()).hexdigest()
            taken = await sim.call(
                "POST",
                f"{self.base}/ballot-batches",
                account,
                params={"channel": channel, "kind": kind},
                content=csv.encode(),
                headers={"Content-Type": "text/csv", "Idempotency-Key": key},
                expect=(201,),
            )
            self.decided.ballot_counts[(kind, channel)] += int(taken["accepted"])
            self.decided.batches[(kind, "refused")] += len(taken["refused"])
            bar.advance(len(chunk))

    async def _results(self, kind: str) -> dict[str, Any]:
        sim = self.sim
        answer: dict[str, Any] = {}

        async def published() -> bool:
            response = await sim.http.get(f"{self.base}/results", params={"kind": kind})
            if response.status_code == 200:
                answer.update(response.json())
            return response.status_code == 200

        await sim.poll(published, f"the {kind} results are published", within=300)
        return answer

    def _record_results(self, kind: str, results: dict[str, Any]) -> None:
        sim, decided = self.sim, self.decided
        by_id = {p.id: p for p in decided.projects}
        selected = sim.shared.setdefault("selected_projects", [])
        for field_name, outcome in sorted(results["fields"].items()):
            ranked = outcome["projects"]
            chosen = [p for p in ranked if p["status"] == "selected"]
            amount = sum(
                by_id[p["project_id"]].cost_krw for p in chosen if p["project_id"] in by_id
            )
            sim.summary.add(
                "selected",
                type=kind,
                field=field_name,
                on_ballot=len(ranked),
                selected=len(chosen),
                selected_krw=amount,
                approvals=sum(p["total_approvals"] for p in ranked),
            )
            for entry in chosen:
                project = by_id[entry["project_id"]]
                project.status = "selected"
                selected.append(
                    {
                        "id": project.id,
                        "kind": kind,
                        "field": field_name,
                        "title": project.title,
                        "cost_krw": project.cost_krw,
                        "department": project.department,
                    }
                )
        for group, cast in sorted(results["ballots"].items()):
            sim.summary.add("turnout", type=kind, group=group, ballots=cast)
        total = sum(p["cost_krw"] for p in selected if p["kind"] == kind)
        if kind == "deliberative":
            allocation = sum(decided.allocations.values())
            sim.summary.add(
                "amounts",
                what="deliberative selected vs allocations (level +/- 5 %)",
                amount_krw=total,
                ceiling_krw=round(allocation * (1 + LEVEL_TOLERANCE)),
                within=total <= allocation * (1 + LEVEL_TOLERANCE),
            )
        else:
            ceiling = METRO_TOTAL_KRW if kind == "metro" else GOVERNANCE_CEILING_KRW
            rule = "metro.total_krw" if kind == "metro" else "governance.ceiling_krw"
            sim.summary.add(
                "amounts",
                what=f"{kind} selected vs {rule}",
                amount_krw=total,
                ceiling_krw=ceiling,
                within=total <= ceiling,
            )
        sim.summary.add(
            "vote checks",
            type=kind,
            recount_matches_tally=results["matches_recorded_tally"],
            selection_matches=results["matches_recorded_selection"],
        )

    async def results(self) -> None:
        sim = self.sim
        for kind in ("metro", "governance"):
            self._record_results(kind, await self._results(kind))
        for (kind, path), count in sorted(self.decided.ballot_counts.items()):
            sim.summary.add("ballot paths", type=kind, path=path, accepted=count)
        for (kind, _), refused in sorted(self.decided.batches.items()):
            sim.summary.add("ballot paths", type=kind, path="refused duplicates", accepted=-refused)
        await _wait_phase(sim, "metro", "assembly")
        admin = await sim.official("admin")
        approved = [p["id"] for p in sim.shared["selected_projects"]]
        body = {
            "approved_project_ids": approved,
            "minutes": "The general assembly approved the vote's selection.",
        }
        await sim.call("POST", f"{self.base}/assembly", admin, body)

    async def city_council(self) -> None:
        sim = self.sim
        await _wait_phase(sim, "metro", "council")
        admin = await sim.official("admin")
        adopted = [p["id"] for p in sim.shared.get("selected_projects", [])]
        body = {
            "adopted_project_ids": adopted,
            "resolution_ref": f"Seoul council budget resolution {sim.year}",
        }
        await sim.call("POST", f"{self.base}/council", admin, body)


# ---- helpers -------------------------------------------------------------------------------


def _person(sim: Sim, index: int) -> tuple[str, str]:
    """Voter `index`: a generated citizen, or past them a channel-only voter (someone with no
    online account, who votes through mVoting, on site or on paper)."""
    if index < len(sim.citizens):
        person = sim.citizens[index]
        return person.person_id, person.group
    return f"{sim.run_tag}-v{index:08d}", "general"


def _voters(rng: random.Random, citizens: Sequence[Citizen], count: int, online: int) -> list[int]:
    """`count` distinct voter indexes, the first `online` of them generated citizens."""
    online = min(online, len(citizens), count)
    online_voters = rng.sample(range(len(citizens)), online)
    taken = set(online_voters)
    drawn = rng.sample(range(max(len(citizens), count)), count)
    return online_voters + [i for i in drawn if i not in taken][: count - online]


async def _pool(sim: Sim, admin: dict[str, str], name: str, people: Sequence[Citizen]) -> None:
    members = [
        {
            "person_id": p.person_id,
            "sex": p.sex,
            "birth_year": p.birth_year,
            "district": p.district,
            "budget_school": p.budget_school,
        }
        for p in people
    ]
    await sim.call("POST", "/v1/sortition-pools", admin, {"name": name, "members": members})


async def _draw(
    sim: Sim,
    admin: dict[str, str],
    pool: str,
    purpose: str,
    size: int,
    strata: list[str],
    what: str,
) -> str:
    seed = sim.seed_text(f"{sim.year} {what}")
    body = {
        "purpose": purpose,
        "size": size,
        "strata": strata,
        "pool": pool,
        "seed_commitment": hashlib.sha256(seed.encode()).hexdigest(),
    }
    committed = await sim.call("POST", "/v1/sortitions", admin, body)
    await sim.call("POST", f"/v1/sortitions/{committed['id']}/reveal", admin, {"seed": seed})
    return str(committed["id"])


async def _wait_phase(sim: Sim, kind: str, phase: str) -> None:
    path = f"/v1/budget-cycles/{sim.year}"

    async def reached() -> bool:
        cycle = await sim.get(path)
        if cycle["phases"][kind]["phase"] != phase:
            return False
        if phase != "vote":
            return True
        timeline = await sim.get(f"{path}/timeline")
        return any(
            e["event"] == "vote_opened" and e["note"].startswith(f"{kind}:")
            for e in timeline["items"]
        )

    await sim.poll(reached, f"the {kind} type of {sim.year} is in its {phase} phase")


async def _projected(sim: Sim, project_id: str) -> None:
    async def shown() -> bool:
        timeline = await sim.get(f"/v1/projects/{project_id}/timeline")
        return bool(timeline["items"])

    await sim.poll(shown, f"project {project_id} is projected")
