"""`Bus`: one NATS connection per process, and publishing that reports only what is stored.

It connects (token, user/password, .creds, TLS with a custom CA), keeps reconnecting with
backoff, notices a hung server within seconds (pings), and (re)creates the streams and buckets
its service needs. `Bus.publish` sends with a ``Nats-Msg-Id`` and waits for the PubAck, so a
caller only reports success for what is stored, and a retry with the same id is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.kv import KeyValue
from pydantic import BaseModel

from yobidashi_common.bus.metrics import (
    BUS_CONNECTED,
    BUS_JETSTREAM_REQUESTS,
    BUS_PUBLISH_SECONDS,
    BUS_PUBLISHED,
    BUS_RECONNECTS,
)
from yobidashi_common.bus.streams import ensure_bucket, ensure_stream
from yobidashi_common.settings import NatsSettings, secret_value
from yobidashi_common.subjects import DLQ_STREAM, BucketSpec, StreamSpec, dlq_stream
from yobidashi_common.telemetry import get_logger, register_secret

log = get_logger(__name__)

TRACEPARENT = "traceparent"

# JetStream's answer (409) to a Nats-Msg-Id whose first publish is not settled yet: a clustered
# stream is still replicating it, or its leader lost quorum. Not a refusal: the first publish
# may yet be stored, and a retry with the same id then gets a duplicate PubAck.
MSG_ID_IN_PROCESS = 10158


class BusUnavailable(Exception):
    """NATS cannot take the message right now; the caller should retry later."""


@dataclass(frozen=True)
class Published:
    stream: str
    seq: int
    duplicate: bool


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=settings.nats_tls_ca)
    if settings.nats_tls_cert:
        ctx.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return ctx


def connect_options(settings: NatsSettings) -> dict[str, object]:
    """nats.connect options for the configured servers, credentials and TLS."""
    options: dict[str, object] = {
        "servers": settings.servers,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # keep trying forever; readiness reports the outage
        "reconnect_time_wait": 1,
        "connect_timeout": settings.nats_connect_timeout,
        # nats-py's defaults (120 s, 2) keep a client on a hung server for minutes; these
        # leave it within seconds (docs/reliability.md, "A hung NATS node").
        "ping_interval": settings.nats_ping_interval,
        "max_outstanding_pings": settings.nats_max_outstanding_pings,
        "drain_timeout": 5,
        "tls": tls_context(settings),
        "token": secret_value(settings.nats_token),
        "user": settings.nats_user,
        "password": secret_value(settings.nats_password),
        "user_credentials": settings.nats_creds,
    }
    return {k: v for k, v in options.items() if v is not None}


class Bus:
    """One NATS connection per process, with the streams and buckets that process relies on."""

    def __init__(
        self,
        settings: NatsSettings,
        name: str,
        streams: Sequence[StreamSpec] = (),
        buckets: Sequence[BucketSpec] = (),
    ) -> None:
        self.settings = settings
        self.name = name
        self._streams = list(streams)
        if not any(spec.name == DLQ_STREAM for spec in self._streams):
            self._streams.append(dlq_stream(settings))
        self._buckets = list(buckets)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._ensure_lock = asyncio.Lock()
        self._kv_cache: dict[str, KeyValue] = {}
        register_secret(
            secret_value(settings.nats_token),
            secret_value(settings.nats_password),
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background; the service starts even while NATS is down."""
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect_loop(), name="bus-connect")

    async def wait_ready(self) -> None:
        await self._ready.wait()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._nc is not None and self._nc.is_connected

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailable("not connected to NATS yet")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise BusUnavailable("not connected to NATS yet")
        return self._nc

    async def close(self) -> None:
        """Drain: deliver what is buffered, let subscriptions finish, then disconnect."""
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        BUS_CONNECTED.set(0)

    async def _connect_loop(self) -> None:
        nc = NatsClient()
        options: dict[str, Any] = connect_options(self.settings)
        await nc.connect(
            name=self.name,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **options,
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=self.settings.nats_publish_timeout)
        log.info("bus.connected", servers=nc.connected_url.netloc if nc.connected_url else None)
        await self._ensure_until_done()

    async def _ensure_until_done(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.ensure()
                return
            except Exception as exc:
                log.warning("bus.ensure_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def ensure(self) -> None:
        """Create or update this service's streams and buckets. Idempotent."""
        async with self._ensure_lock:
            js = self.js
            replicas = self.settings.nats_stream_replicas
            for spec in self._streams:
                await ensure_stream(js, spec, replicas)
            for bucket in self._buckets:
                await ensure_bucket(js, bucket, replicas)
            self._kv_cache.clear()
            self._ready.set()
            BUS_CONNECTED.set(1)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("bus.error", error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        BUS_CONNECTED.set(0)
        log.warning("bus.disconnected")

    async def _on_reconnected(self) -> None:
        BUS_RECONNECTS.inc()
        log.info("bus.reconnected")
        # The server may have come back without our streams (a fresh store); recreate them.
        asyncio.get_running_loop().create_task(self._ensure_until_done())

    # -- publishing -----------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        event: BaseModel,
        *,
        msg_id: str,
        traceparent: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Published:
        """Store ``event`` on ``subject`` and return only once JetStream acknowledged it.

        Raises `BusUnavailable` when NATS is unreachable or does not answer in time; nothing
        was (knowingly) stored then, and the same ``msg_id`` may be retried safely.
        """
        if self._nc is None or self._js is None or not self._nc.is_connected:
            BUS_PUBLISHED.labels("unknown", "unavailable").inc()
            raise BusUnavailable("NATS is not connected")
        hdrs = {Header.MSG_ID: msg_id, **(headers or {})}
        if traceparent:
            hdrs[TRACEPARENT] = traceparent
        loop = asyncio.get_running_loop()
        started = loop.time()
        BUS_JETSTREAM_REQUESTS.labels("publish").inc()
        try:
            ack = await self._js.publish(
                subject,
                event.model_dump_json().encode(),
                headers=hdrs,
                timeout=self.settings.nats_publish_timeout,
            )
        except (
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
            nats.js.errors.NoStreamResponseError,
            nats.js.errors.ServiceUnavailableError,
        ) as exc:
            BUS_PUBLISHED.labels("unknown", "unavailable").inc()
            raise BusUnavailable(f"publish to {subject} failed: {type(exc).__name__}") from exc
        except nats.js.errors.APIError as exc:
            if exc.err_code != MSG_ID_IN_PROCESS:
                raise
            BUS_PUBLISHED.labels("unknown", "unavailable").inc()
            raise BusUnavailable(f"publish to {subject}: {exc.description}") from exc
        BUS_PUBLISH_SECONDS.observe(loop.time() - started)
        BUS_PUBLISHED.labels(ack.stream, "duplicate" if ack.duplicate else "stored").inc()
        return Published(ack.stream, ack.seq, bool(ack.duplicate))

    # -- key-value ------------------------------------------------------------------------------

    async def kv(self, bucket: str) -> KeyValue:
        handle = self._kv_cache.get(bucket)
        if handle is None:
            try:
                handle = await self.js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError as exc:
                # Just after start (streams and buckets not made yet) or a server that came
                # back empty: a caller answers "try again", not an error of its own.
                raise BusUnavailable(f"bucket {bucket} does not exist yet") from exc
            except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
                raise BusUnavailable(f"bucket {bucket}: {type(exc).__name__}") from exc
            self._kv_cache[bucket] = handle
        return handle


# -- consuming ------------------------------------------------------------------------------------
