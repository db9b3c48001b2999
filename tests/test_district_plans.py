"""District plans (구단위계획형) and neighbourhood plans (동단위계획형), process.md §8, §6a: every
write in its phase of the cycle (both sides of each boundary), both ceilings at their boundary,
the strategic districts' count, the two negotiation rounds, the decision and the agreement,
roles and districts, through the HTTP API on the time-skipping server; and the plan's workflow
with stubbed activities."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

import rulebooks
from models.budget import BudgetCycleStart
from models.calendar import SEOUL
from models.district_plans import (
    Agreement,
    DistrictPlanStart,
    FundingDecision,
    Negotiation,
    PlanStatus,
    district_ceiling_krw,
)
from models.ids import budget_cycle_workflow_id
from models.sortition import DISTRICTS
from tests.helpers import Api, expect, expect_problem
from tests.test_budget_cycle import advance_to, next_year, seoul, wait_phase
from tests.workflow_stubs import StubActivities, stubbed_worker, time_skipping_env
from workflows.budget import BudgetCycleWorkflow
from workflows.district_plan import DistrictPlanWorkflow

RULEBOOK = "seoul-2021-2"
#: "Before" a boundary: a minute before it (the simulated clock runs at wall speed between
#: advances, so there is a minute of wall time to act in).
BEFORE = timedelta(minutes=1)
BN = 1_000_000_000
M = 1_000_000
FIVE = ["Mapo-gu", "Gwanak-gu", "Nowon-gu", "Eunpyeong-gu", "Seongdong-gu"]


async def before(api: Api, year: int, moment: datetime, kind: str, phase: str) -> None:
    """A minute before `moment`, with `kind` still in `phase`."""
    await advance_to(api, moment - BEFORE)
    await wait_phase(api, year, kind, phase)


async def at(api: Api, year: int, moment: datetime, kind: str, phase: str) -> None:
    await advance_to(api, moment)
    await wait_phase(api, year, kind, phase)


def refused_for_phase(response: httpx.Response, phase: str) -> dict[str, Any]:
    problem = expect_problem(response, 409)
    assert f"{phase} phase" in problem["detail"], problem
    return problem


async def district_worker(api: Api, district: str) -> dict[str, str]:
    return await api.official("caseworker", f"district:{district}")


# ---- district plans -----------------------------------------------------------------------------


async def test_a_district_plan_from_the_strategic_selection_to_the_agreement(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": RULEBOOK}), 201)
    base = f"/v1/budget-cycles/{year}"
    mapo, jongno, guro = (
        await district_worker(api, "Mapo-gu"),
        await district_worker(api, "Jongno-gu"),
        await district_worker(api, "Guro-gu"),
    )
    parks = await api.official("caseworker", "parks")
    citizen = await api.citizen()
    strategic = f"{base}/strategic-districts"

    # ---- the applications of February, then the strategic districts: 3월 초 ---------------------
    applications = f"{base}/district-applications"
    await before(api, year, seoul(year, 2, 1), "district", "briefing")
    mapo_applies = {"district": "Mapo-gu", "strategic": True}
    refused_for_phase(await api.post(applications, mapo, mapo_applies), "applications")
    await at(api, year, seoul(year, 2, 1), "district", "applications")
    expect_problem(await api.post(applications, jongno, mapo_applies), 403)
    expect_problem(await api.post(applications, admin, mapo_applies), 403)
    for district in FIVE:
        worker = await district_worker(api, district)
        body = {"district": district, "strategic": True, "note": "plan and strategic projects"}
        applied = expect(await api.post(applications, worker, body), 201)
        assert (applied["district"], applied["strategic"]) == (district, True)
    expect_problem(await api.post(applications, mapo, mapo_applies), 409)
    plan_only = {"district": "Guro-gu", "strategic": False}
    expect(await api.post(applications, guro, plan_only), 201)
    listed = expect(await api.http.get(applications), 200)["items"]
    assert sorted(a["district"] for a in listed) == sorted([*FIVE, "Guro-gu"])
    assert "applied_by" not in listed[0]
    await before(api, year, seoul(year, 3, 1), "district", "applications")
    late = {"district": "Jongno-gu", "strategic": False}
    expect(await api.post(applications, jongno, late), 201)
    refused_for_phase(await api.post(strategic, admin, {"districts": FIVE}), "selection")
    await at(api, year, seoul(year, 3, 1), "district", "selection")
    too_late = {"district": "Nowon-gu", "strategic": True}
    refused_for_phase(
        await api.post(applications, await district_worker(api, "Nowon-gu"), too_late),
        "applications",
    )
    expect_problem(await api.post(strategic, mapo, {"districts": FIVE}), 403)
    for districts in (FIVE[:4], [*FIVE, "Guro-gu", "Jung-gu"]):
        problem = expect_problem(
            await api.post(strategic, admin, {"districts": districts}), 422, field="districts"
        )
        assert "5 to 6" in problem["detail"] and str(len(districts)) in problem["detail"]
    expect_problem(
        await api.post(strategic, admin, {"districts": [*FIVE[:4], "Atlantis"]}),
        422,
        field="districts",
    )
    expect_problem(
        await api.post(strategic, admin, {"districts": [*FIVE[:4], FIVE[0]]}),
        422,
        field="districts",
    )
    expect_problem(await api.http.get(strategic), 404)
    # only districts that applied for strategic projects: Guro-gu applied for the plan only
    not_applied = expect_problem(
        await api.post(strategic, admin, {"districts": [*FIVE[:4], "Guro-gu"]}),
        422,
        field="districts",
    )
    assert "Guro-gu did not apply for strategic projects" in not_applied["detail"]
    chosen = expect(await api.post(strategic, admin, {"districts": FIVE, "note": "board"}), 201)
    assert chosen["districts"] == FIVE
    assert expect(await api.http.get(strategic), 200)["districts"] == FIVE
    expect_problem(await api.post(strategic, admin, {"districts": [*FIVE, "Guro-gu"]}), 409)

    # ---- the first submission: 7월 초 -----------------------------------------------------------
    plans = f"{base}/district-plans"

    def plan(district: str, cost: int, *, strategic: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "district": district,
            "strategic": strategic,
            "plan": f"{district}: the first year's plan",
            "cost_krw": cost,
        }
        if strategic:
            body["strategy"] = f"{district}: the 3-year strategy"
        return body

    await before(api, year, seoul(year, 7, 1), "district", "consulting")
    refused_for_phase(await api.post(plans, jongno, plan("Jongno-gu", BN)), "submission")
    await at(api, year, seoul(year, 7, 1), "district", "submission")
    # who: a caseworker of the district, for that district only
    expect_problem(await api.post(plans, citizen, plan("Jongno-gu", BN)), 403)
    expect_problem(await api.post(plans, parks, plan("Jongno-gu", BN)), 403)
    expect_problem(await api.post(plans, admin, plan("Jongno-gu", BN)), 403)
    expect_problem(await api.post(plans, mapo, plan("Jongno-gu", BN)), 403)
    expect_problem(await api.post(plans, jongno, plan("Atlantis", BN)), 422, field="district")
    expect_problem(
        await api.post(plans, jongno, {**plan("Jongno-gu", BN), "cost_krw": "1000"}),
        422,
        field="cost_krw",
    )
    # the strategic flag follows the March selection; a strategic plan brings its strategy
    expect_problem(
        await api.post(plans, jongno, plan("Jongno-gu", BN, strategic=True)),
        422,
        field="strategic",
    )
    expect_problem(await api.post(plans, mapo, plan("Mapo-gu", BN)), 422, field="strategic")
    no_strategy = {**plan("Mapo-gu", BN, strategic=True)}
    del no_strategy["strategy"]
    expect_problem(await api.post(plans, mapo, no_strategy), 422, field="strategy")
    # the ceilings at their boundary: 1 billion, 1.3 billion for a strategic district (이내)
    over = expect_problem(
        await api.post(plans, jongno, plan("Jongno-gu", BN + 1)), 422, field="cost_krw"
    )
    assert "1,000,000,000 KRW" in over["detail"]
    over = expect_problem(
        await api.post(plans, mapo, plan("Mapo-gu", BN + 300 * M + 1, strategic=True)),
        422,
        field="cost_krw",
    )
    assert "1,300,000,000 KRW" in over["detail"]
    j = expect(await api.post(plans, jongno, plan("Jongno-gu", BN)), 201)
    assert (j["status"], j["cost_krw"], j["ceiling_krw"], j["strategic"]) == (
        "submitted",
        BN,
        BN,
        False,
    )
    m = expect(await api.post(plans, mapo, plan("Mapo-gu", BN + 300 * M, strategic=True)), 201)
    assert m["ceiling_krw"] == BN + 300 * M and m["strategy"] == "Mapo-gu: the 3-year strategy"
    expect_problem(await api.post(plans, jongno, plan("Jongno-gu", 5 * M)), 409)
    await before(api, year, seoul(year, 7, 11), "district", "submission")
    g = expect(await api.post(plans, guro, plan("Guro-gu", 500 * M)), 201)
    # negotiation is not open yet
    jpath, mpath, gpath = (f"/v1/district-plans/{p['id']}" for p in (j, m, g))
    round_one = {"notes": "the city asks for fewer events"}
    refused_for_phase(await api.post(f"{jpath}/negotiations", admin, round_one), "negotiation")
    await at(api, year, seoul(year, 7, 11), "district", "negotiation")
    seocho = await district_worker(api, "Seocho-gu")
    refused_for_phase(await api.post(plans, seocho, plan("Seocho-gu", BN)), "submission")

    # ---- two rounds of negotiation: 7~8월 -------------------------------------------------------
    expect_problem(await api.post(f"{jpath}/negotiations", jongno, round_one), 403)
    over = expect_problem(
        await api.post(f"{jpath}/negotiations", admin, {**round_one, "adjusted_cost_krw": BN + 1}),
        422,
        field="adjusted_cost_krw",
    )
    assert "1,000,000,000 KRW" in over["detail"]
    first = expect(
        await api.post(f"{jpath}/negotiations", admin, {**round_one, "adjusted_cost_krw": 800 * M}),
        200,
    )
    assert first["status"] == "negotiating" and first["cost_krw"] == 800 * M
    second = expect(
        await api.post(
            f"{jpath}/negotiations", admin, {"notes": "agreed", "adjusted_cost_krw": BN}
        ),
        200,
    )
    assert second["status"] == "negotiated" and second["cost_krw"] == BN
    assert [(r["round"], r["old_cost_krw"], r["new_cost_krw"]) for r in second["negotiations"]] == [
        (1, BN, 800 * M),
        (2, 800 * M, BN),
    ]
    third = expect_problem(await api.post(f"{jpath}/negotiations", admin, round_one), 409)
    assert "2 rounds" in third["detail"]
    expect(await api.post(f"{mpath}/negotiations", admin, round_one), 200)
    expect(await api.post(f"{gpath}/negotiations", admin, round_one), 200)
    # the strategic plan's ceiling holds in negotiation too
    expect_problem(
        await api.post(
            f"{mpath}/negotiations", admin, {"notes": "x", "adjusted_cost_krw": BN + 300 * M + 1}
        ),
        422,
        field="adjusted_cost_krw",
    )
    decision = {"funded": True, "note": "the final plan is funded"}
    await before(api, year, seoul(year, 8, 21), "district", "negotiation")
    refused_for_phase(await api.post(f"{jpath}/decision", admin, decision), "decision")
    expect(
        await api.post(
            f"{mpath}/negotiations", admin, {"notes": "agreed", "adjusted_cost_krw": BN + 300 * M}
        ),
        200,
    )

    # ---- the funding decision: 8월 말 -----------------------------------------------------------
    await at(api, year, seoul(year, 8, 21), "district", "decision")
    refused_for_phase(
        await api.post(f"{gpath}/negotiations", admin, {"notes": "late"}), "negotiation"
    )
    early = expect_problem(await api.post(f"{gpath}/decision", admin, decision), 409)
    assert "2 rounds" in early["detail"] and "1 recorded" in early["detail"]
    expect_problem(await api.post(f"{jpath}/decision", jongno, decision), 403)
    funded = expect(await api.post(f"{jpath}/decision", admin, decision), 200)
    assert funded["status"] == "funded" and funded["decision"]["cost_krw"] == BN
    expect_problem(await api.post(f"{jpath}/decision", admin, decision), 409)
    await before(api, year, seoul(year, 9, 1), "district", "decision")
    assert expect(await api.post(f"{mpath}/decision", admin, decision), 200)["status"] == "funded"
    await at(api, year, seoul(year, 9, 1), "district", "drafting")
    refused_for_phase(await api.post(f"{gpath}/decision", admin, decision), "decision")

    # ---- the agreement: 12월, after the city council --------------------------------------------
    agreement = {"council_reference": "Seoul council resolution 2/17"}
    await before(api, year, seoul(year, 12, 1), "district", "drafting")
    refused_for_phase(await api.post(f"{jpath}/agreement", admin, agreement), "council")
    await at(api, year, seoul(year, 12, 1), "district", "council")
    waiting = expect_problem(await api.post(f"{jpath}/agreement", admin, agreement), 409)
    assert "city council" in waiting["detail"]
    expect(
        await api.post(
            f"{base}/council", admin, {"adopted_project_ids": [], "resolution_ref": "2/17"}
        ),
        200,
    )
    expect_problem(await api.post(f"{jpath}/agreement", jongno, agreement), 403)
    agreed = expect(await api.post(f"{jpath}/agreement", admin, agreement), 200)
    assert (
        agreed["status"] == "agreed"
        and agreed["agreement"]["council_reference"] == (agreement["council_reference"])
    )
    expect_problem(await api.post(f"{gpath}/agreement", admin, agreement), 409)  # not funded
    await before(api, year, seoul(year + 1, 1, 1), "district", "council")
    expect(await api.post(f"{mpath}/agreement", admin, agreement), 200)

    # ---- what anyone reads ----------------------------------------------------------------------
    listed = expect(await api.http.get(plans), 200)["items"]
    assert [(p["district"], p["status"]) for p in listed] == [
        ("Guro-gu", "negotiating"),
        ("Jongno-gu", "agreed"),
        ("Mapo-gu", "agreed"),
    ]
    assert "submitted_by" not in listed[0]
    events = [e["event"] for e in expect(await api.http.get(f"{jpath}/timeline"), 200)["items"]]
    assert events == ["submitted", "negotiated", "negotiated", "decided", "agreed"]
    expect_problem(await api.http.get("/v1/district-plans/no-such-plan"), 404)


# ---- neighbourhood plans ------------------------------------------------------------------------


async def test_neighbourhood_ceilings_agendas_and_the_review(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": RULEBOOK}), 201)
    base = f"/v1/budget-cycles/{year}"
    ceilings = f"{base}/neighbourhood-ceilings"
    mapo, jongno, gangnam = (
        await district_worker(api, "Mapo-gu"),
        await district_worker(api, "Jongno-gu"),
        await district_worker(api, "Gangnam-gu"),
    )
    parks = await api.official("caseworker", "parks")

    def counts(district: str, planning: int, autonomous: int) -> dict[str, Any]:
        return {
            "district": district,
            "planning_neighbourhoods": planning,
            "autonomous_neighbourhoods": autonomous,
        }

    announced = {"districts": [counts("Mapo-gu", 7, 3), counts("Jongno-gu", 2, 1)]}

    # ---- the ceilings: January ------------------------------------------------------------------
    refused_for_phase(await api.http.put(ceilings, json=announced, headers=admin), "ceilings")
    await at(api, year, seoul(year, 1, 1), "neighbourhood", "ceilings")
    expect_problem(await api.http.put(ceilings, json=announced, headers=mapo), 403)
    expect_problem(
        await api.http.put(ceilings, json={"districts": [counts("Mapo-gu", 7, 4)]}, headers=admin),
        422,
        field="districts.autonomous_neighbourhoods",
    )
    expect_problem(
        await api.http.put(
            ceilings,
            json={"districts": [counts("Mapo-gu", 1, 0), counts("Mapo-gu", 1, 0)]},
            headers=admin,
        ),
        422,
        field="districts",
    )
    # the city's 6 billion at its boundary: 200 neighbourhoods at 30 million each
    full = expect(
        await api.http.put(
            ceilings,
            json={"districts": [counts("Mapo-gu", 197, 3)]},
            headers=admin,
        ),
        200,
    )
    assert full["total_krw"] == 6 * BN == full["city_ceiling_krw"]
    over = expect_problem(
        await api.http.put(
            ceilings,
            json={"districts": [counts("Mapo-gu", 197, 3), counts("Jongno-gu", 1, 0)]},
            headers=admin,
        ),
        422,
        field="districts",
    )
    assert "6,030,000,000 KRW" in over["detail"]
    await before(api, year, seoul(year, 2, 1), "neighbourhood", "ceilings")
    shown = expect(await api.http.put(ceilings, json=announced, headers=admin), 200)
    assert [(d["district"], d["ceiling_krw"]) for d in shown["districts"]] == [
        ("Jongno-gu", 90 * M),
        ("Mapo-gu", 300 * M),
    ]
    assert expect(await api.http.get(ceilings), 200)["total_krw"] == 390 * M
    agendas = f"{base}/neighbourhood-agendas"

    def agenda_set(neighbourhood: str, *costs: int) -> dict[str, Any]:
        return {
            "neighbourhood": neighbourhood,
            "agendas": [
                {"title": f"{neighbourhood} agenda {i}", "rank": i, "cost_krw": cost}
                for i, cost in enumerate(costs, 1)
            ],
            "assembly_minutes": f"{neighbourhood} residents' assembly: the ranking, by vote",
        }

    refused_for_phase(await api.post(agendas, mapo, agenda_set("Mangwon-dong", 100 * M)), "agendas")

    # ---- the agendas: February to June ----------------------------------------------------------
    await at(api, year, seoul(year, 2, 1), "neighbourhood", "agendas")
    refused_for_phase(await api.http.put(ceilings, json=announced, headers=admin), "ceilings")
    expect_problem(await api.post(agendas, parks, agenda_set("Mangwon-dong", M)), 403)
    expect_problem(await api.post(agendas, admin, agenda_set("Mangwon-dong", M)), 403)
    expect_problem(await api.post(agendas, gangnam, agenda_set("Apgujeong-dong", M)), 409)
    bad_ranks = agenda_set("Mangwon-dong", M, M)
    bad_ranks["agendas"][1]["rank"] = 3
    expect_problem(await api.post(agendas, mapo, bad_ranks), 422, field="agendas.rank")
    # the district's ceiling at its boundary (이내)
    over = expect_problem(
        await api.post(agendas, mapo, agenda_set("Hapjeong-dong", 200 * M, 100 * M + 1)),
        422,
        field="agendas",
    )
    assert "300,000,000 KRW" in over["detail"]
    mangwon = expect(
        await api.post(agendas, mapo, agenda_set("Mangwon-dong", 200 * M, 100 * M)), 201
    )
    assert (mangwon["district"], mangwon["cost_krw"], mangwon["status"]) == (
        "Mapo-gu",
        300 * M,
        "submitted",
    )
    seogyo = expect(await api.post(agendas, mapo, agenda_set("Seogyo-dong", 100 * M, 100 * M)), 201)
    expect_problem(await api.post(agendas, mapo, agenda_set("Mangwon-dong", M)), 409)

    # the strategic districts in this cycle: six applicants (in February), chosen at the
    # selection's last minute
    strategic = f"{base}/strategic-districts"
    six = [*FIVE, "Guro-gu"]
    for district in six:
        body = {"district": district, "strategic": True}
        applied = await api.post(
            f"{base}/district-applications", await district_worker(api, district), body
        )
        expect(applied, 201)
    await before(api, year, seoul(year, 3, 11), "district", "selection")
    assert expect(await api.post(strategic, admin, {"districts": six}), 201)["districts"] == six
    await at(api, year, seoul(year, 3, 11), "district", "consulting")
    refused_for_phase(await api.post(strategic, admin, {"districts": six}), "selection")

    await before(api, year, seoul(year, 7, 1), "neighbourhood", "agendas")
    sajik = expect(await api.post(agendas, jongno, agenda_set("Sajik-dong", 90 * M)), 201)
    samcheong = expect(await api.post(agendas, jongno, agenda_set("Samcheong-dong", 10 * M)), 201)

    def review(*selected: bool, scores: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "agendas": [
                {
                    "rank": i,
                    "scores": {"publicness": 80, "need": 70} if scores is None else scores,
                    "selected": s,
                }
                for i, s in enumerate(selected, 1)
            ],
            "note": "reviewed on the city's indicators",
        }

    mpath = f"/v1/neighbourhood-agendas/{mangwon['id']}"
    refused_for_phase(await api.post(f"{mpath}/review", admin, review(True, False)), "review")

    # ---- the review and the selection: July to 20 August ----------------------------------------
    await at(api, year, seoul(year, 7, 1), "neighbourhood", "review")
    refused_for_phase(await api.post(agendas, jongno, agenda_set("Ihwa-dong", M)), "agendas")
    expect_problem(await api.post(f"{mpath}/review", mapo, review(True, False)), 403)
    expect_problem(await api.post(f"{mpath}/review", admin, review(True)), 422, field="agendas")
    expect_problem(
        await api.post(f"{mpath}/review", admin, review(True, False, scores={})),
        422,
        field="agendas.0.scores",
    )
    expect_problem(
        await api.post(f"{mpath}/review", admin, review(True, False, scores={"need": 101})),
        422,
    )
    reviewed = expect(await api.post(f"{mpath}/review", admin, review(True, False)), 200)
    assert reviewed["status"] == "reviewed" and reviewed["selected_krw"] == 200 * M
    assert [(a["rank"], a["selected"], a["scores"]) for a in reviewed["agendas"]] == [
        (1, True, {"publicness": 80, "need": 70}),
        (2, False, {"publicness": 80, "need": 70}),
    ]
    expect_problem(await api.post(f"{mpath}/review", admin, review(True, False)), 409)
    # the district's selection across its neighbourhoods, at the ceiling's boundary
    spath = f"/v1/neighbourhood-agendas/{seogyo['id']}"
    over = expect_problem(
        await api.post(f"{spath}/review", admin, review(True, True)), 422, field="agendas"
    )
    assert "400,000,000 KRW" in over["detail"] and "300,000,000 KRW" in over["detail"]
    assert (
        expect(await api.post(f"{spath}/review", admin, review(True, False)), 200)["selected_krw"]
        == 100 * M
    )
    await before(api, year, seoul(year, 8, 21), "neighbourhood", "review")
    expect(
        await api.post(f"/v1/neighbourhood-agendas/{sajik['id']}/review", admin, review(True)), 200
    )
    await at(api, year, seoul(year, 8, 21), "neighbourhood", "drafting")
    refused_for_phase(
        await api.post(f"/v1/neighbourhood-agendas/{samcheong['id']}/review", admin, review(True)),
        "review",
    )

    # ---- what anyone reads ----------------------------------------------------------------------
    listed = expect(await api.http.get(agendas, params={"district": "Mapo-gu"}), 200)["items"]
    assert [(s["neighbourhood"], s["status"], s["selected_krw"]) for s in listed] == [
        ("Mangwon-dong", "reviewed", 200 * M),
        ("Seogyo-dong", "reviewed", 100 * M),
    ]
    assert "submitted_by" not in listed[0]
    assert len(expect(await api.http.get(agendas), 200)["items"]) == 4
    events = [e["event"] for e in expect(await api.http.get(f"{mpath}/timeline"), 200)["items"]]
    assert events == ["agendas_submitted", "agendas_reviewed"]
    assert expect(await api.http.get(mpath), 200)["assembly_minutes"].startswith("Mangwon-dong")
    expect_problem(await api.http.get("/v1/neighbourhood-agendas/nothing"), 404)


async def test_a_cycle_on_a_rulebook_without_the_types_takes_no_plans(api: Api) -> None:
    admin = await api.official("admin")
    year = await next_year(api)
    expect(
        await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": "seoul-2021"}), 201
    )
    base = f"/v1/budget-cycles/{year}"
    refused = expect_problem(
        await api.post(f"{base}/strategic-districts", admin, {"districts": FIVE}), 409
    )
    assert "[calendar.district]" in refused["detail"]
    ceilings = {
        "districts": [
            {"district": "Mapo-gu", "planning_neighbourhoods": 1, "autonomous_neighbourhoods": 0}
        ]
    }
    refused = expect_problem(
        await api.http.put(f"{base}/neighbourhood-ceilings", json=ceilings, headers=admin), 409
    )
    assert "[neighbourhood_ceiling]" in refused["detail"]
    expect_problem(await api.post("/v1/budget-cycles/1999/strategic-districts", admin, {}), 422)


# ---- the plan's workflow, stubbed ---------------------------------------------------------------


def _start(plan_id: str, *, strategic: bool, cost: int) -> DistrictPlanStart:
    return DistrictPlanStart(
        plan_id=plan_id,
        year=2031,
        district="Mapo-gu",
        strategic=strategic,
        cost_krw=cost,
        rules=rulebooks.load(RULEBOOK),
        submitted_by="caseworker-1",
    )


async def _refused(call: Any, kind: str, text: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await call
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == kind, cause
    assert text in cause.message, cause.message


async def test_the_plan_workflow_takes_two_rounds_then_the_decision_and_the_agreement() -> None:
    rules = rulebooks.load(RULEBOOK).rulebook.district
    assert rules is not None
    assert district_ceiling_krw(rules, False) == BN
    assert district_ceiling_krw(rules, True) == BN + 300 * M
    stubs = StubActivities()
    async with time_skipping_env() as env, stubbed_worker(env, stubs=stubs) as run:
        handle = await run.start(
            DistrictPlanWorkflow.run,
            _start("p1", strategic=True, cost=BN),
            id=run.unique_id("district-plan-p1"),
        )
        admin, caseworker = "admin", "caseworker"
        await _refused(
            handle.execute_update(DistrictPlanWorkflow.decide, FundingDecision(admin, True, "x")),
            "Conflict",
            "0 recorded",
        )
        await _refused(
            handle.execute_update(DistrictPlanWorkflow.negotiate, Negotiation(caseworker, "x")),
            "Forbidden",
            "operations team",
        )
        await _refused(
            handle.execute_update(
                DistrictPlanWorkflow.negotiate, Negotiation(admin, "x", BN + 300 * M + 1)
            ),
            "Invalid",
            "adjusted_cost_krw",
        )
        state = await handle.execute_update(
            DistrictPlanWorkflow.negotiate, Negotiation(admin, "round one", BN + 300 * M)
        )
        assert state.status is PlanStatus.NEGOTIATING and state.cost_krw == BN + 300 * M
        await _refused(
            handle.execute_update(DistrictPlanWorkflow.agree, Agreement(admin, "2/17")),
            "Conflict",
            "funded",
        )
        state = await handle.execute_update(
            DistrictPlanWorkflow.negotiate, Negotiation(admin, "round two")
        )
        assert state.status is PlanStatus.NEGOTIATED and len(state.negotiations) == 2
        await _refused(
            handle.execute_update(DistrictPlanWorkflow.negotiate, Negotiation(admin, "three")),
            "Conflict",
            "2 rounds",
        )
        state = await handle.execute_update(
            DistrictPlanWorkflow.decide, FundingDecision(admin, True, "funded")
        )
        assert state.status is PlanStatus.FUNDED and state.decision is not None
        state = await handle.execute_update(DistrictPlanWorkflow.agree, Agreement(admin, "2/17"))
        assert state.status is PlanStatus.AGREED
        result = await handle.result()
        assert result.status is PlanStatus.AGREED
        seqs = [(p.entry.seq, p.entry.event) for p in stubs.district_plan_projections]
        assert seqs == [
            (1, "submitted"),
            (2, "negotiated"),
            (3, "negotiated"),
            (4, "decided"),
            (5, "agreed"),
        ]

        # a plan not funded ends at the decision
        other = await run.start(
            DistrictPlanWorkflow.run,
            _start("p2", strategic=False, cost=BN),
            id=run.unique_id("district-plan-p2"),
        )
        for notes in ("one", "two"):
            await other.execute_update(DistrictPlanWorkflow.negotiate, Negotiation(admin, notes))
        await other.execute_update(
            DistrictPlanWorkflow.decide, FundingDecision(admin, False, "not this year")
        )
        assert (await other.result()).status is PlanStatus.NOT_FUNDED


async def test_the_cycle_enters_a_plan_only_in_its_submission_phase_and_year() -> None:
    pinned = rulebooks.load(RULEBOOK)
    async with time_skipping_env() as env, stubbed_worker(env) as run:
        year = (await env.get_current_time()).astimezone(SEOUL).year + 1
        cycle = await run.start(
            BudgetCycleWorkflow.run,
            BudgetCycleStart(year=year, rules=pinned, drop_ratio=0.1),
            id=run.unique_id(budget_cycle_workflow_id(year)),
        )
        start = _start("p3", strategic=False, cost=BN)
        await _refused(
            cycle.execute_update(
                BudgetCycleWorkflow.enter_district_plan, dataclasses.replace(start, year=year)
            ),
            "Conflict",
            "submission phase",
        )
        await _refused(
            cycle.execute_update(BudgetCycleWorkflow.enter_district_plan, start),
            "Invalid",
            "year",
        )


async def test_at_most_district_count_plans_are_funded(api: Api) -> None:
    """24 x 1 bn (district.district_count): a 25th district's plan, negotiated like the others,
    is refused funding naming `funded`, and may still be decided not funded."""
    admin = await api.official("admin")
    year = await next_year(api)
    expect(await api.post("/v1/budget-cycles", admin, {"year": year, "rulebook": RULEBOOK}), 201)
    assert len(DISTRICTS) == 25
    await at(api, year, seoul(year, 7, 1), "district", "submission")
    ids = []
    for district in DISTRICTS:
        body = {"district": district, "strategic": False, "plan": "a plan", "cost_krw": BN}
        submitted = await api.post(
            f"/v1/budget-cycles/{year}/district-plans", await district_worker(api, district), body
        )
        ids.append(expect(submitted, 201)["id"])
    await at(api, year, seoul(year, 7, 11), "district", "negotiation")
    for plan_id in ids:
        for round_ in (1, 2):
            body = {"notes": f"round {round_}"}
            expect(await api.post(f"/v1/district-plans/{plan_id}/negotiations", admin, body), 200)
    await at(api, year, seoul(year, 8, 21), "district", "decision")
    funded = {"funded": True, "note": "within the type's budget"}
    for plan_id in ids[:24]:
        decided = expect(
            await api.post(f"/v1/district-plans/{plan_id}/decision", admin, funded), 200
        )
        assert decided["status"] == "funded"
    last = f"/v1/district-plans/{ids[24]}/decision"
    refused = expect_problem(await api.post(last, admin, funded), 422, field="funded")
    assert "district.district_count" in refused["detail"] and "24" in refused["detail"]
    assert expect(await api.http.get(f"/v1/district-plans/{ids[24]}"), 200)["status"] == (
        "negotiated"
    )
    not_funded = {"funded": False, "note": "no room left this year"}
    assert expect(await api.post(last, admin, not_funded), 200)["status"] == "not_funded"
