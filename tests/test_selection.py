"""Project selection of a budget vote (models/selection.py): pure, fast, no services."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Mapping
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import selection as sel
from models.selection import Ballot, Project, SelectionError

WEIGHTS = {"budget_school": Fraction(1, 10), "general": Fraction(9, 10)}


def ballots_of(spec: list[tuple[str, str, int]]) -> list[Ballot]:
    """[(group, "a,b", count)] -> that many ballots approving a and b."""
    out = []
    for group, ids, n in spec:
        approved = frozenset(i for i in ids.split(",") if i)
        out += [Ballot(group, approved)] * n
    return out


def ranked(
    projects: list[Project], ballots: list[Ballot], weights: Mapping[str, sel.Number] = WEIGHTS
) -> sel.Ranking:
    return sel.rank(projects, sel.tally(ballots), weights)


# ---- weighted score ----------------------------------------------------------------------------


def test_score_is_the_weighted_sum_of_approval_shares() -> None:
    projects = [Project("a", "f", 100), Project("b", "f", 100)]
    ballots = ballots_of(
        [
            ("budget_school", "a", 3),
            ("budget_school", "b", 1),
            ("general", "a,b", 20),
            ("general", "b", 60),
            ("general", "", 20),
        ]
    )
    r = ranked(projects, ballots)
    by_id = {e.project.id: e for e in r.entries}
    # a: 1/10 × 3/4 + 9/10 × 20/100; b: 1/10 × 1/4 + 9/10 × 80/100
    assert by_id["a"].score == Fraction(1, 10) * Fraction(3, 4) + Fraction(9, 10) * Fraction(1, 5)
    assert by_id["b"].score == Fraction(1, 10) * Fraction(1, 4) + Fraction(9, 10) * Fraction(4, 5)
    assert by_id["a"].approvals == {"budget_school": 3, "general": 20}
    assert by_id["b"].total_approvals == 81
    assert [e.project.id for e in r.entries] == ["b", "a"]
    assert [e.rank for e in r.entries] == [1, 2]
    assert r.ballots_cast == {"budget_school": 4, "general": 100}
    assert r.effective_weights == WEIGHTS


def test_a_group_that_cast_no_ballot_gives_its_weight_to_the_others() -> None:
    projects = [Project("a", "f", 100), Project("b", "f", 300), Project("c", "f", 200)]
    ballots = ballots_of([("general", "a", 5), ("general", "b", 7), ("general", "c", 7)])
    r = ranked(projects, ballots)
    assert r.effective_weights == {"budget_school": 0, "general": 1}
    by_id = {e.project.id: e for e in r.entries}
    assert by_id["b"].score == Fraction(7, 19)  # the approval share, not 9/10 of it
    assert by_id["b"].approvals == {"budget_school": 0, "general": 7}
    # raw-count order, the tie (b, c: 7 each) to the cheaper
    assert [e.project.id for e in r.entries] == ["c", "b", "a"]


def test_redistribution_is_proportional_among_the_groups_that_voted() -> None:
    weights = {"a": Fraction(1, 2), "b": Fraction(3, 10), "c": Fraction(1, 5)}
    eff = sel.effective_weights(weights, {"a": 4, "b": 2, "c": 0})
    assert eff == {"a": Fraction(5, 8), "b": Fraction(3, 8), "c": 0}
    assert sel.effective_weights(weights, {}) == {"a": 0, "b": 0, "c": 0}


def test_no_ballot_at_all_ranks_by_the_tie_break_alone() -> None:
    projects = [Project("b", "f", 200), Project("a", "f", 200), Project("c", "f", 100)]
    r = ranked(projects, [])
    assert [e.score for e in r.entries] == [0, 0, 0]
    assert [e.project.id for e in r.entries] == ["c", "a", "b"]  # cheaper, then id
    assert sel.drop_lowest(r, "0.4").dropped_ids == ("b",)  # 200 ≤ 0.4 × 500


def test_ties_break_by_raw_approvals_then_cost_then_id() -> None:
    weights = {"g1": Fraction(1, 2), "g2": Fraction(1, 2)}
    # same score 1/4, p (500 KRW) has 2 raw approvals, q (100 KRW) 1: p first, cost second
    projects = [Project("q", "f", 100), Project("p", "f", 500)]
    ballots = ballots_of([("g1", "p", 2), ("g1", "", 2), ("g2", "q", 1), ("g2", "", 1)])
    r = ranked(projects, ballots, weights)
    assert {e.project.id: e.score for e in r.entries} == {"p": Fraction(1, 4), "q": Fraction(1, 4)}
    assert [e.project.id for e in r.entries] == ["p", "q"]
    # y, z, w: same score 3/8 and 2 raw approvals each; y is cheaper; z, w by id
    projects = [
        Project("w", "f", 300),
        Project("z", "f", 300),
        Project("y", "f", 100),
        Project("x", "f", 900),
    ]
    ballots = ballots_of([("g1", "x", 1), ("g1", "y,z,w", 1), ("g2", "x", 3), ("g2", "y,z,w", 1)])
    r = ranked(projects, ballots, weights)
    scores = {e.project.id: e.score for e in r.entries}
    assert scores == {
        "x": Fraction(5, 8),
        "y": Fraction(3, 8),
        "z": Fraction(3, 8),
        "w": Fraction(3, 8),
    }
    assert [e.project.id for e in r.entries] == ["x", "y", "w", "z"]


def test_bad_inputs_are_refused_with_the_field_named() -> None:
    p = [Project("a", "f", 100)]
    with pytest.raises(SelectionError) as e:
        ranked(p, ballots_of([("visitors", "a", 1)]))
    assert e.value.field == "weights.visitors"
    with pytest.raises(SelectionError):
        sel.rank(p, sel.tally([]), {"general": 0.9})  # type: ignore[dict-item]
    with pytest.raises(SelectionError):
        sel.rank(p, sel.Tally({("a", "general"): 3}, {"general": 2}), WEIGHTS)
    with pytest.raises(SelectionError):
        ranked([Project("a", "f", 0)], [])
    with pytest.raises(SelectionError):
        ranked([Project("a", "f", 1), Project("a", "g", 2)], [])
    with pytest.raises(SelectionError):
        ranked(p, ballots_of([("general", "a", 1)]), {"general": 0, "budget_school": 1})
    assert sel.as_fraction("0.1") == Fraction(1, 10)
    with pytest.raises(SelectionError):
        sel.as_fraction(True)


# ---- drop_lowest -------------------------------------------------------------------------------


def _ranked_by_votes(costs: list[tuple[str, int]]) -> sel.Ranking:
    """Projects ranked in the order given (first = most approvals), one group."""
    projects = [Project(pid, "f", c) for pid, c in costs]
    n = len(costs)
    ballots = [Ballot("general", frozenset(pid for pid, _ in costs[: n - i])) for i in range(n)]
    r = sel.rank(projects, sel.tally(ballots), {"general": 1})
    assert [e.project.id for e in r.entries] == [pid for pid, _ in costs]
    return r


def test_drop_lowest_drops_a_project_exactly_at_the_line() -> None:
    r = _ranked_by_votes([("a", 9_000), ("b", 600), ("c", 400)])  # total 10,000
    res = sel.drop_lowest(r, Fraction(1, 10))  # line: 1,000 KRW
    assert res.line.limit_krw == 1_000
    assert res.dropped_ids == ("b", "c")  # 400 + 600 = 1,000, on the line
    assert res.dropped_krw == 1_000 and res.selected_krw == 9_000
    assert res.line.boundary_project_id == "a"
    assert res.rule == "drop_lowest" and res.params == {"drop_ratio": "1/10"}


def test_drop_lowest_keeps_a_project_one_krw_over_the_line() -> None:
    r = _ranked_by_votes([("a", 8_999), ("b", 601), ("c", 400)])  # total 10,000
    res = sel.drop_lowest(r, "0.1")
    assert res.dropped_ids == ("c",)  # 400 + 601 = 1,001 > 1,000: b straddles and is kept
    assert res.selected_ids == ("a", "b")
    assert res.line.boundary_project_id == "b"
    assert "b (rank 2" in res.line.note and "1,001" in res.line.note


def test_drop_lowest_never_skips_over_the_straddling_project() -> None:
    # d (100 KRW) would still fit under the line, but it is ranked above the kept b
    r = _ranked_by_votes([("a", 8_899), ("d", 100), ("b", 601), ("c", 400)])
    res = sel.drop_lowest(r, Fraction(1, 10))
    assert res.dropped_ids == ("c",)
    assert [o.status for o in res.outcomes] == ["selected", "selected", "selected", "dropped"]


def test_drop_lowest_a_single_bottom_project_bigger_than_the_line_is_kept() -> None:
    r = _ranked_by_votes([("a", 100), ("b", 900)])
    res = sel.drop_lowest(r, Fraction(30, 100))
    assert res.dropped_ids == () and res.dropped_krw == 0
    assert res.line.boundary_project_id == "b"


def test_group_weights_change_who_is_dropped() -> None:
    projects = [Project("r", "f", 700), Project("p", "f", 100), Project("q", "f", 100)]
    ballots = ballots_of(
        [
            ("general", "r,p", 52),
            ("general", "r,q", 28),
            ("general", "q", 13),
            ("general", "", 7),
            ("budget_school", "r,q", 5),
            ("budget_school", "q", 5),
        ]
    )
    # p: raw 52, score 9/10 × 52/100 = 0.468; q: raw 41 + 10 = 51, score 0.369 + 0.1 = 0.469
    weighted = ranked(projects, ballots)
    raw = ranked(projects, ballots, {"budget_school": 10, "general": 100})  # ∝ ballots cast
    assert {e.project.id: e.total_approvals for e in weighted.entries}["p"] == 52
    assert sel.drop_lowest(weighted, Fraction(1, 9)).dropped_ids == ("p",)
    assert sel.drop_lowest(raw, Fraction(1, 9)).dropped_ids == ("q",)
    assert [e.project.id for e in raw.entries] == ["r", "p", "q"]


def test_drop_lowest_per_field_uses_the_fields_total() -> None:
    projects = [
        Project("w1", "welfare", 800),
        Project("w2", "welfare", 200),
        Project("t1", "transport", 5_000),
        Project("t2", "transport", 400),
    ]
    ballots = ballots_of([("general", "w1,t2", 3), ("general", "w2,t1", 1)])
    r = ranked(projects, ballots)
    results = sel.select_per_field("drop_lowest", r, drop_ratio="0.2")
    assert set(results) == {"transport", "welfare"}
    assert results["welfare"].dropped_ids == ("w2",)  # 200 ≤ 0.2 × 1,000
    assert results["transport"].dropped_ids == ()  # t1: 5,000 > 0.2 × 5,400
    assert [o.rank for o in results["transport"].outcomes] == [1, 2]
    # on the whole list the line is 0.2 × 6,400 = 1,280 and the bottom is t1 (5,000): kept
    whole = sel.select("drop_lowest", r, drop_ratio="0.2")
    assert whole.dropped_ids == () and whole.line.boundary_project_id == "t1"


# ---- greedy and the level ----------------------------------------------------------------------


def test_greedy_skips_what_no_longer_fits_and_goes_on() -> None:
    r = _ranked_by_votes([("a", 600), ("b", 500), ("c", 300), ("d", 100)])
    res = sel.greedy(r, 1_000)
    assert res.selected_ids == ("a", "c", "d")
    assert res.selected_krw == 1_000 and res.dropped_krw == 500
    assert res.line.boundary_project_id == "b"
    assert res.rule == "greedy"


def test_select_to_level_allows_the_tolerance_and_reports_the_level() -> None:
    r = _ranked_by_votes([("a", 600), ("b", 440), ("c", 300), ("d", 20)])
    res = sel.select_to_level(r, 1_000, "0.05")  # budget 1,050
    assert res.selected_ids == ("a", "b")  # 1,040; c no longer fits, d would: 1,060 > 1,050
    assert res.line.limit_krw == 1_050 and res.line.details["level_reached"] == "true"
    assert res.params["allocation_krw"] == "1000" and res.rule == "greedy"
    short = sel.select_to_level(
        _ranked_by_votes([("a", 600), ("b", 500), ("c", 10)]), 1_000, "0.05"
    )
    assert short.selected_ids == ("a", "c") and short.line.details["level_reached"] == "false"
    stop = sel.select_to_level(
        _ranked_by_votes([("a", 600), ("b", 500), ("c", 10)]), 1_000, "0.05", skip=False
    )
    assert stop.selected_ids == ("a",)


# ---- equal_shares ------------------------------------------------------------------------------


def test_equal_shares_51_red_49_blue() -> None:
    """The classic example (Peters-Skowron; equalshares.net, Wikipedia "Method of Equal
    Shares"): 51 % approve 10 red projects, 49 % 10 blue ones, money for 10: the method gives
    5 and 5, approval greedy gives the 10 red ones. By hand, costs 1,000 KRW, budget 10,000,
    100 voters with 100 KRW each: red projects cost each red voter 1,000/51, so the red voters
    afford 5 (5 × 19.6 ≤ 100 < 6 × 19.6) and the blue ones 4 (4 × 20.4 ≤ 100 < 5 × 20.4);
    add-one reaches 5 blue at 103 KRW per voter (49 × 103 ≥ 5,000), where the 10 are exhaustive."""
    reds = [Project(f"r{i}", "f", 1_000) for i in range(10)]
    blues = [Project(f"b{i}", "f", 1_000) for i in range(10)]
    ballots = [Ballot("general", frozenset(p.id for p in reds))] * 51
    ballots += [Ballot("general", frozenset(p.id for p in blues))] * 49
    r = sel.rank(reds + blues, sel.tally(ballots), {"general": 1})
    alone = sel.equal_shares(r, ballots, 10_000, completion="none")
    assert Counter(i[0] for i in alone.selected_ids) == {"r": 5, "b": 4}
    add_one = sel.equal_shares(r, ballots, 10_000)  # add_one_greedy
    assert Counter(i[0] for i in add_one.selected_ids) == {"r": 5, "b": 5}
    assert add_one.line.details["add_one_steps"] == "3"
    assert add_one.selected_krw == 10_000
    filled = sel.equal_shares(r, ballots, 10_000, completion="greedy")
    assert Counter(i[0] for i in filled.selected_ids) == {"r": 6, "b": 4}
    assert sel.greedy(r, 10_000).selected_ids == tuple(f"r{i}" for i in range(10))


def test_equal_shares_equalshares_net_small_example() -> None:
    """The .pb example of equalshares.net: budget 100,000, projects 1 (5,000), 2 (10,000),
    3 (85,000), votes {1,2}, {1}, {3}, {1,2,3}. Each voter has 25,000: 1 costs its 3 voters
    1,666.67 each (ρ = 1/3), then 2 costs its 2 voters 5,000 each (ρ = 1/2); 3 needs 85,000 from
    voters holding 25,000 + 18,333.33, so the method stops at {1, 2}; greedy completion then
    fits 3 exactly in the 85,000 left."""
    projects = [Project("1", "f", 5_000), Project("2", "f", 10_000), Project("3", "f", 85_000)]
    ballots = [Ballot("general", frozenset(v)) for v in ({"1", "2"}, {"1"}, {"3"}, {"1", "2", "3"})]
    r = sel.rank(projects, sel.tally(ballots), {"general": 1})
    assert sel.equal_shares(r, ballots, 100_000, completion="none").selected_ids == ("1", "2")
    res = sel.equal_shares(r, ballots, 100_000, completion="greedy")
    assert set(res.selected_ids) == {"1", "2", "3"}
    assert res.line.details["equal_shares_selected"] == "1,2"
    assert res.line.details["completion_selected"] == "3"
    # add-one (1,000 KRW a step) reaches 3 within the method at 45,834+ KRW per voter
    res = sel.equal_shares(r, ballots, 100_000, completion="add_one", increment_krw=1_000)
    assert set(res.selected_ids) == {"1", "2", "3"} and res.line.details["add_one_steps"] == "21"


def test_equal_shares_weights_give_a_group_its_share_of_the_budget() -> None:
    """Budget 1,000; 1 budget-school voter (weight 1/10: 100 KRW) approves b (100 KRW); 18
    general voters (9/10: 50 KRW each) approve a (900 KRW). Equal split (52.63 each): b cannot
    be paid by its one supporter. Weighted: a (ρ = 1/18), then b, paid by the school voter."""
    projects = [Project("a", "f", 900), Project("b", "f", 100)]
    ballots = ballots_of([("budget_school", "b", 1), ("general", "a", 18)])
    weighted = ranked(projects, ballots)
    assert sel.equal_shares(weighted, ballots, 1_000, completion="none").selected_ids == ("a", "b")
    equal = ranked(projects, ballots, {"budget_school": 1, "general": 18})
    assert sel.equal_shares(equal, ballots, 1_000, completion="none").selected_ids == ("a",)


def test_equal_shares_ignores_ballots_without_a_candidate_and_checks_the_ballots() -> None:
    projects = [Project("a", "f", 100), Project("b", "g", 100)]
    ballots = ballots_of([("general", "a", 1), ("general", "b", 3)])
    r = ranked(projects, ballots).for_field("f")
    res = sel.equal_shares(r, ballots, 100, completion="none")
    assert res.selected_ids == ("a",)  # a's one voter has the field's whole budget
    assert res.line.details["voters"] == "1"
    with pytest.raises(SelectionError) as e:
        sel.equal_shares(r, ballots[:2], 100)
    assert e.value.field == "ballots"
    with pytest.raises(SelectionError):
        sel.select("equal_shares", r, budget_krw=100)
    with pytest.raises(SelectionError):
        sel.select("lottery", r)


def test_equal_shares_matches_a_reference_implementation_on_random_profiles() -> None:
    """The method written the slow, textbook way (one voter at a time, float-free) agrees."""

    def textbook(costs: dict[str, int], votes: list[frozenset[str]], budget: int) -> set[str]:
        voters = [v for v in votes if v]
        money = [Fraction(budget, len(voters))] * len(voters)
        chosen: set[str] = set()
        order = list(costs)  # already in rank order
        while True:
            best = None
            for pid in order:
                if pid in chosen:
                    continue
                sup = [i for i, v in enumerate(voters) if pid in v]
                if not sup or sum(money[i] for i in sup) < costs[pid]:
                    continue
                # α solves Σ min(money, α) = cost: find the smallest money level M with
                # Σ min(money, M) ≥ cost; below M everyone pays all, from M on α each
                level = min(
                    m
                    for m in {money[i] for i in sup}
                    if sum(min(money[i], m) for i in sup) >= costs[pid]
                )
                poor = [money[i] for i in sup if money[i] < level]
                alpha = (costs[pid] - sum(poor, Fraction(0))) / (len(sup) - len(poor))
                assert alpha is not None
                if best is None or alpha / costs[pid] < best[0]:
                    best = (alpha / costs[pid], alpha, pid)
            if best is None:
                return chosen
            chosen.add(best[2])
            for i, v in enumerate(voters):
                if best[2] in v:
                    money[i] -= min(money[i], best[1])

    rnd = random.Random(20200829)
    for _ in range(150):
        m = rnd.randint(1, 6)
        projects = [Project(f"p{i}", "f", rnd.randint(1, 50)) for i in range(m)]
        votes = [
            frozenset(p.id for p in projects if rnd.random() < 0.45)
            for _ in range(rnd.randint(1, 12))
        ]
        ballots = [Ballot("general", v) for v in votes]
        budget = rnd.randint(1, sum(p.cost_krw for p in projects))
        r = sel.rank(projects, sel.tally(ballots), {"general": 1})
        if not any(votes):
            continue
        mine = set(sel.equal_shares(r, ballots, budget, completion="none").selected_ids)
        costs = {e.project.id: e.project.cost_krw for e in r.entries}
        assert mine == textbook(costs, votes, budget)


# ---- results -----------------------------------------------------------------------------------


def test_result_names_the_rule_and_every_projects_line() -> None:
    projects = [Project("a", "f", 300, "Shade trees"), Project("b", "f", 100, "Benches")]
    ballots = ballots_of([("budget_school", "a", 1), ("general", "a,b", 2), ("general", "", 1)])
    res = sel.select("greedy", ranked(projects, ballots), budget_krw=350)
    first = res.outcomes[0]
    assert (first.project_id, first.rank, first.status, first.cost_krw) == ("a", 1, "selected", 300)
    assert first.approvals == {"budget_school": 1, "general": 2}
    assert first.score == Fraction(1, 10) + Fraction(9, 10) * Fraction(2, 3)
    assert res.outcomes[1].status == "dropped"
    assert (res.total_krw, res.selected_krw, res.dropped_krw) == (400, 300, 100)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["rule"] == "greedy" and data["projects"][0]["score"] == "7/10"
    assert data["weights"] == {"budget_school": "1/10", "general": "9/10"}


# ---- pabulib -----------------------------------------------------------------------------------


def parse_pb(text: str) -> tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
    """A minimal pabulib reader (as pabutools reads: ';' csv, a header after each section)."""
    meta: dict[str, str] = {}
    projects: list[dict[str, str]] = []
    votes: list[dict[str, str]] = []
    section, header = "", []
    rows = csv.reader(text.splitlines(), delimiter=";")
    for row in rows:
        if row and row[0].strip().lower() in ("meta", "projects", "votes"):
            section, header = row[0].strip().lower(), next(rows)
        elif section == "meta":
            meta[row[0]] = row[1]
        elif section == "projects":
            projects.append(dict(zip(header, row, strict=True)))
        else:
            votes.append(dict(zip(header, row, strict=True)))
    return meta, projects, votes


def _pb_case() -> tuple[sel.SelectionResult, list[Ballot]]:
    projects = [
        Project("p1", "welfare", 5_000, "Ramps; for wheelchairs"),
        Project("p2", "welfare", 3_000, "Night bus\nstops"),
        Project("p3", "welfare", 2_000, "경로당 냉방"),
        Project("q1", "transport", 9_000, "elsewhere"),
    ]
    ballots = ballots_of(
        [
            ("general", "p1,p2", 4),
            ("general", "p3", 2),
            ("budget_school", "p1,p3", 1),
            ("general", "q1", 3),
            ("general", "", 1),
        ]
    )
    r = ranked(projects, ballots).for_field("welfare")
    return sel.drop_lowest(r, "0.2"), ballots


def test_pabulib_export_parses_back() -> None:
    res, ballots = _pb_case()
    text = sel.to_pabulib(
        res,
        ballots,
        description="Seoul 2020 metropolitan proposals, welfare",
        instance="2020",
        subunit="welfare",
        date_begin=date(2020, 8, 1),
        date_end=date(2020, 8, 31),
    )
    meta, projects, votes = parse_pb(text)
    assert meta["vote_type"] == "approval" and meta["country"] == "South Korea"
    assert meta["num_projects"] == "3" and meta["num_votes"] == str(len(votes)) == "7"
    assert meta["budget"] == str(res.selected_krw) == "8000"
    assert meta["rule"] == "unknown" and meta["comment"].startswith(
        "#1: selection.rule=drop_lowest"
    )
    assert meta["date_begin"] == "01.08.2020" and meta["currency"] == "KRW"
    assert [p["project_id"] for p in projects] == ["p1", "p2", "p3"]
    assert (
        projects[0]["name"] == "Ramps; for wheelchairs" and projects[1]["name"] == "Night bus stops"
    )
    assert {p["project_id"]: p["selected"] for p in projects} == {"p1": "1", "p2": "1", "p3": "0"}
    assert {p["project_id"]: p["votes"] for p in projects} == {"p1": "5", "p2": "4", "p3": "3"}
    assert [v["voter_id"] for v in votes] == [str(i) for i in range(1, 8)]
    back = Counter((v["voter_group"], frozenset(v["vote"].split(","))) for v in votes)
    assert back == Counter(
        (b.group, b.project_ids & {"p1", "p2", "p3"})
        for b in ballots
        if b.project_ids & {"p1", "p2", "p3"}
    )


def test_pabulib_voter_ids_do_not_follow_the_input_order() -> None:
    res, ballots = _pb_case()
    texts = set()
    for seed in range(5):
        shuffled = list(ballots)
        random.Random(seed).shuffle(shuffled)
        texts.add(sel.to_pabulib(res, shuffled, description="d", instance="2020"))
    assert len(texts) == 1
    _, _, votes = parse_pb(texts.pop())
    # the budget-school ballot came third in the input; its place is its content's hash
    groups = [v["voter_group"] for v in votes]
    assert groups.count("budget_school") == 1
    no_groups = sel.to_pabulib(res, ballots, description="d", instance="2020", with_groups=False)
    assert "voter_group" not in no_groups and "budget_school" not in no_groups.split("VOTES")[1]


def test_pabulib_names_the_rule_when_the_file_reproduces_it() -> None:
    projects = [Project("a", "f", 600), Project("b", "f", 500), Project("c", "f", 300)]
    ballots = ballots_of([("general", "a,b", 3), ("general", "c", 2)])
    r = sel.rank(projects, sel.tally(ballots), {"general": 1, "budget_school": 1})
    meta, _, _ = parse_pb(
        sel.to_pabulib(sel.greedy(r, 1_000), ballots, description="d", instance="i")
    )
    assert meta["rule"] == "greedy" and meta["budget"] == "1000"
    mes = sel.equal_shares(r, ballots, 1_000, completion="add_one")
    assert parse_pb(sel.to_pabulib(mes, ballots, description="d", instance="i"))[0]["rule"] == (
        "equalshares/add1"
    )
    weighted = ranked(projects, ballots + ballots_of([("budget_school", "b", 1)]))
    res = sel.greedy(weighted, 1_000)
    assert parse_pb(sel.to_pabulib(res, [], description="d", instance="i"))[0]["rule"] == "unknown"
    with pytest.raises(SelectionError):
        bad = sel.greedy(sel.rank([Project("x,y", "f", 1)], sel.tally([]), WEIGHTS), 1)
        sel.to_pabulib(bad, [], description="d", instance="i")


# ---- properties --------------------------------------------------------------------------------

GROUPS = ("budget_school", "general")


@st.composite
def elections(draw: st.DrawFn) -> tuple[list[Project], list[Ballot]]:
    n = draw(st.integers(min_value=1, max_value=7))
    costs = draw(st.lists(st.integers(1, 2_000), min_size=n, max_size=n))
    projects = [Project(f"p{i}", draw(st.sampled_from(["a", "b"])), c) for i, c in enumerate(costs)]
    ids = [p.id for p in projects]
    ballots = draw(
        st.lists(
            st.builds(
                Ballot,
                st.sampled_from(GROUPS),
                st.frozensets(st.sampled_from(ids), max_size=n),
            ),
            max_size=25,
        )
    )
    return projects, ballots


@settings(max_examples=150, deadline=None)
@given(elections(), st.fractions(min_value=Fraction(5, 100), max_value=Fraction(30, 100)))
def test_drop_lowest_never_drops_more_than_the_ratio(
    election: tuple[list[Project], list[Ballot]], ratio: Fraction
) -> None:
    projects, ballots = election
    r = ranked(projects, ballots)
    res = sel.drop_lowest(r, ratio)
    assert res.dropped_krw <= ratio * res.total_krw
    statuses = [o.status for o in res.outcomes]
    assert statuses == sorted(statuses, key=lambda s: s == "dropped")  # a bottom segment
    kept = [o for o in res.outcomes if o.status == "selected"]
    if kept:  # maximal: the lowest kept project would take it over the line
        assert res.dropped_krw + kept[-1].cost_krw > ratio * res.total_krw
        assert res.line.boundary_project_id == kept[-1].project_id


@settings(max_examples=150, deadline=None)
@given(elections(), st.integers(0, 8_000))
def test_greedy_and_equal_shares_never_exceed_the_budget(
    election: tuple[list[Project], list[Ballot]], budget: int
) -> None:
    projects, ballots = election
    r = ranked(projects, ballots)
    for res in (
        sel.greedy(r, budget),
        sel.equal_shares(r, ballots, budget, increment_krw=50),
        sel.select_to_level(r, budget, "0.05"),
    ):
        assert res.selected_krw <= res.line.limit_krw
        assert res.selected_krw + res.dropped_krw == res.total_krw
    g = sel.greedy(r, budget)
    for o in g.outcomes:  # every dropped project did not fit when its turn came
        if o.status == "dropped":
            before = sum(
                x.cost_krw for x in g.outcomes if x.status == "selected" and x.rank < o.rank
            )
            assert before + o.cost_krw > budget


@settings(max_examples=100, deadline=None)
@given(elections(), st.randoms(use_true_random=False), st.integers(0, 8_000))
def test_results_are_the_same_for_any_input_order(
    election: tuple[list[Project], list[Ballot]], rnd: random.Random, budget: int
) -> None:
    projects, ballots = election
    p2, b2 = list(projects), list(ballots)
    rnd.shuffle(p2)
    rnd.shuffle(b2)
    weights2 = dict(reversed(list(WEIGHTS.items())))
    one, two = ranked(projects, ballots), ranked(p2, b2, weights2)
    assert one == two
    assert sel.drop_lowest(one, "0.3") == sel.drop_lowest(two, "0.3")
    assert sel.greedy(one, budget) == sel.greedy(two, budget)
    assert sel.equal_shares(one, ballots, budget, increment_krw=50) == sel.equal_shares(
        two, b2, budget, increment_krw=50
    )
    for field in one.fields:
        assert sel.to_pabulib(
            sel.drop_lowest(one.for_field(field), "0.1"), ballots, description="d", instance="i"
        ) == sel.to_pabulib(
            sel.drop_lowest(two.for_field(field), "0.1"), b2, description="d", instance="i"
        )


@settings(max_examples=100, deadline=None)
@given(elections())
def test_weights_proportional_to_turnout_rank_by_raw_counts(
    election: tuple[list[Project], list[Ballot]],
) -> None:
    projects, ballots = election
    cast = Counter(b.group for b in ballots)
    r = ranked(projects, ballots, {g: cast.get(g, 0) for g in GROUPS})
    keys = [(-e.total_approvals, e.project.cost_krw, e.project.id) for e in r.entries]
    assert keys == sorted(keys)
