"""Fuzz the running API with requests generated from its own /openapi.json (schemathesis).

Every documented operation is called with generated input in three variants (VARIANTS): valid
(positive), valid with text the API can store (positive-clean: no control characters, so it
gets past validation into the handlers) and invalid (negative), under each identity given (a
citizen's and an admin's bearer token). About half of the generated paths name real objects made
beforehand by `seed()` (a proposal, a forum and a post in it, an ask, a sortition pool and a
draw), so requests get past "no such object" too. `POST /v1/dev/clock/advance` gets invalid
input only (POSITIVE_EXCLUDED).

Each response is checked for what the API promises: never a server error (5xx) or a dropped
connection, and every response documented: its status code, its content type, its headers and
its body against the schema. Every failure is recorded (not raised), so one run counts all
requests and all failures by kind; `Report.render()` prints them.

The calls are synchronous (requests): run `fuzz()` in a worker thread when the server shares the
caller's event loop.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Every response is documented: its status, content type, headers and body.
CONFORMANCE_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: ... and none is a server error (5xx).
CHECKS = [not_a_server_error, *CONFORMANCE_CHECKS]


@dataclass(frozen=True)
class Variant:
    """How cases are generated: schemathesis's positive or negative mode, and whether the
    generated text is cleaned of the characters the API refuses everywhere (models/text.py).

    Raw positive cases are mostly such text (hypothesis favours control characters), so most of
    them stop at validation with a 422; the cleaned ones get past it into the handlers and the
    workflows, where the state-dependent answers (and errors) are."""

    name: str
    mode: GenerationMode
    clean: bool = False


VARIANTS = (
    Variant("positive", GenerationMode.POSITIVE),
    Variant("positive-clean", GenerationMode.POSITIVE, clean=True),
    Variant("negative", GenerationMode.NEGATIVE),
)

#: What models/text.py refuses in any text (and line breaks and tabs, refused in ids and
#: parameters): removed from every generated string of a "clean" case.
_UNWRITABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return _UNWRITABLE.sub("", value)
    if isinstance(value, dict):
        return {_cleaned(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    return value


def _clean_case(case: Any) -> Any:
    """The case with unwritable characters removed from its body, query, path and headers."""
    for key in list(case.query):
        case.query[key] = _cleaned(case.query[key])
    for key, value in list(case.path_parameters.items()):
        # schemathesis keeps path parameters percent-encoded
        if isinstance(value, str):
            cleaned = _cleaned(unquote(value))
            if cleaned in ("", ".", ".."):
                # an empty or dot segment would route the request to another operation
                cleaned = "0"
            case.path_parameters[key] = quote(cleaned, safe="")
    for key in list(case.headers):
        if key.lower() != "authorization":
            case.headers[key] = _cleaned(case.headers[key])
    if isinstance(case.body, str | dict | list):
        case.body = _cleaned(case.body)
    return case


#: Operations fuzzed with invalid input only. Valid input to the clock would move the shared
#: simulated clock by up to ten years at random, expiring every seeded object's deadlines and
#: making the rest of the run pointless; invalid input must be refused without moving it.
POSITIVE_EXCLUDED = frozenset({"POST /v1/dev/clock/advance"})

#: The failure kinds of a request that got no response (the others are schemathesis's titles:
#: "Server error", "Undocumented status code", "Response violates schema", ...).
CONNECTION_KIND = "Connection error (no response)"
TIMEOUT_KIND = "Timeout (no response)"

SEOUL_DISTRICTS = ("Jongno-gu", "Jung-gu", "Mapo-gu", "Gangnam-gu", "Songpa-gu", "Nowon-gu")


@dataclass(frozen=True)
class Identity:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Seeds:
    """Real object ids by path parameter: `"name"` for every path, `"/v1/asks name"` for one
    collection (the same parameter name can mean different objects, e.g. `case_id`)."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, value: str) -> None:
        self.ids.setdefault(key, []).append(value)

    def for_parameter(self, path: str, name: str) -> list[str]:
        collection = "/".join(path.split("/")[:3])
        return self.ids.get(f"{collection} {name}") or self.ids.get(name) or []

    def path_parameters(self, path: str) -> list[dict[str, str]]:
        """Each way to fill every parameter of `path` with real ids (none if one has no id)."""
        names = re.findall(r"{([^}]+)}", path)
        if not names:
            return []
        combinations: list[dict[str, str]] = [{}]
        for name in names:
            values = self.for_parameter(path, name)
            if not values:
                return []
            combinations = [{**c, name: v} for c in combinations for v in values]
        return combinations


@dataclass
class Finding:
    kind: str
    operation: str
    identity: str
    variant: str
    status: int | None
    request: str
    response: str
    message: str

    def key(self) -> tuple[str, str, int | None]:
        return (self.kind, self.operation, self.status)


@dataclass
class Report:
    seed: int
    requests: int = 0
    seconds: float = 0.0
    operations: int = 0
    rounds: int = 0
    by_identity: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    #: Generated cases the HTTP client itself could not send (e.g. an unencodable header).
    not_sent: Counter[str] = field(default_factory=Counter)
    #: Operations schemathesis could not generate for, and why.
    errors: list[str] = field(default_factory=list)
    #: Requests and 2xx answers per variant (see VARIANTS): how deep each got.
    by_variant: Counter[str] = field(default_factory=Counter)
    ok_by_variant: Counter[str] = field(default_factory=Counter)
    #: (operation, variant) that have no input of that kind: nothing in a negative-mode request
    #: can be invalid when every input is a free string (and the token is fixed).
    no_input: set[tuple[str, str]] = field(default_factory=set)
    #: Seconds spent per operation (generation and calls), to see where a run's time goes.
    op_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed_requests(self) -> int:
        return len({(f.identity, f.request) for f in self.findings})

    def by_kind(self) -> Counter[str]:
        return Counter(f.kind for f in self.findings)

    def distinct(self) -> list[tuple[Finding, int]]:
        """The first finding of each (kind, operation, status), with how often it was seen."""
        first: dict[tuple[str, str, int | None], Finding] = {}
        counts: Counter[tuple[str, str, int | None]] = Counter()
        for finding in self.findings:
            first.setdefault(finding.key(), finding)
            counts[finding.key()] += 1
        return [(finding, counts[key]) for key, finding in first.items()]

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def render(self, *, details: bool = True) -> str:
        lines = [
            f"fuzz: {self.requests} requests ({_counts(self.by_identity)}) over "
            f"{self.operations} operations in {self.rounds} round(s), {self.seconds:.1f} s, "
            f"seed {self.seed}",
            f"  statuses: {_counts(self.statuses)}",
            "  2xx / requests by variant: "
            + ", ".join(f"{v} {self.ok_by_variant[v]}/{n}" for v, n in self.by_variant.items()),
            f"  5xx responses: {self.server_errors()}",
            f"  failures: {len(self.findings)} in {self.failed_requests} request(s)"
            + (f" — {_counts(self.by_kind())}" if self.findings else ""),
        ]
        if self.no_input:
            lines.append(
                f"  without invalid input to generate: {len(self.no_input)} (operation, variant)"
            )
        slowest = ", ".join(
            f"{op} {t:.1f}s"
            for op, t in sorted(self.op_seconds.items(), key=lambda item: -item[1])[:3]
        )
        if slowest:
            lines.append(f"  slowest operations: {slowest}")
        if self.not_sent:
            lines.append(f"  not sent by the client: {_counts(self.not_sent)}")
        for error in self.errors:
            lines.append(f"  could not fuzz: {error}")
        if details and self.findings:
            lines.append("  distinct failures (kind, operation, status):")
            for finding, count in self.distinct():
                lines += [
                    f"  - [{finding.kind}] {finding.operation} -> {finding.status} "
                    f"x{count} (first as {finding.identity}, {finding.variant})",
                    f"      request:  {finding.request}",
                    f"      response: {finding.response}",
                    f"      {_first_line(finding.message)}",
                ]
        return "\n".join(lines)


def _counts(counter: Counter[Any]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counter.items(), key=str)) or "none"


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return _clip(" / ".join(lines[:3]), 300)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _describe_request(request: requests.PreparedRequest | None) -> str:
    if request is None:
        return "?"
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="backslashreplace")
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in {"authorization", "user-agent", "accept-encoding", "accept"}
        and k.lower() not in {"connection", "content-length", "x-schemathesis-testcaseid"}
    }
    text = f"{request.method} {request.url}"
    if headers:
        text += f" headers={headers!r}"
    if body is not None:
        text += f" body={_clip(repr(body), 400)}"
    return text


def _describe_response(response: schemathesis.Response) -> str:
    content_type = response.headers.get("content-type", ["?"])[0]
    body = response.content.decode("utf-8", errors="backslashreplace")
    return f"{response.status_code} {content_type} {_clip(body, 400)}"


# ---- real objects ------------------------------------------------------------------------------


async def _token(http: httpx.AsyncClient, **claims: Any) -> str:
    response = await http.post("/v1/dev/tokens", json=claims)
    response.raise_for_status()
    return str(response.json()["token"])


async def identities(http: httpx.AsyncClient) -> list[Identity]:
    """A citizen (eligible, with the attributes sortition needs) and an admin."""
    citizen = await _token(
        http,
        sub="fuzz-citizen",
        role="citizen",
        residency="resident",
        sex="female",
        birth_year=1980,
        district="Mapo-gu",
    )
    admin = await _token(http, sub="fuzz-admin", role="admin")
    return [Identity("citizen", citizen), Identity("admin", admin)]


async def seed(http: httpx.AsyncClient) -> Seeds:
    """Make real objects through the API: a proposal, a forum and a post in it are required
    (AssertionError otherwise); an ask, a sortition pool and a draw are made if the API takes
    them (else a note says why)."""
    seeds = Seeds()

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def created(response: httpx.Response, what: str, *, required: bool) -> dict[str, Any] | None:
        if response.status_code in (200, 201):
            body: dict[str, Any] = response.json()
            return body
        note = f"could not make {what}: {response.status_code} {response.text[:300]}"
        assert not required, note
        seeds.notes.append(note)
        return None

    proposer = auth(await _token(http, sub="fuzz-proposer", role="citizen", residency="resident"))
    participant = auth(
        await _token(http, sub="fuzz-participant", role="citizen", residency="resident")
    )
    admin = auth(await _token(http, sub="fuzz-seeder", role="admin"))
    caseworker = auth(await _token(http, sub="fuzz-caseworker", role="caseworker", dept="culture"))

    body = {"title": "Benches along the Cheonggyecheon", "body": "Forty benches, in the shade."}
    proposal = created(
        await http.post("/v1/proposals", json=body, headers=proposer), "a proposal", required=True
    )
    assert proposal is not None
    seeds.add("proposal_id", proposal["id"])
    seeds.add("workflow_id", proposal["workflow_id"])

    body = {"title": "Night buses after 2 am?", "body": "Costs and views.", "kind": "for_against"}
    forum = created(
        await http.post("/v1/forums", json=body, headers=admin), "a forum", required=True
    )
    assert forum is not None
    seeds.add("forum_id", forum["id"])
    seeds.add("/v1/forums case_id", forum["id"])
    seeds.add("workflow_id", forum["workflow_id"])

    body = {"position": "for", "opinion": "Yes: shift workers need them."}
    participation = created(
        await http.post(f"/v1/forums/{forum['id']}/participations", json=body, headers=participant),
        "a post in the forum",
        required=True,
    )
    assert participation is not None and participation["post_id"]
    seeds.add("post_id", participation["post_id"])

    now = datetime.fromisoformat((await http.get("/v1/clock")).json()["now"])
    opens_at = now + timedelta(days=15)
    body = {
        "title": "Should stray cats be relocated?",
        "body": "Neutral material: costs, shelters, views.",
        "opens_at": opens_at.isoformat(),
        "closes_at": (opens_at + timedelta(days=31)).isoformat(),
    }
    ask = created(
        await http.post("/v1/asks", json=body, headers=caseworker), "an ask", required=False
    )
    if ask is not None:
        seeds.add("ask_id", ask["id"])
        seeds.add("/v1/asks case_id", ask["id"])
        seeds.add("workflow_id", ask["workflow_id"])

    rng = random.Random(7)
    members = [
        {
            "person_id": f"fuzz-pool-{i}",
            "sex": rng.choice(["female", "male"]),
            "birth_year": rng.randint(1950, now.year - 20),
            "district": rng.choice(SEOUL_DISTRICTS),
        }
        for i in range(40)
    ]
    pool = created(
        await http.post(
            "/v1/sortition-pools", json={"name": "fuzz-pool", "members": members}, headers=admin
        ),
        "a sortition pool",
        required=False,
    )
    if pool is not None:
        seeds.add("name", pool["name"])
        draw_body: dict[str, Any] = {
            "purpose": "other",
            "size": 5,
            "pool": pool["name"],
            "seed_commitment": hashlib.sha256(b"fuzz").hexdigest(),
        }
        draw = created(
            await http.post("/v1/sortitions", json=draw_body, headers=admin),
            "a draw",
            required=False,
        )
        if draw is not None:
            seeds.add("draw_id", draw["id"])
    return seeds


# ---- the run -----------------------------------------------------------------------------------


def load_schema(document: dict[str, Any]) -> Any:
    """A schemathesis schema from the served OpenAPI document."""
    return schemathesis.openapi.from_dict(document)


def fuzz(
    schema: Any,
    base_url: str,
    who: Iterable[Identity],
    seeds: Seeds,
    *,
    examples: int,
    target_requests: int = 0,
    time_limit: float | None = None,
    seed: int | None = None,
    timeout: float = 30.0,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Fuzz every operation of `schema` at `base_url` as each identity, in each variant (VARIANTS).

    One round gives each (identity, operation, variant) up to `examples` generated cases; rounds
    repeat, each with other random data, until `target_requests` were sent, or `time_limit`
    seconds passed (checked between operations).
    """
    base_seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    report = Report(seed=base_seed)
    people = list(who)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            report.errors.append(f"invalid operation in the schema: {result.err()}")
    report.operations = len(operations)
    started = time.monotonic()
    deadline = started + time_limit if time_limit is not None else None
    session = requests.Session()
    try:
        while True:
            before = report.requests
            for identity, operation, variant in itertools.product(people, operations, VARIANTS):
                if deadline is not None and time.monotonic() > deadline:
                    break
                name = label(operation)
                if variant.mode is GenerationMode.POSITIVE and name in POSITIVE_EXCLUDED:
                    continue
                _fuzz_operation(
                    operation,
                    variant,
                    identity,
                    seeds,
                    report,
                    base_url=base_url,
                    session=session,
                    examples=examples,
                    seed=_stable_seed(base_seed, report.rounds, identity.name, name, variant.name),
                    timeout=timeout,
                )
                if progress is not None:
                    report.seconds = time.monotonic() - started
                    progress(report)
            report.rounds += 1
            out_of_time = deadline is not None and time.monotonic() > deadline
            if report.requests >= target_requests or out_of_time or report.requests == before:
                break
    finally:
        session.close()
        report.seconds = time.monotonic() - started
    return report


#: Keys that say nothing about which strings a schema accepts.
_ANNOTATIONS = frozenset({"title", "description", "default", "example", "examples", "deprecated"})


def _accepts_any_text(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """Whether every string is valid for `schema` (so no path, query or header value is not)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return ref.startswith("#/components/schemas/") and _accepts_any_text(
            components.get(name, {"not": {}}), components
        )
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return any(_accepts_any_text(branch, components) for branch in schema[key])
    return set(schema) - _ANNOTATIONS <= {"type"} and schema.get("type", "string") == "string"


def has_invalid_input(operation: Any) -> bool:
    """Whether a negative-mode request can exist: a body, or a parameter (other than the
    token, which is fixed) that refuses some strings. Without one, schemathesis rejects every
    draw until hypothesis gives up (seconds per operation), so such (operation, negative) pairs
    are skipped up front."""
    raw = operation.definition.raw
    if "requestBody" in raw:
        return True
    components = operation.schema.raw_schema.get("components", {}).get("schemas", {})
    for parameter in raw.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name", "").lower() == "authorization":
            continue
        if not _accepts_any_text(parameter.get("schema", {}), components):
            return True
    return False


def label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _stable_seed(*parts: Any) -> int:
    """A seed that is the same in every process for the same parts (unlike hash())."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _fuzz_operation(
    operation: Any,
    variant: Variant,
    identity: Identity,
    seeds: Seeds,
    report: Report,
    *,
    base_url: str,
    session: requests.Session,
    examples: int,
    seed: int,
    timeout: float,
) -> None:
    headers = identity.headers
    name = label(operation)
    mode = variant.mode

    def strategy(real: bool) -> st.SearchStrategy[Any]:
        generated: st.SearchStrategy[Any] = operation.as_strategy(
            generation_mode=mode, headers=headers
        )
        fixed = [
            operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=values)
            for values in seeds.path_parameters(operation.path)
        ]
        if real and fixed:
            # about half the cases name real objects
            generated = st.one_of(generated, st.one_of(fixed))
        return generated.map(_clean_case) if variant.clean else generated

    def send(case: Any) -> None:
        try:
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=timeout
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
            _no_response(report, CONNECTION_KIND, case, name, identity, variant)
            return
        except requests.exceptions.Timeout:
            _no_response(report, TIMEOUT_KIND, case, name, identity, variant)
            return
        except (requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
            report.not_sent[type(exc).__name__] += 1
            return
        report.requests += 1
        report.by_identity[identity.name] += 1
        report.by_variant[variant.name] += 1
        report.statuses[response.status_code] += 1
        if response.status_code < 300:
            report.ok_by_variant[variant.name] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.findings.append(_finding(failure, name, identity, variant, response))
        except Failure as failure:
            report.findings.append(_finding(failure, name, identity, variant, response))

    if (name, variant.name) in report.no_input:
        return
    if mode is GenerationMode.NEGATIVE and not has_invalid_input(operation):
        report.no_input.add((name, variant.name))
        return
    started = time.monotonic()
    try:
        for real in (True, False):
            run = hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )(hypothesis.seed(seed)(hypothesis.given(case=strategy(real))(send)))
            try:
                run()
                return
            except Exception as exc:  # schemathesis could not generate for this operation
                if isinstance(exc, hypothesis.errors.Unsatisfiable) and mode.is_negative:
                    # every input of the operation accepts anything (free strings): no invalid
                    # request exists; it is fuzzed in positive mode
                    report.no_input.add((name, variant.name))
                    return
                if real and seeds.path_parameters(operation.path):
                    continue  # retry without the real ids
                report.errors.append(f"{name} ({variant.name}): {type(exc).__name__}: {exc}")
                return
    finally:
        spent = time.monotonic() - started
        report.op_seconds[name] = report.op_seconds.get(name, 0.0) + spent


def _no_response(
    report: Report, kind: str, case: Any, label: str, identity: Identity, variant: Variant
) -> None:
    report.requests += 1
    report.by_identity[identity.name] += 1
    report.by_variant[variant.name] += 1
    try:
        request = _clip(case.as_curl_command(), 600)
    except Exception:
        request = label
    report.findings.append(
        Finding(kind, label, identity.name, variant.name, None, request, "(none)", kind)
    )


def _finding(
    failure: Failure,
    label: str,
    identity: Identity,
    variant: Variant,
    response: schemathesis.Response,
) -> Finding:
    kind = type(failure).kind_title
    message = failure.message if failure.title == kind else f"{failure.title}: {failure.message}"
    return Finding(
        kind=kind,
        operation=label,
        identity=identity.name,
        variant=variant.name,
        status=response.status_code,
        request=_describe_request(response.request),
        response=_describe_response(response),
        message=message,
    )
