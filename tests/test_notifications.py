"""Notifications delivered through real channels (activities/notices.py, activities/channels.py):
a real SMTP server (aiosmtpd) receives the proposer's e-mail, a local HTTP server a department's
signed webhook (verified here: HMAC, idempotency key, one retry after a 500, a 4xx recorded as
failed) and the SMS gateway's calls; supporters are told of the vote's opening and voters of
its result, and no outbox row or message says what anyone voted."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from sqlalchemy import text

from minju import stack
from tests.conftest import HISTORIES, Stack, running_stack
from tests.helpers import Api, eventually, expect, expect_problem

SECRET = "test-only-webhook-secret-0123456789"
KEY = "test-only-notify-sealing-key"


# ---- the parties on the other side ----------------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd's handler: every message it is handed."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {"to": list(envelope.rcpt_tos), "data": envelope.content.decode("utf-8", "replace")}
        )
        return "250 OK"

    def to(self, address: str) -> list[str]:
        """The messages to `address`, decoded: headers, a blank line, the text."""
        found = []
        for m in self.messages:
            if address in m["to"]:
                mail = email.message_from_string(m["data"], policy=email.policy.default)
                assert isinstance(mail, EmailMessage)
                content = mail.get_content()
                headers = "".join(f"{k}: {v}\n" for k, v in mail.items())
                found.append(f"{headers}\n{content}")
        return found


@dataclass
class Receiver:
    """A department system and an SMS gateway: records each request; answers with the next
    scripted status of its path (200 once the script is used up); applies a body once per
    Idempotency-Key, as a receiver should."""

    script: dict[str, list[int]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


def serve(receiver: Receiver) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                queue = receiver.script.get(self.path, [])
                status = queue.pop(0) if queue else 200
                key = self.headers.get("Idempotency-Key", "")
                if status == 200 and key not in receiver.applied:
                    receiver.applied[key] = json.loads(body)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@dataclass
class Notified:
    system: Stack
    api: Api
    inbox: Inbox
    receiver: Receiver
    http_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.system.sessions() as session:
            return list((await session.execute(text(sql), params)).mappings().all())


@pytest.fixture(scope="module")
def parties() -> Iterator[tuple[Inbox, int, Receiver, int]]:
    inbox, receiver = Inbox(), Receiver()
    smtp_port = stack.free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    http, http_port = serve(receiver)
    try:
        yield inbox, smtp_port, receiver, http_port
    finally:
        http.shutdown()
        smtp.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def notified(
    postgres: stack.EmbeddedPostgres,
    template_database: str,
    parties: tuple[Inbox, int, Receiver, int],
) -> AsyncIterator[Notified]:
    """One stack for the module, its worker and API configured through the environment as in
    production (activities.channels.NotifySettings)."""
    inbox, smtp_port, receiver, http_port = parties
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MINJU_SMTP_HOST", "127.0.0.1")
        env.setenv("MINJU_SMTP_PORT", str(smtp_port))
        env.setenv("MINJU_SMTP_FROM", "notices@minju.test")
        env.setenv("MINJU_SMS_GATEWAY_URL", f"http://127.0.0.1:{http_port}/sms")
        env.setenv("MINJU_SMS_GATEWAY_TOKEN", "test-only-gateway-token")
        env.setenv("MINJU_NOTIFY_SECRET_KEY", KEY)
        env.setenv("MINJU_NOTIFY_RETRY_SECONDS", "0.5")
        env.setenv("MINJU_NOTIFY_ATTEMPTS", "4")
        async with running_stack(postgres, template_database) as system:
            yield Notified(system, Api(system.http), inbox, receiver, http_port)


async def set_department(n: Notified, dept: str, path: str) -> None:
    admin = await n.api.official("admin")
    body = {"webhook_url": n.url(path), "webhook_secret": SECRET, "channels": ["webhook"]}
    out = expect(
        await n.system.http.put(f"/v1/admin/departments/{dept}/contact", json=body, headers=admin),
        200,
    )
    assert out["has_webhook_secret"] is True and "webhook_secret" not in out


async def citizen_with(n: Notified, **contact: Any) -> dict[str, str]:
    who = await n.api.citizen()
    expect(await n.system.http.put("/v1/me/contact", json=contact, headers=who), 200)
    return who


async def within(check: Any, seconds: float = 20.0) -> None:
    await eventually(check, within=seconds)


def verify(request: dict[str, Any]) -> dict[str, Any]:
    """What a department system does with a webhook call: check its signature."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    timestamp = headers["x-minju-timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256)
    assert headers["x-minju-signature"] == "sha256=" + mac.hexdigest()
    body: dict[str, Any] = json.loads(request["body"])
    assert headers["idempotency-key"] == f"{body['key']}/{body['recipient']}"
    return body


# ---- the tests ------------------------------------------------------------------------------


async def test_proposer_email_and_a_signed_webhook_retried_after_a_500(
    notified: Notified,
) -> None:
    n = notified
    await set_department(n, "parks", "/hooks/parks")
    n.receiver.script["/hooks/parks"] = [500]  # the first call fails, the retry is taken
    proposer = await citizen_with(n, email="proposer@example.org", channels=["email"])
    proposal = await n.api.to_review(proposer)
    pid = proposal["id"]

    async def mailed() -> bool:
        return any("goes to review" in m for m in n.inbox.to("proposer@example.org"))

    await within(mailed)
    mail = next(m for m in n.inbox.to("proposer@example.org") if "goes to review" in m)
    assert f"Proposal {pid}" in mail and "From: notices@minju.test" in mail

    await n.api.assign(pid, "parks")

    async def hooked() -> bool:
        return len(n.receiver.on("/hooks/parks")) >= 2 and bool(
            await n.rows(
                "SELECT 1 FROM notifications WHERE case_id = :pid AND "
                "recipient = 'department:parks' AND status = 'delivered'",
                pid=pid,
            )
        )

    await within(hooked)
    calls = n.receiver.on("/hooks/parks")
    assert len(calls) == 2  # one 500, one retry, nothing more
    bodies = [verify(call) for call in calls]
    assert bodies[0] == bodies[1] and bodies[0]["kind"] == "department_assigned"
    keys = {call["headers"]["Idempotency-Key"] for call in calls}
    assert len(keys) == 1 and list(n.receiver.applied).count(keys.pop()) == 1
    [row] = await n.rows(
        "SELECT status, attempts, channel, delivered_at, last_error FROM notifications "
        "WHERE case_id = :pid AND recipient = 'department:parks'",
        pid=pid,
    )
    assert (row["status"], row["attempts"], row["channel"]) == ("delivered", 2, "webhook")
    assert row["delivered_at"] is not None
    if os.environ.get("MINJU_RECORD_HISTORIES") == "1":  # replayed by test_audit_and_replay
        delivery = n.system.temporal.get_workflow_handle(f"notify-{bodies[0]['key']}")
        history = await delivery.fetch_history()
        (HISTORIES / "notification_delivery_retried.json").write_text(history.to_json())

    async def assignment_mailed() -> bool:
        return any("assigned to a department" in m for m in n.inbox.to("proposer@example.org"))

    await within(assignment_mailed)


async def test_a_4xx_is_recorded_as_failed_and_not_retried(notified: Notified) -> None:
    n = notified
    await set_department(n, "roads", "/hooks/roads")
    n.receiver.script["/hooks/roads"] = [410, 410, 410, 410]
    proposal = await n.api.to_review()
    await n.api.assign(proposal["id"], "roads")

    async def failed() -> bool:
        return bool(
            await n.rows(
                "SELECT 1 FROM notifications WHERE case_id = :pid AND "
                "recipient = 'department:roads' AND status = 'failed'",
                pid=proposal["id"],
            )
        )

    await within(failed)
    await asyncio.sleep(2)  # longer than the retry interval: no second call comes
    assert len(n.receiver.on("/hooks/roads")) == 1
    [row] = await n.rows(
        "SELECT attempts, last_error, delivered_at FROM notifications "
        "WHERE case_id = :pid AND recipient = 'department:roads'",
        pid=proposal["id"],
    )
    assert row["attempts"] == 1 and row["delivered_at"] is None
    assert "410" in row["last_error"]


async def test_a_dead_webhook_never_holds_up_the_case_and_fails_after_its_attempts(
    notified: Notified,
) -> None:
    n = notified
    admin = await n.api.official("admin")
    dead = f"http://127.0.0.1:{stack.free_port()}/nobody-listens"
    body = {"webhook_url": dead, "webhook_secret": SECRET}
    expect(
        await n.system.http.put("/v1/admin/departments/water/contact", json=body, headers=admin),
        200,
    )
    proposal = await n.api.to_review()
    pid = proposal["id"]
    await n.api.assign(pid, "water")
    # the case goes on at once while its department's notice is being retried
    expect(await n.api.review(pid, "water", "accept"), 200)
    await n.api.wait_status(pid, "committee_screening")

    async def given_up() -> bool:
        return bool(
            await n.rows(
                "SELECT 1 FROM notifications WHERE case_id = :pid AND kind = "
                "'department_assigned' AND recipient = 'department:water' AND status = 'failed'",
                pid=pid,
            )
        )

    await within(given_up, 30)
    [row] = await n.rows(
        "SELECT attempts, last_error FROM notifications WHERE case_id = :pid "
        "AND kind = 'department_assigned' AND recipient = 'department:water'",
        pid=pid,
    )
    assert row["attempts"] == 4  # MINJU_NOTIFY_ATTEMPTS
    assert "unreachable" in row["last_error"]


async def test_an_sms_through_the_gateway(notified: Notified) -> None:
    n = notified
    proposer = await citizen_with(n, phone="+821012345678", channels=["sms"])
    proposal = await n.api.to_review(proposer)

    async def texted() -> bool:
        """The gateway has the text and the outbox has recorded it (the row is updated after
        the gateway answers: the test must not read it in between)."""
        sent = any(json.loads(r["body"])["to"] == "+821012345678" for r in n.receiver.on("/sms"))
        return sent and bool(
            await n.rows(
                "SELECT 1 FROM notifications WHERE case_id = :pid AND status = 'delivered'",
                pid=proposal["id"],
            )
        )

    await within(texted)
    [call] = [r for r in n.receiver.on("/sms") if json.loads(r["body"])["to"] == "+821012345678"]
    sms = json.loads(call["body"])
    assert proposal["id"] in sms["text"] and "goes to review" in sms["text"]
    assert call["headers"]["Authorization"] == "Bearer test-only-gateway-token"
    assert call["headers"]["Idempotency-Key"] == sms["reference"]
    [row] = await n.rows(
        "SELECT status, channel FROM notifications WHERE case_id = :pid", pid=proposal["id"]
    )
    assert (row["status"], row["channel"]) == ("delivered", "sms")


async def test_supporters_hear_of_the_vote_and_voters_of_its_result_never_their_choice(
    notified: Notified,
) -> None:
    n = notified
    api = n.api
    proposal = await api.propose(await api.citizen())
    pid = proposal["id"]
    reached = [f"supporter{i}-{pid}@example.org" for i in range(3)]
    for address in reached:
        who = await citizen_with(n, email=address, channels=["email"])
        expect(await api.post(f"/v1/proposals/{pid}/supports", who), 201)
    await api.support(pid, 7)  # no contact: nothing is written for them
    await api.wait_status(pid, "dept_review")
    await api.assign(pid, "culture")
    expect(await api.review(pid, "culture", "accept"), 200)
    expect(await api.screen(pid), 200)
    expect(await api.plan(pid, "culture", 0), 200)
    voting = expect(await api.appropriateness(pid, "culture", "appropriate"), 200)
    assert voting["status"] == "voting"

    async def opened() -> bool:
        return all(any("vote is open" in m for m in n.inbox.to(a)) for a in reached)

    await within(opened)
    group = await n.rows(
        "SELECT recipient, status, expanded_from FROM notifications "
        "WHERE case_id = :pid AND kind = 'plan_appropriate' ORDER BY recipient",
        pid=pid,
    )
    assert {r["recipient"]: r["status"] for r in group}[f"supporters:{pid}"] == "expanded"
    members = [r for r in group if r["expanded_from"] == f"supporters:{pid}"]
    assert len(members) == 3 and {r["status"] for r in members} == {"delivered"}

    voters = {f"voter{i}-{pid}@example.org": "yes" if i % 2 else "no" for i in range(4)}
    receipts = []
    for address, choice in voters.items():
        who = await citizen_with(n, email=address, channels=["email"])
        receipts.append(expect(await api.vote(pid, choice, who), 201)["receipt"])
    await api.advance(days=30, seconds=1)
    await api.wait_status(pid, "not_passed")  # far from the quorum

    async def results() -> bool:
        return all(any("vote is closed" in m for m in n.inbox.to(a)) for a in voters)

    await within(results)
    told = await n.rows(
        "SELECT * FROM notifications WHERE case_id = :pid AND kind = 'vote_closed' "
        "AND expanded_from IS NOT NULL",
        pid=pid,
    )
    assert {r["expanded_from"] for r in told} >= {f"voters:proposal:{pid}", f"supporters:{pid}"}
    # the same words for every voter, whatever they chose; no column holds a choice
    assert len({r["message"] for r in told}) == 1
    assert not {"choice", "option", "receipt"} & set(told[0].keys())
    everything = await n.rows("SELECT * FROM notifications")
    for row in everything:
        for receipt in receipts:
            assert receipt not in str(dict(row))
    bodies = {a: [m for m in n.inbox.to(a) if "vote is closed" in m] for a in voters}
    texts = {m.split("\n\n", 1)[-1] for ms in bodies.values() for m in ms}
    assert len(texts) == 1


async def test_contacts_are_each_ones_own_and_checked(notified: Notified) -> None:
    n = notified
    http = n.system.http
    citizen = await n.api.citizen("contact-owner")
    expect_problem(
        await http.put("/v1/me/contact", json={"channels": ["email"]}, headers=citizen),
        422,
        field="email",
    )
    expect_problem(
        await http.put(
            "/v1/me/contact", json={"phone": "12345", "channels": ["sms"]}, headers=citizen
        ),
        422,
        field="phone",
    )
    expect_problem(
        await http.put(
            "/v1/me/contact", json={"email": "not-an-address", "channels": []}, headers=citizen
        ),
        422,
        field="email",
    )
    set_ = expect(
        await http.put(
            "/v1/me/contact",
            json={"email": "owner@example.org", "channels": ["email"]},
            headers=citizen,
        ),
        200,
    )
    assert set_["recipient"] == "person:contact-owner"
    assert expect(await http.get("/v1/me/contact", headers=citizen), 200)["email"] == (
        "owner@example.org"
    )
    other = await n.api.citizen()
    unset = expect(await http.get("/v1/me/contact", headers=other), 200)
    assert unset["channels"] == [] and unset["updated_at"] is None
    caseworker = await n.api.official("caseworker", "parks")
    expect_problem(await http.put("/v1/me/contact", json={"channels": []}, headers=caseworker), 403)
    body = {"webhook_url": n.url("/x"), "webhook_secret": SECRET}
    expect_problem(
        await http.put("/v1/admin/departments/parks/contact", json=body, headers=citizen), 403
    )
    admin = await n.api.official("admin")
    expect_problem(
        await http.put(
            "/v1/admin/departments/libraries/contact",
            json={"webhook_url": n.url("/x")},
            headers=admin,
        ),
        422,
        field="webhook_secret",
    )
    expect_problem(
        await http.put(
            "/v1/admin/departments/libraries/contact",
            json={"webhook_url": "ftp://example.org/x", "webhook_secret": SECRET},
            headers=admin,
        ),
        422,
        field="webhook_url",
    )
    expect(await http.put("/v1/admin/departments/libraries/contact", json=body, headers=admin), 200)
    # the secret is sealed in Postgres, never stored in clear
    [row] = await n.rows(
        "SELECT webhook_secret FROM notification_contacts WHERE recipient = 'department:libraries'"
    )
    assert SECRET.encode() not in bytes(row["webhook_secret"])
    got = expect(await http.get("/v1/admin/departments/libraries/contact", headers=admin), 200)
    assert got["has_webhook_secret"] is True and "webhook_secret" not in got
