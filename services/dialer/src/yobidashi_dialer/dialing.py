"""Places calls: one dial request at a time per worker slot, never the same call twice.

The `CallRecord` in KV is the dial marker. It is created ("placing") before Twilio is asked, and
updated with the SID after. A replayed request finds it and does not dial again. A request that
finds it still "placing" long after (its worker died mid-create) asks Twilio whether the call
exists before placing it, so a crash can neither lose the call nor ring the phone twice.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from yobidashi_common.bus import Bus, Delivery, KvStore, RetryLater
from yobidashi_common.events import CallFailed
from yobidashi_common.subjects import calls_subject
from yobidashi_common.telemetry import bind_trace, get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import CallNotPlaced, CallPlaced, Incident, PageStatus
from yobidashi_dialer.limits import Budget
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import CallRecord, DialRequest, Spoken
from yobidashi_dialer.telephony import CallInfo, CallRequest, Telephony, TelephonyError
from yobidashi_dialer.voice import PHRASES, Voices, call_twiml

log = get_logger(__name__)

CREATE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


def _now() -> datetime:
    return datetime.now(UTC)


class DialWorker:
    def __init__(
        self,
        settings: DialerSettings,
        bus: Bus,
        telephony: Telephony,
        budget: Budget,
        calls: KvStore[CallRecord],
        engine: Engine,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.telephony = telephony
        self.budget = budget
        self.calls = calls
        self.engine = engine
        self.voices = Voices(settings.twilio_voice_ja, settings.twilio_voice_en)

    def urls(self, call_id: str) -> tuple[str, str, str]:
        base = f"{self.settings.public_base_url}/twilio/voice"
        return (
            f"{base}/gather?call={call_id}&round=1",
            f"{base}/status?call={call_id}",
            f"{base}/amd?call={call_id}",
        )

    async def handle(self, delivery: Delivery[DialRequest]) -> None:
        request = delivery.event
        bind_trace(delivery.traceparent, call_id=request.call_id)
        incidents = await self._wanted(request)
        if not incidents:
            log.info("dial.dropped", reason="no longer wanted")
            return
        record = await self._claim(request, incidents)
        if record is None:
            return
        granted = await self.budget.acquire(
            request.call_id,
            still_wanted=lambda: self._still_wanted(request),
            keep_alive=delivery.msg.in_progress,
        )
        if granted is None:
            await self._give_up(record, "stopped while waiting for a free line")
            return
        try:
            info = await self._create(record, delivery, granted)
        except TelephonyError as exc:
            await self.budget.release(record.call_id)
            if exc.retryable:
                raise RetryLater(f"Twilio unavailable: {exc}", delay=5.0) from exc
            await self._failed(record, exc)
            return
        await self._placed(record, info, request.requested_at)

    async def _wanted(self, request: DialRequest) -> list[Incident]:
        wanted = []
        for target in request.targets:
            incident = await self.engine.load(target.problem_key)
            page = incident.page(target.page_id) if incident else None
            if (
                incident is not None
                and incident.open
                and page is not None
                and page.call_id == request.call_id
                and page.status is PageStatus.DIALLING
            ):
                wanted.append(incident)
        return wanted

    async def _still_wanted(self, request: DialRequest) -> bool:
        return bool(await self._wanted(request))

    async def _claim(self, request: DialRequest, incidents: list[Incident]) -> CallRecord | None:
        """Create the dial marker, or decide what an existing one means. None: nothing to do."""
        existing = await self.calls.get(request.call_id)
        if existing is None:
            record = CallRecord(
                call_id=request.call_id,
                targets=request.targets,
                problems=[i.problem for i in incidents],
                contact=request.contact,
                from_number=self.settings.caller_id_for(request.contact.number),
                spoken=[
                    Spoken(severity=i.severity, host=i.host, title=i.title, started_at=i.started_at)
                    for i in incidents
                ],
                state="placing",
                placing_since=_now(),
            )
            if await self.calls.create(request.call_id, record) is None:
                raise RetryLater("another worker is placing this call", delay=1.0)
            return record
        record, revision = existing
        if record.state == "placed" and record.call_sid:
            await self._tell_placed(record, record.call_sid)
            return None
        if record.state == "failed":
            await self._tell_not_placed(record, record.failure or "failed")
            return None
        age = (_now() - record.placing_since).total_seconds()
        if age < self.settings.dial_recovery_after:
            raise RetryLater("being placed", delay=self.settings.dial_recovery_after - age)
        # Its worker died while placing it. Did Twilio take the create before that?
        since = record.placing_since - timedelta(seconds=5)
        found = await self.telephony.find_calls(record.contact.number, record.from_number, since)
        if found:
            log.warning("dial.recovered", call_sid=found[0].sid)
            await self._placed(record, found[-1], record.placing_since)
            return None
        retaken = record.model_copy(update={"placing_since": _now()})
        if await self.calls.update(request.call_id, retaken, revision) is None:
            raise RetryLater("another worker took this call over", delay=1.0)
        log.warning("dial.retaken", age_seconds=round(age, 1))
        return retaken

    async def _create(
        self, record: CallRecord, delivery: Delivery[DialRequest], granted: float
    ) -> CallInfo:
        gather, status, amd = self.urls(record.call_id)
        twiml = call_twiml(
            [s.announcement() for s in record.spoken],
            phrases=PHRASES[record.language],
            voices=self.voices,
            gather_url=gather,
            gather_timeout=self.settings.dial_gather_timeout,
            now=_now(),
        )
        request = CallRequest(
            to=record.contact.number,
            from_=record.from_number,
            twiml=twiml,
            status_callback=status,
            amd_callback=amd,
            ring_timeout=self.settings.twilio_ring_timeout,
            time_limit=self.settings.twilio_time_limit,
        )
        pauses = iter(CREATE_BACKOFF)
        while True:
            try:
                info = await self.telephony.place_call(request)
            except TelephonyError as exc:
                await self.budget.sent(granted, time.time())
                pause = next(pauses, None)
                if not exc.retryable or pause is None:
                    raise
                log.warning("dial.retry", error=str(exc), pause=pause)
                await delivery.msg.in_progress()
                await asyncio.sleep(pause)
                granted = await self.budget.wait_cps()  # a retry is a create too
                continue
            await self.budget.sent(granted, time.time())
            return info

    async def _placed(self, record: CallRecord, info: CallInfo, requested_at: datetime) -> None:
        placed = record.model_copy(update={"state": "placed", "call_sid": info.sid})
        await self.calls.put(record.call_id, placed)
        metrics.CALLS_PLACED.inc()
        metrics.DIAL_LATENCY.observe((_now() - requested_at).total_seconds())
        log.info("dial.placed", call_sid=info.sid, to=record.contact.ref().masked_number)
        await self._tell_placed(placed, info.sid)

    async def _tell_placed(self, record: CallRecord, sid: str) -> None:
        for target in record.targets:
            await self.engine.apply(
                target.problem_key,
                CallPlaced(
                    call_id=record.call_id,
                    page_id=target.page_id,
                    attempt=target.attempt,
                    call_sid=sid,
                    at=_now(),
                ),
            )

    async def _tell_not_placed(self, record: CallRecord, reason: str) -> None:
        for target in record.targets:
            await self.engine.apply(
                target.problem_key,
                CallNotPlaced(
                    call_id=record.call_id,
                    page_id=target.page_id,
                    attempt=target.attempt,
                    reason=reason,
                ),
            )

    async def _give_up(self, record: CallRecord, reason: str) -> None:
        failed = record.model_copy(update={"state": "failed", "failure": reason})
        await self.calls.put(record.call_id, failed)
        await self._tell_not_placed(failed, reason)

    async def _failed(self, record: CallRecord, exc: TelephonyError) -> None:
        reason = f"Twilio refused the call: {exc}"
        metrics.DIAL_ERRORS.labels(f"twilio_{exc.code or exc.status}").inc()
        log.error("dial.failed", code=exc.code, error=str(exc))
        await self.bus.publish(
            calls_subject("failed"),
            CallFailed(
                call_id=record.call_id,
                problems=record.problems,
                contact=record.contact_ref(),
                code=exc.code,
                reason=reason,
                at=_now(),
            ),
            msg_id=f"failed.{record.call_id}",
        )
        await self._give_up(record, reason)
