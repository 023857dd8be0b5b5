"""Keypresses from the bus become acknowledgements in Zabbix, exactly once.

For every problem of a `KeyPressed` (acknowledge, close or comment), top to bottom:

1. **Claim** the problem in the ``yobidashi_acks`` bucket (`claims.Claim`: compare-and-set,
   one marker per (problem, acknowledge|close), or per (problem, comment, keypress), owned by
   one handler invocation). A fresh claim of another invocation means "someone may be writing
   right now": retry shortly. A marker of this very keypress that is finished means
   "redelivery": publish the same result again and write nothing. A failure releases the
   claim, except a write sent without an answer (it may still land: its claim stays until
   stale, and the keypress's retry looks for its ref meanwhile).
2. **Read the event back** (``event.get`` with its update history): our ref in an update's
   message means an earlier delivery's write landed before it could be recorded (a crash,
   a timeout whose request went through), so it is recorded and not written again.
3. **Plan** (`message.plan`): an event acknowledged by anyone else means "already
   acknowledged", and nothing is written, because Zabbix silently stores a second
   acknowledgement as one more message.
4. **Write** ``event.acknowledge`` (6 ack+message, 7 also close where the trigger allows it,
   4 comment), after renewing the claim, and record the outcome on it.
5. **Publish** the `AckResult`.

Failures: transient Zabbix errors (down, 5xx, timeouts, auth/config problems) nak the
message with backoff, so it stays on the bus until Zabbix takes it, across restarts.
Permanent ones (unknown event, invalid request) publish a ``failed`` AckResult and dead-letter
the keypress.

Why ``max_deliveries`` is so large (``ACKER_MAX_DELIVERIES``, 100 000): every retry is a
delivery, and the bus dead-letters after max_deliveries. With the backoff capped at 60 s, an
outage of one day is ~1 440 deliveries, and 100 000 deliveries is ~69 days — longer than the
keys stream keeps a message (``NATS_EVENTS_MAX_AGE``, 7 days). So a Zabbix outage never
dead-letters an ack; only the stream's retention bounds the wait. A bug (an unexpected
exception) is a different matter: it is dead-lettered after ``ACKER_ERROR_MAX_DELIVERIES``
(10), counted by the handler itself, so a poison message does not loop for a week.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
import structlog

from yobidashi_acker import metrics
from yobidashi_acker.claims import AckMarker, Busy, Claim, MarkerState, marker_key
from yobidashi_acker.message import (
    Intent,
    Plan,
    contact_zone,
    make_ref,
    plan,
    ref_marker,
    render,
)
from yobidashi_acker.settings import AckerSettings
from yobidashi_acker.zabbix import AckEntry, ErrorKind, EventInfo, ZabbixApi, ZabbixError
from yobidashi_acker.zabbix.rules import ACTION_CLOSE
from yobidashi_common.bus import (
    Bus,
    BusUnavailable,
    ConsumerSpec,
    Delivery,
    KvStore,
    Reject,
    RetryLater,
)
from yobidashi_common.events import AckOutcome, AckResult, KeyPressed, ProblemRef, utcnow
from yobidashi_common.subjects import KEYS_STREAM, BucketSpec, acks_subject, keys_subject
from yobidashi_common.telemetry import clear_bound, get_logger, new_traceparent

log = get_logger(__name__)

CONSUMER = "acker"
ACKS_BUCKET = "yobidashi_acks"
SUBJECTS = tuple(keys_subject(intent.value) for intent in Intent)
_BOUND = ("keypress_id", "call_sid", "event_id", "problem_key", "key_action")


def acks_bucket(settings: AckerSettings) -> BucketSpec:
    return BucketSpec(
        ACKS_BUCKET,
        "Acker: per-problem claims and results of phone acknowledgements (compare-and-set).",
        ttl=settings.acker_marker_ttl,
    )


def consumer_spec(settings: AckerSettings) -> ConsumerSpec:
    return ConsumerSpec(
        stream=KEYS_STREAM,
        durable=CONSUMER,
        subjects=SUBJECTS,
        ack_wait=settings.nats_ack_wait,
        max_deliveries=settings.acker_max_deliveries,
        retry_backoff=tuple(settings.acker_retry_backoff),
        concurrency=settings.acker_concurrency,
        batch=settings.acker_concurrency,
        description="Yobidashi acker: keypresses to Zabbix acknowledgements",
    )


def result_msg_id(keypress_id: str, problem_key: str) -> str:
    return f"ack.{keypress_id}.{problem_key}"


class Acker:
    """The consumer's handler. One instance per process; safe to run concurrently."""

    def __init__(
        self,
        settings: AckerSettings,
        bus: Bus,
        zabbix: ZabbixApi,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.zabbix = zabbix
        self.clock = clock
        self.markers: KvStore[AckMarker] = KvStore(bus, ACKS_BUCKET, AckMarker)
        self._zone = settings.default_timezone
        # Unexpected errors per stream sequence. Deliveries also count the retries of a Zabbix
        # outage, which must not use up a keypress's error budget.
        self._errors: dict[int, int] = {}

    # -- the handler ---------------------------------------------------------------------------

    async def handle(self, delivery: Delivery[KeyPressed]) -> None:
        kp = delivery.event
        structlog.contextvars.bind_contextvars(
            keypress_id=kp.id, call_sid=kp.call_sid, key_action=kp.action.value
        )
        try:
            await self._handle(kp, delivery)
            self._errors.pop(delivery.stream_seq, None)
        except Reject:
            self._errors.pop(delivery.stream_seq, None)
            raise
        except RetryLater:
            raise
        except ZabbixError as exc:
            raise self._retry(exc.kind.value, str(exc), delivery) from None
        except Busy as exc:
            metrics.RETRIES.labels("busy").inc()
            raise RetryLater(str(exc), delay=self._jitter(self.settings.acker_busy_retry)) from None
        except (BusUnavailable, nats.errors.Error) as exc:
            raise self._retry("bus", f"{type(exc).__name__}: {exc}", delivery) from None
        except Exception as exc:
            errors = self._errors[delivery.stream_seq] = (
                self._errors.get(delivery.stream_seq, 0) + 1
            )
            log.exception("acker.unexpected_error", deliveries=delivery.deliveries, errors=errors)
            if errors >= self.settings.acker_error_max_deliveries:
                self._errors.pop(delivery.stream_seq, None)
                reason = f"unexpected error: {type(exc).__name__}: {exc}"
                await self._report_unhandled(kp, reason)
                metrics.DEAD_LETTERS.labels("error").inc()
                raise Reject(reason) from None
            raise self._retry("error", f"{type(exc).__name__}: {exc}", delivery) from None
        finally:
            clear_bound(_BOUND)

    async def _handle(self, kp: KeyPressed, delivery: Delivery[KeyPressed]) -> None:
        intent = Intent.of(kp.action)
        if intent is None:
            log.info("acker.ignored", reason="not an acker key action")
            return
        if not kp.problems:
            metrics.DEAD_LETTERS.labels("invalid").inc()
            raise Reject("the keypress lists no problems")
        failures: list[str] = []
        for problem in kp.problems:
            structlog.contextvars.bind_contextvars(
                event_id=problem.source_event_id, problem_key=problem.problem_key
            )
            result = await self._one(kp, problem, intent, delivery)
            if result.outcome is AckOutcome.FAILED:
                failures.append(f"{problem.problem_key}: {result.detail}")
        if failures:
            metrics.DEAD_LETTERS.labels("failed").inc()
            raise Reject("; ".join(failures))

    async def _report_unhandled(self, kp: KeyPressed, reason: str) -> None:
        """Best effort: a ``failed`` result per problem before the keypress is dead-lettered.

        A problem that already got a result keeps it: the same Nats-Msg-Id is deduplicated.
        """
        intent = Intent.of(kp.action) or Intent.ACKNOWLEDGE
        for problem in kp.problems:
            try:
                await self._unusable(kp, problem, intent, reason)
            except Exception as exc:
                log.warning("acker.report_failed", error=repr(exc))

    def _retry(self, reason: str, text: str, delivery: Delivery[KeyPressed]) -> RetryLater:
        metrics.RETRIES.labels(reason).inc()
        delay = self._jitter(self.settings.retry_delay(delivery.deliveries))
        log.warning(
            "acker.retry_later",
            reason=reason,
            error=text,
            deliveries=delivery.deliveries,
            retry_in=round(delay, 2),
        )
        return RetryLater(f"{reason}: {text}", delay=delay)

    @staticmethod
    def _jitter(delay: float) -> float:
        """±10 %, so that keypresses queued during an outage do not retry in lockstep."""
        return delay * random.uniform(0.9, 1.1)  # noqa: S311 - not cryptographic

    # -- one problem: claim → read back → plan → write → publish --------------------------------

    async def _one(
        self, kp: KeyPressed, problem: ProblemRef, intent: Intent, delivery: Delivery[KeyPressed]
    ) -> AckResult:
        if not problem.source_event_id.isdigit():
            detail = f"{problem.source_event_id!r} is not a Zabbix event ID"
            return await self._unusable(kp, problem, intent, detail)
        claim = await self._claim(kp, problem, intent, delivery)
        if isinstance(claim, AckResult):
            return claim
        async with claim.held():
            outcome = await self._read_plan_write(kp, problem, claim)
            recorded = await claim.record(outcome)
        if recorded is None:
            # Only a stale-claim takeover can do this; the takeover reads Zabbix and finds ours.
            log.warning("acker.marker_changed_meanwhile")
        return await self._publish(kp, problem, recorded or outcome, delivery, first=True)

    async def _claim(
        self, kp: KeyPressed, problem: ProblemRef, intent: Intent, delivery: Delivery[KeyPressed]
    ) -> Claim | AckResult:
        """Our claim on the problem, or the result when one is known without one."""
        ref = make_ref(kp.id, problem.problem_key, intent)
        key = marker_key(problem, intent, kp.id)
        try:
            claim = await Claim.take(
                self.markers,
                key,
                keypress_id=kp.id,
                ref=ref,
                intent=intent,
                clock=self.clock,
                stale_after=self.settings.acker_claim_stale,
            )
        except Busy as busy:
            if busy.held_by(kp.id):
                # An earlier attempt of this keypress sent a write and got no answer. If it
                # landed, say so now instead of waiting for its claim to go stale.
                in_doubt = Claim.in_doubt(self.markers, key, busy, self.clock)
                landed = await self._landed(kp, problem, in_doubt, delivery)
                if landed is not None:
                    return landed
            raise
        if isinstance(claim, AckMarker):
            # A redelivery of a keypress already finished: same result, no Zabbix call.
            log.info("acker.redelivered", outcome=claim.outcome, deliveries=delivery.deliveries)
            return await self._publish(kp, problem, claim, delivery, first=False)
        return claim

    async def _read_plan_write(
        self, kp: KeyPressed, problem: ProblemRef, claim: Claim
    ) -> AckMarker:
        """The outcome for this problem, to record on the claim."""
        event = await self._read_back(problem)
        if isinstance(event, str):
            return self._marker(
                kp, claim.ref, claim.intent, MarkerState.FAILED, AckOutcome.FAILED, detail=event
            )
        mine = event.find(ref_marker(claim.ref))
        if mine is not None:
            # An earlier delivery's write landed, but it died before recording it.
            log.info("acker.found_own_write", action=mine.action)
            return self._found(kp, claim.ref, claim.intent, mine)
        decided = plan(claim.intent, event)
        if not decided.write:
            outcome = decided.skipped or AckOutcome.ALREADY_ACKNOWLEDGED
            return self._marker(
                kp, claim.ref, claim.intent, MarkerState.DONE, outcome, detail=decided.detail
            )
        await claim.refresh()
        async with claim.sending():
            return await self._write(kp, problem, claim, event, decided)

    async def _read_back(self, problem: ProblemRef) -> EventInfo | str:
        """The event with its updates, or why it cannot be acknowledged (a permanent failure)."""
        try:
            event = await self.zabbix.get_event(problem.source_event_id)
        except ZabbixError as exc:
            if exc.transient:
                raise
            return str(exc)
        if event is None:
            return (
                f"Zabbix event {problem.source_event_id} does not exist, or the Zabbix user "
                f"{self.zabbix.username!r} may not read it"
            )
        if not event.is_problem:
            return f"Zabbix event {problem.source_event_id} is a recovery event, not a problem"
        return event

    async def _landed(
        self,
        kp: KeyPressed,
        problem: ProblemRef,
        in_doubt: Claim,
        delivery: Delivery[KeyPressed],
    ) -> AckResult | None:
        """Our own in-doubt write, if Zabbix has it; None when it is not (yet) there."""
        try:
            event = await self.zabbix.get_event(problem.source_event_id)
        except ZabbixError as exc:
            if exc.transient:
                raise
            return None
        mine = event.find(ref_marker(in_doubt.ref)) if event is not None else None
        if mine is None:
            return None
        log.info("acker.found_own_write", action=mine.action)
        recorded = await in_doubt.record(self._found(kp, in_doubt.ref, in_doubt.intent, mine))
        if recorded is None:
            return None  # it changed meanwhile: the retry will look again
        return await self._publish(kp, problem, recorded, delivery, first=True)

    def _found(self, kp: KeyPressed, ref: str, intent: Intent, mine: AckEntry) -> AckMarker:
        return self._marker(
            kp,
            ref,
            intent,
            MarkerState.DONE,
            AckOutcome.ACKNOWLEDGED,
            action=mine.action,
            message=mine.message,
            detail="found in Zabbix after a retry",
            at=datetime.fromtimestamp(mine.clock, UTC) if mine.clock else None,
        )

    async def _write(
        self,
        kp: KeyPressed,
        problem: ProblemRef,
        claim: Claim,
        event: EventInfo,
        decided: Plan,
    ) -> AckMarker:
        ref, intent = claim.ref, claim.intent
        message = self._message(kp, decided, ref)
        try:
            await self.zabbix.acknowledge(problem.source_event_id, decided.action, message)
        except ZabbixError as exc:
            refused_close = decided.action & ACTION_CLOSE and exc.kind in (
                ErrorKind.CANNOT_CLOSE,
                ErrorKind.NOT_FOUND,  # closing needs write access; reading only needs read
            )
            if not refused_close:
                if exc.transient:
                    raise
                return self._marker(
                    kp,
                    ref,
                    intent,
                    MarkerState.FAILED,
                    AckOutcome.FAILED,
                    action=decided.action,
                    message=message,
                    detail=str(exc),
                )
            log.warning("acker.close_refused", error=str(exc))
            decided = plan(intent, event, allow_close=False)
            if not decided.write:
                outcome = AckOutcome.ALREADY_ACKNOWLEDGED
                return self._marker(
                    kp, ref, intent, MarkerState.DONE, outcome, detail=decided.detail
                )
            message = self._message(kp, decided, ref)
            await self.zabbix.acknowledge(problem.source_event_id, decided.action, message)
        confirmed = self.clock()
        lag = max((confirmed - kp.at).total_seconds(), 0.0)
        metrics.ACK_LAG_SECONDS.observe(lag)
        log.info("acker.written", action=decided.action, lag_seconds=round(lag, 3))
        outcome = AckOutcome.COMMENTED if intent is Intent.COMMENT else AckOutcome.ACKNOWLEDGED
        return self._marker(
            kp,
            ref,
            intent,
            MarkerState.DONE,
            outcome,
            action=decided.action,
            message=message,
            detail=decided.detail,
            at=confirmed,
        )

    def _message(self, kp: KeyPressed, decided: Plan, ref: str) -> str:
        return render(
            self.settings.acker_message_template,
            verb=decided.verb,
            contact=kp.contact,
            at=kp.at,
            zone=contact_zone(kp.contact, self._zone),
            call_sid=kp.call_sid,
            ref=ref,
            note=decided.note,
            digit=kp.digit,
            keypress_id=kp.id,
        )

    def _marker(
        self,
        kp: KeyPressed,
        ref: str,
        intent: Intent,
        state: MarkerState,
        outcome: AckOutcome | None = None,
        *,
        action: int = 0,
        message: str | None = None,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> AckMarker:
        """A finished marker: the outcome of one keypress on one problem."""
        now = self.clock()
        return AckMarker(
            keypress_id=kp.id,
            ref=ref,
            intent=intent,
            state=state,
            updated_at=now,
            outcome=outcome,
            action=action,
            message=message,
            detail=detail,
            at=at or now,
        )

    async def _unusable(
        self, kp: KeyPressed, problem: ProblemRef, intent: Intent, detail: str
    ) -> AckResult:
        """A ``failed`` result decided without a claim: the keypress itself is unusable."""
        failed = self._marker(kp, "", intent, MarkerState.FAILED, AckOutcome.FAILED, detail=detail)
        return await self._publish(kp, problem, failed, None, first=True)

    # -- results -------------------------------------------------------------------------------

    async def _publish(
        self,
        kp: KeyPressed,
        problem: ProblemRef,
        marker: AckMarker,
        delivery: Delivery[KeyPressed] | None,
        *,
        first: bool,
    ) -> AckResult:
        outcome = marker.outcome or AckOutcome.FAILED
        result = AckResult(
            keypress_id=kp.id,
            problem=problem,
            contact=kp.contact,
            outcome=outcome,
            action=marker.action,
            message=marker.message,
            detail=marker.detail,
            zabbix_user=self.zabbix.username,
            pressed_at=kp.at,
            at=marker.at or marker.updated_at,
        )
        traceparent = new_traceparent(delivery.traceparent if delivery else None)
        await self.bus.publish(
            acks_subject(outcome.value),
            result,
            msg_id=result_msg_id(kp.id, problem.problem_key),
            traceparent=traceparent,
        )
        if first:
            metrics.ACKS.labels(outcome.value, marker.intent.value).inc()
            if outcome is AckOutcome.FAILED:
                log.error("acker.failed", detail=marker.detail)
            else:
                log.info(
                    "acker.done", outcome=outcome.value, action=marker.action, detail=marker.detail
                )
        return result
