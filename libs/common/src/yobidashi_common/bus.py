"""NATS JetStream, the way every Yobidashi service uses it.

- `Bus` connects (token, user/password, .creds, TLS with a custom CA), keeps reconnecting with
  backoff, and (re)creates the streams and buckets its service needs.
- `Bus.publish` sends with a ``Nats-Msg-Id`` and waits for the PubAck, so a caller only reports
  success for what is stored, and a retry with the same id is stored once.
- `Consumer` runs a durable pull consumer with explicit acks: ``in_progress`` while a handler
  works, a delayed nak on transient errors, and a dead-letter subject after N deliveries.
- `KvStore` is a typed view of a key-value bucket with compare-and-set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header
from nats.js.kv import KeyValue
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError

from yobidashi_common.settings import NatsSettings, secret_value
from yobidashi_common.subjects import (
    DLQ_STREAM,
    BucketSpec,
    StreamSpec,
    dlq_stream,
    dlq_subject,
    ensure_bucket,
    ensure_stream,
)
from yobidashi_common.telemetry import bind_trace, clear_bound, get_logger, register_secret

log = get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

BUS_CONNECTED = Gauge("yobidashi_bus_connected", "1 while connected to NATS and streams exist.")
BUS_RECONNECTS = Counter("yobidashi_bus_reconnects_total", "Reconnections to NATS.")
BUS_PUBLISHED = Counter(
    "yobidashi_bus_published_total", "Messages published to JetStream.", ["stream", "result"]
)
BUS_PUBLISH_SECONDS = Histogram(
    "yobidashi_bus_publish_seconds",
    "Time from publish to JetStream PubAck.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BUS_HANDLED = Counter(
    "yobidashi_bus_messages_handled_total",
    "Messages handled by durable consumers, by outcome.",
    ["consumer", "result"],
)
BUS_REDELIVERED = Counter(
    "yobidashi_bus_messages_redelivered_total",
    "Messages seen again after a nak, a crash or an ack timeout.",
    ["consumer"],
)
BUS_DEAD_LETTERS = Counter(
    "yobidashi_bus_dead_letters_total", "Messages moved to the dead-letter subject.", ["consumer"]
)
BUS_CONSUMER_PENDING = Gauge(
    "yobidashi_bus_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (its lag).",
    ["consumer"],
)
BUS_CONSUMER_ACK_PENDING = Gauge(
    "yobidashi_bus_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (in work or waiting a retry).",
    ["consumer"],
)
BUS_HANDLER_SECONDS = Histogram(
    "yobidashi_bus_handler_seconds",
    "Time a consumer's handler spent on one message.",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

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
            handle = await self.js.key_value(bucket)
            self._kv_cache[bucket] = handle
        return handle


# -- consuming ------------------------------------------------------------------------------------


class RetryLater(Exception):
    """A transient failure: nak the message so that it comes back after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(Exception):
    """A permanent failure: retrying cannot help. The message goes to the dead-letter subject."""


@dataclass
class Delivery(Generic[M]):
    """One message as a handler sees it."""

    event: M
    msg: Msg
    consumer: str

    @property
    def deliveries(self) -> int:
        return int(self.msg.metadata.num_delivered)

    @property
    def stream_seq(self) -> int:
        return int(self.msg.metadata.sequence.stream)

    @property
    def traceparent(self) -> str | None:
        return (self.msg.headers or {}).get(TRACEPARENT)

    @property
    def msg_id(self) -> str | None:
        return (self.msg.headers or {}).get(Header.MSG_ID)


Handler = Callable[[Delivery[M]], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    subjects: Sequence[str]
    ack_wait: float = 30.0
    max_deliveries: int = 10
    retry_backoff: Sequence[float] = (0.5, 1, 2, 5, 10, 30, 60)
    max_ack_pending: int = 1000
    concurrency: int = 8
    batch: int = 32
    description: str = ""

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description=self.description or None,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # We count deliveries ourselves and dead-letter; the server must never drop silently.
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            filter_subjects=list(self.subjects) if len(self.subjects) > 1 else None,
            filter_subject=self.subjects[0] if len(self.subjects) == 1 else None,
        )

    def backoff(self, deliveries: int) -> float:
        return backoff_delay(self.retry_backoff, deliveries)


def backoff_delay(backoff: Sequence[float], deliveries: int) -> float:
    """The delay before retrying after delivery ``deliveries``: one entry per delivery, the
    last one repeating."""
    return float(backoff[min(max(deliveries, 1), len(backoff)) - 1])


@dataclass
class Consumer(Generic[M]):
    """A durable pull consumer that hands decoded events to ``handler``."""

    bus: Bus
    spec: ConsumerSpec
    model: type[M]
    handler: Handler[M]
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _lag_task: asyncio.Task[None] | None = None
    lag_interval: float = 15.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.spec.durable}")
        self._lag_task = asyncio.create_task(self._report_lag(), name="consumer-lag")

    async def _report_lag(self) -> None:
        while True:
            await asyncio.sleep(self.lag_interval)
            if not self.bus.ready:
                continue
            try:
                info = await self.bus.js.consumer_info(self.spec.stream, self.spec.durable)
            except Exception as exc:  # a missed sample is fine
                log.debug("consumer.lag_unknown", consumer=self.spec.durable, error=repr(exc))
                continue
            BUS_CONSUMER_PENDING.labels(self.spec.durable).set(info.num_pending or 0)
            BUS_CONSUMER_ACK_PENDING.labels(self.spec.durable).set(info.num_ack_pending or 0)

    async def stop(self, grace: float) -> None:
        """Stop fetching, give in-flight handlers ``grace`` seconds, then give up on them.

        Anything not acked is redelivered to another replica or after restart.
        """
        self._stopping.set()
        for task in (self._task, self._lag_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace)
            for task in pending:
                task.cancel()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        js = self.bus.js
        await js.add_consumer(self.spec.stream, self.spec.config())
        return await js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream)

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.spec.concurrency)
        sub: JetStreamContext.PullSubscription | None = None
        while not self._stopping.is_set():
            try:
                await self.bus.wait_ready()
                if sub is None:
                    sub = await self._subscribe()
                free = max(1, min(self.spec.batch, self.spec.concurrency - len(self._inflight)))
                msgs = await sub.fetch(free, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except nats.js.errors.NotFoundError:
                # Stream or consumer vanished (a server without its store): recreate and resume.
                await self._abandon(sub)
                sub = None
                await self.bus.ensure()
                continue
            except Exception as exc:
                # E.g. a 503 while the consumer's raft group elects a new leader in a cluster.
                log.warning("consumer.fetch_failed", consumer=self.spec.durable, error=repr(exc))
                await self._abandon(sub)
                sub = None
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await slots.acquire()
                task = asyncio.create_task(self._handle(msg))
                self._inflight.add(task)
                task.add_done_callback(self._finished(slots))

    @staticmethod
    async def _abandon(sub: JetStreamContext.PullSubscription | None) -> None:
        """Unsubscribe a pull subscription before binding a new one: each left behind kept its
        inbox on the connection for good, one more after every leader election."""
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _finished(self, slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            slots.release()

        return done

    async def _handle(self, msg: Msg) -> None:
        name = self.spec.durable
        deliveries = int(msg.metadata.num_delivered)
        if deliveries > 1:
            BUS_REDELIVERED.labels(name).inc()
        traceparent = (msg.headers or {}).get(TRACEPARENT)
        bind_trace(traceparent, consumer=name)
        try:
            if deliveries > self.spec.max_deliveries:
                # Every earlier attempt died without an answer (e.g. it crashed the process).
                await self._dead_letter(msg, f"gave up after {deliveries - 1} deliveries")
                return
            try:
                event = self.model.model_validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, f"undecodable {self.model.__name__}: {exc}")
                return
            await self._run_handler(msg, Delivery(event, msg, name), deliveries)
        finally:
            clear_bound(("trace_id", "consumer"))

    async def _run_handler(self, msg: Msg, delivery: Delivery[M], deliveries: int) -> None:
        name = self.spec.durable
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        started = asyncio.get_running_loop().time()
        try:
            await self.handler(delivery)
        except RetryLater as exc:
            delay = exc.delay if exc.delay is not None else self.spec.backoff(deliveries)
            BUS_HANDLED.labels(name, "retry").inc()
            log.info("consumer.retry", consumer=name, reason=str(exc), delay=delay)
            await msg.nak(delay=delay)
            return
        except Reject as exc:
            BUS_HANDLED.labels(name, "rejected").inc()
            await self._dead_letter(msg, str(exc))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            BUS_HANDLED.labels(name, "error").inc()
            if deliveries >= self.spec.max_deliveries:
                await self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
            else:
                log.exception("consumer.handler_failed", consumer=name, deliveries=deliveries)
                await msg.nak(delay=self.spec.backoff(deliveries))
            return
        finally:
            heartbeat.cancel()
            BUS_HANDLER_SECONDS.labels(name).observe(asyncio.get_running_loop().time() - started)
        BUS_HANDLED.labels(name, "ok").inc()
        try:
            await msg.ack_sync(timeout=2)
        except Exception as exc:
            log.warning("consumer.ack_failed", consumer=name, error=repr(exc))

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell the server we are still working, so a slow handler is not redelivered meanwhile."""
        interval = max(self.spec.ack_wait / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        name = self.spec.durable
        meta = msg.metadata
        headers = {
            Header.MSG_ID: f"dlq.{meta.stream}.{meta.sequence.stream}",
            "Yobidashi-Dlq-Reason": reason[:1000],
            "Yobidashi-Dlq-Subject": msg.subject,
            "Yobidashi-Dlq-Stream": str(meta.stream),
            "Yobidashi-Dlq-Sequence": str(meta.sequence.stream),
            "Yobidashi-Dlq-Deliveries": str(meta.num_delivered),
        }
        try:
            await self.bus.js.publish(dlq_subject(name), msg.data, headers=headers)
        except Exception as exc:
            log.error("consumer.dead_letter_failed", consumer=name, error=repr(exc))
            await msg.nak(delay=self.spec.backoff(len(self.spec.retry_backoff)))
            return
        BUS_DEAD_LETTERS.labels(name).inc()
        log.error(
            "consumer.dead_lettered",
            consumer=name,
            reason=reason[:300],
            stream_seq=meta.sequence.stream,
            deliveries=meta.num_delivered,
        )
        await msg.term()


# -- key-value ------------------------------------------------------------------------------------

# "=" is the escape character, so it is escaped too: two different parts never share a key.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


def kv_key(*parts: str) -> str:
    """Join parts into a valid KV key; characters NATS forbids are escaped, dots separate parts.

    Distinct parts give distinct keys: a key is someone's state, and two sharing one would
    merge it."""
    return ".".join(_KEY_UNSAFE.sub(lambda m: f"={ord(m.group(0)):02X}", p) for p in parts)


class KvStore(Generic[M]):
    """A bucket whose values are one pydantic model, with compare-and-set updates."""

    def __init__(self, bus: Bus, bucket: str, model: type[M]) -> None:
        self.bus = bus
        self.bucket = bucket
        self.model = model

    async def get(self, key: str) -> tuple[M, int] | None:
        kv = await self.bus.kv(self.bucket)
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return self.model.model_validate_json(entry.value), int(entry.revision or 0)

    async def create(self, key: str, value: M) -> int | None:
        """Store ``value`` only if ``key`` is absent. Returns the revision, or None if present."""
        kv = await self.bus.kv(self.bucket)
        try:
            return int(await kv.create(key, value.model_dump_json().encode()))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def update(self, key: str, value: M, revision: int) -> int | None:
        """Compare-and-set: store only if ``key`` is still at ``revision``; None on conflict."""
        kv = await self.bus.kv(self.bucket)
        try:
            return int(await kv.update(key, value.model_dump_json().encode(), last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def put(self, key: str, value: M) -> int:
        kv = await self.bus.kv(self.bucket)
        return int(await kv.put(key, value.model_dump_json().encode()))

    async def delete(self, key: str) -> None:
        kv = await self.bus.kv(self.bucket)
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(key)

    async def recent(self, limit: int, scan: int = 2000) -> list[M]:
        """The most recently written values, newest first, at most ``limit``.

        Reads the bucket's stream backwards, so the first message seen for a key is its current
        value; deleted keys leave gaps or delete markers. At most ``scan`` sequence numbers are
        looked at, which bounds the cost on a big bucket.
        """
        await self.bus.kv(self.bucket)  # the bucket exists
        stream = f"KV_{self.bucket}"
        state = (await self.bus.js.stream_info(stream)).state
        seq, first = state.last_seq, max(state.first_seq, state.last_seq - scan + 1, 1)
        found: list[M] = []
        seen: set[str] = set()
        while seq >= first and len(found) < limit:
            try:
                msg = await self.bus.js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                msg = None
            seq -= 1
            if msg is None or not msg.subject or msg.subject in seen:
                continue
            seen.add(msg.subject)
            if msg.data and not (msg.headers or {}).get("KV-Operation"):  # not deleted
                found.append(self.model.model_validate_json(msg.data))
        return found

    async def mutate(
        self, key: str, change: Callable[[M | None], M | None], attempts: int = 50
    ) -> M | None:
        """Apply ``change`` to the current value with compare-and-set, retrying on conflicts.

        ``change`` must be pure: it can run several times when writers race. Returning None
        leaves the stored value as it is.
        """
        for _ in range(attempts):
            current = await self.get(key)
            new = change(current[0] if current else None)
            if new is None:
                return current[0] if current else None
            if current is None:
                if await self.create(key, new) is not None:
                    return new
            elif await self.update(key, new, current[1]) is not None:
                return new
        raise RuntimeError(f"too many concurrent writers on {self.bucket}/{key}")


def dumps_compact(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
