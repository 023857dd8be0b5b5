"""Twilio's webhooks: keypresses (Gather action), status callbacks, answering-machine results.

Every request must carry a valid ``X-Twilio-Signature`` computed over ``PUBLIC_BASE_URL`` plus
the path and query Twilio called, with all form parameters (blank ones too). Anything else gets
403 and does nothing. A verified callback is stored on the bus before we answer it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from yobidashi_common.bus import Bus, BusUnavailable, KvStore
from yobidashi_common.events import CALL_STATUSES, CallStatusChanged, KeyAction, KeyPressed
from yobidashi_common.subjects import calls_subject, keys_subject
from yobidashi_common.telemetry import bind_trace, get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import Incident, IncidentStatus
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import CallRecord
from yobidashi_dialer.voice import PHRASES, Phrases, Voices, after_key, call_twiml, menu_twiml

log = get_logger(__name__)

XML = "application/xml"
MAX_CALLBACK_BYTES = 64 * 1024
Form = ImmutableMultiDict[str, str]


def _when(form: Mapping[str, str]) -> datetime:
    try:
        return parsedate_to_datetime(form["Timestamp"])
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


class Callbacks:
    def __init__(
        self,
        settings: DialerSettings,
        bus: Bus,
        calls: KvStore[CallRecord],
        engine: Engine,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.calls = calls
        self.engine = engine
        self.primary = settings.twilio_account_name
        # One validator per telephony account: a callback is checked against the token of the
        # account its URL names (``acct``; none: the primary), never against any token that
        # happens to fit.
        self.validators = {
            name: RequestValidator(token)
            for name, token in (
                tokens or {self.primary: settings.twilio_auth_token.get_secret_value()}
            ).items()
        }
        self.voices = Voices(settings.twilio_voice_ja, settings.twilio_voice_en)
        self.keys = {
            settings.key_acknowledge: KeyAction.ACKNOWLEDGE,
            settings.key_pass: KeyAction.PASS,
            settings.key_repeat: KeyAction.REPEAT,
            settings.key_close: KeyAction.CLOSE,
            settings.key_comment: KeyAction.COMMENT,
        }
        self.keys.pop("", None)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/twilio/voice", include_in_schema=False)
        router.add_api_route("/status", self.status, methods=["POST"])
        router.add_api_route("/amd", self.amd, methods=["POST"])
        router.add_api_route("/gather", self.gather, methods=["POST"])
        return router

    # -- verification ---------------------------------------------------------------------------

    async def _verified(self, request: Request, kind: str) -> Form:
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            self._reject("missing_signature", kind)
        body = await request.body()
        if len(body) > MAX_CALLBACK_BYTES:
            self._reject("too_large", kind)
        # Blank values are part of the signature (e.g. CalledCity=), so they must be kept.
        form: Form = ImmutableMultiDict(
            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        )
        # Twilio signed the URL it called: our public URL, not what a proxy hands us.
        url = self.settings.public_base_url + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        algorithm = get_signature_algorithm(
            request.headers.get("x-twilio-webhooks-signature-settings")
        )
        validator = self.validators.get(request.query_params.get("acct") or self.primary)
        if validator is None:
            self._reject("unknown_account", kind)
        assert validator is not None
        if not validator.validate(url, form, signature, algorithm=algorithm):
            self._reject("bad_signature", kind)
        metrics.CALLBACKS.labels(kind).inc()
        return form

    def _reject(self, reason: str, kind: str) -> None:
        metrics.CALLBACKS_REJECTED.labels(reason).inc()
        log.warning("callback.rejected", reason=reason, kind=kind)
        raise HTTPException(status_code=403, detail="invalid Twilio signature")

    async def _record(self, request: Request, form: Form) -> CallRecord | None:
        call_id = request.query_params.get("call", "")
        found = await self.calls.get(call_id) if call_id else None
        sid = str(form.get("CallSid", ""))
        bind_trace(None, call_id=call_id, call_sid=sid)
        if found is None or (found[0].call_sid and found[0].call_sid != sid):
            metrics.CALLBACKS_REJECTED.labels("unknown_call").inc()
            log.warning("callback.unknown_call")
            return None
        signed_by = request.query_params.get("acct") or self.primary
        if found[0].accounts and signed_by not in found[0].accounts:
            # Validly signed, but by an account that was never asked to place this call.
            self._reject("wrong_account", "callback")
        return found[0]

    # -- status and answering machine -----------------------------------------------------------

    async def status(self, request: Request) -> Response:
        form = await self._verified(request, "status")
        record = await self._record(request, form)
        status = str(form.get("CallStatus", ""))
        if record is None or status not in CALL_STATUSES:
            return Response(status_code=204)
        sequence = _int(str(form.get("SequenceNumber", "")))
        event = CallStatusChanged(
            call_id=record.call_id,
            call_sid=str(form["CallSid"]),
            problems=record.problems,
            contact=record.contact_ref(),
            status=status,  # checked against CALL_STATUSES above
            answered_by=str(form.get("AnsweredBy") or "") or None,
            sequence=sequence,
            duration_seconds=_int(str(form.get("CallDuration", ""))),
            sip_response_code=_int(str(form.get("SipResponseCode", ""))),
            at=_when({k: str(v) for k, v in form.items()}),
        )
        msg_id = f"status.{event.call_sid}.{status}.{sequence}"
        return await self._store(calls_subject(f"status.{status}"), event, msg_id)

    async def amd(self, request: Request) -> Response:
        form = await self._verified(request, "amd")
        record = await self._record(request, form)
        answered_by = str(form.get("AnsweredBy", ""))
        if record is None or not answered_by:
            return Response(status_code=204)
        event = CallStatusChanged(
            call_id=record.call_id,
            call_sid=str(form["CallSid"]),
            problems=record.problems,
            contact=record.contact_ref(),
            status="in-progress",
            answered_by=answered_by,
            at=datetime.now(UTC),
        )
        return await self._store(
            calls_subject("status.in-progress"), event, f"amd.{event.call_sid}"
        )

    async def _store(self, subject: str, event: CallStatusChanged, msg_id: str) -> Response:
        try:
            await self.bus.publish(subject, event, msg_id=msg_id)
        except BusUnavailable:
            # Twilio does not retry status callbacks; the dialer's watchdog asks Twilio later.
            log.warning("callback.not_stored", status=event.status)
            return Response(status_code=503)
        log.info("call.status", status=event.status, answered_by=event.answered_by)
        return Response(status_code=204)

    # -- keypresses -----------------------------------------------------------------------------

    async def gather(self, request: Request) -> Response:
        form = await self._verified(request, "gather")
        record = await self._record(request, form)
        if record is None:
            phrases = PHRASES[self.settings.dial_default_language]
            return self._twiml(
                after_key(phrases.goodbye_no_input, phrases=phrases, voices=self.voices)
            )
        phrases = PHRASES[record.language]
        digits = str(form.get("Digits", ""))
        round_ = _int(request.query_params.get("round")) or 1
        if not digits:
            if round_ > self.settings.dial_menu_repeats:
                return self._twiml(
                    after_key(phrases.goodbye_no_input, phrases=phrases, voices=self.voices)
                )
            return self._menu(record, phrases, round_ + 1)
        action = self.keys.get(digits[0], KeyAction.INVALID)
        if action in (KeyAction.ACKNOWLEDGE, KeyAction.CLOSE):
            done = await self._already_done(record, phrases)
            if done is not None:
                return self._twiml(done)
        pressed = KeyPressed(
            id=f"{record.call_id}.r{round_}.{digits}",
            call_id=record.call_id,
            call_sid=str(form.get("CallSid", "")),
            problems=record.problems,
            contact=record.contact_ref(),
            digit=digits[0],
            action=action,
            at=datetime.now(UTC),
        )
        try:
            await self.bus.publish(keys_subject(action.value), pressed, msg_id=f"key.{pressed.id}")
        except BusUnavailable:
            # Nothing is taken unless it is stored: ask them to press again.
            return self._menu(record, phrases, round_, prefix=phrases.not_taken)
        log.info("call.key", digit=pressed.digit, action=action.value)
        match action:
            case KeyAction.ACKNOWLEDGE | KeyAction.CLOSE | KeyAction.COMMENT:
                text = (
                    phrases.bundle_acknowledged(len(record.problems))
                    if len(record.problems) > 1
                    else phrases.acknowledged
                )
                return self._twiml(after_key(text, phrases=phrases, voices=self.voices))
            case KeyAction.PASS:
                return self._twiml(after_key(phrases.passed, phrases=phrases, voices=self.voices))
            case KeyAction.REPEAT:
                return self._twiml(
                    call_twiml(
                        [s.announcement() for s in record.spoken],
                        phrases=phrases,
                        voices=self.voices,
                        gather_url=self._gather_url(record, round_),
                        gather_timeout=self.settings.dial_gather_timeout,
                        now=datetime.now(UTC),
                        keys=self.settings.keys(),
                        newest_first=record.callback,
                    )
                )
            case _:
                return self._menu(record, phrases, round_, prefix=phrases.invalid)

    async def _already_done(self, record: CallRecord, phrases: Phrases) -> str | None:
        """'Already acknowledged by NAME' when every problem on this call is taken care of."""
        incidents: list[Incident] = []
        for target in record.targets:
            incident = await self.engine.load(target.problem_key)
            # Exhausted still takes acks (Incident.takes_acks): it has not recovered.
            if incident is None or incident.takes_acks:
                return None
            incidents.append(incident)
        acked = next((i for i in incidents if i.status is IncidentStatus.ACKNOWLEDGED), None)
        bundle = len(record.problems) > 1
        # By who they are: two people can share a name or a masked number.
        if acked is not None and acked.acked_by_id != record.contact.id:
            text = phrases.already_acknowledged(acked.acked_by, bundle=bundle)
            return after_key(text, phrases=phrases, voices=self.voices)
        if acked is None:
            text = phrases.already_resolved(bundle=bundle)
            return after_key(text, phrases=phrases, voices=self.voices)
        # Acknowledged by this very person: their keypress is stored already (that is how it
        # got acknowledged). A repeat of it (a replay, Twilio retrying the request after our
        # de-duplication window) hears the same answer and stores nothing more.
        text = (
            phrases.bundle_acknowledged(len(record.problems))
            if len(record.problems) > 1
            else phrases.acknowledged
        )
        return after_key(text, phrases=phrases, voices=self.voices)

    def _gather_url(self, record: CallRecord, round_: int) -> str:
        account = record.account
        acct = f"&acct={account}" if account and account != self.primary else ""
        return (
            f"{self.settings.public_base_url}/twilio/voice/gather"
            f"?call={record.call_id}&round={round_}{acct}"
        )

    def _menu(
        self, record: CallRecord, phrases: Phrases, round_: int, prefix: str | None = None
    ) -> Response:
        return self._twiml(
            menu_twiml(
                phrases=phrases,
                voices=self.voices,
                gather_url=self._gather_url(record, round_),
                gather_timeout=self.settings.dial_gather_timeout,
                bundle=len(record.problems) > 1,
                keys=self.settings.keys(),
                prefix=prefix,
            )
        )

    @staticmethod
    def _twiml(xml: str) -> Response:
        return Response(content=xml, media_type=XML)
