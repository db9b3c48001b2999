"""Reaching Temporal: the one client connection every part (API, worker, CLI, tests) uses.

Configured from `Settings`: `TEMPORAL_ADDRESS`, the namespace, and for a cluster or Temporal
Cloud the TLS files (`TEMPORAL_TLS_CERT`/`KEY`/`CA`) or an API key; the payloads are encrypted
with MINJU_PAYLOAD_KEYS when it holds keys (`minju.codec.data_converter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import temporalio.client
import temporalio.converter
import temporalio.service

from minju import codec
from minju.config import Settings

log = logging.getLogger("minju.temporal")


class TemporalConnectionError(RuntimeError):
    """Temporal cannot be reached, or the connection settings are unusable."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TemporalConnectionError(f"cannot read {what} {path!r}: {exc}") from exc


def tls_config(settings: Settings) -> temporalio.service.TLSConfig | bool:
    """TLS for the Temporal client from TEMPORAL_TLS_CERT/KEY/CA (file paths) and API key."""
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if bool(cert) != bool(key):
        raise TemporalConnectionError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together")
    if cert or key or ca:
        return temporalio.service.TLSConfig(
            server_root_ca_cert=_read(ca, "TEMPORAL_TLS_CA") if ca else None,
            client_cert=_read(cert, "TEMPORAL_TLS_CERT") if cert else None,
            client_private_key=_read(key, "TEMPORAL_TLS_KEY") if key else None,
        )
    return settings.temporal_api_key is not None


async def connect_temporal(
    settings: Settings,
    *,
    data_converter: temporalio.converter.DataConverter | None = None,
    retry_for: float = 10.0,
) -> temporalio.client.Client:
    """Connect to settings.temporal_address, retrying for `retry_for` seconds while the
    server is still starting (connection refused). The data converter is the deployment's
    (`minju.codec.data_converter(settings)`) unless one is given."""
    tls = tls_config(settings)
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return await temporalio.client.Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                tls=tls,
                api_key=settings.temporal_api_key,
                data_converter=data_converter or codec.data_converter(settings),
            )
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                raise TemporalConnectionError(
                    f"cannot connect to Temporal at {settings.temporal_address} "
                    f"(namespace {settings.temporal_namespace}): {exc}"
                ) from exc
            log.debug("temporal not reachable yet at %s: %s", settings.temporal_address, exc)
            await asyncio.sleep(0.5)
