"""The OpenAPI document documents every error and the token; /docs and /redoc work offline.

No backend is needed: the app is built and called in-process without its lifespan (which would
connect to Postgres and Temporal); /openapi.json, the docs pages and their assets never touch
the context. If a Chromium is installed, /docs and /redoc are also rendered headless from a
local server, so their scripts really run without a network.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from minju import stack
from minju.config import ClockMode, Settings

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
BASE = "http://minju.test"


def build_app() -> FastAPI:
    return create_app(
        Settings(
            jwt_secret="test-only-signing-key-not-for-production-use",
            dev_endpoints=True,
            clock_mode=ClockMode.SIMULATED,
        )
    )


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


# ---- the document ------------------------------------------------------------------------------


async def test_every_operation_documents_its_errors_as_problem_json(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    assert len(ops) >= 40
    undocumented = []
    for method, path, operation in ops:
        responses = operation["responses"]
        has_input = bool(operation.get("parameters")) or "requestBody" in operation
        expected = {"422", "500", "503"} | ({"400"} if has_input else set())
        if "{" in path:
            expected |= {"404", "409"}
        if method != "GET":
            expected.add("409")
        if operation.get("security"):
            expected |= {"401", "403"}
        for status in sorted(expected - responses.keys()):
            undocumented.append(f"{method} {path}: {status}")
        for status, response in responses.items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            assert content.get(PROBLEM_JSON, {}).get("schema") == PROBLEM_REF, (
                f"{method} {path} {status}: {response}"
            )
            if status == "503" and path != "/healthz":
                assert response["headers"]["Retry-After"]["schema"]["type"] == "integer"
            # FastAPI's default 422 body is not what the API sends
            assert "HTTPValidationError" not in str(response), f"{method} {path} {status}"
    assert undocumented == []
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas


async def test_the_problem_schema_has_the_rfc_9457_fields(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"type", "title", "status", "detail", "field", "errors"} <= problem["properties"].keys()
    assert problem["additionalProperties"] is True
    item = problem["properties"]["errors"]["items"]["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][item]["required"]) == {"field", "message"}


async def test_success_responses_are_kept(document: dict[str, Any]) -> None:
    create = document["paths"]["/v1/proposals"]["post"]["responses"]
    assert create["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProposalOut"
    }
    assert "200" not in create
    health = document["paths"]["/healthz"]["get"]["responses"]
    assert health["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Health")
    # /healthz answers a degraded backend with its own body
    assert health["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Health")


async def test_operations_that_take_a_token_are_secured_and_public_ones_are_not(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert "security" not in document  # no global requirement: public reads stay public
    paths = document["paths"]
    secured = [
        ("post", "/v1/proposals"),
        ("post", "/v1/proposals/{proposal_id}/supports"),
        ("post", "/v1/proposals/{proposal_id}/assign"),
        ("get", "/v1/me/activity"),
        ("get", "/v1/inbox"),
        ("post", "/v1/forums"),
        ("post", "/v1/sortitions"),
        ("get", "/v1/audit/cases/{workflow_id}/history"),
    ]
    for method, path in secured:
        assert paths[path][method].get("security") == [{"bearerAuth": []}], (method, path)
        assert "401" in paths[path][method]["responses"]
    public = [
        ("get", "/v1/proposals"),
        ("get", "/v1/proposals/{proposal_id}"),
        ("get", "/v1/proposals/{proposal_id}/timeline"),
        ("get", "/v1/forums"),
        ("get", "/v1/forums/{forum_id}"),
        ("get", "/v1/sortitions/{draw_id}/verify"),
        ("get", "/v1/clock"),
        ("get", "/healthz"),
        ("post", "/v1/dev/tokens"),
    ]
    for method, path in public:
        operation = paths[path][method]
        assert "security" not in operation, (method, path)
        assert "401" not in operation["responses"] and "403" not in operation["responses"]


async def test_the_document_is_computed_once(client: httpx.AsyncClient) -> None:
    first = (await client.get("/openapi.json")).json()
    second = (await client.get("/openapi.json")).json()
    assert first == second
    app = build_app()
    assert app.openapi() is app.openapi()


# ---- the docs pages ----------------------------------------------------------------------------


class Assets(HTMLParser):
    """Every URL a page loads: scripts, stylesheets, icons, images, and other src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and name in {"src", "href", "spec-url"}:
                self.urls.append((tag, value))


def page_assets(html: str) -> list[tuple[str, str]]:
    parser = Assets()
    parser.feed(html)
    return parser.urls


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc  # no http(s)://host, no //host


EXPECTED_TYPES = {
    "script": ("text/javascript", "application/javascript"),
    "link": ("text/css", "image/"),
}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_the_app(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assets = page_assets(html)
    kinds = {tag for tag, _ in assets}
    assert {"script", "link"} <= kinds, assets  # the bundle, and a stylesheet or the favicon
    assert [url for _, url in assets if not is_local(url)] == []
    # nothing else in the page names another host either (fonts, CDNs, the validator badge)
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html) == []
    for tag, url in assets:
        asset = await client.get(urljoin(f"{BASE}{page}", url))
        assert asset.status_code == 200, url
        content_type = asset.headers["content-type"]
        if tag in EXPECTED_TYPES:
            assert content_type.startswith(EXPECTED_TYPES[tag]), (url, content_type)
            assert len(asset.content) > 1000, url
        else:  # the openapi document ReDoc reads
            assert content_type.startswith("application/json"), (url, content_type)
    if page == "/docs":
        urls = [url for _, url in assets]
        assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
        assert any(url.endswith("swagger-ui.css") for url in urls)
    else:
        assert any(url.endswith("redoc.standalone.js") for _, url in assets)


async def test_swagger_ui_is_told_the_local_document_and_redirect(
    client: httpx.AsyncClient,
) -> None:
    html = (await client.get("/docs")).text
    assert "url: '/openapi.json'" in html
    assert "'/docs/oauth2-redirect'" in html
    assert '"validatorUrl": null' in html  # no badge fetched from the public validator
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert redirect.headers["content-type"].startswith("text/html")
    assert [url for _, url in page_assets(redirect.text) if not is_local(url)] == []


async def test_docs_respect_a_root_path() -> None:
    transport = httpx.ASGITransport(app=build_app(), root_path="/minju")
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        html = (await http.get("/docs")).text
    urls = [url for _, url in page_assets(html)]
    assert urls and all(url.startswith("/minju/static/docs/") for url in urls), urls
    assert "url: '/minju/openapi.json'" in html


# ---- rendered by a browser, when one is installed ----------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest_asyncio.fixture(loop_scope="session")
async def served() -> AsyncIterator[str]:
    """The app on a local port, without its lifespan (the pages need no backend)."""
    port = stack.free_port()
    config = uvicorn.Config(
        build_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def render(url: str) -> str:
    """The DOM of `url` after its scripts ran, from headless Chromium with no proxy and no
    network beyond this machine (every other host fails to resolve)."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="minju-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0
    return out.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed to render the pages")
async def test_swagger_ui_renders_the_operations_and_the_authorize_button(served: str) -> None:
    dom = await render(f"{served}/docs")
    assert 'class="swagger-ui' in dom, dom[:2000]
    assert "opblock" in dom  # operations rendered from /openapi.json
    assert "/v1/proposals" in dom
    assert "authorize" in dom.lower()  # the bearer scheme gives an Authorize button


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed to render the pages")
async def test_redoc_renders_the_operations(served: str) -> None:
    dom = await render(f"{served}/redoc")
    assert "/v1/proposals" in dom, dom[:2000]
    assert "Submit Proposal" in dom
    assert "bearerAuth" in dom or "Bearer" in dom
