"""Project selection of a budget vote: weighted ranking and the rules (process.md §5-6a).

Pure and deterministic: stdlib only, no I/O, no clock, no randomness, exact arithmetic
(`Fraction` and integers; a float is refused wherever it could decide), so it runs inside the
workflow sandbox and any auditor can re-run it. Results never depend on the order of the inputs.

**Weighted score (reading of "10 % of the voting right", `vote.group_weights`).** Every ballot
belongs to one voter group and may approve several projects. Per group g, a project's share is
``approvals_g / ballots_g`` (0 when g cast no ballot), and its score is ``Σ_g w'_g × share_g``.
``w'`` are the *effective* weights: the rulebook weights renormalised over the groups that cast
at least one ballot, ``w'_g = w_g / Σ_{h voted} w_h``. A group that cast no ballot therefore has
no weight, and its weight is redistributed to the groups that voted in proportion to their own
weights; when a single group voted, the score is its approval share and the order is the
raw-count order. A ballot whose group has no rulebook weight is an error, never ignored.

**Ranking and ties.** By score, descending; ties by total raw approvals (all groups), descending;
then by lower cost; then by project id (string order). Rank 1 is the best.

**Rules (`selection.rule`).** Each returns, per project, ``selected`` or ``dropped``, the rule's
name and parameters, and the line that decided (`Line`):

- ``drop_lowest`` (Seoul, 003 1-2-③): the lowest-ranked projects worth the drop ratio of the
  candidates' total amount drop out. Reading of the line: projects are dropped from the bottom
  of the ranking while the dropped amount stays ``≤ ratio × total``; the first project that would
  take it over the line (the *straddling* project) is kept, and so is everything ranked above
  it. The dropped projects are always the bottom of the ranking, never a cheaper project picked
  from above a kept one. A project that lands exactly on the line is dropped; one KRW more and
  it is kept. Called on a field's ranking, the total is the field's.
- ``greedy`` (CONSUL): fund in rank order within the budget, skipping a project that no longer
  fits and continuing with the next.
- ``equal_shares`` (Method of Equal Shares, Peters-Skowron, approval ballots with cost
  utilities; an extension for comparison). Readings: the voters are the ballots approving at
  least one candidate; group g's share of the budget is its weight renormalised over the
  groups among them, split equally among its n_g voters (``budget × w'_g / n_g`` each: the
  equal split when weights follow group sizes); ties go to the better-ranked project;
  completion by default is add-one (the per-voter budget raised 1 KRW at a time, as pabutools
  does) and then `greedy` on what is left. Details in `equal_shares`.

**Deliberative type, "100 % of the allocation, per field, by rank"** (`select_to_level`): the
100 % is a level (수준) with tolerance t (`deliberative.level_tolerance`): ``greedy`` with the
budget ``allocation × (1 + t)``; the result says whether the selected amount reached
``allocation × (1 - t)``.

**pabulib export** (`to_pabulib`): META / PROJECTS / VOTES as at pabulib.org, ';'-separated.
Voters are anonymised: a `Ballot` carries no person id, and voter ids are sequence numbers
given in the order of the SHA-256 of each ballot's content, so they reveal nothing about who
voted or in which order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Literal

Status = Literal["selected", "dropped"]
Rule = Literal["drop_lowest", "greedy", "equal_shares"]
Completion = Literal["add_one_greedy", "add_one", "greedy", "none"]
RULES: tuple[Rule, ...] = ("drop_lowest", "greedy", "equal_shares")
COMPLETIONS: tuple[Completion, ...] = ("add_one_greedy", "add_one", "greedy", "none")
#: `metro.vote_drop_ratio` as 003 states it; the rulebook range is checked by the caller.
DROP_RATIO_RANGE = (Fraction(5, 100), Fraction(30, 100))
Number = Fraction | int | str


class SelectionError(ValueError):
    """Inputs a selection cannot be made from; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def as_fraction(value: Number, *, name: str = "value") -> Fraction:
    """An exact number from an int, a Fraction or a decimal string ("0.1", "1/10"); never a
    float (0.1 is not one tenth) nor a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, Fraction, str)):
        raise SelectionError(
            f"{name} must be an int, a Fraction or a decimal string, not {type(value).__name__}",
            field=name,
        )
    try:
        return Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise SelectionError(f"{name}: not a number: {value!r}", field=name) from exc


# ---- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A candidate project; `cost_krw` is a positive whole number of KRW."""

    id: str
    field: str
    cost_krw: int
    name: str = ""


@dataclass(frozen=True)
class Ballot:
    """One approval ballot: its voter group and the projects it approves (no person id)."""

    group: str
    project_ids: frozenset[str]


@dataclass(frozen=True)
class Tally:
    """A ballot box counted: approvals per (project id, group) and ballots cast per group."""

    approvals: Mapping[tuple[str, str], int]
    ballots_cast: Mapping[str, int]


def tally(ballots: Iterable[Ballot]) -> Tally:
    """Count ballots into a `Tally`."""
    approvals: Counter[tuple[str, str]] = Counter()
    cast: Counter[str] = Counter()
    for ballot in ballots:
        cast[ballot.group] += 1
        for pid in ballot.project_ids:
            approvals[(pid, ballot.group)] += 1
    return Tally(approvals=dict(approvals), ballots_cast=dict(cast))


def _check_projects(projects: Sequence[Project]) -> None:
    seen: set[str] = set()
    for i, p in enumerate(projects):
        if not p.id:
            raise SelectionError("a project needs an id", field=f"projects.{i}.id")
        if p.id in seen:
            raise SelectionError(f"project {p.id!r} is listed twice", field=f"projects.{i}.id")
        seen.add(p.id)
        if isinstance(p.cost_krw, bool) or not isinstance(p.cost_krw, int) or p.cost_krw <= 0:
            raise SelectionError(
                f"project {p.id!r}: cost_krw must be a positive whole number of KRW",
                field=f"projects.{i}.cost_krw",
            )


def effective_weights(
    weights: Mapping[str, Number], ballots_cast: Mapping[str, int]
) -> dict[str, Fraction]:
    """The weights renormalised over the groups that cast a ballot (0 for the others)."""
    exact = {g: as_fraction(w, name=f"weights.{g}") for g, w in weights.items()}
    for g, w in exact.items():
        if w < 0:
            raise SelectionError(f"weight of group {g!r} is negative", field=f"weights.{g}")
    for g, n in ballots_cast.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SelectionError(f"ballots cast by {g!r} must be an int ≥ 0", field="ballots_cast")
        if n > 0 and g not in exact:
            raise SelectionError(
                f"voter group {g!r} cast ballots but has no weight", field=f"weights.{g}"
            )
    voted = sorted(g for g in exact if ballots_cast.get(g, 0) > 0)
    mass = sum((exact[g] for g in voted), Fraction(0))
    if voted and mass == 0:
        raise SelectionError("every group that voted has weight 0", field="weights")
    return {g: (exact[g] / mass if g in voted else Fraction(0)) for g in sorted(exact)}


# ---- ranking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedProject:
    """A project with its approvals per group, total approvals, weighted score and rank."""

    project: Project
    approvals: dict[str, int]
    total_approvals: int
    score: Fraction
    rank: int


@dataclass(frozen=True)
class Ranking:
    """The candidates in rank order, with the ballots cast and the weights that ranked them."""

    entries: tuple[RankedProject, ...]
    ballots_cast: dict[str, int]
    weights: dict[str, Fraction]
    effective_weights: dict[str, Fraction]

    @property
    def total_krw(self) -> int:
        return sum(e.project.cost_krw for e in self.entries)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(sorted({e.project.field for e in self.entries}))

    def for_field(self, name: str) -> Ranking:
        """The ranking of one field's projects, ranks renumbered from 1."""
        kept = [e for e in self.entries if e.project.field == name]
        return Ranking(
            entries=tuple(
                RankedProject(e.project, e.approvals, e.total_approvals, e.score, i)
                for i, e in enumerate(kept, start=1)
            ),
            ballots_cast=self.ballots_cast,
            weights=self.weights,
            effective_weights=self.effective_weights,
        )


def rank(projects: Sequence[Project], counts: Tally, weights: Mapping[str, Number]) -> Ranking:
    """Score and rank the projects (module docstring: weighted score, ties). Approvals of
    projects not among `projects` (e.g. another field's) are ignored."""
    _check_projects(projects)
    cast = {g: n for g, n in counts.ballots_cast.items()}
    eff = effective_weights(weights, cast)
    ids = {p.id for p in projects}
    per_project: dict[str, dict[str, int]] = {p.id: {} for p in projects}
    for (pid, group), n in counts.approvals.items():
        if pid not in ids:
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SelectionError(f"approvals of {pid!r} by {group!r} must be an int ≥ 0")
        if n > cast.get(group, 0):
            raise SelectionError(
                f"{pid!r} has {n} approvals from {group!r}, which cast {cast.get(group, 0)} "
                "ballots",
                field="approvals",
            )
        if n:
            per_project[pid][group] = n
    groups = sorted(set(eff) | set(cast))
    scored = []
    for p in projects:
        approvals = {g: per_project[p.id].get(g, 0) for g in groups}
        score = sum(
            (eff[g] * Fraction(n, cast[g]) for g, n in approvals.items() if n),
            Fraction(0),
        )
        scored.append((p, approvals, sum(approvals.values()), score))
    scored.sort(key=lambda s: (-s[3], -s[2], s[0].cost_krw, s[0].id))
    return Ranking(
        entries=tuple(
            RankedProject(p, approvals, total, score, i)
            for i, (p, approvals, total, score) in enumerate(scored, start=1)
        ),
        ballots_cast=dict(sorted(cast.items())),
        weights={g: as_fraction(w) for g, w in sorted(weights.items())},
        effective_weights=eff,
    )


# ---- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One project's line in a result."""

    project_id: str
    field: str
    name: str
    cost_krw: int
    approvals: dict[str, int]
    total_approvals: int
    score: Fraction
    rank: int
    status: Status


@dataclass(frozen=True)
class Line:
    """What decided: the limit (drop amount or budget), the project at the line, in words."""

    kind: Literal["drop", "budget", "level"]
    limit_krw: Fraction
    boundary_project_id: str | None
    note: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SelectionResult:
    """A rule's decision: per project (in rank order) selected or dropped, with totals."""

    rule: Rule
    params: dict[str, str]
    outcomes: tuple[Outcome, ...]
    line: Line
    ballots_cast: dict[str, int]
    weights: dict[str, Fraction]
    effective_weights: dict[str, Fraction]
    total_krw: int
    selected_krw: int
    dropped_krw: int

    @property
    def selected_ids(self) -> tuple[str, ...]:
        return tuple(o.project_id for o in self.outcomes if o.status == "selected")

    @property
    def dropped_ids(self) -> tuple[str, ...]:
        return tuple(o.project_id for o in self.outcomes if o.status == "dropped")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready; exact numbers as strings ("3/10")."""
        return {
            "rule": self.rule,
            "params": dict(self.params),
            "weights": {g: str(w) for g, w in self.weights.items()},
            "effective_weights": {g: str(w) for g, w in self.effective_weights.items()},
            "ballots_cast": dict(self.ballots_cast),
            "total_krw": self.total_krw,
            "selected_krw": self.selected_krw,
            "dropped_krw": self.dropped_krw,
            "line": {
                "kind": self.line.kind,
                "limit_krw": str(self.line.limit_krw),
                "boundary_project_id": self.line.boundary_project_id,
                "note": self.line.note,
                "details": dict(self.line.details),
            },
            "projects": [
                {
                    "project_id": o.project_id,
                    "field": o.field,
                    "name": o.name,
                    "cost_krw": o.cost_krw,
                    "approvals": dict(o.approvals),
                    "total_approvals": o.total_approvals,
                    "score": str(o.score),
                    "rank": o.rank,
                    "status": o.status,
                }
                for o in self.outcomes
            ],
        }


def _result(
    rule: Rule, ranking: Ranking, selected: set[str], params: dict[str, str], line: Line
) -> SelectionResult:
    outcomes = tuple(
        Outcome(
            project_id=e.project.id,
            field=e.project.field,
            name=e.project.name,
            cost_krw=e.project.cost_krw,
            approvals=dict(e.approvals),
            total_approvals=e.total_approvals,
            score=e.score,
            rank=e.rank,
            status="selected" if e.project.id in selected else "dropped",
        )
        for e in ranking.entries
    )
    chosen = sum(o.cost_krw for o in outcomes if o.status == "selected")
    return SelectionResult(
        rule=rule,
        params=params,
        outcomes=outcomes,
        line=line,
        ballots_cast=dict(ranking.ballots_cast),
        weights=dict(ranking.weights),
        effective_weights=dict(ranking.effective_weights),
        total_krw=ranking.total_krw,
        selected_krw=chosen,
        dropped_krw=ranking.total_krw - chosen,
    )


def _krw(amount: Fraction | int) -> str:
    """An amount for a note: whole KRW with separators, else rounded half up to 2 decimals."""
    value = Fraction(amount)
    if value.denominator == 1:
        return f"{value.numerator:,}"
    cents = math.floor(value * 100 + Fraction(1, 2))
    return f"{cents // 100:,}.{cents % 100:02d}"


# ---- drop_lowest -------------------------------------------------------------------------------


def drop_lowest(ranking: Ranking, ratio: Number) -> SelectionResult:
    """Seoul's rule: drop the lowest-ranked projects worth at most ``ratio × total`` (a
    straddling project is kept; module docstring)."""
    r = as_fraction(ratio, name="drop_ratio")
    if not 0 <= r <= 1:
        raise SelectionError(f"drop ratio {r} is outside [0, 1]", field="drop_ratio")
    total = ranking.total_krw
    limit = r * total
    dropped: set[str] = set()
    amount = 0
    boundary = None
    for e in reversed(ranking.entries):
        if amount + e.project.cost_krw <= limit:
            amount += e.project.cost_krw
            dropped.add(e.project.id)
        else:
            boundary = e
            break
    note = (
        f"{len(dropped)} lowest-ranked project(s) worth {_krw(amount)} KRW dropped; the line is "
        f"{r} × {_krw(total)} = {_krw(limit)} KRW"
    )
    if boundary is not None:
        note += (
            f"; {boundary.project.id} (rank {boundary.rank}, {_krw(boundary.project.cost_krw)} "
            f"KRW) would take the dropped amount to {_krw(amount + boundary.project.cost_krw)} "
            "KRW, over the line, so it and every project above it are kept"
        )
    selected = {e.project.id for e in ranking.entries} - dropped
    line = Line("drop", limit, boundary.project.id if boundary else None, note)
    return _result("drop_lowest", ranking, selected, {"drop_ratio": str(r)}, line)


# ---- greedy ------------------------------------------------------------------------------------


def _greedy_fill(
    entries: Iterable[RankedProject], budget: Fraction, spent: Fraction, skip: bool = True
) -> tuple[list[str], Fraction, RankedProject | None]:
    chosen: list[str] = []
    first_misfit = None
    for e in entries:
        if spent + e.project.cost_krw <= budget:
            chosen.append(e.project.id)
            spent += e.project.cost_krw
        else:
            if first_misfit is None:
                first_misfit = e
            if not skip:
                break
    return chosen, spent, first_misfit


def greedy(ranking: Ranking, budget_krw: Number) -> SelectionResult:
    """CONSUL's rule: fund in rank order within the budget, skipping what no longer fits."""
    budget = as_fraction(budget_krw, name="budget_krw")
    if budget < 0:
        raise SelectionError("budget must be ≥ 0", field="budget_krw")
    chosen, spent, misfit = _greedy_fill(ranking.entries, budget, Fraction(0))
    note = f"funded in rank order within {_krw(budget)} KRW: {_krw(spent)} KRW used"
    if misfit is not None:
        note += f"; {misfit.project.id} (rank {misfit.rank}) is the first that did not fit"
    line = Line("budget", budget, misfit.project.id if misfit else None, note)
    return _result("greedy", ranking, set(chosen), {"budget_krw": str(budget)}, line)


def select_to_level(
    ranking: Ranking, allocation_krw: Number, tolerance: Number, *, skip: bool = True
) -> SelectionResult:
    """The deliberative type's "100 % of the allocation by rank": `greedy` with the budget
    ``allocation × (1 + tolerance)``. With ``skip=False`` selection stops at the first project
    that does not fit (pure rank order). The line says whether ``allocation × (1 - tolerance)``
    was reached."""
    allocation = as_fraction(allocation_krw, name="allocation_krw")
    tol = as_fraction(tolerance, name="tolerance")
    if allocation < 0:
        raise SelectionError("allocation must be ≥ 0", field="allocation_krw")
    if not 0 <= tol < 1:
        raise SelectionError(f"tolerance {tol} is outside [0, 1)", field="tolerance")
    upper, lower = allocation * (1 + tol), allocation * (1 - tol)
    chosen, spent, misfit = _greedy_fill(ranking.entries, upper, Fraction(0), skip=skip)
    reached = spent >= lower
    note = (
        f"rank order up to {_krw(allocation)} KRW × (1 + {tol}) = {_krw(upper)} KRW"
        f"{'' if skip else ', stopping at the first that does not fit'}: {_krw(spent)} KRW "
        f"selected; the level {_krw(lower)}-{_krw(upper)} KRW is "
        f"{'reached' if reached else 'not reached'}"
    )
    details = {"level_reached": "true" if reached else "false", "skip": str(skip).lower()}
    line = Line("level", upper, misfit.project.id if misfit else None, note, details)
    params = {
        "budget_krw": str(upper),
        "allocation_krw": str(allocation),
        "level_tolerance": str(tol),
    }
    return _result("greedy", ranking, set(chosen), params, line)


# ---- equal_shares ------------------------------------------------------------------------------


@dataclass
class _Voters:
    """Identical ballots (same group, same approvals among the candidates) as one class: they
    start with the same budget and always pay the same, so the method can count them once."""

    approved: frozenset[str]
    group: str
    size: int


def _mes(
    order: Sequence[RankedProject],
    classes: Sequence[_Voters],
    per_voter: Sequence[Fraction],
) -> list[str]:
    """Equal Shares proper (no completion), cost utilities, from the given per-voter budgets."""
    money = list(per_voter)
    supporters = {
        e.project.id: [i for i, c in enumerate(classes) if e.project.id in c.approved]
        for e in order
    }
    open_ = [e for e in order if any(money[i] > 0 for i in supporters[e.project.id])]
    chosen: list[str] = []
    while True:
        best: tuple[Fraction, Fraction, RankedProject] | None = None
        still_open = []
        for e in open_:
            cost = e.project.cost_krw
            sup = supporters[e.project.id]
            if sum((money[i] * classes[i].size for i in sup), Fraction(0)) < cost:
                continue  # budgets only shrink: never affordable again
            still_open.append(e)
            paid, left = Fraction(0), sum(classes[i].size for i in sup)
            alpha = Fraction(0)
            for i in sorted(sup, key=lambda i: money[i]):
                alpha = (cost - paid) / left
                if money[i] >= alpha:
                    break
                paid += money[i] * classes[i].size
                left -= classes[i].size
            rho = alpha / cost  # payment per unit of (cost) utility
            if best is None or rho < best[0]:  # ties: the earlier in the ranking
                best = (rho, alpha, e)
        if best is None:
            return chosen
        _, alpha, winner = best
        chosen.append(winner.project.id)
        for i in supporters[winner.project.id]:
            money[i] -= min(money[i], alpha)
        open_ = [e for e in still_open if e is not winner]


def equal_shares(
    ranking: Ranking,
    ballots: Iterable[Ballot],
    budget_krw: Number,
    *,
    completion: Completion = "add_one_greedy",
    increment_krw: Number = 1,
    max_steps: int = 100_000,
) -> SelectionResult:
    """Method of Equal Shares (Peters-Skowron) for approval ballots with cost utilities.

    Voters are the ballots that approve at least one candidate of `ranking` (a ballot that
    approves none has no say here and would only shrink the budget). The budget is split among
    them: group g (of size n_g among these voters) gets ``budget × w'_g``, where w' are the
    group weights renormalised over the groups present, and each of its voters ``budget × w'_g /
    n_g``; with one group, or weights proportional to the group sizes, that is the equal split.
    In each round the project with the least payment per unit of utility ρ is bought (utility
    of an approved project = its cost, so ρ = α / cost, α the largest payment): its supporters
    pay equally, and one who cannot pays all they have left; ties go to the better-ranked
    project. A project its supporters cannot afford is never bought.

    Completion (the method alone may leave money unspent):
    ``add_one`` reruns the method with the virtual budget raised by `increment_krw` per voter
    at each step (``budget + k × voters × increment``, split by the same group shares) and keeps
    the last outcome that costs at most the real budget, stopping when the next one would cost
    more, when no other project with a paying supporter fits (exhaustive), or after `max_steps`
    steps, as pabutools does; ``add_one_greedy`` (the default, the usual practice) then spends
    what is left with `greedy` in rank order; ``greedy`` does that without add-one; ``none``
    stops after the method itself.
    `ballots` must be those the ranking was counted from (checked).
    """
    budget = as_fraction(budget_krw, name="budget_krw")
    increment = as_fraction(increment_krw, name="increment_krw")
    if budget < 0:
        raise SelectionError("budget must be ≥ 0", field="budget_krw")
    if increment <= 0:
        raise SelectionError("the add-one increment must be > 0", field="increment_krw")
    if completion not in COMPLETIONS:
        raise SelectionError(f"unknown completion {completion!r}", field="completion")
    ballots = list(ballots)
    _check_ballots(ranking, ballots)
    ids = {e.project.id for e in ranking.entries}
    sizes: Counter[tuple[str, frozenset[str]]] = Counter(
        (b.group, b.project_ids & ids) for b in ballots if b.project_ids & ids
    )
    classes = [
        _Voters(approved=a, group=g, size=n)
        for (g, a), n in sorted(sizes.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1])))
    ]
    group_size: Counter[str] = Counter()
    for c in classes:
        group_size[c.group] += c.size
    voters = sum(group_size.values())
    mass = sum((ranking.weights.get(g, Fraction(0)) for g in group_size), Fraction(0))

    def budgets(total: Fraction) -> list[Fraction]:
        return [
            total * ranking.weights.get(c.group, Fraction(0)) / mass / group_size[c.group]
            for c in classes
        ]

    cost = {e.project.id: e.project.cost_krw for e in ranking.entries}
    chosen: list[str] = []
    steps = 0
    stop = "no voter approves a candidate"
    if voters and mass > 0:
        chosen = _mes(ranking.entries, classes, budgets(budget))
        stop = "equal shares alone"
        if completion in ("add_one", "add_one_greedy"):
            payable = {
                e.project.id
                for e in ranking.entries
                if any(
                    e.project.id in c.approved and ranking.weights.get(c.group, 0) > 0
                    for c in classes
                )
            }
            while True:
                used = sum(cost[p] for p in chosen)
                if not any(p not in chosen and used + cost[p] <= budget for p in payable):
                    stop = "exhaustive: no other project with a paying supporter fits"
                    break
                if steps >= max_steps:
                    stop = f"max_steps ({max_steps}) reached"
                    break
                trial = _mes(
                    ranking.entries, classes, budgets(budget + (steps + 1) * voters * increment)
                )
                if sum(cost[p] for p in trial) > budget:
                    stop = f"step {steps + 1} would cost more than the budget"
                    break
                steps += 1
                chosen = trial
    mes_chosen = list(chosen)
    spent = Fraction(sum(cost[p] for p in chosen))
    if completion in ("add_one_greedy", "greedy"):
        rest = [e for e in ranking.entries if e.project.id not in chosen]
        extra, spent, _ = _greedy_fill(rest, budget, spent)
        chosen += extra
    by_rank = [e.project.id for e in ranking.entries]
    details = {
        "voters": str(voters),
        "equal_shares_selected": ",".join(p for p in by_rank if p in mes_chosen),
        "completion_selected": ",".join(p for p in by_rank if p in chosen and p not in mes_chosen),
        "add_one_steps": str(steps),
        "stopped": stop,
    }
    note = (
        f"Method of Equal Shares (cost utilities) within {_krw(budget)} KRW, completion "
        f"{completion}: {_krw(spent)} KRW used"
    )
    line = Line("budget", budget, None, note, details)
    params = {
        "budget_krw": str(budget),
        "completion": completion,
        "increment_krw": str(increment),
    }
    return _result("equal_shares", ranking, set(chosen), params, line)


def _check_ballots(ranking: Ranking, ballots: Sequence[Ballot]) -> None:
    counted = tally(ballots)
    if {g: n for g, n in counted.ballots_cast.items() if n} != {
        g: n for g, n in ranking.ballots_cast.items() if n
    }:
        raise SelectionError(
            "the ballots do not match the ballots cast of the ranking", field="ballots"
        )
    for e in ranking.entries:
        mine = {g: n for (pid, g), n in counted.approvals.items() if pid == e.project.id and n}
        if mine != {g: n for g, n in e.approvals.items() if n}:
            raise SelectionError(
                f"the ballots do not match the approvals of {e.project.id!r}", field="ballots"
            )


# ---- dispatch ----------------------------------------------------------------------------------


def select(
    rule: str,
    ranking: Ranking,
    *,
    drop_ratio: Number | None = None,
    budget_krw: Number | None = None,
    ballots: Iterable[Ballot] | None = None,
    completion: Completion = "add_one_greedy",
    increment_krw: Number = 1,
) -> SelectionResult:
    """Apply the rule a rulebook names (`selection.rule`) to a ranking."""
    if rule == "drop_lowest":
        if drop_ratio is None:
            raise SelectionError("drop_lowest needs a drop ratio", field="drop_ratio")
        return drop_lowest(ranking, drop_ratio)
    if rule == "greedy":
        if budget_krw is None:
            raise SelectionError("greedy needs a budget", field="budget_krw")
        return greedy(ranking, budget_krw)
    if rule == "equal_shares":
        if budget_krw is None:
            raise SelectionError("equal_shares needs a budget", field="budget_krw")
        if ballots is None:
            raise SelectionError("equal_shares needs the ballots", field="ballots")
        return equal_shares(
            ranking, ballots, budget_krw, completion=completion, increment_krw=increment_krw
        )
    raise SelectionError(f"unknown rule {rule!r}; use {', '.join(RULES)}", field="rule")


def select_per_field(
    rule: str,
    ranking: Ranking,
    *,
    drop_ratio: Number | None = None,
    budgets_krw: Mapping[str, Number] | None = None,
    ballots: Iterable[Ballot] | None = None,
    completion: Completion = "add_one_greedy",
    increment_krw: Number = 1,
) -> dict[str, SelectionResult]:
    """`select` on each field's ranking (drop ratio of the field's total; budget per field)."""
    ballot_list = None if ballots is None else list(ballots)
    results = {}
    for name in ranking.fields:
        budget = None if budgets_krw is None else budgets_krw.get(name)
        if rule != "drop_lowest" and budget is None:
            raise SelectionError(f"no budget for field {name!r}", field=f"budgets_krw.{name}")
        results[name] = select(
            rule,
            ranking.for_field(name),
            drop_ratio=drop_ratio,
            budget_krw=budget,
            ballots=ballot_list,
            completion=completion,
            increment_krw=increment_krw,
        )
    return results


# ---- pabulib -----------------------------------------------------------------------------------


def _pabulib_rule(result: SelectionResult) -> str:
    """pabulib's name for the rule when a reader can recompute it from the file alone (one
    effective weight per voter, rank = raw votes); "unknown" otherwise (see `comment`)."""
    total = sum(result.ballots_cast.values())
    neutral = all(
        w == Fraction(result.ballots_cast.get(g, 0), total or 1)
        for g, w in result.effective_weights.items()
    )
    if not neutral:
        return "unknown"
    if result.rule == "greedy":
        skip = result.line.details.get("skip", "true") == "true"
        return "greedy" if skip else "greedy-no-skip"
    if result.rule == "equal_shares":
        return {"none": "equalshares", "add_one": "equalshares/add1"}.get(
            result.params.get("completion", ""), "unknown"
        )
    return "unknown"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def to_pabulib(
    result: SelectionResult,
    ballots: Iterable[Ballot],
    *,
    description: str,
    instance: str,
    country: str = "South Korea",
    unit: str = "Seoul",
    subunit: str | None = None,
    budget_krw: int | None = None,
    date_begin: date | None = None,
    date_end: date | None = None,
    with_groups: bool = True,
) -> str:
    """The result as a pabulib .pb file (approval votes).

    PROJECTS lists the result's projects in rank order (project_id;cost;votes;name;category;
    selected, category = the field, votes = raw approvals). VOTES has one row per ballot that
    approves at least one of them, restricted to them (voter_id;vote[;voter_group]); voter ids
    are 1..n in the order of sha256(group + "\\n" + sorted approved ids), so they depend only on
    the ballots' contents. META's budget is `budget_krw`, else the rule's budget, else (for
    drop_lowest) the selected amount; `rule` is pabulib's name when the file alone reproduces
    the selection, else "unknown", and `comment` states our rule, parameters and weights.
    The voter_group column is an extension that pabulib's checker does not know:
    ``with_groups=False`` leaves it out.
    """
    ids = [o.project_id for o in result.outcomes]
    for pid in ids:
        if any(ch in pid for ch in ',;\n\r"'):
            raise SelectionError(f"project id {pid!r} cannot be written to pabulib", field="id")
    known = set(ids)
    rows = []
    for b in ballots:
        approved = b.project_ids & known
        if approved:
            rows.append((b.group, sorted(approved)))

    def digest(row: tuple[str, list[str]]) -> str:
        return hashlib.sha256(f"{row[0]}\n{','.join(row[1])}".encode()).hexdigest()

    rows.sort(key=lambda row: (digest(row), row))
    if budget_krw is None:
        if "budget_krw" in result.params:
            budget_krw = math.floor(Fraction(result.params["budget_krw"]))
        else:
            budget_krw = result.selected_krw
    order = {pid: i for i, pid in enumerate(ids)}
    params = ", ".join(f"{k}={v}" for k, v in sorted(result.params.items()))
    weights = ", ".join(f"{g}={w}" for g, w in result.weights.items())
    cast = ", ".join(f"{g}={n}" for g, n in result.ballots_cast.items())
    meta: list[tuple[str, str]] = [
        ("description", _one_line(description)),
        ("country", country),
        ("unit", unit),
        *([("subunit", subunit)] if subunit else []),
        ("instance", instance),
        ("num_projects", str(len(ids))),
        ("num_votes", str(len(rows))),
        ("budget", str(budget_krw)),
        ("vote_type", "approval"),
        ("rule", _pabulib_rule(result)),
        *([("date_begin", date_begin.strftime("%d.%m.%Y"))] if date_begin else []),
        *([("date_end", date_end.strftime("%d.%m.%Y"))] if date_end else []),
        ("currency", "KRW"),
        (
            "comment",
            f"#1: selection.rule={result.rule} ({params}); vote.group_weights {weights}; "
            f"ballots cast {cast}; score = sum of weight x approval share per group",
        ),
    ]
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\n")
    w.writerow(["META"])
    w.writerow(["key", "value"])
    for k, v in meta:
        w.writerow([k, _one_line(v)])
    w.writerow(["PROJECTS"])
    w.writerow(["project_id", "cost", "votes", "name", "category", "selected"])
    for o in result.outcomes:
        w.writerow(
            [
                o.project_id,
                o.cost_krw,
                o.total_approvals,
                _one_line(o.name) or o.project_id,
                o.field,
                1 if o.status == "selected" else 0,
            ]
        )
    w.writerow(["VOTES"])
    w.writerow(["voter_id", "vote", *(["voter_group"] if with_groups else [])])
    for n, (group, row_ids) in enumerate(rows, start=1):
        vote = ",".join(sorted(row_ids, key=order.__getitem__))
        w.writerow([n, vote, *([group] if with_groups else [])])
    return out.getvalue()
