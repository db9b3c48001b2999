"""Part of `minju simulate`: citizen proposals (process.md §1), the linked path from a popular
proposal to a public forum (§4) and "Seoul asks" (§2), from January to June of the year.

Every proposal's fate is drawn up front from the part's random stream (supports, department,
review and its timing, committee, plan, appropriateness, ballots), so the same seed plays the
same year; the steps then carry it out through the API in three waves of submissions, each
running the whole pipeline. Some departments miss the 20-day review deadline (and one executing
department the 10-day appropriateness check): the case is escalated before the late answer,
and the summary lists these overdue cases. Only a few proposals reach a decision vote with a
quorum of ballots; a few more fall short of it.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from minju.simulate.core import Citizen, Sim, SimulationError, seoul_date

T = TypeVar("T")

PART = "proposals"
#: The first day (month, day of Y) of each wave of submissions.
WAVE_STARTS = ((1, 12), (2, 9), (3, 9))
#: The Seoul hour at which a day's work is done.
WORK_HOUR = 10
#: The day (month, day of Y) the year's final statuses are counted.
COUNT_DAY = (6, 30)

# ---- the rules the fates are drawn for (seoul-2018 / seoul-2020; the API's answers are checked)
#: proposal.review_support_threshold
REVIEW_THRESHOLD = 10
#: proposal.min_voters: a plan costing at most MIN_QUORUM_COST needs this many voters.
MIN_QUORUM = 1_000
#: proposal.min_voters x proposal.krw_per_voter
MIN_QUORUM_COST = 100_000_000
#: linked.forum_support_threshold (seoul-2020)
FORUM_THRESHOLD = 500
#: sortition.agenda_group_size (seoul-2020)
SELECTION_GROUP_SIZE = 20

# ---- shares of the drawn fates ---------------------------------------------------------------
#: Proposals that never gather the supports for a department review.
UNSUPPORTED_SHARE = 0.25
#: Supported proposals that gather more than the threshold.
POPULAR_SHARE = 0.1
#: Proposers who withdraw during the department review.
WITHDRAWN_SHARE = 0.03
ACCEPTED_SHARE = 0.55
#: Department reviews answered after the 20-day deadline.
LATE_REVIEW_SHARE = 0.15
#: Proposals that reach a vote with a quorum of ballots; a vote that falls short; a plan
#: discarded by the executing department (each at least one).
QUORATE_SHARE = 0.005
SHORT_VOTE_SHARE = 0.005
DISCARDED_SHARE = 0.01
#: Plans the executing department first sends back for revision.
REVISED_SHARE = 0.3
#: Appropriateness checks answered after their 10-day deadline.
LATE_CHECK_SHARE = 0.2
COMMENTED_SHARE = 0.15
#: Plan costs of the proposals put to a vote (all within the minimum quorum).
VOTE_COSTS = (0, 20_000_000, 50_000_000, 90_000_000)

# ---- days after a wave's first day ---------------------------------------------------------
WITHDRAW_DAY = 5
#: proposal.dept_review_days is 20: answers on these days come in time ...
ON_TIME_REVIEW_DAYS = (8, 16)
#: ... and on these after the deadline, escalation and reminders.
LATE_REVIEW_DAYS = (24, 29)
SCREENING_DAY = 32
PLAN_DAY = 36
#: proposal.appropriateness_days is 10 from PLAN_DAY.
CHECK_DAY = 40
LATE_CHECK_DAY = 48
#: A plan sent back is revised this many days after the verdict, and checked as many after.
REVISION_DAYS = 3
# ---- days after a vote opens (proposal.vote_days is 30) --------------------------------------
BALLOT_DAYS = (3, 17)
CLOSE_DAY = 31
REPORT_DAY = 45

# ---- the linked path: days after submission --------------------------------------------------
LINKED_SUBMIT = (1, 19)
#: Supports come on the first day and on this one, within linked.support_window_days (30).
LINKED_LATE_SUPPORT_DAY = 12
LINKED_EARLY_SUPPORT_SHARE = 0.6
AGENDA_PLAN_DAY = 15
#: linked.agenda_min_days (30) after the threshold, which falls on LINKED_LATE_SUPPORT_DAY.
AGENDA_DECISION_DAY = LINKED_LATE_SUPPORT_DAY + 31
FORUM_PARTICIPATION_DAYS = (AGENDA_DECISION_DAY + 3, AGENDA_DECISION_DAY + 17)
#: forum.days (30) after the decision opens the forum.
FORUM_CLOSED_DAY = AGENDA_DECISION_DAY + 31
SELECTION_POOL_SIZE = 200
FORUM_OPINION_SHARE = 0.12


@dataclass(frozen=True)
class Topic:
    department: str
    category: str
    #: Title templates, `{district}` filled with the proposer's district.
    titles: tuple[str, ...]
    body: str


TOPICS = (
    Topic(
        "parks",
        "environment",
        (
            "Shade trees along the main roads of {district}",
            "A pocket park on the empty lot in {district}",
            "Drinking fountains in the parks of {district}",
        ),
        "Summers are getting hotter; the walk to the station has no shade at all.",
    ),
    Topic(
        "transport",
        "transport",
        (
            "A night bus from {district} to the city centre",
            "Protected bike lanes in {district}",
            "Longer green lights at school crossings in {district}",
        ),
        "Many of us commute late or by bike, and the current routes leave us unsafe.",
    ),
    Topic(
        "welfare",
        "welfare",
        (
            "A shared kitchen for older residents of {district}",
            "A childcare drop-in room at the {district} office",
            "Home visits for people living alone in {district}",
        ),
        "Neighbours who live alone or care for children need a place close to home.",
    ),
    Topic(
        "environment",
        "environment",
        (
            "Detergent refill stations in {district}",
            "Sorting bins for vinyl in the alleys of {district}",
            "A repair café for small appliances in {district}",
        ),
        "Less waste if reuse and sorting are easy right where people live.",
    ),
    Topic(
        "culture",
        "culture",
        (
            "Free weekend concerts on the plazas of {district}",
            "A small library in the underpass of {district}",
            "Open rehearsal rooms for amateur bands in {district}",
        ),
        "Culture close to home, free of charge, run with local volunteers.",
    ),
    Topic(
        "safety",
        "safety",
        (
            "Brighter streetlights on the hillside lanes of {district}",
            "Emergency bells in the park toilets of {district}",
            "Safe walking routes home from the stations of {district}",
        ),
        "The lanes are dark at night and many residents avoid walking home alone.",
    ),
    Topic(
        "housing",
        "housing",
        (
            "Repair grants for old multi-family houses in {district}",
            "Shared housing for young workers in {district}",
        ),
        "Old houses leak and young people cannot afford a room near their work.",
    ),
    Topic(
        "health",
        "health",
        (
            "An evening clinic for children in {district}",
            "Walking routes with distance markers in {district}",
        ),
        "Families need care after working hours and easy ways to keep fit.",
    ),
    Topic(
        "economy",
        "economy",
        (
            "A weekend market for local makers in {district}",
            "Empty shop fronts lent to start-ups in {district}",
        ),
        "Local makers and new businesses need a place to start and to sell.",
    ),
)
COMMENTS = (
    "I would use this every day.",
    "Please look at the alley behind the market too.",
    "Good idea, but who maintains it afterwards?",
    "We asked the district office for this two years ago.",
    "Yes, and make it accessible for wheelchairs.",
)
ACCEPT_REASONS = (
    "Fits the department's plan for this year and can be done within the existing programme.",
    "Feasible; a similar pilot in another district worked well.",
    "Accepted: the site survey confirms the need.",
)
REJECT_REASONS = (
    "Already covered by the programme starting next year (a similar proposal was accepted).",
    "The site is private land; the city cannot build there.",
    "Outside the city's competence: this is a matter for the national government.",
    "The cost is out of proportion to the number of people it would serve.",
)
DROP_NOTES = (
    "Little room for citizens' views: the department can decide this itself.",
    "Important, but better handled in the department's own budget.",
    "The committee prefers a broader proposal on the same subject.",
)
SCORE_CRITERIA = ("necessity", "changeability", "feasibility", "impact")
FORUM_OPINIONS = (
    "The city should do this, and soon.",
    "I am worried about the cost for the next generation.",
    "Fine in principle, but the details need work.",
    "My family would be directly helped by this.",
    "Ask the people affected before deciding.",
)


@dataclass
class Case:
    """One citizen proposal: its drawn fate, and what the API answered on the way."""

    number: int
    wave: int
    proposer: Citizen
    topic: Topic
    title: str
    supporters: list[Citizen]
    comments: list[tuple[Citizen, str]]
    withdraws: bool = False
    #: "accept" or "reject"; None when it is never reviewed.
    review: str | None = None
    review_day: int = 0
    review_reason: str = ""
    #: "advance" or "drop"; None when it never reaches the committee.
    screening: str | None = None
    scores: dict[str, int] = field(default_factory=dict)
    screening_note: str = ""
    #: The executing department's verdicts, in order (a "revise" is followed by another).
    verdicts: tuple[str, ...] = ()
    late_check: bool = False
    cost_krw: int = 0
    ballots: list[tuple[Citizen, str]] = field(default_factory=list)
    id: str = ""
    #: The current stage's deadline, as the API answered it.
    due_at: str = ""
    passed: bool = False

    @property
    def late_review(self) -> bool:
        return self.review_day in LATE_REVIEW_DAYS

    def verdict_days(self) -> list[int]:
        first = LATE_CHECK_DAY if self.late_check else CHECK_DAY
        return [first + 2 * REVISION_DAYS * n for n in range(len(self.verdicts))]

    def opening_day(self) -> int | None:
        """The day its vote opens (the appropriate verdict), or None."""
        if "appropriate" not in self.verdicts:
            return None
        return self.verdict_days()[self.verdicts.index("appropriate")]


@dataclass(frozen=True)
class Agenda:
    proposal_title: str
    agenda_title: str
    summary: str
    forum_kind: str


LINKED_AGENDAS = (
    Agenda(
        "The city should pay for infertility treatment",
        "Support for infertility treatment costs",
        "Should the city fund treatment costs beyond the national support?",
        "for_against",
    ),
    Agenda(
        "Let us live together with the stray cats of our neighbourhoods",
        "Living together with stray cats",
        "How should neighbourhoods, carers and the city share the care of stray cats?",
        "discussion",
    ),
)


@dataclass
class LinkedCase:
    """A proposal under seoul-2020 that reaches the forum threshold within the window."""

    agenda: Agenda
    proposer: Citizen
    supporters: list[Citizen]
    pool: list[Citizen]
    votes_for: int
    votes_against: int
    #: (citizen, position or None, opinion or None)
    participations: list[tuple[Citizen, str | None, str | None]]
    id: str = ""
    forum_id: str = ""


@dataclass(frozen=True)
class AskPlan:
    department: str
    title: str
    body: str
    requested: tuple[int, int]
    #: Days from the request to the opening (ask.request_lead_days is 14).
    lead_days: int
    #: ask.opinion_days is 30.
    period_days: int
    participation_day: tuple[int, int]
    #: The department's review (ask.dept_review_days is 60 after the close).
    review_day: tuple[int, int]
    summary: str
    actions: str


ASKS = (
    AskPlan(
        "animal-welfare",
        "Should stray cats in redevelopment areas be relocated?",
        "Neutral material: costs, shelters, and the views of residents and of carers.",
        (1, 7),
        15,
        30,
        (2, 2),
        (5, 4),
        "Relocation with shelters, in agreement with the carers",
        "Budget for shelters next year; a guide for redevelopment sites.",
    ),
    AskPlan(
        "transport",
        "Should Sejong-daero be car-free on Sundays?",
        "Neutral material: traffic counts, detours, and the experience of other cities.",
        (3, 3),
        15,
        30,
        (3, 30),
        (5, 20),
        "A car-free Sunday once a month from September, evaluated after a year",
        "Detour signage and extra buses on the car-free Sundays.",
    ),
)


@dataclass
class AskCase:
    plan: AskPlan
    participations: list[tuple[Citizen, str, str | None]]
    id: str = ""


def plan(sim: Sim) -> None:
    """Register this part's steps on the simulation's calendar."""
    rng = sim.rng(PART)
    cases = _draw_cases(sim, rng)
    linked = _draw_linked(sim, rng)
    asks = _draw_asks(sim, rng)
    waves = sorted({case.wave for case in cases})
    for wave in waves:
        month, day = WAVE_STARTS[wave]
        _plan_wave(sim, sim.seoul(month, day), wave, [c for c in cases if c.wave == wave])
    _plan_linked(sim, linked)
    for ask in asks:
        _plan_ask(sim, ask)
    sim.at(
        sim.seoul(*COUNT_DAY, hours=WORK_HOUR + 8),
        "proposals: outcomes",
        partial(_count_outcomes, sim, cases, linked),
    )


# ---- drawing the fates -----------------------------------------------------------------------


def _others(
    rng: random.Random, citizens: Sequence[Citizen], k: int, *not_: Citizen
) -> list[Citizen]:
    """`k` different citizens, none of `not_`."""
    excluded = {person.person_id for person in not_}
    drawn = rng.sample(citizens, min(len(citizens), k + len(excluded)))
    return [person for person in drawn if person.person_id not in excluded][:k]


def _scores(rng: random.Random, low: int, high: int) -> dict[str, int]:
    return {criterion: rng.randint(low, high) for criterion in SCORE_CRITERIA}


def _draw_cases(sim: Sim, rng: random.Random) -> list[Case]:
    citizens = sim.citizens
    count = sim.sizes.proposals
    waves = min(len(WAVE_STARTS), count)
    quorate = max(1, round(count * QUORATE_SHARE))
    short = max(1, round(count * SHORT_VOTE_SHARE))
    discarded = max(1, round(count * DISCARDED_SHARE))
    chosen = rng.sample(range(count), min(count, quorate + short + discarded))
    roles = {
        number: "quorate" if n < quorate else "short" if n < quorate + short else "discard"
        for n, number in enumerate(chosen)
    }
    first_of = {"quorate": True, "short": True}
    cases = []
    for number in range(count):
        role = roles.get(number)
        proposer = rng.choice(citizens)
        topic = rng.choice(TOPICS)
        if role is None and rng.random() < UNSUPPORTED_SHARE:
            supports = rng.randint(0, REVIEW_THRESHOLD - 1)
        else:
            extra = rng.randint(1, 3) if rng.random() < POPULAR_SHARE else 0
            supports = REVIEW_THRESHOLD + extra
        commented = rng.random() < COMMENTED_SHARE
        case = Case(
            number=number,
            wave=number * waves // count,
            proposer=proposer,
            topic=topic,
            title=rng.choice(topic.titles).format(district=proposer.district),
            supporters=_others(rng, citizens, supports, proposer),
            comments=[
                (person, rng.choice(COMMENTS))
                for person in _others(rng, citizens, rng.randint(1, 2) if commented else 0)
            ],
        )
        cases.append(case)
        if supports < REVIEW_THRESHOLD:
            continue
        if role is None and rng.random() < WITHDRAWN_SHARE:
            case.withdraws = True
            continue
        accepted = role is not None or rng.random() < ACCEPTED_SHARE
        case.review = "accept" if accepted else "reject"
        late = rng.random() < LATE_REVIEW_SHARE
        case.review_day = rng.choice(LATE_REVIEW_DAYS if late else ON_TIME_REVIEW_DAYS)
        case.review_reason = rng.choice(ACCEPT_REASONS if accepted else REJECT_REASONS)
        if not accepted:
            continue
        if role is None:
            case.screening, case.scores = "drop", _scores(rng, 2, 7)
            case.screening_note = rng.choice(DROP_NOTES)
            continue
        case.screening, case.scores = "advance", _scores(rng, 6, 10)
        case.screening_note = "chosen for a citizen decision"
        final = "discard" if role == "discard" else "appropriate"
        revised = rng.random() < REVISED_SHARE
        case.verdicts = ("revise", final) if revised else (final,)
        case.late_check = rng.random() < LATE_CHECK_SHARE
        case.cost_krw = rng.choice(VOTE_COSTS)
        if role == "quorate":
            voters = min(len(citizens), MIN_QUORUM + rng.randint(0, MIN_QUORUM // 8))
            low = 0.55 if first_of["quorate"] else 0.38  # at least one passes
            case.ballots = _ballots(rng, citizens, voters, rng.uniform(low, 0.72))
            first_of["quorate"] = False
        elif role == "short":
            near_miss = first_of["short"]
            voters = rng.randint(MIN_QUORUM * 7 // 10, MIN_QUORUM - 20) if near_miss else 0
            voters = voters or rng.randint(10, 120)
            case.ballots = _ballots(rng, citizens, voters, rng.uniform(0.5, 0.8))
            first_of["short"] = False
    reviewed = [case for case in cases if case.review is not None]
    if reviewed and not any(case.late_review for case in reviewed):
        reviewed[0].review_day = LATE_REVIEW_DAYS[0]  # at least one overdue review
    planned = [case for case in cases if case.verdicts]
    if planned and not any(case.late_check for case in planned):
        planned[0].late_check = True  # and one overdue appropriateness check
    return cases


def _ballots(
    rng: random.Random, citizens: Sequence[Citizen], voters: int, yes_share: float
) -> list[tuple[Citizen, str]]:
    people = rng.sample(citizens, voters)
    yes = round(voters * yes_share)
    return [(person, "yes" if n < yes else "no") for n, person in enumerate(people)]


def _draw_linked(sim: Sim, rng: random.Random) -> list[LinkedCase]:
    citizens = sim.citizens
    count = 1 if sim.sizes.proposals < 200 else 2
    participants = min(len(citizens) // 4, max(200, sim.sizes.proposals))
    linked = []
    for agenda in LINKED_AGENDAS[:count]:
        proposer = rng.choice(citizens)
        votes_for = rng.randint(11, 16)
        participations: list[tuple[Citizen, str | None, str | None]] = []
        for person in rng.sample(citizens, participants):
            if agenda.forum_kind == "discussion":
                participations.append((person, None, rng.choice(FORUM_OPINIONS)))
                continue
            position = rng.choices(("for", "against", "other"), weights=(70, 26, 4))[0]
            opinion = rng.choice(FORUM_OPINIONS) if rng.random() < FORUM_OPINION_SHARE else None
            participations.append((person, position, opinion))
        linked.append(
            LinkedCase(
                agenda=agenda,
                proposer=proposer,
                supporters=_others(rng, citizens, FORUM_THRESHOLD + rng.randint(10, 60), proposer),
                pool=rng.sample(citizens, min(len(citizens), SELECTION_POOL_SIZE)),
                votes_for=votes_for,
                votes_against=SELECTION_GROUP_SIZE - votes_for - rng.randint(0, 2),
                participations=participations,
            )
        )
    return linked


def _draw_asks(sim: Sim, rng: random.Random) -> list[AskCase]:
    citizens = sim.citizens
    participants = min(len(citizens) // 10, max(100, sim.sizes.proposals // 5))
    asks = []
    for ask in ASKS:
        participations = []
        for person in rng.sample(citizens, participants):
            position = rng.choices(("for", "against", "other"), weights=(55, 38, 7))[0]
            opinion = rng.choice(FORUM_OPINIONS) if rng.random() < FORUM_OPINION_SHARE else None
            participations.append((person, position, opinion))
        asks.append(AskCase(plan=ask, participations=participations))
    return asks


# ---- the calendar ----------------------------------------------------------------------------


def _by_day(cases: Iterable[Case], day_of: Callable[[Case], int | None]) -> dict[int, list[Case]]:
    days: dict[int, list[Case]] = {}
    for case in cases:
        day = day_of(case)
        if day is not None:
            days.setdefault(day, []).append(case)
    return dict(sorted(days.items()))


def _interleaved(rows: Iterable[Sequence[T]]) -> list[T]:
    """The items of several cases taken in turn, so the calls in flight at once go to different
    cases instead of queueing on one case's row."""
    return [item for column in itertools.zip_longest(*rows) for item in column if item is not None]


def _plan_wave(sim: Sim, start: datetime, wave: int, cases: list[Case]) -> None:
    def at(day: int) -> datetime:
        return start + timedelta(days=day, hours=WORK_HOUR)

    label = f"wave {wave + 1}"
    sim.at(at(0), f"proposals: {label} submitted", partial(_submit, sim, cases))
    withdrawing = [case for case in cases if case.withdraws]
    if withdrawing:
        sim.at(
            at(WITHDRAW_DAY),
            f"proposals: {label} withdrawals",
            partial(_withdraw, sim, withdrawing),
        )
    for day, group in _by_day(cases, lambda c: c.review_day if c.review else None).items():
        sim.at(at(day), f"proposals: {label} reviews", partial(_review, sim, group))
    screened = [case for case in cases if case.screening]
    if screened:
        sim.at(at(SCREENING_DAY), f"proposals: {label} screening", partial(_screen, sim, screened))
    planned = [case for case in cases if case.verdicts]
    if planned:
        sim.at(at(PLAN_DAY), f"proposals: {label} plans", partial(_submit_plans, sim, planned, 0))
    for round_ in (0, 1):

        def verdict_day(case: Case, round_: int = round_) -> int | None:
            return case.verdict_days()[round_] if len(case.verdicts) > round_ else None

        for day, group in _by_day(planned, verdict_day).items():
            sim.at(at(day), f"proposals: {label} checks", partial(_check, sim, group, round_))
            revising = [case for case in group if case.verdicts[round_] == "revise"]
            if revising:
                sim.at(
                    at(day + REVISION_DAYS),
                    f"proposals: {label} revised plans",
                    partial(_submit_plans, sim, revising, 1),
                )
    for day, group in _by_day(planned, Case.opening_day).items():
        ballots = _interleaved(
            [[(case, person, choice) for person, choice in case.ballots] for case in group]
        )
        for n, offset in enumerate(BALLOT_DAYS):
            share = ballots[n :: len(BALLOT_DAYS)]
            sim.at(at(day + offset), f"proposals: {label} ballots", partial(_vote, sim, share))
        closing = f"proposals: {label} votes closed"
        sim.at(at(day + CLOSE_DAY), closing, partial(_close_votes, sim, group))
        reporting = f"proposals: {label} execution reports"
        sim.at(at(day + REPORT_DAY), reporting, partial(_report, sim, group))


def _plan_linked(sim: Sim, linked: list[LinkedCase]) -> None:
    start = sim.seoul(*LINKED_SUBMIT)

    def at(day: int) -> datetime:
        return start + timedelta(days=day, hours=WORK_HOUR)

    sim.at(at(0), "proposals: linked proposals submitted", partial(_submit_linked, sim, linked))
    sim.at(
        at(LINKED_LATE_SUPPORT_DAY),
        "proposals: linked proposals reach the forum threshold",
        partial(_reach_forum_threshold, sim, linked),
    )
    sim.at(at(AGENDA_PLAN_DAY), "proposals: agenda planning", partial(_plan_agendas, sim, linked))
    sim.at(
        at(AGENDA_DECISION_DAY),
        "proposals: agenda decisions",
        partial(_decide_agendas, sim, linked),
    )
    for share, day in enumerate(FORUM_PARTICIPATION_DAYS):
        sim.at(at(day), "proposals: forum participations", partial(_take_part, sim, linked, share))
    sim.at(at(FORUM_CLOSED_DAY), "proposals: forums closed", partial(_close_forums, sim, linked))


def _plan_ask(sim: Sim, ask: AskCase) -> None:
    requested = sim.seoul(*ask.plan.requested, hours=WORK_HOUR)
    opens = requested + timedelta(days=ask.plan.lead_days)
    closes = opens + timedelta(days=ask.plan.period_days)
    participation = sim.seoul(*ask.plan.participation_day, hours=WORK_HOUR)
    review = sim.seoul(*ask.plan.review_day, hours=WORK_HOUR)
    if not opens < participation < closes < review:
        raise SimulationError(f"the dates of the ask {ask.plan.title!r} are out of order")
    sim.at(requested, "proposals: ask requested", partial(_request_ask, sim, ask, opens, closes))
    sim.at(participation, "proposals: ask participations", partial(_take_part_in_ask, sim, ask))
    sim.at(review, "proposals: ask reviewed", partial(_review_ask, sim, ask))


# ---- reading the API -------------------------------------------------------------------------


async def _wait(
    sim: Sim, path: str, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """GET `path` until `condition` holds on it (a projection written after a transition)."""
    latest: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal latest
        latest = dict(await sim.get(path))
        return condition(latest)

    await sim.poll(check, f"{path}: {what}")
    return latest


async def _wait_listed(sim: Sim, status: str, proposal_ids: list[str]) -> None:
    """Wait until every one of `proposal_ids` is listed with `status` (a page holds 200, so
    this reads far fewer pages than there are proposals)."""
    wanted = set(proposal_ids)

    async def check() -> bool:
        listed: set[str] = set()
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"status": status, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = await sim.get("/v1/proposals", **params)
            listed |= {proposal["id"] for proposal in page["items"]}
            cursor = page["next_cursor"]
            if not cursor:
                return wanted <= listed

    await sim.poll(check, f"{len(wanted)} proposals listed as {status}")


def _expect_status(answer: Any, status: str, what: str) -> dict[str, Any]:
    if answer["status"] != status:
        raise SimulationError(f"{what}: expected status {status}, got {answer['status']}")
    return dict(answer)


def _overdue_row(
    case: str, case_id: str, stage: str, due_at: str, timeline: list[dict[str, Any]]
) -> dict[str, Any]:
    """The summary row of a case answered after its deadline, once its timeline shows the
    escalation before the answer."""
    if not any(t["event"] == "deadline_missed" and t["stage"] == stage for t in timeline):
        raise SimulationError(f"{case} {case_id}: answered late, but no deadline_missed in {stage}")
    if "(answered after the deadline)" not in timeline[-1]["note"]:
        raise SimulationError(f"{case} {case_id}: the late answer does not say it was late")
    deadline = seoul_date(datetime.fromisoformat(due_at))
    decided = seoul_date(datetime.fromisoformat(timeline[-1]["at"]))
    return {
        "case": case,
        "id": case_id,
        "stage": stage,
        "deadline": deadline.isoformat(),
        "decided_late_by_days": (decided - deadline).days,
    }


def _participation(position: str | None, opinion: str | None) -> dict[str, str]:
    body = {"position": position, "opinion": opinion}
    return {key: value for key, value in body.items() if value is not None}


# ---- the steps: citizen proposals ------------------------------------------------------------


async def _submit(sim: Sim, cases: list[Case]) -> None:
    """Proposals submitted, supported and commented on; those with the supports assigned."""

    async def submit(case: Case) -> None:
        body = {"title": case.title, "body": case.topic.body, "category": case.topic.category}
        created = await sim.call("POST", "/v1/proposals", await sim.citizen(case.proposer), body)
        case.id = str(_expect_status(created, "ripening", case.title)["id"])

    await sim.each_in_phase("proposals: submissions", cases, submit)

    supports = _interleaved([[(case, person) for person in case.supporters] for case in cases])

    async def support(item: tuple[Case, Citizen]) -> None:
        case, person = item
        path = f"/v1/proposals/{case.id}/supports"
        await sim.call("POST", path, await sim.citizen(person), expect=(201,))

    await sim.each_in_phase("proposals: supports", supports, support)

    comments = [(case, person, text) for case in cases for person, text in case.comments]

    async def comment(item: tuple[Case, Citizen, str]) -> None:
        case, person, text = item
        path = f"/v1/proposals/{case.id}/comments"
        await sim.call("POST", path, await sim.citizen(person), {"body": text}, expect=(201,))

    await sim.each_in_phase("proposals: comments", comments, comment)

    admin = await sim.official("admin")
    reviewed = [case for case in cases if len(case.supporters) >= REVIEW_THRESHOLD]

    await _wait_listed(sim, "dept_review", [case.id for case in reviewed])

    async def assign(case: Case) -> None:
        path = f"/v1/proposals/{case.id}"
        body = {
            "department": case.topic.department,
            "note": "routed by the administrative evaluation group; no duplicate found",
        }
        assigned = await sim.call("POST", f"{path}/assign", admin, body, expect=(200,))
        case.due_at = str(assigned["due_at"])

    await sim.each_in_phase("proposals: assignments", reviewed, assign)


async def _withdraw(sim: Sim, cases: list[Case]) -> None:
    async def withdraw(case: Case) -> None:
        path = f"/v1/proposals/{case.id}/withdraw"
        answer = await sim.call("POST", path, await sim.citizen(case.proposer), expect=(200,))
        _expect_status(answer, "withdrawn", case.title)

    await sim.each_in_phase("proposals: withdrawals", cases, withdraw)


async def _review(sim: Sim, cases: list[Case]) -> None:
    """The departments' answers; a late one only once the case shows as overdue."""

    async def review(case: Case) -> dict[str, Any] | None:
        path = f"/v1/proposals/{case.id}"
        if case.late_review:
            await _wait(sim, path, lambda p: bool(p["overdue"]), "overdue in department review")
        who = await sim.official("caseworker", case.topic.department)
        body = {"decision": case.review, "reason": case.review_reason}
        answer = await sim.call("POST", f"{path}/review", who, body, expect=(200,))
        accepted = case.review == "accept"
        _expect_status(answer, "committee_screening" if accepted else "rejected", case.title)
        if not case.late_review:
            return None
        timeline = (await sim.get(f"{path}/timeline"))["items"]
        return _overdue_row("proposal", case.id, "dept_review", case.due_at, timeline)

    name = "proposals: late reviews" if cases[0].late_review else "proposals: reviews"
    async with sim.phase(name, total=len(cases)) as bar:
        rows = await sim.each(cases, review, bar)
    for row in rows:
        if row is not None:
            sim.summary.add("overdue cases", **row)


async def _screen(sim: Sim, cases: list[Case]) -> None:
    committee = await sim.official("committee")

    async def screen(case: Case) -> None:
        body = {"decision": case.screening, "scores": case.scores, "note": case.screening_note}
        path = f"/v1/proposals/{case.id}/screening"
        answer = await sim.call("POST", path, committee, body, expect=(200,))
        _expect_status(answer, "planning" if case.screening == "advance" else "dropped", case.title)

    await sim.each_in_phase("proposals: committee screening", cases, screen)


async def _submit_plans(sim: Sim, cases: list[Case], revision: int) -> None:
    """The committee's execution plans (a first draft of a plan later revised costs more)."""
    committee = await sim.official("committee")

    async def submit(case: Case) -> None:
        drafted = revision == 0 and case.verdicts[0] == "revise"
        cost = case.cost_krw + 15_000_000 if drafted else case.cost_krw
        summary = (
            "Revised: a smaller first phase, with a second quote for the works"
            if revision
            else f"Collect material, check the legal basis and budget; {case.topic.body}"
        )
        body = {
            "summary": summary,
            "executing_department": case.topic.department,
            "cost_krw": cost,
        }
        path = f"/v1/proposals/{case.id}/plan"
        answer = await sim.call("POST", path, committee, body, expect=(200,))
        case.due_at = str(_expect_status(answer, "appropriateness_check", case.title)["due_at"])

    await sim.each_in_phase("proposals: execution plans", cases, submit)


VERDICT_REASONS = {
    "appropriate": "The plan fits the law, existing policy and the budget.",
    "revise": "The cost estimate needs a second quote; please revise the first phase.",
    "discard": "A legal review found the site cannot be used for this purpose.",
}
VERDICT_STATUS = {"appropriate": "voting", "revise": "revising", "discard": "discarded"}


async def _check(sim: Sim, cases: list[Case], round_: int) -> None:
    """The executing department's appropriateness check; an appropriate plan opens the vote."""

    async def check(case: Case) -> dict[str, Any] | None:
        verdict = case.verdicts[round_]
        late = case.late_check and round_ == 0
        path = f"/v1/proposals/{case.id}"
        if late:
            await _wait(sim, path, lambda p: bool(p["overdue"]), "overdue in its check")
        who = await sim.official("caseworker", case.topic.department)
        body = {"verdict": verdict, "reason": VERDICT_REASONS[verdict]}
        answer = await sim.call("POST", f"{path}/appropriateness", who, body, expect=(200,))
        _expect_status(answer, VERDICT_STATUS[verdict], case.title)
        if verdict == "appropriate" and answer["vote"]["quorum"] != MIN_QUORUM:
            raise SimulationError(
                f"{case.title}: a plan of {case.cost_krw} KRW should need {MIN_QUORUM} voters, "
                f"the vote needs {answer['vote']['quorum']}"
            )
        if not late:
            return None
        timeline = (await sim.get(f"{path}/timeline"))["items"]
        return _overdue_row("proposal", case.id, "appropriateness_check", case.due_at, timeline)

    async with sim.phase("proposals: appropriateness checks", total=len(cases)) as bar:
        rows = await sim.each(cases, check, bar)
    for row in rows:
        if row is not None:
            sim.summary.add("overdue cases", **row)


async def _vote(sim: Sim, ballots: list[tuple[Case, Citizen, str]]) -> None:
    async def cast(item: tuple[Case, Citizen, str]) -> None:
        case, person, choice = item
        path = f"/v1/proposals/{case.id}/ballots"
        await sim.call("POST", path, await sim.citizen(person), {"choice": choice}, expect=(201,))

    await sim.each_in_phase("proposals: ballots", ballots, cast)


async def _close_votes(sim: Sim, cases: list[Case]) -> None:
    """The votes closed by the clock: their counts, and each proposal's outcome."""

    async def closed(case: Case) -> dict[str, Any]:
        proposal = await _wait(
            sim, f"/v1/proposals/{case.id}", lambda p: p["status"] != "voting", "vote closed"
        )
        vote = proposal["vote"]
        if vote["turnout"] != len(case.ballots):
            raise SimulationError(
                f"{case.title}: {len(case.ballots)} ballots cast, {vote['turnout']} counted"
            )
        _expect_status(proposal, "executing" if vote["passed"] else "not_passed", case.title)
        case.passed = bool(vote["passed"])
        return {
            "proposal": case.title,
            "yes": vote["yes"],
            "no": vote["no"],
            "turnout": vote["turnout"],
            "quorum": vote["quorum"],
            "passed": case.passed,
        }

    async with sim.phase("proposals: vote results", total=len(cases)) as bar:
        rows = await sim.each(cases, closed, bar)
    for row in rows:
        sim.summary.add("proposal votes", **row)


async def _report(sim: Sim, cases: list[Case]) -> None:
    """Execution reports of the passed proposals: non-budget work is done at once (final),
    budget work reports its first progress."""
    passed = [case for case in cases if case.passed]

    async def report(case: Case) -> None:
        who = await sim.official("caseworker", case.topic.department)
        final = case.cost_krw == 0
        body = {
            "progress_pct": 100 if final else 30,
            "note": "done, as the vote decided" if final else "first phase contracted",
            "final": final,
        }
        path = f"/v1/proposals/{case.id}/execution-reports"
        answer = await sim.call("POST", path, who, body, expect=(201,))
        _expect_status(answer, "completed" if final else "executing", case.title)

    await sim.each_in_phase("proposals: execution reports", passed, report)


# ---- the steps: the linked path and its forums -----------------------------------------------


def _early_supporters(case: LinkedCase) -> list[Citizen]:
    return case.supporters[: round(FORUM_THRESHOLD * LINKED_EARLY_SUPPORT_SHARE)]


async def _support_linked(sim: Sim, supports: list[tuple[LinkedCase, Citizen]]) -> None:
    async def support(item: tuple[LinkedCase, Citizen]) -> None:
        case, person = item
        path = f"/v1/proposals/{case.id}/supports"
        await sim.call("POST", path, await sim.citizen(person), expect=(201,))

    await sim.each_in_phase("proposals: linked supports", supports, support)


async def _submit_linked(sim: Sim, cases: list[LinkedCase]) -> None:
    """Proposals under the linked-budget rules (seoul-2020) and their first supports."""
    for case in cases:
        body = {
            "title": case.agenda.proposal_title,
            "body": case.agenda.summary,
            "category": "welfare",
            "rulebook": "seoul-2020",
        }
        created = await sim.call("POST", "/v1/proposals", await sim.citizen(case.proposer), body)
        case.id = str(created["id"])
    early = [[(case, person) for person in _early_supporters(case)] for case in cases]
    await _support_linked(sim, _interleaved(early))


async def _reach_forum_threshold(sim: Sim, cases: list[LinkedCase]) -> None:
    """The rest of the supports, within the 30-day window: the agenda selection begins."""
    await _support_linked(
        sim,
        _interleaved(
            [
                [(case, person) for person in case.supporters[len(_early_supporters(case)) :]]
                for case in cases
            ]
        ),
    )
    for case in cases:
        path = f"/v1/proposals/{case.id}"
        await _wait(sim, path, lambda p: p["status"] == "agenda_selection", "agenda selection")


async def _plan_agendas(sim: Sim, cases: list[LinkedCase]) -> None:
    """The planning group's agenda, with the selection group drawn from a pool of citizens."""
    admin = await sim.official("admin")
    async with sim.phase("proposals: agenda selection", total=len(cases)) as bar:
        for number, case in enumerate(cases):
            pool = f"{sim.run_tag}-{sim.year}-agenda-selection-{number + 1}"
            members = [
                {
                    "person_id": person.person_id,
                    "sex": person.sex,
                    "birth_year": person.birth_year,
                    "district": person.district,
                    "budget_school": person.budget_school,
                }
                for person in case.pool
            ]
            await sim.call("POST", "/v1/sortition-pools", admin, {"name": pool, "members": members})
            seed = sim.seed_text(f"agenda selection group {number + 1}")
            draw = await sim.call(
                "POST",
                "/v1/sortitions",
                admin,
                {
                    "purpose": "agenda_selection_group",
                    "size": SELECTION_GROUP_SIZE,
                    "strata": ["sex", "age_band"],
                    "pool": pool,
                    "seed_commitment": hashlib.sha256(seed.encode()).hexdigest(),
                },
            )
            await sim.call("POST", f"/v1/sortitions/{draw['id']}/reveal", admin, {"seed": seed})
            body = {
                "agenda_title": case.agenda.agenda_title,
                "summary": case.agenda.summary,
                "forum_kind": case.agenda.forum_kind,
                "selection_draw_id": draw["id"],
            }
            path = f"/v1/proposals/{case.id}/agenda/plan"
            planned = await sim.call("POST", path, admin, body, expect=(200,))
            if planned["selection_group"]["members_count"] != SELECTION_GROUP_SIZE:
                raise SimulationError(
                    f"{path}: the selection group is {planned['selection_group']}"
                )
            bar.advance()


async def _decide_agendas(sim: Sim, cases: list[LinkedCase]) -> None:
    """The selection group decides to hold a forum, which opens at once."""
    committee = await sim.official("committee")
    async with sim.phase("proposals: agenda selection", total=len(cases)) as bar:
        for case in cases:
            body = {
                "hold_forum": True,
                "votes_for": case.votes_for,
                "votes_against": case.votes_against,
                "reason": "The question divides citizens and deserves a public forum.",
            }
            path = f"/v1/proposals/{case.id}/agenda/decision"
            decided = await sim.call("POST", path, committee, body, expect=(200,))
            case.forum_id = str(_expect_status(decided, "forum", path)["forum_id"])
            await _wait(sim, f"/v1/forums/{case.forum_id}", lambda f: f["status"] == "open", "open")
            bar.advance()


async def _take_part(sim: Sim, cases: list[LinkedCase], share: int) -> None:
    """One share of each forum's participations (positions, some opinions)."""
    every = len(FORUM_PARTICIPATION_DAYS)
    items = _interleaved(
        [
            [(case, *participation) for participation in case.participations[share::every]]
            for case in cases
        ]
    )

    async def take_part(item: tuple[LinkedCase, Citizen, str | None, str | None]) -> None:
        case, person, position, opinion = item
        path = f"/v1/forums/{case.forum_id}/participations"
        body = _participation(position, opinion)
        await sim.call("POST", path, await sim.citizen(person), body, expect=(201,))

    await sim.each_in_phase("proposals: forum participations", items, take_part)


async def _close_forums(sim: Sim, cases: list[LinkedCase]) -> None:
    for case in cases:
        forum = await _wait(
            sim,
            f"/v1/forums/{case.forum_id}",
            lambda f: f["status"] == "closed" and f["participants"] is not None,
            "closed and counted",
        )
        if forum["participants"] != len(case.participations):
            raise SimulationError(
                f"forum {case.forum_id}: {len(case.participations)} took part, "
                f"{forum['participants']} counted"
            )
        sim.summary.add(
            "forums",
            forum=forum["title"],
            kind=forum["kind"],
            participants=forum["participants"],
            **{"for": forum["for"] or 0},
            against=forum["against"] or 0,
            other=forum["other"] or 0,
        )


# ---- the steps: "Seoul asks" -----------------------------------------------------------------


async def _request_ask(sim: Sim, ask: AskCase, opens: datetime, closes: datetime) -> None:
    body = {
        "title": ask.plan.title,
        "body": ask.plan.body,
        "opens_at": opens.isoformat(),
        "closes_at": closes.isoformat(),
    }
    who = await sim.official("caseworker", ask.plan.department)
    created = await sim.call("POST", "/v1/asks", who, body)
    ask.id = str(_expect_status(created, "scheduled", ask.plan.title)["id"])


async def _take_part_in_ask(sim: Sim, ask: AskCase) -> None:
    await _wait(sim, f"/v1/asks/{ask.id}", lambda a: a["status"] == "open", "open")

    async def take_part(item: tuple[Citizen, str, str | None]) -> None:
        person, position, opinion = item
        path = f"/v1/asks/{ask.id}/participations"
        body = _participation(position, opinion)
        await sim.call("POST", path, await sim.citizen(person), body, expect=(201,))

    async with sim.phase("proposals: ask participations", total=len(ask.participations)) as bar:
        await sim.each(ask.participations, take_part, bar)


async def _review_ask(sim: Sim, ask: AskCase) -> None:
    """The asking department's review of the results: in time, or after escalation."""
    path = f"/v1/asks/{ask.id}"
    results = await _wait(
        sim, path, lambda a: a["status"] == "dept_review", "results sent to the department"
    )
    review_date = date(sim.year, *ask.plan.review_day)
    late = review_date > seoul_date(datetime.fromisoformat(results["due_at"]))
    if late:
        results = await _wait(sim, path, lambda a: bool(a["overdue"]), "overdue in its review")
    if results["participants"] != len(ask.participations):
        raise SimulationError(
            f"{path}: {len(ask.participations)} took part, {results['participants']} counted"
        )
    who = await sim.official("caseworker", ask.plan.department)
    body = {"summary": ask.plan.summary, "actions": ask.plan.actions}
    published = await sim.call("POST", f"{path}/review", who, body, expect=(200,))
    _expect_status(published, "published", ask.plan.title)
    sim.summary.add(
        "asks",
        ask=ask.plan.title,
        department=ask.plan.department,
        participants=results["participants"],
        **{"for": results["for"]},
        against=results["against"],
        other=results["other"],
        opinions=results["opinions"],
        review="late" if late else "in time",
    )
    if late:
        timeline = (await sim.get(f"{path}/timeline"))["items"]
        row = _overdue_row("ask", ask.id, "dept_review", str(results["due_at"]), timeline)
        sim.summary.add("overdue cases", **row)


# ---- the year's outcomes ---------------------------------------------------------------------

#: The statuses in the order of the process (api.md, and the linked path's).
STATUS_ORDER = (
    "ripening",
    "dept_review",
    "rejected",
    "committee_screening",
    "planning",
    "appropriateness_check",
    "revising",
    "discarded",
    "dropped",
    "voting",
    "not_passed",
    "executing",
    "completed",
    "withdrawn",
    "agenda_selection",
    "not_selected",
    "forum",
)


async def _count_outcomes(sim: Sim, cases: list[Case], linked: list[LinkedCase]) -> None:
    """The final status of every proposal this part submitted, counted from the listing."""
    mine = {case.id for case in cases} | {case.id for case in linked}
    statuses: dict[str, str] = {}
    cursor: str | None = None
    async with sim.phase("proposals: outcomes") as bar:
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = await sim.get("/v1/proposals", **params)
            for proposal in page["items"]:
                if proposal["id"] in mine:
                    statuses[proposal["id"]] = proposal["status"]
            bar.advance()
            cursor = page["next_cursor"]
            if not cursor:
                break
    if missing := mine - statuses.keys():
        raise SimulationError(f"{len(missing)} proposals missing from /v1/proposals")
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    order = {status: n for n, status in enumerate(STATUS_ORDER)}
    for status in sorted(counts, key=lambda s: (order.get(s, len(order)), s)):
        sim.summary.add("proposals", outcome=status, count=counts[status])
