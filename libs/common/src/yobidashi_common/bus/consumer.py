"""`Consumer`: a durable pull consumer with explicit acks.

``in_progress`` while a handler works, a delayed nak on transient errors (`RetryLater`), and a
dead-letter subject after N deliveries or at once for a message no handler can take (`Reject`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header
from pydantic import BaseModel, ValidationError

from yobidashi_common.bus.connection import TRACEPARENT, Bus
from yobidashi_common.bus.metrics import (
    BUS_CONSUMER_ACK_PENDING,
    BUS_CONSUMER_PENDING,
    BUS_DEAD_LETTERS,
    BUS_HANDLED,
    BUS_HANDLER_SECONDS,
    BUS_JETSTREAM_REQUESTS,
    BUS_REDELIVERED,
)
from yobidashi_common.subjects import dlq_subject
from yobidashi_common.telemetry import bind_trace, clear_bound, get_logger

log = get_logger(__name__)

M = TypeVar("M", bound=BaseModel)


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
                BUS_JETSTREAM_REQUESTS.labels("fetch").inc()
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
        BUS_JETSTREAM_REQUESTS.labels("ack").inc()
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
