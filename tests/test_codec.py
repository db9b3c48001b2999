"""Payload encryption (minju.codec): the codec itself, a case run on a stack with encryption on
(its history carries no plaintext and replays with the keys only), and the codec endpoint the
Temporal UI calls."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

import worker as worker_module
from minju import codec, stack
from minju.config import PayloadKey, Settings, parse_payload_keys
from tests.conftest import Stack, running_stack
from tests.helpers import Api, expect, expect_problem
from workflows.registry import WORKFLOWS

OLD = codec.new_payload_key("k2025")
NEW = codec.new_payload_key("k2026")
OTHER = codec.new_payload_key("k2025")  # the same key id, another key
UI_ORIGIN = "http://localhost:8233"
#: Written into the case through the API: it must be in the history, never in clear.
MARKER = "marker-3f9c2a reviewed by parks"


def keys(*entries: str) -> tuple[PayloadKey, ...]:
    return parse_payload_keys(",".join(entries))


def plain(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


# ---- the codec ---------------------------------------------------------------------------------


async def test_a_round_trip_hides_data_and_metadata() -> None:
    encryption = codec.EncryptionCodec(keys(NEW))
    original = [plain({"title": MARKER}), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await encryption.encode(original)
    for payload in encoded:
        assert dict(payload.metadata) == {"encoding": b"binary/encrypted", codec.KEY_ID: b"k2026"}
        assert MARKER.encode() not in payload.data and b"json/plain" not in payload.data
    assert encoded[0].data[: codec.NONCE_BYTES] != encoded[1].data[: codec.NONCE_BYTES]
    assert await encryption.decode(encoded) == original


async def test_rotation_the_first_key_encrypts_and_every_key_decrypts() -> None:
    before = await codec.EncryptionCodec(keys(OLD)).encode([plain("recorded last year")])
    rotated = codec.EncryptionCodec(keys(NEW, OLD))
    assert rotated.key_ids == ("k2026", "k2025")
    assert await rotated.decode(before) == [plain("recorded last year")]
    [after] = await rotated.encode([plain("this year")])
    assert after.metadata[codec.KEY_ID] == b"k2026"


async def test_an_unknown_key_id_is_a_clear_error() -> None:
    encoded = await codec.EncryptionCodec(keys(OLD)).encode([plain(1)])
    with pytest.raises(codec.PayloadCodecError, match=r"key id 'k2025'.*holds k2026\)"):
        await codec.EncryptionCodec(keys(NEW)).decode(encoded)
    with pytest.raises(codec.PayloadCodecError, match=r"key id 'k2025'.*it is empty"):
        await codec.EncryptionCodec(()).decode(encoded)
    with pytest.raises(codec.PayloadCodecError, match="does not decrypt with that key"):
        await codec.EncryptionCodec(keys(OTHER)).decode(encoded)


async def test_unencrypted_payloads_pass_through_decoding() -> None:
    recorded_before = [plain({"id": "p-1"}), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.EncryptionCodec(keys(NEW)).decode(recorded_before) == recorded_before


def test_the_setting_takes_kid_and_base64_keys_and_names_itself_when_wrong() -> None:
    settings = Settings(payload_keys=f" {NEW} , {OLD} ")
    assert [k.kid for k in settings.payload_keys] == ["k2026", "k2025"]
    assert base64.b64encode(settings.payload_keys[0].key).decode() == NEW.split(":")[1]
    assert NEW.split(":")[1] not in repr(settings)
    assert Settings().payload_keys == ()
    assert codec.data_converter(Settings()) is DataConverter.default
    short = base64.b64encode(b"k" * 16).decode()
    for value, reason in [
        ("k1", "not 'kid:base64key'"),
        (f"k1:{short}", "16 bytes, not 32"),
        ("k1:not*base64", "not base64"),
        (f"{NEW},{NEW}", "given twice"),
    ]:
        with pytest.raises(ValueError, match="payload_keys") as raised:
            Settings(payload_keys=value)
        assert reason in str(raised.value)
    with pytest.raises(ValueError, match="codec_cors_origins"):
        Settings(codec_cors_origins="http://localhost:8233/")
    with pytest.raises(ValueError):
        codec.new_payload_key("no spaces")


def test_the_setting_is_read_from_the_environment_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINJU_PAYLOAD_KEYS", f"{NEW},{OLD}")
    monkeypatch.setenv("MINJU_CODEC_CORS_ORIGINS", f"{UI_ORIGIN},https://temporal.example.org")
    settings = Settings.from_env()
    assert [k.kid for k in settings.payload_keys] == ["k2026", "k2025"]
    assert settings.codec_cors_origins == (UI_ORIGIN, "https://temporal.example.org")
    secret = base64.b64encode(b"s" * 20).decode()
    monkeypatch.setenv("MINJU_PAYLOAD_KEYS", f"k1:{secret}")
    with pytest.raises(ValueError, match="MINJU_PAYLOAD_KEYS") as raised:
        Settings.from_env()
    assert secret not in str(raised.value)


async def test_failure_messages_are_encrypted_too() -> None:
    converter = codec.data_converter(Settings(payload_keys=NEW))
    failure = Failure()
    await converter.encode_failure(ApplicationError(MARKER, type="Conflict"), failure)
    assert MARKER.encode() not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.message == MARKER


# ---- a case on a stack with encryption on ----------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def encrypted(
    postgres: stack.EmbeddedPostgres, template_database: str
) -> AsyncIterator[Stack]:
    async with running_stack(
        postgres, template_database, payload_keys=NEW, codec_cors_origins=UI_ORIGIN
    ) as running:
        yield running


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every payload in `message`, at any depth, except search attributes (never encoded)."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.full_name == SearchAttributes.DESCRIPTOR.full_name:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
            if items and not isinstance(items[0], Message):
                continue
        elif descriptor.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                yield item
            else:
                yield from payloads_in(item)


async def _reviewed_case(api: Api) -> dict[str, Any]:
    """A proposal through support, routing and a review whose reason carries MARKER."""
    proposal = await api.to_review()
    await api.assign(proposal["id"], "parks")
    caseworker = await api.official("caseworker", "parks")
    body = {"decision": "accept", "reason": MARKER}
    expect(await api.post(f"/v1/proposals/{proposal['id']}/review", caseworker, body), 200)
    return await api.wait_status(proposal["id"], "committee_screening")


def _replayer(converter: DataConverter) -> Replayer:
    return Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=worker_module.WORKFLOW_RUNNER,
        data_converter=converter,
    )


async def test_a_case_history_carries_no_plaintext_and_replays_with_the_keys_only(
    encrypted: Stack,
) -> None:
    api = Api(encrypted.http)
    case = await _reviewed_case(api)
    history = await encrypted.temporal.get_workflow_handle(case["workflow_id"]).fetch_history()

    payloads = [p for event in history.events for p in payloads_in(event)]
    assert len(payloads) > 10
    assert all(p.metadata["encoding"] == b"binary/encrypted" for p in payloads)
    assert all(p.metadata[codec.KEY_ID] == b"k2026" for p in payloads)
    raw = history.to_json()
    for secret in (case["id"], MARKER, "seoul-2018"):
        assert all(secret.encode() not in p.data for p in payloads), secret
        assert secret not in raw.replace(case["workflow_id"], ""), secret
    # ...and they are there, once decrypted: the check above could have failed
    decoded = await codec.EncryptionCodec(keys(NEW)).decode(payloads)
    clear = b"".join(p.data for p in decoded)
    assert case["id"].encode() in clear and MARKER.encode() in clear and b"seoul-2018" in clear

    for converter in (
        encrypted.temporal.data_converter,
        codec.replay_data_converter(encrypted.settings),
    ):
        assert (await _replayer(converter).replay_workflow(history)).replay_failure is None
    # after a rotation the old key, kept second, still replays it
    rotated = codec.replay_data_converter(
        Settings(payload_keys=f"{codec.new_payload_key('k2027')},{NEW}")
    )
    assert (await _replayer(rotated).replay_workflow(history)).replay_failure is None
    # without the key it does not, and says why
    for converter, why in [
        (DataConverter.default, "Unknown payload encoding binary/encrypted"),
        (codec.replay_data_converter(Settings(payload_keys=OLD)), "key id 'k2026'"),
    ]:
        result = await _replayer(converter).replay_workflow(history, raise_on_replay_failure=False)
        assert why in str(result.replay_failure)
    # the same history exported as JSON (as the auditors' endpoint gives it) replays as well
    exported = WorkflowHistory.from_json(history.workflow_id, raw)
    assert (await _replayer(rotated).replay_workflow(exported)).replay_failure is None


# ---- the codec endpoint ------------------------------------------------------------------------


def as_json(payload: Payload) -> dict[str, Any]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def from_json(body: dict[str, Any]) -> Payload:
    return Payload(
        metadata={k: base64.b64decode(v) for k, v in body.get("metadata", {}).items()},
        data=base64.b64decode(body.get("data", "")),
    )


async def test_the_codec_endpoint_decodes_for_auditors_only(encrypted: Stack) -> None:
    api = Api(encrypted.http)
    proposal = await api.propose(await api.citizen(), title=MARKER)
    auditor = await api.official("auditor")
    wid = proposal["workflow_id"]
    exported = expect(
        await encrypted.http.get(f"/v1/audit/cases/{wid}/history", headers=auditor), 200
    )
    started = exported["events"][0]["workflowExecutionStartedEventAttributes"]
    body = {"payloads": started["input"]["payloads"]}
    assert from_json(body["payloads"][0]).metadata["encoding"] == b"binary/encrypted"

    ui = {**auditor, "X-Namespace": "default", "Origin": UI_ORIGIN}
    response = await encrypted.http.post("/v1/codec/decode", json=body, headers=ui)
    [decoded] = [from_json(p) for p in expect(response, 200)["payloads"]]
    assert decoded.metadata["encoding"] == b"json/plain"
    assert json.loads(decoded.data)["proposal_id"] == proposal["id"]
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN

    admin = await api.official("admin")
    original = plain({"note": MARKER})
    encoded = expect(
        await encrypted.http.post(
            "/v1/codec/encode", json={"payloads": [as_json(original)]}, headers=admin
        ),
        200,
    )
    assert from_json(encoded["payloads"][0]).metadata["encoding"] == b"binary/encrypted"
    back = expect(await encrypted.http.post("/v1/codec/decode", json=encoded, headers=admin), 200)
    assert [from_json(p) for p in back["payloads"]] == [original]
    unencrypted = {"payloads": [as_json(original)]}
    same = expect(
        await encrypted.http.post("/v1/codec/decode", json=unencrypted, headers=admin), 200
    )
    assert [from_json(p) for p in same["payloads"]] == [original]

    foreign = await codec.EncryptionCodec(keys(OLD)).encode([original])
    refused = await encrypted.http.post(
        "/v1/codec/decode", json={"payloads": [as_json(foreign[0])]}, headers=admin
    )
    assert "'k2025'" in expect_problem(refused, 400)["detail"]
    garbled = {"payloads": [{"metadata": {"encoding": "not base64!"}, "data": ""}]}
    expect_problem(await encrypted.http.post("/v1/codec/decode", json=garbled, headers=admin), 400)

    citizen = await api.citizen()
    for path in ("/v1/codec/decode", "/v1/codec/encode"):
        expect_problem(await encrypted.http.post(path, json=body, headers=citizen), 403)
        expect_problem(
            await encrypted.http.post(path, json=body, headers={"Origin": UI_ORIGIN}), 401
        )
    # the UI can read a refusal too: it carries the CORS headers
    anonymous = await encrypted.http.post(
        "/v1/codec/decode", json=body, headers={"Origin": UI_ORIGIN}
    )
    assert anonymous.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_the_codec_endpoint_answers_the_ui_preflight(encrypted: Stack) -> None:
    request = {
        "Origin": UI_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    for path in ("/v1/codec/decode", "/v1/codec/encode"):
        preflight = await encrypted.http.options(path, headers=request)
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        assert {"authorization", "content-type", "x-namespace"} <= allowed
        assert preflight.headers["access-control-allow-credentials"] == "true"

    elsewhere = {**request, "Origin": "https://elsewhere.example"}
    refused = await encrypted.http.options("/v1/codec/decode", headers=elsewhere)
    expect_problem(refused, 400)
    assert "access-control-allow-origin" not in refused.headers
    # other routes answer no CORS at all
    other = await encrypted.http.get("/v1/clock", headers={"Origin": UI_ORIGIN})
    assert "access-control-allow-origin" not in other.headers
