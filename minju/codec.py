"""Encryption of what Temporal histories carry (design.md, principle 7): an AES-256-GCM payload
codec, keyed from MINJU_PAYLOAD_KEYS.

Each payload becomes one with the metadata `encoding: binary/encrypted` and
`encryption-key-id: <kid>` and, as data, a 12-byte random nonce followed by the ciphertext of
the whole serialized original payload, so its metadata (the encoding, a message type) is hidden
too. The first key encrypts; every key decrypts, so a rotated-out key stays listed for as long
as histories written with it are replayed. Payloads not marked encrypted pass through decoding
unchanged: histories recorded before encryption was turned on still replay.

With encryption on, failure messages and stack traces are moved into an encoded payload as
well (`DefaultFailureConverterWithEncodedAttributes`). Workflow ids and search attributes are
never encoded: they must carry no personal data (design.md).

`data_converter(settings)` is what every client and worker uses
(`minju.temporal.connect_temporal` by default), `replay_data_converter(settings)` what a
Replayer of their histories uses; `new_payload_key()` makes a key.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterable, Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

from minju.config import PAYLOAD_KEY_BYTES, PayloadKey, Settings, parse_payload_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class PayloadCodecError(ValueError):
    """A payload marked encrypted cannot be decrypted (unknown key id, wrong key, altered), or
    there is no key to encrypt with."""


class EncryptionCodec(temporalio.converter.PayloadCodec):
    """AES-256-GCM over whole serialized payloads; `keys[0]` encrypts, all of them decrypt.

    With no keys it encrypts nothing (encode raises) and decodes only unencrypted payloads,
    naming the key id of an encrypted one: what a deployment without MINJU_PAYLOAD_KEYS can
    say about a history that was encrypted."""

    def __init__(self, keys: Iterable[PayloadKey]) -> None:
        self._keys = tuple(keys)
        self._ciphers = {k.kid: AESGCM(k.key) for k in self._keys}
        if len(self._ciphers) != len(self._keys):
            raise ValueError("payload key ids must be unique")

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The key ids, the encrypting one first."""
        return tuple(k.kid for k in self._keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self._keys:
            raise PayloadCodecError("no key to encrypt with: MINJU_PAYLOAD_KEYS is empty")
        kid = self._keys[0].kid
        cipher = self._ciphers[kid]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(
                Payload(metadata={"encoding": ENCODING, KEY_ID: kid.encode()}, data=data)
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            held = ", ".join(self.key_ids) if self._keys else "none: it is empty"
            raise PayloadCodecError(
                f"a payload is encrypted with key id {kid!r}, which MINJU_PAYLOAD_KEYS does not "
                f"hold (it holds {held})"
            )
        nonce, ciphertext = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, ciphertext, None)
        except (InvalidTag, ValueError):
            raise PayloadCodecError(
                f"a payload encrypted with key id {kid!r} does not decrypt with that key "
                "(another key under the same id, or altered data)"
            ) from None
        return Payload.FromString(plain)


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec for settings.payload_keys, or None when encryption is off."""
    return EncryptionCodec(settings.payload_keys) if settings.payload_keys else None


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """The data converter of every Temporal client, worker and replayer of this deployment:
    the SDK's default, with the encryption codec (and encoded failure attributes) when
    MINJU_PAYLOAD_KEYS holds keys; exactly the default otherwise."""
    codec = payload_codec(settings)
    if codec is None:
        return temporalio.converter.DataConverter.default
    return dataclasses.replace(
        temporalio.converter.DataConverter.default,
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


def replay_data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """`data_converter(settings)` for a Replayer: the same codec, but the failures it reports
    keep their messages in clear (a replayer writes nothing to any history), so a replay that
    fails says why, e.g. which key id is missing."""
    return dataclasses.replace(
        data_converter(settings),
        failure_converter_class=temporalio.converter.DefaultFailureConverter,
    )


def new_payload_key(kid: str) -> str:
    """A fresh random entry for MINJU_PAYLOAD_KEYS: `kid:base64key` (ValueError for a key id
    the setting would not take)."""
    entry = f"{kid}:{base64.b64encode(os.urandom(PAYLOAD_KEY_BYTES)).decode()}"
    parse_payload_keys(entry)
    return entry
