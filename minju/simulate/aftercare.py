"""Part of `minju simulate`: aftercare, what happens around and after the selection.

- Whole-budget participation (process.md §9), each record in its `[participation]` window of
  the cycle's rulebook: citizens' material requests (April-June of Y; one more on 1 July shows
  the refusal) and the departments' explanations (August-October), citizens' opinions and the
  operations team's opinion statement (October), citizen monitors' waste reports against
  selected projects (Y+1), settlement opinions (July-August of Y+1) and the departments'
  answers (September of Y+1). The counts grow with the square root of the citizens.
- Execution (process.md §6-7): in December of Y the operations team names the executing
  department of each selected project that has none and forms each governance project's
  public-private council. From 1 January of Y+1 every selected project is `executing`: its
  department's caseworker reports every `ROUND_DAYS` (inside `monitoring.report_days`), a share
  of the projects misses one report and reports late, after the escalation and a reminder, the
  final report comes a month before the end of the last plan year, and the governance projects
  are evaluated at the December results meeting.

The selected projects are the budget part's (`sim.shared["selected_projects"]`, read when the
execution steps run); without them the execution steps do nothing and no waste report is filed.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import rulebooks
from minju.simulate.budget import FIELDS
from minju.simulate.core import Citizen, Sim, SimulationError, seoul_date

PART = "aftercare"
#: The departments citizens address and that answer: each field's, and the budget office.
DEPARTMENTS = (*(f"{name}-policy" for name in FIELDS), "budget-office")
TOPICS = (
    "the line items of next year's programmes",
    "the unit costs behind the draft budget",
    "the results of last year's spending",
    "the contracts above 100 million KRW",
    "the staffing costs of the new centres",
    "the carry-overs from this year",
)
OPINIONS = (
    "fund the accessible routes before the new facilities",
    "cut the events budget and keep the care services",
    "publish every project's cost per beneficiary",
    "raise the share of the budget the districts decide",
    "keep the maintenance money for existing parks",
)
WASTE = (
    "the paving was laid twice on the same path",
    "the signage was ordered again although it was installed in spring",
    "the contract was split to stay under the tender threshold",
    "the equipment bought stands unused in storage",
)
SETTLEMENT = (
    "the settlement shows money left unspent in the care programme",
    "the easy-to-read settlement should list every project's final cost",
    "the overspending on consulting should be explained",
    "reflect the unspent amounts in next year's allocation",
)
#: Material requests, drafting opinions, waste reports and settlement opinions per square
#: root of the citizens: a few dozen at 3,000 citizens, hundreds at 200,000.
PER_ROOT = {"requests": 0.6, "opinions": 0.5, "waste": 0.2, "settlement": 0.4}
#: The share of records addressed to a department, and of those answered by it.
ADDRESSED_SHARE = 0.6
ANSWERED_SHARE = 0.9
#: A progress report every this many days: inside `monitoring.report_days` (90) of seoul-2021-2.
ROUND_DAYS = 80
#: The final report this long before the end of the project's last plan year.
FINAL_BEFORE = timedelta(days=30)
#: The share of projects that miss one progress report and file it this many days late.
LATE_SHARE = 0.15
LATE_DAYS = (4, 20)
#: Reports and decisions are filed at this hour of their day (Seoul time).
OFFICE_HOUR = 10
#: A missed deadline's escalation names it: `<stage> answer from <party> was due <iso>; ...`.
_MISSED = re.compile(r"^(?P<stage>.+?) answer from .+ was due (?P<due>\S+);")
ReportKind = Literal["progress", "late", "final"]


@dataclass
class Execution:
    """A selected project in execution, as this part plays it."""

    project_id: str
    title: str
    kind: str
    department: str
    districts: list[str] = field(default_factory=list)
    #: A progress report is due this long after the last (`monitoring.report_days`).
    report_every: timedelta = timedelta(0)
    final_due: datetime | None = None


@dataclass(frozen=True)
class Report:
    execution: Execution
    kind: ReportKind
    progress_pct: int
    note: str


def plan(sim: Sim) -> None:
    """Register this part's steps on the simulation's calendar."""
    aftercare = Aftercare(sim)
    for month in (4, 5, 6):
        step = functools.partial(aftercare.material_requests, month)
        sim.at(sim.seoul(month, 10, hours=OFFICE_HOUR), "aftercare: material requests", step)
    sim.at(
        sim.seoul(7, 1, hours=OFFICE_HOUR),
        "aftercare: a material request after its window",
        aftercare.late_material_request,
    )
    sim.at(sim.seoul(9, 1, hours=OFFICE_HOUR), "aftercare: explanations", aftercare.explanations)
    sim.at(
        sim.seoul(10, 12, hours=OFFICE_HOUR),
        "aftercare: drafting opinions",
        aftercare.drafting_opinions,
    )
    sim.at(
        sim.seoul(10, 28, hours=OFFICE_HOUR),
        "aftercare: opinion statement",
        aftercare.opinion_statement,
    )
    sim.at(
        sim.seoul(12, 15, hours=OFFICE_HOUR),
        "aftercare: executing departments and councils",
        aftercare.prepare_execution,
    )
    sim.at(
        sim.seoul(1, 1, year_offset=1, hours=1),
        "aftercare: execution begins",
        aftercare.execution_begins,
    )
    for month in (3, 6, 9):
        sim.at(
            sim.seoul(month, 5, year_offset=1, hours=OFFICE_HOUR + 1),
            "aftercare: waste reports",
            aftercare.waste_reports,
        )
    sim.at(
        sim.seoul(7, 15, year_offset=1, hours=OFFICE_HOUR + 1),
        "aftercare: settlement opinions",
        aftercare.settlement_opinions,
    )
    sim.at(
        sim.seoul(9, 8, year_offset=1, hours=OFFICE_HOUR + 1),
        "aftercare: settlement answers",
        aftercare.settlement_answers,
    )
    sim.at(
        sim.seoul(10, 5, year_offset=1, hours=OFFICE_HOUR + 1),
        "aftercare: participation records",
        aftercare.participation_summary,
    )


def _scaled(sim: Sim, what: str) -> int:
    return max(3, round(PER_ROOT[what] * math.sqrt(sim.sizes.citizens)))


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal whole shares."""
    return [total // parts + (1 if part < total % parts else 0) for part in range(parts)]


class Aftercare:
    """The part's state between its steps: the records filed and the projects executed."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.rng = sim.rng(PART)
        self.requests: list[dict[str, Any]] = []
        self.opinions = 0
        self.settlement: list[dict[str, Any]] = []
        self.refused = 0
        self.executions: list[Execution] = []
        self._by_district: dict[str, list[Citizen]] = {}

    @property
    def path(self) -> str:
        return f"/v1/budget-cycles/{self.sim.year}/participation"

    # ---- participation: drafting, year Y ------------------------------------------------------

    def _someone(self) -> Citizen:
        return self.rng.choice(self.sim.citizens)

    def _addressed(self) -> str | None:
        return self.rng.choice(DEPARTMENTS) if self.rng.random() < ADDRESSED_SHARE else None

    async def _file(self, filing: tuple[Citizen, dict[str, Any]]) -> dict[str, Any]:
        person, body = filing
        answer: dict[str, Any] = await self.sim.call(
            "POST", self.path, await self.sim.citizen(person), body, expect=(201,)
        )
        return answer

    def _material_request(self) -> tuple[Citizen, dict[str, Any]]:
        department = self._addressed()
        topic = self.rng.choice(TOPICS)
        body: dict[str, Any] = {
            "stage": "drafting",
            "kind": "material_request",
            "body": f"Please provide {topic} ({department or 'all departments'}).",
        }
        if department is not None:
            body["department"] = department
        return self._someone(), body

    async def material_requests(self, month: int) -> None:
        """A third of the year's material requests, in April, May and June."""
        count = _split(_scaled(self.sim, "requests"), 3)[month - 4]
        filings = [self._material_request() for _ in range(count)]
        async with self.sim.phase("aftercare: material requests", total=count) as bar:
            self.requests += await self.sim.each(filings, self._file, bar)

    async def late_material_request(self) -> None:
        """One request on 1 July, after the window: refused, naming it."""
        person, body = self._material_request()
        refusal = await self.sim.call(
            "POST", self.path, await self.sim.citizen(person), body, expect=(409,)
        )
        if refusal.get("window") != "participation.material_requests":
            raise SimulationError(f"a late material request was refused otherwise: {refusal}")
        self.refused += 1

    def _answerers(self, record: dict[str, Any]) -> list[str]:
        """Who answers a record: the department it addresses (most of the time), or one or
        two departments for a record addressed to none."""
        if record["department"] is not None:
            return [record["department"]] if self.rng.random() < ANSWERED_SHARE else []
        return self.rng.sample(DEPARTMENTS, self.rng.choice((1, 1, 2)))

    async def _answer(self, answer: tuple[str, str, str]) -> None:
        record_id, department, body = answer
        who = await self.sim.official("caseworker", department)
        path = f"{self.path}/{record_id}/answers"
        await self.sim.call("POST", path, who, {"body": body}, expect=(201,))

    async def explanations(self) -> None:
        """The departments explain their draft budget, answering the material requests."""
        answers = [
            (record["id"], department, f"The {department} department's figures are attached.")
            for record in self.requests
            for department in self._answerers(record)
        ]
        await self.sim.each_in_phase("aftercare: explanations", answers, self._answer)

    async def drafting_opinions(self) -> None:
        count = _scaled(self.sim, "opinions")
        filings = []
        for _ in range(count):
            text = f"On the {self.rng.choice(FIELDS)} budget: {self.rng.choice(OPINIONS)}."
            body = {"stage": "drafting", "kind": "opinion", "body": text}
            filings.append((self._someone(), body))
        async with self.sim.phase("aftercare: drafting opinions", total=count) as bar:
            await self.sim.each(filings, self._file, bar)
        self.opinions += count

    async def opinion_statement(self) -> None:
        """The operations team records the citizens' opinion statement sent to the council."""
        body = {
            "stage": "drafting",
            "kind": "opinion_statement",
            "body": (
                f"The citizens' opinion statement on the {self.sim.year} budget: "
                f"{self.opinions} opinions gathered in October, {len(self.requests)} material "
                "requests answered by the departments."
            ),
        }
        async with self.sim.phase("aftercare: opinion statement", total=1) as bar:
            await self.sim.call("POST", self.path, await self.sim.official("admin"), body)
            bar.advance()

    # ---- execution ----------------------------------------------------------------------------

    async def prepare_execution(self) -> None:
        """The executing department of each selected project that has none; each governance
        project's public-private council for its execution."""
        selected: list[dict[str, Any]] = self.sim.shared.get("selected_projects") or []
        self.executions = [
            Execution(
                project_id=project["id"],
                title=project["title"],
                kind=project["kind"],
                department=project["department"] or f"{project['field']}-policy",
            )
            for project in selected
        ]
        if not self.executions:
            return
        unnamed = {project["id"] for project in selected if project["department"] is None}
        councils = {
            execution.project_id: (self.rng.randint(5, 12), self.rng.randint(3, 6))
            for execution in self.executions
            if execution.kind == "governance"
        }
        admin = await self.sim.official("admin")

        async def name(execution: Execution) -> None:
            path = f"/v1/projects/{execution.project_id}/executing-department"
            body = {"department": execution.department, "reason": "the field's department"}
            answer = await self.sim.call("POST", path, admin, body, expect=(200,))
            if answer["execution"]["department"] != execution.department:
                raise SimulationError(f"{execution.title}: not executed by {execution.department}")

        async def form(execution: Execution) -> None:
            citizens, officials = councils[execution.project_id]
            path = f"/v1/projects/{execution.project_id}/execution-council"
            body = {"citizen_members": citizens, "official_members": officials}
            await self.sim.call("POST", path, admin, body, expect=(200,))

        to_name = [e for e in self.executions if e.project_id in unnamed]
        await self.sim.each_in_phase("aftercare: executing departments", to_name, name)
        to_form = [e for e in self.executions if e.project_id in councils]
        await self.sim.each_in_phase("aftercare: execution councils", to_form, form)

    async def execution_begins(self) -> None:
        """Every selected project executing; each one's reports put on the calendar."""
        if not self.executions:
            return
        sim = self.sim
        report_every = await _report_every(sim)

        async def started(execution: Execution) -> None:
            path = f"/v1/projects/{execution.project_id}"
            project: dict[str, Any] = {}

            async def executing() -> bool:
                project.update(await sim.get(path))
                return bool(project["status"] == "executing")

            await sim.poll(executing, f"{execution.title} is executing")
            if project["execution"]["department"] != execution.department:
                raise SimulationError(f"{execution.title}: executed by {project['execution']}")
            execution.districts = list(project["districts"])
            execution.final_due = datetime.fromisoformat(project["execution"]["final_due_at"])
            execution.report_every = report_every

        await sim.each_in_phase("aftercare: execution begins", self.executions, started)
        self._schedule(sim.seoul(1, 1, year_offset=1))

    def _schedule(self, start: datetime) -> None:
        """Each project's reports, grouped by moment: a progress report every `ROUND_DAYS`,
        one of them missed and filed `LATE_DAYS` after its deadline by a share of the projects,
        the final report `FINAL_BEFORE` the end of the last plan year; then the results
        meetings and the read-back."""
        calendar: dict[datetime, list[Report]] = {}
        meetings: dict[int, list[Execution]] = {}
        for execution in self.executions:
            assert execution.final_due is not None
            final_at = execution.final_due - FINAL_BEFORE + timedelta(hours=OFFICE_HOUR)
            rounds = []
            moment = start + timedelta(days=ROUND_DAYS, hours=OFFICE_HOUR)
            while moment < final_at - timedelta(days=10):
                rounds.append(moment)
                moment += timedelta(days=ROUND_DAYS)
            missed = None
            if len(rounds) >= 2 and self.rng.random() < LATE_SHARE:
                missed = self.rng.randrange(len(rounds) - 1)
            for number, due in enumerate(rounds):
                pct = round(100 * (number + 1) / (len(rounds) + 1)) + self.rng.randint(-4, 4)
                note = f"round {number + 1}: works {pct}% done"
                if number == missed:
                    last = rounds[number - 1] if number else start
                    late = timedelta(days=self.rng.randint(*LATE_DAYS))
                    filed = last.replace(hour=OFFICE_HOUR) + execution.report_every + late
                    calendar.setdefault(filed, []).append(
                        Report(execution, "late", pct, f"{note}, filed late")
                    )
                else:
                    calendar.setdefault(due, []).append(Report(execution, "progress", pct, note))
            calendar.setdefault(final_at, []).append(Report(execution, "final", 100, "completed"))
            if execution.kind == "governance":
                meetings.setdefault(seoul_date(final_at).year, []).append(execution)
        for moment, reports in sorted(calendar.items(), key=lambda item: item[0]):
            self.sim.at(
                moment, "aftercare: execution reports", functools.partial(self.reports, reports)
            )
        for year, evaluated in sorted(meetings.items()):
            moment = self.sim.seoul(12, 15, year_offset=year - self.sim.year, hours=14)
            step = functools.partial(self.results_meeting, evaluated, moment)
            self.sim.at(moment, "aftercare: results meeting", step)
        last_year = max(seoul_date(e.final_due).year for e in self.executions if e.final_due)
        self.sim.at(
            self.sim.seoul(12, 20, year_offset=last_year - self.sim.year, hours=OFFICE_HOUR),
            "aftercare: execution summary",
            self.execution_summary,
        )

    async def _report(self, report: Report) -> None:
        sim, execution = self.sim, report.execution
        path = f"/v1/projects/{execution.project_id}"
        if report.kind == "late":

            async def escalated() -> bool:
                events = [item["event"] for item in (await sim.get(f"{path}/timeline"))["items"]]
                return "deadline_missed" in events and "reminder_sent" in events

            await sim.poll(escalated, f"{execution.title}: the missed report escalated, reminded")
        body = {
            "progress_pct": report.progress_pct,
            "note": report.note,
            "final": report.kind == "final",
        }
        who = await sim.official("caseworker", execution.department)
        answer = await sim.call("POST", f"{path}/execution-reports", who, body, expect=(201,))
        status = "completed" if report.kind == "final" else "executing"
        if answer["status"] != status or answer["execution"]["overdue"]:
            raise SimulationError(f"{execution.title}: after the report {answer['execution']}")

    async def reports(self, reports: Sequence[Report]) -> None:
        names = {
            "progress": "aftercare: progress reports",
            "late": "aftercare: late reports",
            "final": "aftercare: final reports",
        }
        for kind, name in names.items():
            chosen = [report for report in reports if report.kind == kind]
            if chosen:
                async with self.sim.phase(name, total=len(chosen)) as bar:
                    await self.sim.each(chosen, self._report, bar)

    async def results_meeting(self, evaluated: Sequence[Execution], held: datetime) -> None:
        """The governance projects' evaluation and feedback at the December results meeting."""
        admin = await self.sim.official("admin")

        async def evaluate(execution: Execution) -> None:
            body = {
                "findings": f"{execution.title}: delivered with its council; cases for the book",
                "results_meeting_on": seoul_date(held).isoformat(),
            }
            path = f"/v1/projects/{execution.project_id}/evaluation"
            answer = await self.sim.call("POST", path, admin, body, expect=(200,))
            if answer["evaluation"] is None:
                raise SimulationError(f"{execution.title}: no evaluation after it was recorded")

        await self.sim.each_in_phase("aftercare: evaluations", evaluated, evaluate)

    async def execution_summary(self) -> None:
        """Each project's reports and its overdue cases, as the API shows them."""
        sim = self.sim

        async def read(execution: Execution) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            path = f"/v1/projects/{execution.project_id}"
            project: dict[str, Any] = await sim.get(path)
            timeline: list[dict[str, Any]] = (await sim.get(f"{path}/timeline"))["items"]
            return project, timeline

        async with sim.phase("aftercare: execution summary", total=len(self.executions)) as bar:
            read_back = await sim.each(self.executions, read, bar)
        overdue: list[dict[str, Any]] = []
        for execution, (project, timeline) in zip(self.executions, read_back, strict=True):
            reported = [t for t in timeline if t["event"] in ("progress_reported", "final_report")]
            sim.summary.add(
                "execution",
                project=execution.title,
                kind=execution.kind,
                reports=project["execution"]["reports"],
                late_reports=sum(t["note"].endswith("(after the deadline)") for t in reported),
                final=project["status"] == "completed",
            )
            overdue += _overdue_rows(execution, timeline)
        for row in overdue:
            sim.summary.add("overdue cases", **row)

    # ---- participation: execution and settlement, Y+1 ----------------------------------------

    def _monitor(self, execution: Execution) -> Citizen:
        """A citizen monitor of one of the project's districts (anyone if none lives there)."""
        if not self._by_district:
            for person in self.sim.citizens:
                self._by_district.setdefault(person.district, []).append(person)
        near = [p for d in sorted(execution.districts) for p in self._by_district.get(d, [])]
        return self.rng.choice(near or self.sim.citizens)

    async def waste_reports(self) -> None:
        """A third of the year's waste reports, against selected projects."""
        if not self.executions:
            return
        count = max(1, _scaled(self.sim, "waste") // 3)
        filings = []
        for _ in range(count):
            execution = self.rng.choice(self.executions)
            body = {
                "stage": "execution",
                "kind": "waste_report",
                "project_id": execution.project_id,
                "body": f"{execution.title}: {self.rng.choice(WASTE)}.",
            }
            filings.append((self._monitor(execution), body))
        async with self.sim.phase("aftercare: waste reports", total=count) as bar:
            await self.sim.each(filings, self._file, bar)

    async def settlement_opinions(self) -> None:
        """Opinions on the published settlement: half on a selected project, addressed to its
        department; the others addressed to a department or to none."""
        count = _scaled(self.sim, "settlement")
        filings = []
        for _ in range(count):
            body: dict[str, Any] = {"stage": "settlement", "kind": "opinion"}
            text = self.rng.choice(SETTLEMENT)
            if self.executions and self.rng.random() < 0.5:
                execution = self.rng.choice(self.executions)
                body |= {"project_id": execution.project_id, "department": execution.department}
                body["body"] = f"{execution.title}: {text}."
            else:
                department = self._addressed()
                if department is not None:
                    body["department"] = department
                body["body"] = f"{text[0].upper()}{text[1:]}."
            filings.append((self._someone(), body))
        async with self.sim.phase("aftercare: settlement opinions", total=count) as bar:
            self.settlement = await self.sim.each(filings, self._file, bar)

    async def settlement_answers(self) -> None:
        """Each department reviews the opinions and answers how it reflects them."""
        answers = [
            (record["id"], department, f"The {department} department reflects it in its draft.")
            for record in self.settlement
            for department in self._answerers(record)
        ]
        await self.sim.each_in_phase("aftercare: settlement answers", answers, self._answer)

    async def participation_summary(self) -> None:
        """The cycle's records and answers, counted from the public listing."""
        records: list[dict[str, Any]] = []
        async with self.sim.phase("aftercare: participation read back") as bar:
            cursor: str | None = "0"
            while cursor is not None:
                page = await self.sim.get(self.path, limit=200, cursor=cursor)
                records += page["items"]
                cursor = page["next_cursor"]
                bar.advance(len(page["items"]))

        def count(stage: str, kind: str) -> int:
            return sum(r["stage"] == stage and r["kind"] == kind for r in records)

        def answers(stage: str, kind: str) -> int:
            return sum(
                len(r["answers"]) for r in records if r["stage"] == stage and r["kind"] == kind
            )

        rows = (
            ("material requests", count("drafting", "material_request")),
            ("explanations (answers to the requests)", answers("drafting", "material_request")),
            ("material requests refused after their window", self.refused),
            ("drafting opinions", count("drafting", "opinion")),
            ("opinion statement", count("drafting", "opinion_statement")),
            ("waste reports", count("execution", "waste_report")),
            ("settlement opinions", count("settlement", "opinion")),
            ("settlement answers", answers("settlement", "opinion")),
        )
        for record, number in rows:
            self.sim.summary.add("participation", record=record, count=number)


async def _report_every(sim: Sim) -> timedelta:
    """`monitoring.report_days` of the rulebook the cycle pinned (its file, checked against
    the hash the cycle shows), which must leave room for a report every `ROUND_DAYS`."""
    cycle = await sim.get(f"/v1/budget-cycles/{sim.year}")
    pinned = rulebooks.load(cycle["rulebook"])
    monitoring = pinned.rulebook.monitoring
    if pinned.content_hash != cycle["rulebook_hash"] or monitoring is None:
        raise SimulationError(f"rulebook {cycle['rulebook']}: not as pinned, or no [monitoring]")
    if monitoring.report_days <= ROUND_DAYS:
        raise SimulationError(f"reports due every {monitoring.report_days} days: raise ROUND_DAYS")
    return timedelta(days=monitoring.report_days)


def _overdue_rows(execution: Execution, timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per deadline the project missed, with how late the report (or the evaluation)
    that answered it came."""
    rows = []
    for position, entry in enumerate(timeline):
        if entry["event"] != "deadline_missed":
            continue
        missed = _MISSED.match(entry["note"])
        if missed is None:
            raise SimulationError(f"{execution.title}: an escalation without its deadline: {entry}")
        answered = next(
            (
                later
                for later in timeline[position + 1 :]
                if later["event"] in ("progress_reported", "final_report", "evaluated")
            ),
            None,
        )
        if answered is None:
            raise SimulationError(f"{execution.title}: {missed['stage']} missed, never filed")
        deadline = seoul_date(datetime.fromisoformat(missed["due"]))
        decided = seoul_date(datetime.fromisoformat(answered["at"]))
        rows.append(
            {
                "case": "project",
                "id": execution.project_id,
                "stage": missed["stage"].replace(" ", "_"),
                "deadline": deadline.isoformat(),
                "decided_late_by_days": (decided - deadline).days,
            }
        )
    return rows
