"""Carries out the engine's commands: dial requests, timers, ending calls, voicemail."""

from __future__ import annotations

from datetime import UTC, datetime

from yobidashi_common.bus import Bus, RetryLater
from yobidashi_common.events import CALL_STATUSES, CallStatusChanged, EscalationExhausted
from yobidashi_common.subjects import calls_subject, escalations_subject
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer.core.model import (
    CheckCall,
    Command,
    EndCall,
    Incident,
    LeaveVoicemail,
    PlaceCall,
    ReportExhausted,
    StartTimer,
)
from yobidashi_dialer.failover import RoutedTelephony
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import (
    DIALS_SUBJECT,
    TIMERS_SUBJECT,
    CallTarget,
    DialRequest,
    TimerDue,
)
from yobidashi_dialer.telephony import Telephony, TelephonyError
from yobidashi_dialer.voice import PHRASES, Announcement, Voices, voicemail_twiml

log = get_logger(__name__)

NEVER_STARTED = frozenset({"queued", "initiated"})


class Runner:
    def __init__(
        self,
        settings: DialerSettings,
        bus: Bus,
        telephony: Telephony,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.telephony = telephony
        self.voices = Voices(settings.twilio_voice_ja, settings.twilio_voice_en)

    async def run(self, incident: Incident, command: Command) -> None:
        try:
            await self._run(incident, command)
        except TelephonyError as exc:
            if exc.retryable:
                raise RetryLater(f"Twilio: {exc}", delay=2.0) from exc
            # e.g. ending a call Twilio no longer knows: nothing left to do, and nothing to retry
            log.warning("command.failed", command=command.kind, error=str(exc))

    async def _run(self, incident: Incident, command: Command) -> None:
        match command:
            case PlaceCall():
                request = DialRequest(
                    call_id=command.call_id,
                    targets=[
                        CallTarget(
                            problem_key=incident.key,
                            page_id=command.page_id,
                            attempt=command.attempt,
                        )
                    ],
                    contact=command.contact,
                    requested_at=command.requested_at,
                    bundle=command.bundle,
                    bundle_window=command.bundle_window,
                    redial=command.redial,
                )
                await self.bus.publish(DIALS_SUBJECT, request, msg_id=f"dial.{command.call_id}")
            case StartTimer():
                timer = TimerDue(
                    problem_key=incident.key,
                    due_at=command.due_at,
                    **command.timer_fields(),
                )
                await self.bus.publish(TIMERS_SUBJECT, timer, msg_id=f"timer.{command.token}")
            case EndCall():
                await self.telephony.end_call(command.call_sid)
                log.info("call.ended", call_sid=command.call_sid)
            case LeaveVoicemail():
                announcement = Announcement(
                    incident.severity, incident.host, incident.title, incident.started_at
                )
                twiml = voicemail_twiml(
                    announcement, phrases=PHRASES[command.language], voices=self.voices
                )
                await self.telephony.play(command.call_sid, twiml)
            case ReportExhausted():
                await self.bus.publish(
                    escalations_subject("exhausted"),
                    EscalationExhausted(
                        problem=incident.problem,
                        route=command.route,
                        policy=command.policy,
                        rounds=command.rounds,
                        at=datetime.now(UTC),
                    ),
                    msg_id=f"exhausted.{incident.key}",
                )
                log.error("escalation.exhausted", route=command.route, policy=command.policy)
            case CheckCall():
                page = incident.page(command.page_id)
                if page is None or page.call_id is None:
                    return
                if isinstance(self.telephony, RoutedTelephony):
                    info, account = await self.telephony.fetch_call_on(command.call_sid)
                    if command.reason == "watchdog" and info.status in NEVER_STARTED:
                        # Accepted, yet at the watchdog's time no status callback came and it
                        # has not even rung: evidence that the account is not calling.
                        await account.breaker.failure("silent", f"call still {info.status}")
                else:
                    info = await self.telephony.fetch_call(command.call_sid)
                if info.status not in CALL_STATUSES:
                    log.warning("call.check_unknown_status", status=info.status)
                    return
                # As if the lost status callback had come: through the bus, so that the same
                # consumer also frees the call's budget and bundle. (Applying it here, inside
                # this flush, would flush this very command again, and again.)
                await self.bus.publish(
                    calls_subject(f"status.{info.status}"),
                    CallStatusChanged(
                        call_id=page.call_id,
                        call_sid=command.call_sid,
                        problems=[incident.problem],
                        contact=page.contact.ref(),
                        status=info.status,  # checked just above
                        answered_by=info.answered_by,
                        at=datetime.now(UTC),
                    ),
                    msg_id=f"check.{command.call_sid}.{info.status}",
                )
