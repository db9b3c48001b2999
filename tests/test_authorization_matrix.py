"""The authorization matrix (issue 6): every endpoint x caller, as a table checked against the app.

`MATRIX` below has one row per (method, path template) the application serves, and one column per
caller. `test_every_route_has_a_row` compares it with the routes of `api.app.create_app`, so a new
endpoint without a row (or a row for an endpoint that is gone) fails, naming it. The
`test_authorization_matrix` test then puts each row's object in a state where its action is
allowed for the right caller and calls it as every caller of the row, over HTTP:

- the callers refused by the row go first and the allowed ones last, so a refusal never runs
  against a state an allowed call has already changed, and the allowed call really is allowed;
- the clock moves forward only, in three steps (day 15, 31, 46), for the rows whose action
  waits for a date (an ask opening; a vote, a forum or an ask closing; the agenda decision);
- every error answer must be problem+json; nothing may be a 5xx.

If POST /v1/asks refuses the valid request of the owning department, that is a violation of
its row, and the ask is then opened in process by the same code so its other rows are still
measured.

Callers (columns):

    anon  no token
    cit   citizen, eligible resident (with the sex/birth_year/district claims a volunteer needs)
    inel  citizen who is a public official (ineligible to propose, support, vote, take part)
    prop  the proposer of the proposal the row acts on (ownership)
    cwo   caseworker of the owning department (the case's department / executing department /
          asking department); for rows without a department, simply a caseworker
    cwx   caseworker of another department
    com   committee
    aud   auditor
    adm   admin (the operations team)

Outcomes (cells):

    ok    2xx
    401   no or bad token                     403  the caller's role (or identity) is not allowed
    404   the caller may not see the object   409  refused in this state (variant rows)
    any   allowed, but the state makes success impossible: anything except 401/403/404 and 5xx
    -     not applicable, not called

A row may carry a `[variant]` after its path: the same endpoint checked again in another state.
Run with `-s` (or `-rP`) to see the observed matrix and the summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import httpx
from starlette.routing import Mount, Route, WebSocketRoute

from api.app import create_app
from api.auth import issue_token
from minju.config import ClockMode, Settings
from models.ballot_box import cast_proposal_ballot
from models.district_plans import DistrictPlan, NeighbourhoodAgendaSet
from models.project_tables import BudgetProject
from tests.conftest import Stack
from tests.helpers import Api, auth, expect

CALLERS = ("anon", "cit", "inel", "prop", "cwo", "cwx", "com", "aud", "adm")
OUTCOMES = {"ok", "any", "-", "401", "403", "404", "409"}

OWN_DEPARTMENT = "parks"
OTHER_DEPARTMENT = "transport"

# fmt: off
MATRIX_TEXT = """
# meth path                                            anon cit  inel prop cwo  cwx  com  aud  adm
# ---- development and health (dev endpoints exist only in dev/simulated mode) -------------------
POST /v1/dev/tokens                                    ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/dev/clock/advance                             ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/clock                                         ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /healthz                                          ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /openapi.json                                     ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /docs                                             ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /docs/oauth2-redirect                             ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /redoc                                            ok   ok   ok   -    ok   ok   ok   ok   ok
# the docs pages' JavaScript and CSS (a mount: called on one file under it)
GET  /static/docs/{path}                               ok   ok   ok   -    ok   ok   ok   ok   ok
# ---- citizen proposals -------------------------------------------------------------------------
POST /v1/proposals                                     401  ok   403  -    403  403  403  403  403
GET  /v1/proposals                                     ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/proposals/{proposal_id}                       ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/proposals/{proposal_id}/timeline              ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/proposals/{proposal_id}/agenda                ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/proposals/{proposal_id}/supports              401  ok   403  -    403  403  403  403  403
POST /v1/proposals/{proposal_id}/comments              401  ok   ok   -    403  403  403  403  403
POST /v1/proposals/{proposal_id}/withdraw              401  403  403  ok   403  403  403  403  403
POST /v1/proposals/{proposal_id}/assign                401  403  403  -    403  403  403  403  ok
POST /v1/proposals/{proposal_id}/review                401  403  403  -    ok   404  403  403  403
POST /v1/proposals/{proposal_id}/screening             401  403  403  -    403  403  ok   403  403
POST /v1/proposals/{proposal_id}/plan                  401  403  403  -    403  403  ok   403  403
POST /v1/proposals/{proposal_id}/appropriateness       401  403  403  -    ok   404  403  403  403
POST /v1/proposals/{proposal_id}/ballots               401  ok   403  -    403  403  403  403  403
POST /v1/proposals/{proposal_id}/execution-reports     401  403  403  -    ok   404  403  403  403
POST /v1/proposals/{proposal_id}/agenda/plan           401  403  403  -    403  403  403  403  ok
POST /v1/proposals/{proposal_id}/agenda/decision       401  403  403  -    403  403  ok   403  403
# api.md says "caseworker / committee"; the code also gives the operations team (admin) its
# inbox of unassigned and overdue cases: recorded here as allowed.
GET  /v1/inbox                                         401  403  403  -    ok   ok   ok   403  ok
# any signed-in person: their own cases (an official's: those they opened or answered)
GET  /v1/me/activity                                   401  ok   ok   -    ok   ok   ok   ok   ok
# notification contacts: a citizen's own (public officials too: this is no participation);
# a department's signed webhook, set by the operations team
GET  /v1/me/contact                                    401  ok   ok   -    403  403  403  403  403
PUT  /v1/me/contact                                    401  ok   ok   -    403  403  403  403  403
GET  /v1/admin/departments/{dept}/contact              401  403  403  -    403  403  403  403  ok
PUT  /v1/admin/departments/{dept}/contact              401  403  403  -    403  403  403  403  ok
# open data: public, no personal data, no counts before a close
GET  /v1/open-data                                     ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/open-data/{dataset}                           ok   ok   ok   -    ok   ok   ok   ok   ok
# ---- forums ------------------------------------------------------------------------------------
POST /v1/forums                                        401  403  403  -    403  403  403  403  ok
GET  /v1/forums                                        ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/forums/{forum_id}                             ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/forums/{case_id}/timeline                     ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/forums/{case_id}/participations               401  ok   403  -    403  403  403  403  403
POST /v1/forums/{forum_id}/recommendation              401  403  403  -    403  403  403  403  ok
GET  /v1/forums/{case_id}/posts                        ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/forums/{case_id}/posts/{post_id}/reports      401  ok   ok   -    403  403  403  403  403
POST /v1/forums/{case_id}/posts/{post_id}/moderation   401  403  403  -    403  403  403  403  ok
# ---- Seoul asks (cwo: the asking department) ---------------------------------------------------
POST /v1/asks                                          401  403  403  -    ok   ok   403  403  403
GET  /v1/asks                                          ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/asks/{ask_id}                                 ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/asks/{case_id}/timeline                       ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/asks/{case_id}/participations                 401  ok   403  -    403  403  403  403  403
POST /v1/asks/{ask_id}/review                          401  403  403  -    ok   404  403  403  403
GET  /v1/asks/{case_id}/posts                          ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/asks/{case_id}/posts/{post_id}/reports        401  ok   ok   -    403  403  403  403  403
POST /v1/asks/{case_id}/posts/{post_id}/moderation     401  403  403  -    403  403  403  403  ok
# ---- sortition ---------------------------------------------------------------------------------
POST /v1/sortition-pools                               401  403  403  -    403  403  403  403  ok
POST /v1/sortition-pools/{name}/volunteers             401  ok   403  -    403  403  403  403  403
GET  /v1/sortition-pools/{name}                        401  403  403  -    403  403  403  403  ok
POST /v1/sortitions                                    401  403  403  -    403  403  403  403  ok
POST /v1/sortitions/{draw_id}/reveal                   401  403  403  -    403  403  403  403  ok
GET  /v1/sortitions/{draw_id}                          ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/sortitions/{draw_id}/snapshot                 ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/sortitions/{draw_id}/verify                   ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/sortitions/{draw_id}/members                  401  403  403  -    403  403  403  403  ok
# the caller's own entry: cit volunteered into the pool before the commit; nobody else did
GET  /v1/sortitions/{draw_id}/me                       401  ok   404  -    404  404  404  404  404
# ---- budget-year cycles ------------------------------------------------------------------------
POST /v1/budget-cycles                                 401  403  403  -    403  403  403  403  ok
GET  /v1/budget-cycles/{year}                          ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/budget-cycles/{year}/timeline                 ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/budget-cycles/{year}/phase-overrides          401  403  403  -    403  403  403  403  ok
POST /v1/budget-cycles/{year}/ballots                  401  409  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/results                  409  409  409  -    409  409  409  409  409
GET  /v1/budget-cycles/{year}/results.pb               409  409  409  -    409  409  409  409  409
# a channel's batch before the vote (409 for the admin); cwo/cwx are departments, not channels
POST /v1/budget-cycles/{year}/ballot-batches           401  403  403  -    403  403  403  403  409
GET  /v1/budget-cycles/{year}/ballot-batches           401  403  403  -    403  403  403  ok   ok
# before its window: an eligible citizen's record is 409; answers need a record (404 for a
# caseworker), the others' roles are refused first
POST /v1/budget-cycles/{year}/participation            401  409  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/participation            ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/budget-cycles/{year}/participation/{record_id}/answers 401 403 403 - 404 404 403 403 403
GET  /v1/me/participation                              401  ok   ok   -    ok   ok   ok   ok   ok
# the cycle has not started: the admin's writes are refused by the phase (409), or by a draw
# that does not exist (422); nobody sits on a council yet (403)
PUT  /v1/budget-cycles/{year}/fields                   401  403  403  -    403  403  403  403  409
POST /v1/budget-cycles/{year}/councils                 401  403  403  -    403  403  403  403  any
POST /v1/budget-cycles/{year}/square                   401  403  403  -    403  403  403  403  any
PUT  /v1/budget-cycles/{year}/fields/{field}/shortlist 401  403  403  -    403  403  403  403  403
POST /v1/budget-cycles/{year}/assembly                 401  403  403  -    403  403  403  403  409
POST /v1/budget-cycles/{year}/council                  401  403  403  -    403  403  403  403  409
# ---- district and neighbourhood plans (cycle not started: each write its role allows is 409 by
# phase; a plan or an agenda set is written by a caseworker of a district,
# `dept: "district:<name>"`, which neither caseworker column is: 403 for both)
POST /v1/budget-cycles/{year}/district-applications    401  403  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/district-applications    ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/budget-cycles/{year}/strategic-districts      401  403  403  -    403  403  403  403  409
GET  /v1/budget-cycles/{year}/strategic-districts      404  404  404  -    404  404  404  404  404
POST /v1/budget-cycles/{year}/district-plans           401  403  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/district-plans           ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/district-plans/{plan_id}                      ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/district-plans/{plan_id}/timeline             ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/district-plans/{plan_id}/negotiations         401  403  403  -    403  403  403  403  409
POST /v1/district-plans/{plan_id}/decision             401  403  403  -    403  403  403  403  409
POST /v1/district-plans/{plan_id}/agreement            401  403  403  -    403  403  403  403  409
PUT  /v1/budget-cycles/{year}/neighbourhood-ceilings   401  403  403  -    403  403  403  403  409
GET  /v1/budget-cycles/{year}/neighbourhood-ceilings   ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/budget-cycles/{year}/neighbourhood-agendas    401  403  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/neighbourhood-agendas    ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/neighbourhood-agendas/{agenda_id}             ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/neighbourhood-agendas/{agenda_id}/timeline    ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/neighbourhood-agendas/{agenda_id}/review      401  403  403  -    403  403  403  403  409
# ---- budget projects (cycle not started: each write its role allows is 409 by phase) --------
POST /v1/budget-cycles/{year}/projects                 401  any  403  -    403  403  403  403  403
GET  /v1/budget-cycles/{year}/projects                 ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/projects/{project_id}                         ok   ok   ok   -    ok   ok   ok   ok   ok
GET  /v1/projects/{project_id}/timeline                ok   ok   ok   -    ok   ok   ok   ok   ok
POST /v1/projects/{project_id}/screening               401  403  403  -    403  403  403  403  any
POST /v1/projects/{project_id}/review                  401  403  403  -    403  403  any  403  403
POST /v1/projects/{project_id}/objections              401  any  any  -    any  any  any  any  any
POST /v1/projects/{project_id}/objections/{objection_id}/answer 401 403 403 - 403 403 403 403 any
POST /v1/projects/{project_id}/withdraw                401  403  403  any  403  403  403  403  403
# deliberative-only writes on the metro project: 409 for every signed-in caller
POST /v1/projects/{project_id}/deliberation            401  409  409  -    409  409  409  409  409
POST /v1/projects/{project_id}/opinions                401  409  409  -    409  409  409  409  409
GET  /v1/projects/{project_id}/opinions                ok   ok   ok   -    ok   ok   ok   ok   ok
# execution in Y+1 on the metro project that is not selected: refused by its state (any)
POST /v1/projects/{project_id}/execution-reports       401  403  403  -    any  any  403  403  403
POST /v1/projects/{project_id}/executing-department    401  403  403  -    403  403  403  403  any
POST /v1/projects/{project_id}/execution-council       401  403  403  -    403  403  403  403  any
POST /v1/projects/{project_id}/evaluation              401  403  403  -    403  403  403  403  any
# ---- auditors (auditors only: the operations team audits nothing, issue 10) ------------------
GET  /v1/audit/cases/{workflow_id}/history             401  403  403  -    403  403  403  ok   403
POST /v1/audit/cases/{workflow_id}/replay              401  403  403  -    403  403  403  ok   403
GET  /v1/audit/ballots/{ballot_id}/recount             401  403  403  -    403  403  403  ok   403
GET  /v1/audit/cases                                   401  403  403  -    403  403  403  ok   403
POST /v1/audit/replay                                  401  403  403  -    403  403  403  ok   403
GET  /v1/audit/cases/{workflow_id}/transitions         401  403  403  -    403  403  403  ok   403
GET  /v1/audit/log                                     401  403  403  -    403  403  403  ok   403
# the payload codec for the Temporal UI / CLI (a CORS preflight needs no token: 400 for an
# origin not in MINJU_CODEC_CORS_ORIGINS, which the matrix's stack leaves empty)
POST /v1/codec/decode                                  401  403  403  -    403  403  403  ok   ok
POST /v1/codec/encode                                  401  403  403  -    403  403  403  ok   ok
OPTIONS /v1/codec/decode                               any  any  any  -    any  any  any  any  any
OPTIONS /v1/codec/encode                               any  any  any  -    any  any  any  any  any
# design.md principle 7: "Nobody, auditors and admins included, sees counts before the close."
# (an admin is refused as no auditor first)
GET  /v1/audit/ballots/{ballot_id}/recount [vote-open] 401  403  403  -    403  403  403  409  403
"""
# fmt: on


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    variant: str
    expected: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")


def parse_matrix(text: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = line.split()
        method, path, rest = tokens[0], tokens[1], tokens[2:]
        variant = ""
        if rest and rest[0].startswith("["):
            variant, rest = rest[0].strip("[]"), rest[1:]
        assert len(rest) == len(CALLERS), f"matrix line {number}: {len(rest)} cells: {line!r}"
        unknown = set(rest) - OUTCOMES
        assert not unknown, f"matrix line {number}: unknown outcome(s) {unknown}: {line!r}"
        row = Row(method, path, variant, dict(zip(CALLERS, rest, strict=True)))
        assert row.key not in rows, f"matrix line {number}: duplicate row {row.key}"
        rows[row.key] = row
    return rows


MATRIX = parse_matrix(MATRIX_TEXT)


def served_routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers unwrapped.

    HEAD of a GET route is left out; a mount (the docs pages' static files) is listed as
    `GET <mount>/{path}`, and its row is called on one file under it.
    """
    routes = create_app(settings).routes
    # FastAPI 0.16x keeps included routers as wrappers in `app.routes`; this unwraps them.
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts: list[Any] = list(iter_contexts(routes)) if iter_contexts else list(routes)
    found: set[tuple[str, str]] = set()
    for context in contexts:
        route = getattr(context, "original_route", context)
        path = getattr(context, "path_format", None) or getattr(route, "path_format", None)
        if isinstance(route, Mount):
            found.add(("GET", str(path)))
        elif isinstance(route, Route):  # APIRoute too, and /openapi.json
            methods: set[str] = getattr(context, "methods", None) or route.methods or set()
            for method in methods:
                if not (method == "HEAD" and "GET" in methods):
                    found.add((method, str(path)))
        elif isinstance(route, WebSocketRoute):
            found.add(("WEBSOCKET", str(path)))
        else:
            found.add((type(route).__name__, str(path)))
    return found


def coverage_problems(routes: set[tuple[str, str]]) -> list[str]:
    rows = {(r.method, r.path) for r in MATRIX.values()}
    missing = sorted(routes - rows)
    stale = sorted(rows - routes)
    return [f"route without a matrix row: {m} {p}" for m, p in missing] + [
        f"matrix row for a route the app does not serve: {m} {p}" for m, p in stale
    ]


def test_every_route_has_a_row() -> None:
    settings = Settings(
        jwt_secret="matrix-only-signing-key-not-for-production",
        dev_endpoints=True,
        clock_mode=ClockMode.SIMULATED,
    )
    problems = coverage_problems(served_routes(settings))
    assert not problems, "the authorization matrix is out of date:\n" + "\n".join(problems)


# ---- the calls ---------------------------------------------------------------------------------


@dataclass
class Matrix:
    """Calls each row as every caller and judges the answers."""

    http: httpx.AsyncClient
    callers: dict[str, dict[str, str]]
    calls: int = 0
    problems_checked: int = 0
    violations: list[str] = field(default_factory=list)
    observed: dict[str, dict[str, int]] = field(default_factory=dict)

    async def check(
        self,
        key: str,
        *,
        body: Any = None,
        owner: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        **ids: str,
    ) -> dict[str, httpx.Response]:
        """Call `key` (a matrix row) on the object `ids` name (with the `query` parameters),
        as each caller of the row: refused callers first, allowed ones last. Returns the
        answers by caller."""
        row = MATRIX[key]
        assert key not in self.observed, f"{key} checked twice"
        path = row.path.format_map(ids)
        order = sorted(
            (c for c in CALLERS if row.expected[c] != "-"),
            key=lambda c: row.expected[c] in ("ok", "any"),
        )
        answers: dict[str, httpx.Response] = {}
        self.observed[key] = {}
        for caller in order:
            if caller == "prop":
                assert owner is not None, f"{key}: the row has a proposer column; give owner="
                headers = owner
            else:
                headers = self.callers[caller]
            response = await self.http.request(
                row.method, path, json=body, headers=headers, params=query
            )
            self.calls += 1
            answers[caller] = response
            self.observed[key][caller] = response.status_code
            self._judge(row, caller, path, response)
        return answers

    def _judge(self, row: Row, caller: str, path: str, response: httpx.Response) -> None:
        expected, got = row.expected[caller], response.status_code
        where = f"{row.key} as {caller} ({row.method} {path})"
        detail = _detail(response)
        if got >= 500:
            self.violations.append(f"{where}: expected {expected}, got {got} {detail}")
        elif expected == "ok" and not 200 <= got < 300:
            self.violations.append(f"{where}: expected 2xx, got {got} {detail}")
        elif expected == "any" and got in (401, 403, 404):
            self.violations.append(f"{where}: expected to pass authorization, got {got} {detail}")
        elif expected not in ("ok", "any") and got != int(expected):
            self.violations.append(f"{where}: expected {expected}, got {got} {detail}")
        if got >= 400:
            self.problems_checked += 1
            problem = _problem_json_error(response)
            if problem:
                self.violations.append(f"{where}: the {got} is not problem+json: {problem}")

    @staticmethod
    def result(answers: dict[str, httpx.Response], caller: str) -> dict[str, Any]:
        """The allowed `caller`'s answer, which later rows act on."""
        response = answers[caller]
        assert 200 <= response.status_code < 300, (
            f"{response.request.method} {response.request.url.path} as {caller}: "
            f"{response.status_code} {response.text}"
        )
        body: dict[str, Any] = response.json()
        return body

    def report(self, elapsed: float) -> str:
        header = f"{'row':<70}" + "".join(f"{c:>5}" for c in CALLERS)
        lines = [header]
        for key in MATRIX:
            got = self.observed.get(key, {})
            cells = "".join(f"{got.get(c, '-')!s:>5}" for c in CALLERS)
            lines.append(f"{key:<70}{cells}")
        variants = sum(1 for r in MATRIX.values() if r.variant)
        lines.append(
            f"authorization matrix: {len(MATRIX)} rows ({len(MATRIX) - variants} routes + "
            f"{variants} state variant) x {len(CALLERS)} callers, {self.calls} calls "
            f"({self.problems_checked} error answers checked for problem+json), "
            f"{len(self.violations)} violations, {elapsed:.1f} s"
        )
        lines += [f"VIOLATION {v}" for v in self.violations]
        return "\n".join(lines)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and "detail" in body:
        return f"({str(body['detail'])[:160]})"
    return ""


def _problem_json_error(response: httpx.Response) -> str | None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/problem+json"):
        return f"content-type {content_type!r}"
    try:
        body = response.json()
    except ValueError:
        return "body is not JSON"
    missing = {"type", "title", "status", "detail"} - set(body)
    if missing:
        return f"missing {sorted(missing)}"
    if body["status"] != response.status_code:
        return f"status {body['status']} in the body"
    return None


# ---- setting the objects up ----------------------------------------------------------------------

_people = itertools.count()


async def callers(api: Api) -> dict[str, dict[str, str]]:
    person = {"sex": "female", "birth_year": 1985, "district": "Mapo-gu"}
    return {
        "anon": {},
        "cit": await api.citizen("matrix-citizen", **person),
        "inel": await api.citizen("matrix-official", public_official=True, **person),
        "cwo": await api.official("caseworker", OWN_DEPARTMENT),
        "cwx": await api.official("caseworker", OTHER_DEPARTMENT),
        "com": await api.official("committee"),
        "aud": await api.official("auditor"),
        "adm": await api.official("admin"),
    }


async def support_many(system: Stack, proposal_id: str, count: int) -> None:
    """`count` different eligible citizens support over HTTP, 25 at a time."""

    async def one() -> None:
        claims = {"sub": f"matrix-supporter-{next(_people)}", "role": "citizen"}
        token = issue_token(system.settings.jwt_secret, {**claims, "residency": "resident"})
        path = f"/v1/proposals/{proposal_id}/supports"
        expect(await system.http.post(path, headers=auth(token)), 201)

    for start in range(0, count, 25):
        await asyncio.gather(*(one() for _ in range(min(25, count - start))))


async def cast_yes(system: Stack, proposal_id: str, count: int) -> None:
    """Ballots through the code the API uses, in bulk, so the vote reaches its quorum."""
    now = datetime.now(UTC)
    async with system.sessions() as session, session.begin():
        for index in range(count):
            await cast_proposal_ballot(
                session,
                proposal_id=proposal_id,
                person_id=f"matrix-voter-{index}",
                choice="yes",
                now=now,
            )


async def wait_until(api: Api, path: str, status: str, within: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        current: dict[str, Any] = expect(await api.http.get(path), 200)
        if current["status"] == status:
            return current
        assert loop.time() < deadline, f"{path} never became {status}: {current}"
        await asyncio.sleep(0.05)


def pool_members(name: str, count: int) -> list[dict[str, Any]]:
    districts = ("Jongno-gu", "Jung-gu", "Mapo-gu", "Nowon-gu")
    return [
        {
            "person_id": f"{name}-{i}",
            "sex": "female" if i % 2 else "male",
            "birth_year": 1950 + i % 50,
            "district": districts[i % len(districts)],
        }
        for i in range(count)
    ]


async def test_authorization_matrix(api: Api, system: Stack) -> None:
    started = time.monotonic()
    problems = coverage_problems(served_routes(system.settings))
    assert not problems, "the authorization matrix is out of date:\n" + "\n".join(problems)
    m = Matrix(system.http, await callers(api))
    try:
        await walk(api, system, m)
    finally:
        print("\n" + m.report(time.monotonic() - started))
    unexercised = [key for key in MATRIX if key not in m.observed]
    assert not unexercised, f"matrix rows no scenario calls: {unexercised}"
    assert not m.violations, "authorization violations:\n" + "\n".join(m.violations)


async def walk(api: Api, system: Stack, m: Matrix) -> None:
    """Every row, each on an object in the state its action needs, the clock moving forward."""
    admin = m.callers["adm"]

    # Everything in the published OpenAPI document is a row too (the served app is this app).
    spec = expect(await system.http.get("/openapi.json"), 200)
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    undocumented = sorted(documented - {(r.method, r.path) for r in MATRIX.values()})
    assert not undocumented, f"in /openapi.json but not in the matrix: {undocumented}"

    # ---- day 0: the objects --------------------------------------------------------------------
    proposer = await api.citizen()
    readable = await api.propose(proposer)  # ripening: read, supported, commented on
    withdrawable_by = await api.citizen()
    withdrawable = await api.propose(withdrawable_by)
    walked = await api.to_review()  # walks the whole path, one row per stage
    linked = await api.propose(await api.citizen(), rulebook="seoul-2020")
    await support_many(system, linked["id"], 500)
    await api.wait_status(linked["id"], "agenda_selection")

    # ---- day 0: the rows -------------------------------------------------------------------------
    await m.check("POST /v1/dev/tokens", body={"sub": "matrix-token", "role": "auditor"})
    await m.check("POST /v1/dev/clock/advance", body={"seconds": 1})
    await m.check("GET /v1/clock")
    await m.check("GET /healthz")
    await m.check("GET /openapi.json")
    docs = (await m.check("GET /docs"))["anon"].text
    await m.check("GET /docs/oauth2-redirect")
    await m.check("GET /redoc")
    asset = re.search(r"/static/docs/([^\"'?#]+)", docs)
    assert asset, "the /docs page links no file under /static/docs"
    await m.check("GET /static/docs/{path}", path=asset.group(1))

    await m.check("POST /v1/proposals", body={"title": "Benches", "body": "On every corner."})
    await m.check("GET /v1/proposals")
    await m.check("GET /v1/proposals/{proposal_id}", proposal_id=readable["id"])
    await m.check("GET /v1/proposals/{proposal_id}/timeline", proposal_id=readable["id"])
    await m.check("POST /v1/proposals/{proposal_id}/supports", proposal_id=readable["id"])
    await m.check(
        "POST /v1/proposals/{proposal_id}/comments",
        proposal_id=readable["id"],
        body={"body": "Yes, on our street too."},
    )
    await m.check(
        "POST /v1/proposals/{proposal_id}/withdraw",
        proposal_id=withdrawable["id"],
        owner=withdrawable_by,
    )

    pid = walked["id"]
    await m.check(
        "POST /v1/proposals/{proposal_id}/assign",
        proposal_id=pid,
        body={"department": OWN_DEPARTMENT, "note": "routed"},
    )
    await m.check(
        "POST /v1/proposals/{proposal_id}/review",
        proposal_id=pid,
        body={"decision": "accept", "reason": "feasible"},
    )
    scores = {"necessity": 8, "changeability": 7, "feasibility": 6, "impact": 9}
    await m.check(
        "POST /v1/proposals/{proposal_id}/screening",
        proposal_id=pid,
        body={"decision": "advance", "scores": scores, "note": "first review"},
    )
    await m.check(
        "POST /v1/proposals/{proposal_id}/plan",
        proposal_id=pid,
        body={"summary": "Plant in spring", "executing_department": OWN_DEPARTMENT, "cost_krw": 0},
    )
    await m.check(
        "POST /v1/proposals/{proposal_id}/appropriateness",
        proposal_id=pid,
        body={"verdict": "appropriate", "reason": "lawful and funded"},
    )
    await m.check(
        "POST /v1/proposals/{proposal_id}/ballots", proposal_id=pid, body={"choice": "yes"}
    )
    await cast_yes(system, pid, 1_000)
    await m.check("GET /v1/audit/ballots/{ballot_id}/recount [vote-open]", ballot_id=pid)
    await m.check("GET /v1/inbox")
    await m.check("GET /v1/me/activity")
    contact = {"email": "matrix@example.org", "channels": ["email"]}
    await m.check("PUT /v1/me/contact", body=contact)
    await m.check("GET /v1/me/contact")
    await m.check("PUT /v1/admin/departments/{dept}/contact", body=contact, dept="parks")
    await m.check("GET /v1/admin/departments/{dept}/contact", dept="parks")
    await m.check("GET /v1/open-data")
    await m.check("GET /v1/open-data/{dataset}", dataset="cases.csv")

    await m.check("GET /v1/proposals/{proposal_id}/agenda", proposal_id=linked["id"])
    await m.check(
        "POST /v1/proposals/{proposal_id}/agenda/plan",
        proposal_id=linked["id"],
        body={"agenda_title": "Shade", "summary": "Trees or awnings?", "forum_kind": "for_against"},
    )

    forum_body = {"title": "Night buses", "body": "More lines?", "kind": "for_against"}
    forum = m.result(await m.check("POST /v1/forums", body=forum_body), "adm")
    fid = forum["id"]
    await m.check("GET /v1/forums")
    await m.check("GET /v1/forums/{forum_id}", forum_id=fid)
    await m.check("GET /v1/forums/{case_id}/timeline", case_id=fid)
    await m.check(
        "POST /v1/forums/{case_id}/participations",
        case_id=fid,
        body={"position": "for"},
    )
    forum_post = expect(
        await api.post(
            f"/v1/forums/{fid}/participations",
            await api.citizen(),
            {"position": "against", "opinion": "Too noisy at night"},
        ),
        201,
    )["post_id"]
    await m.check("GET /v1/forums/{case_id}/posts", case_id=fid)
    await m.check(
        "POST /v1/forums/{case_id}/posts/{post_id}/reports",
        case_id=fid,
        post_id=forum_post,
        body={"reason": "off topic"},
    )
    await m.check(
        "POST /v1/forums/{case_id}/posts/{post_id}/moderation",
        case_id=fid,
        post_id=forum_post,
        body={"action": "hide", "reason": "criterion 2"},
    )

    pool = "matrix-pool"
    await m.check(
        "POST /v1/sortition-pools", body={"name": pool, "members": pool_members(pool, 40)}
    )
    await m.check("POST /v1/sortition-pools/{name}/volunteers", name=pool)
    await m.check("GET /v1/sortition-pools/{name}", name=pool)
    seed = "matrix seed"
    draw_body = {
        "purpose": "other",
        "size": 6,
        "strata": ["sex"],
        "pool": pool,
        "seed_commitment": hashlib.sha256(seed.encode()).hexdigest(),
    }
    draw = m.result(await m.check("POST /v1/sortitions", body=draw_body), "adm")
    await m.check("POST /v1/sortitions/{draw_id}/reveal", draw_id=draw["id"], body={"seed": seed})
    await m.check("GET /v1/sortitions/{draw_id}", draw_id=draw["id"])
    await m.check("GET /v1/sortitions/{draw_id}/snapshot", draw_id=draw["id"])
    await m.check("GET /v1/sortitions/{draw_id}/verify", draw_id=draw["id"])
    await m.check("GET /v1/sortitions/{draw_id}/members", draw_id=draw["id"])
    await m.check("GET /v1/sortitions/{draw_id}/me", draw_id=draw["id"])
    # A public deliberation with that draw as its panel: its recommendation comes after the close.
    deliberation = expect(
        await api.post(
            "/v1/forums",
            admin,
            {"title": "Stray cats", "body": "Living together", "kind": "discussion"}
            | {"panel_draw_id": draw["id"]},
        ),
        201,
    )

    await m.check("GET /v1/audit/cases/{workflow_id}/history", workflow_id=readable["workflow_id"])
    await m.check("POST /v1/audit/cases/{workflow_id}/replay", workflow_id=readable["workflow_id"])
    await m.check(
        "GET /v1/audit/cases/{workflow_id}/transitions", workflow_id=readable["workflow_id"]
    )
    await m.check("GET /v1/audit/cases", query={"kind": "forum"})
    await m.check("POST /v1/audit/replay", query={"kind": "ask"})
    await m.check("GET /v1/audit/log")
    plain = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "MQ=="}]}
    await m.check("POST /v1/codec/decode", body=plain)
    await m.check("POST /v1/codec/encode", body=plain)
    await m.check("OPTIONS /v1/codec/decode")
    await m.check("OPTIONS /v1/codec/encode")

    opens_at = datetime.fromisoformat(await api.now()) + timedelta(days=15)
    ask_body = {
        "title": "Relocate stray cats?",
        "body": "Neutral material.",
        "opens_at": opens_at.isoformat(),
        "closes_at": (opens_at + timedelta(days=30)).isoformat(),
    }
    asked = await m.check("POST /v1/asks", body=ask_body)
    ask = m.result(asked, "cwo")
    aid = ask["id"]
    assert ask["department"] == OWN_DEPARTMENT
    await m.check("GET /v1/asks")
    await m.check("GET /v1/asks/{ask_id}", ask_id=aid)
    await m.check("GET /v1/asks/{case_id}/timeline", case_id=aid)
    await m.check("GET /v1/asks/{case_id}/posts", case_id=aid)

    # ---- day 15: the ask is open -------------------------------------------------------------
    await api.advance(days=15, seconds=120)
    await wait_until(api, f"/v1/asks/{aid}", "open")
    await m.check(
        "POST /v1/asks/{case_id}/participations", case_id=aid, body={"position": "against"}
    )
    ask_post = expect(
        await api.post(
            f"/v1/asks/{aid}/participations",
            await api.citizen(),
            {"position": "for", "opinion": "Shelters first"},
        ),
        201,
    )["post_id"]
    await m.check(
        "POST /v1/asks/{case_id}/posts/{post_id}/reports",
        case_id=aid,
        post_id=ask_post,
        body={"reason": "spam"},
    )
    await m.check(
        "POST /v1/asks/{case_id}/posts/{post_id}/moderation",
        case_id=aid,
        post_id=ask_post,
        body={"action": "hide", "reason": "criterion 1"},
    )

    # ---- day 31: the vote, the forums and the agenda's 30 days are over -------------------------
    await api.advance(days=16)
    await api.wait_status(pid, "executing")
    await m.check(
        "POST /v1/proposals/{proposal_id}/execution-reports",
        proposal_id=pid,
        body={"progress_pct": 40, "note": "begun"},
    )
    await m.check("GET /v1/audit/ballots/{ballot_id}/recount", ballot_id=pid)
    await m.check(
        "POST /v1/proposals/{proposal_id}/agenda/decision",
        proposal_id=linked["id"],
        body={"hold_forum": False, "votes_for": 5, "votes_against": 15, "reason": "not now"},
    )
    await wait_until(api, f"/v1/forums/{deliberation['id']}", "closed")
    await m.check(
        "POST /v1/forums/{forum_id}/recommendation",
        forum_id=deliberation["id"],
        body={"text": "Feeding stations in three districts"},
    )

    # ---- day 46: the ask's opinion period is over, the department reviews ----------------------
    await api.advance(days=15)
    await wait_until(api, f"/v1/asks/{aid}", "dept_review")
    await m.check(
        "POST /v1/asks/{ask_id}/review",
        ask_id=aid,
        body={"summary": "Relocation with shelters", "actions": "Budget for shelters"},
    )

    # ---- budget-year cycles: next year's, not started yet ----------------------------------------
    year = datetime.fromisoformat(await api.now()).year + 1
    await m.check("POST /v1/budget-cycles", body={"year": year})
    await m.check("GET /v1/budget-cycles/{year}", year=str(year))
    await m.check("GET /v1/budget-cycles/{year}/timeline", year=str(year))
    override = {
        "type": "metro",
        "phase": "call",
        "new_end": f"{year}-02-15T00:00:00+09:00",
        "reason": "a longer call",
    }
    await m.check("POST /v1/budget-cycles/{year}/phase-overrides", year=str(year), body=override)
    # before its vote phase: a ballot is 409 for an eligible citizen, results 409 for anyone
    ballot = {"kind": "metro", "project_ids": ["some-project"]}
    await m.check("POST /v1/budget-cycles/{year}/ballots", year=str(year), body=ballot)
    await m.check("GET /v1/budget-cycles/{year}/results", year=str(year))
    await m.check("GET /v1/budget-cycles/{year}/results.pb", year=str(year))
    batch = {"channel": "paper", "kind": "metro", "ballots": []}
    await m.check("POST /v1/budget-cycles/{year}/ballot-batches", year=str(year), body=batch)
    await m.check("GET /v1/budget-cycles/{year}/ballot-batches", year=str(year))
    record = {"stage": "drafting", "kind": "material_request", "body": "the bus budget by line"}
    await m.check("POST /v1/budget-cycles/{year}/participation", year=str(year), body=record)
    await m.check("GET /v1/budget-cycles/{year}/participation", year=str(year))
    await m.check(
        "POST /v1/budget-cycles/{year}/participation/{record_id}/answers",
        year=str(year),
        record_id="no-such-record",
        body={"body": "an explanation"},
    )
    await m.check("GET /v1/me/participation")
    fields = {"fields": [{"field": "welfare", "allocation_krw": 1_000_000}]}
    await m.check("PUT /v1/budget-cycles/{year}/fields", year=str(year), body=fields)
    council = {"field": "welfare", "active_member_ids": ["a"], "draw_id": "no-such-draw"}
    await m.check("POST /v1/budget-cycles/{year}/councils", year=str(year), body=council)
    await m.check(
        "POST /v1/budget-cycles/{year}/square", year=str(year), body={"draw_id": "no-such-draw"}
    )
    await m.check(
        "PUT /v1/budget-cycles/{year}/fields/{field}/shortlist",
        year=str(year),
        field="welfare",
        body={"project_ids": ["some-project"]},
    )
    await m.check(
        "POST /v1/budget-cycles/{year}/assembly",
        year=str(year),
        body={"approved_project_ids": [], "minutes": "minutes"},
    )
    await m.check(
        "POST /v1/budget-cycles/{year}/council",
        year=str(year),
        body={"adopted_project_ids": [], "resolution_ref": "resolution 1"},
    )

    # ---- district and neighbourhood plans: a plan and an agenda set of that cycle (recorded
    # directly: their phases have not come), so every write the caller's role allows is 409
    application = {"district": "Mapo-gu", "strategic": True}
    await m.check(
        "POST /v1/budget-cycles/{year}/district-applications", year=str(year), body=application
    )
    await m.check("GET /v1/budget-cycles/{year}/district-applications", year=str(year))
    selection = {"districts": ["Mapo-gu", "Gwanak-gu", "Nowon-gu", "Eunpyeong-gu", "Guro-gu"]}
    await m.check(
        "POST /v1/budget-cycles/{year}/strategic-districts", year=str(year), body=selection
    )
    await m.check("GET /v1/budget-cycles/{year}/strategic-districts", year=str(year))
    plan = {
        "district": "Mapo-gu",
        "strategic": False,
        "plan": "the first year's plan",
        "cost_krw": 1_000_000,
    }
    await m.check("POST /v1/budget-cycles/{year}/district-plans", year=str(year), body=plan)
    await m.check("GET /v1/budget-cycles/{year}/district-plans", year=str(year))
    district_plan = DistrictPlan(
        id="matrix-district-plan",
        workflow_id="district-plan-matrix-district-plan",
        year=year,
        district="Mapo-gu",
        strategic=False,
        plan="the first year's plan",
        submitted_cost_krw=1_000_000,
        ceiling_krw=1_000_000_000,
        cost_krw=1_000_000,
        submitted_by="matrix-district-worker",
        rulebook="seoul-2021-2",
        rulebook_hash="-",
        created_at=datetime.now(UTC),
    )
    agenda_set = NeighbourhoodAgendaSet(
        id="matrix-agenda-set",
        year=year,
        district="Mapo-gu",
        neighbourhood="Mangwon-dong",
        agendas=[{"title": "a reading room", "rank": 1, "cost_krw": 1_000_000}],
        assembly_minutes="the assembly's minutes",
        cost_krw=1_000_000,
        submitted_by="matrix-district-worker",
        created_at=datetime.now(UTC),
    )
    async with system.sessions() as session, session.begin():
        session.add_all([district_plan, agenda_set])
    plan_id = district_plan.id
    await m.check("GET /v1/district-plans/{plan_id}", plan_id=plan_id)
    await m.check("GET /v1/district-plans/{plan_id}/timeline", plan_id=plan_id)
    await m.check(
        "POST /v1/district-plans/{plan_id}/negotiations",
        plan_id=plan_id,
        body={"notes": "round one"},
    )
    await m.check(
        "POST /v1/district-plans/{plan_id}/decision",
        plan_id=plan_id,
        body={"funded": True, "note": "funded"},
    )
    await m.check(
        "POST /v1/district-plans/{plan_id}/agreement",
        plan_id=plan_id,
        body={"council_reference": "resolution 1"},
    )
    counts = {
        "districts": [
            {"district": "Mapo-gu", "planning_neighbourhoods": 7, "autonomous_neighbourhoods": 3}
        ]
    }
    await m.check(
        "PUT /v1/budget-cycles/{year}/neighbourhood-ceilings", year=str(year), body=counts
    )
    await m.check("GET /v1/budget-cycles/{year}/neighbourhood-ceilings", year=str(year))
    agendas = {
        "neighbourhood": "Seogyo-dong",
        "agendas": [{"title": "a reading room", "rank": 1, "cost_krw": 1_000_000}],
        "assembly_minutes": "the assembly's minutes",
    }
    await m.check(
        "POST /v1/budget-cycles/{year}/neighbourhood-agendas", year=str(year), body=agendas
    )
    await m.check("GET /v1/budget-cycles/{year}/neighbourhood-agendas", year=str(year))
    agenda_id = agenda_set.id
    await m.check("GET /v1/neighbourhood-agendas/{agenda_id}", agenda_id=agenda_id)
    await m.check("GET /v1/neighbourhood-agendas/{agenda_id}/timeline", agenda_id=agenda_id)
    await m.check(
        "POST /v1/neighbourhood-agendas/{agenda_id}/review",
        agenda_id=agenda_id,
        body={"agendas": [{"rank": 1, "scores": {"need": 80}, "selected": True}]},
    )

    # ---- budget projects: a metro project of that cycle (recorded directly: the call has not
    # opened), so every write the caller's role allows is refused by the phase (409)
    project_owner = await api.citizen("matrix-project-owner")
    project = BudgetProject(
        id="matrix-project",
        workflow_id="project-matrix-project",
        year=year,
        kind="metro",
        field="welfare",
        title="Ramps",
        body="Ramps along the river.",
        proposer_id="matrix-project-owner",
        event=False,
        districts=["Mapo-gu", "Jongno-gu"],
        submitted_cost_krw=1_000_000,
        cost_krw=1_000_000,
        rulebook="seoul-2021",
        rulebook_hash="-",
        created_at=datetime.now(UTC),
    )
    async with system.sessions() as session, session.begin():
        session.add(project)
    submission = {
        "title": "Ramps",
        "body": "Ramps along the river.",
        "field": "welfare",
        "kind": "metro",
        "cost_krw": 1_000_000,
        "event": False,
        "districts": ["Mapo-gu", "Jongno-gu"],
    }
    project_id = project.id
    await m.check("POST /v1/budget-cycles/{year}/projects", year=str(year), body=submission)
    await m.check("GET /v1/budget-cycles/{year}/projects", year=str(year))
    await m.check("GET /v1/projects/{project_id}", project_id=project_id)
    await m.check("GET /v1/projects/{project_id}/timeline", project_id=project_id)
    await m.check(
        "POST /v1/projects/{project_id}/screening",
        body={"eligible": True, "reason": ""},
        project_id=project_id,
    )
    scores = {"necessity": 1, "feasibility": 2, "impact": 3, "inclusiveness": 4}
    await m.check(
        "POST /v1/projects/{project_id}/review",
        body={"advance": True, "scores": scores, "note": ""},
        project_id=project_id,
    )
    await m.check(
        "POST /v1/projects/{project_id}/objections", body={"body": "why?"}, project_id=project_id
    )
    await m.check(
        "POST /v1/projects/{project_id}/objections/{objection_id}/answer",
        body={"answer": "because"},
        objection_id="none",
        project_id=project_id,
    )
    await m.check(
        "POST /v1/projects/{project_id}/withdraw", owner=project_owner, project_id=project_id
    )
    await m.check(
        "POST /v1/projects/{project_id}/deliberation",
        body={"action": "continue", "note": "keep it"},
        project_id=project_id,
    )
    await m.check(
        "POST /v1/projects/{project_id}/opinions", body={"body": "good"}, project_id=project_id
    )
    await m.check("GET /v1/projects/{project_id}/opinions", project_id=project_id)
    report = {"progress_pct": 10, "note": "started"}
    await m.check(
        "POST /v1/projects/{project_id}/execution-reports", body=report, project_id=project_id
    )
    await m.check(
        "POST /v1/projects/{project_id}/executing-department",
        body={"department": "parks"},
        project_id=project_id,
    )
    await m.check(
        "POST /v1/projects/{project_id}/execution-council",
        body={"citizen_members": 5, "official_members": 3},
        project_id=project_id,
    )
    await m.check(
        "POST /v1/projects/{project_id}/evaluation",
        body={"findings": "good", "results_meeting_on": "2030-12-10"},
        project_id=project_id,
    )
