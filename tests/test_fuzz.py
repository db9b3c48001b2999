"""Property-based fuzzing from /openapi.json against the whole running system.

Once as a citizen and once as an admin, every documented operation gets generated requests,
valid, valid with storable text, and invalid, about half of them naming real objects
(fuzz/engine.py; POST /v1/dev/clock/advance gets invalid input only, so the clock stays put).
No response may be a server error, and every response must be documented: status, content
type, headers, body.

Bounded for the suite: a few examples per operation and variant, about 1,500 requests per
identity. `make fuzz` runs the same engine for 10,000+ requests; these environment variables
raise the budget here too:
MINJU_FUZZ_EXAMPLES (cases per operation, variant and round), MINJU_FUZZ_REQUESTS (rounds repeat
until this many requests per identity), MINJU_FUZZ_TIME_LIMIT (seconds per identity),
MINJU_FUZZ_SEED (a number to replay a run, the report prints it; `random` for a new one).
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import pytest

from fuzz import engine
from tests.conftest import Stack

EXAMPLES = int(os.environ.get("MINJU_FUZZ_EXAMPLES", "12"))
TARGET_REQUESTS = int(os.environ.get("MINJU_FUZZ_REQUESTS", "0"))
TIME_LIMIT = float(os.environ.get("MINJU_FUZZ_TIME_LIMIT", "300"))
#: Fixed by default, so a red run is reproducible and CI does not flicker; `make fuzz` draws a
#: new seed every run. MINJU_FUZZ_SEED=random explores here too.
_SEED = os.environ.get("MINJU_FUZZ_SEED", "20261122")
SEED = None if _SEED == "random" else int(_SEED)


@pytest.mark.parametrize("identity", ["citizen", "admin"])
async def test_fuzz_finds_no_server_error_and_no_undocumented_response(
    system: Stack, identity: str
) -> None:
    http = system.http
    seeds = await engine.seed(http)
    (person,) = [p for p in await engine.identities(http) if p.name == identity]
    document = (await http.get("/openapi.json")).json()
    schema = engine.load_schema(document)

    report = await asyncio.to_thread(
        engine.fuzz,
        schema,
        str(http.base_url).rstrip("/"),
        [person],
        seeds,
        examples=EXAMPLES,
        target_requests=TARGET_REQUESTS,
        time_limit=TIME_LIMIT,
        seed=SEED,
    )
    rendered = report.render()
    print(f"\n[{identity}] {rendered}")
    for note in seeds.notes:
        print(f"[{identity}] seed: {note}")

    assert report.errors == [], rendered
    # every operation was called, and (with real objects) more than once per mode
    assert report.operations >= 40, rendered
    assert report.requests >= report.operations * 2, rendered
    assert report.requests >= TARGET_REQUESTS, rendered
    assert report.server_errors() == 0, rendered
    assert report.findings == [], rendered


async def test_the_fuzzer_reports_what_the_document_does_not_say(system: Stack) -> None:
    """The checks are not blind: against a document that omits a 404, promises a field the
    proposal does not have and a JSON 422, the same engine reports each kind."""
    http = system.http
    seeds = await engine.seed(http)
    people = await engine.identities(http)
    document = (await http.get("/openapi.json")).json()
    one, many = "/v1/proposals/{proposal_id}", "/v1/proposals"
    tampered = copy.deepcopy(document)
    tampered["paths"] = {one: tampered["paths"][one], many: {"get": document["paths"][many]["get"]}}
    del tampered["paths"][one]["get"]["responses"]["404"]
    proposal = tampered["components"]["schemas"]["ProposalOut"]
    proposal["properties"]["not_a_field"] = {"type": "string"}
    proposal["required"] = [*proposal.get("required", []), "not_a_field"]
    invalid = tampered["paths"][many]["get"]["responses"]["422"]
    invalid["content"] = {"application/json": invalid["content"]["application/problem+json"]}

    report = await asyncio.to_thread(
        engine.fuzz,
        engine.load_schema(tampered),
        str(http.base_url).rstrip("/"),
        people[:1],
        seeds,
        examples=20,
        seed=1,
    )
    kinds = report.by_kind()
    assert kinds["Undocumented status code"] > 0, report.render()
    assert kinds["Response violates schema"] > 0, report.render()
    assert kinds["Undocumented Content-Type"] > 0, report.render()
    assert report.server_errors() == 0, report.render()


async def test_a_backend_outage_answers_the_documented_503(system: Stack) -> None:
    """With Temporal gone, operations that need it answer 503 with Retry-After and a problem
    body, as the document says; schemathesis validates each answer against it."""
    http = system.http
    seeds = await engine.seed(http)
    (citizen,) = [p for p in await engine.identities(http) if p.name == "citizen"]
    schema = engine.load_schema((await http.get("/openapi.json")).json())
    base_url = str(http.base_url).rstrip("/")
    (pid,) = seeds.ids["proposal_id"]
    calls = [
        ("/v1/proposals", "POST", {"body": {"title": "Shade", "body": "Plant trees."}}),
        (
            "/v1/proposals/{proposal_id}/supports",
            "POST",
            {"path_parameters": {"proposal_id": pid}},
        ),
        ("/v1/clock", "GET", {}),
    ]
    await system.server.stop()

    def call(path: str, method: str, parts: dict[str, Any]) -> Any:
        case = schema[path][method].Case(**parts)
        response = case.call(base_url=base_url, headers=citizen.headers, timeout=120)
        case.validate_response(response, checks=engine.CONFORMANCE_CHECKS, headers=citizen.headers)
        return response

    for path, method, parts in calls:
        response = await asyncio.to_thread(call, path, method, parts)
        assert response.status_code == 503, (path, response.status_code, response.content)
        assert response.headers["retry-after"][0].isdigit()
        assert response.headers["content-type"][0].startswith("application/problem+json")
