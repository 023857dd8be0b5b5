"""Calling back to acknowledge: a call *into* our Twilio number hears the caller's open problems.

Twilio posts an incoming call to ``/twilio/voice/incoming`` (the number's Voice URL), signed
like every other callback. If ``DIAL_CALLBACK`` is ``on`` (or ``pin`` and the caller keys the
PIN from the on-call config), and the caller's number is one we paged within
``DIAL_CALLBACK_WINDOW``, the call reads that person's open problems, newest first (bundled
when there are several), with the usual menu. Every other caller hears one neutral sentence
and the call ends: no problem, no name.

The caller is known by the full number Twilio gives us (``From``), made into a `ContactId` the
way a page makes one, never by a masked form. Caller ID can be forged, which is why this is off
by default and why ``pin`` exists.

The call becomes an ordinary `CallRecord` (``cb-<CallSid>``), so its keypresses take the same
path as an outgoing call's: the Gather callback, the keys stream, the engine and the acker.
Which problems a person was paged for is kept per person in ``yobidashi_paged``, written before
each call is placed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from twilio.twiml.voice_response import VoiceResponse

from yobidashi_common.bus import Bus, KvStore, kv_key
from yobidashi_common.events import ProblemRef
from yobidashi_common.identity import ContactId
from yobidashi_common.phone import E164, InvalidPhoneNumber, normalize
from yobidashi_common.subjects import BucketSpec
from yobidashi_common.telemetry import bind_trace, get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.callbacks import Callbacks
from yobidashi_dialer.core.decide import Rules
from yobidashi_dialer.core.model import Contact, Incident
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import CallRecord, CallTarget, Spoken
from yobidashi_dialer.voice import PHRASES, after_key, call_twiml
from yobidashi_dialer.voice.callback_phrases import CALLBACK_PHRASES

log = get_logger(__name__)

PAGED = BucketSpec(
    "yobidashi_paged", "Per person: the problems we paged them for (for call-backs).", ttl=86400
)
CALLBACK_PAGE = "callback"
MAX_REMEMBERED = 50
MAX_WRONG_PINS = 5  # within DIAL_CALLBACK_WINDOW; then even the right PIN is refused


class Paged(BaseModel):
    model_config = ConfigDict(extra="ignore")

    problem_key: str
    problem: ProblemRef
    at: AwareDatetime


class PagedProblems(BaseModel):
    """What one person was paged for lately, and how to speak to them."""

    model_config = ConfigDict(extra="ignore")

    contact: Contact
    entries: list[Paged] = Field(default_factory=list)
    wrong_pins: list[AwareDatetime] = Field(default_factory=list)


def locked(state: PagedProblems, now: datetime, window: timedelta) -> bool:
    """Too many wrong PINs lately: a 4-digit PIN must not be guessable one call at a time."""
    return sum(1 for at in state.wrong_pins if now - at <= window) >= MAX_WRONG_PINS


def remembered(
    state: PagedProblems | None, record: CallRecord, now: datetime, keep: timedelta
) -> PagedProblems:
    """``state`` with the problems of ``record`` added (pure: runs again on a CAS conflict)."""
    entries = {e.problem_key: e for e in (state.entries if state else []) if now - e.at <= keep}
    for target, problem in zip(record.targets, record.problems, strict=False):
        entries[target.problem_key] = Paged(problem_key=target.problem_key, problem=problem, at=now)
    newest = sorted(entries.values(), key=lambda e: e.at, reverse=True)[:MAX_REMEMBERED]
    wrong = [at for at in (state.wrong_pins if state else []) if now - at <= keep]
    return PagedProblems(contact=record.contact, entries=newest, wrong_pins=wrong)


def caller_identity(raw: str, rules: Rules) -> tuple[E164, ContactId] | None:
    """Who a caller is, by the full number Twilio gives us; None for a withheld or bad one."""
    try:
        number = normalize(raw, rules.default_region)
    except InvalidPhoneNumber:
        return None
    known = rules.known(number)
    return number, known.id if known is not None else ContactId.of_number(number)


def open_problems(
    paged: PagedProblems | None, incidents: Mapping[str, Incident | None], now: datetime,
    window: timedelta,
) -> list[Incident]:  # fmt: skip
    """The problems paged within ``window`` that still take an acknowledgement, newest first."""
    if paged is None:
        return []
    found = [
        incident
        for entry in paged.entries
        if now - entry.at <= window
        and (incident := incidents.get(entry.problem_key)) is not None
        and incident.takes_acks
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda i: i.started_at or epoch, reverse=True)


class CallBackLine:
    """The incoming-call routes, and the index of who was paged for what."""

    def __init__(
        self,
        settings: DialerSettings,
        bus: Bus,
        callbacks: Callbacks,
        rules: Callable[[], Rules],
    ) -> None:
        self.settings = settings
        self.callbacks = callbacks
        self.rules = rules
        self.paged = KvStore(bus, PAGED.name, PagedProblems)

    # -- the index, written by the dial worker before each call --------------------------------

    async def remember(self, record: CallRecord) -> None:
        # Longer than the window, so that changing DIAL_CALLBACK_WINDOW upwards takes effect.
        keep = timedelta(seconds=max(self.settings.dial_callback_window, 3600.0))
        now = datetime.now(UTC)
        await self.paged.mutate(
            kv_key("contact", str(record.contact.id)),
            lambda state: remembered(state, record, now, keep),
        )

    # -- incoming calls -------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/twilio/voice", include_in_schema=False)
        router.add_api_route("/incoming", self.incoming, methods=["POST"])
        router.add_api_route("/incoming/pin", self.pin, methods=["POST"])
        return router

    def _neutral(self, reason: str) -> Response:
        metrics.CALLBACK_CALLS.labels(reason).inc()
        log.info("callback.refused", reason=reason)
        language = self.settings.dial_default_language
        text = CALLBACK_PHRASES[language].neutral
        return self.callbacks._twiml(
            after_key(text, phrases=PHRASES[language], voices=self.callbacks.voices)
        )

    async def _who(self, raw: str) -> tuple[ContactId, PagedProblems] | None:
        """The caller and what we paged them for; None for anyone we did not page."""
        caller = caller_identity(raw, self.rules())
        if caller is None:
            return None
        _, identity = caller
        found = await self.paged.get(kv_key("contact", str(identity)))
        return (identity, found[0]) if found else None

    async def incoming(self, request: Request) -> Response:
        form = await self.callbacks._verified(request, "incoming")
        sid = str(form.get("CallSid", ""))
        bind_trace(None, call_sid=sid)
        if self.settings.dial_callback == "off" or not sid:
            return self._neutral("off")
        who = await self._who(str(form.get("From", "")))
        if who is None:
            return self._neutral("unknown_caller")
        identity, paged = who
        if self.settings.dial_callback == "pin":
            if self._pin_of(identity) is None:
                return self._neutral("no_pin")
            return self._ask_pin(paged.contact)
        return await self._read_out(sid, paged, to=str(form.get("To", "")))

    def _pin_of(self, identity: ContactId) -> str | None:
        config_id = identity.config_id
        contact = self.rules().oncall.contact(config_id) if config_id else None
        return contact.pin if contact is not None else None

    def _ask_pin(self, contact: Contact) -> Response:
        phrases = PHRASES[contact.language]
        response = VoiceResponse()
        gather = response.gather(
            action=f"{self.settings.public_base_url}/twilio/voice/incoming/pin",
            method="POST",
            timeout=self.settings.dial_gather_timeout,
            finish_on_key="#",
            action_on_empty_result=True,
        )
        gather.say(
            CALLBACK_PHRASES[contact.language].pin_prompt,
            language=phrases.code,
            voice=self.callbacks.voices.for_code(phrases.code),
        )
        return self.callbacks._twiml(str(response))

    async def pin(self, request: Request) -> Response:
        form = await self.callbacks._verified(request, "incoming_pin")
        sid = str(form.get("CallSid", ""))
        bind_trace(None, call_sid=sid)
        if self.settings.dial_callback != "pin" or not sid:
            return self._neutral("off")
        who = await self._who(str(form.get("From", "")))
        if who is None:
            return self._neutral("unknown_caller")
        identity, paged = who
        now = datetime.now(UTC)
        window = timedelta(seconds=self.settings.dial_callback_window)
        if locked(paged, now, window):
            return self._neutral("locked")
        expected = self._pin_of(identity)
        keyed = str(form.get("Digits", ""))
        if expected is None or not hmac.compare_digest(keyed.encode(), expected.encode()):
            await self.paged.mutate(
                kv_key("contact", str(identity)),
                lambda s: s.model_copy(update={"wrong_pins": [*s.wrong_pins, now]}) if s else None,
            )
            return self._neutral("wrong_pin")
        return await self._read_out(sid, paged, to=str(form.get("To", "")))

    async def _read_out(self, sid: str, paged: PagedProblems, to: str) -> Response:
        now = datetime.now(UTC)
        window = timedelta(seconds=self.settings.dial_callback_window)
        incidents = {
            e.problem_key: await self.callbacks.engine.load(e.problem_key) for e in paged.entries
        }
        problems = open_problems(paged, incidents, now, window)
        contact = paged.contact
        phrases = PHRASES[contact.language]
        if not problems:
            metrics.CALLBACK_CALLS.labels("nothing_open").inc()
            text = CALLBACK_PHRASES[contact.language].nothing_open
            return self.callbacks._twiml(
                after_key(text, phrases=phrases, voices=self.callbacks.voices)
            )
        call_id = f"cb-{sid}"
        record = CallRecord(
            call_id=call_id,
            targets=[
                CallTarget(problem_key=i.problem.problem_key, page_id=CALLBACK_PAGE, attempt=0)
                for i in problems
            ],
            problems=[i.problem for i in problems],
            contact=contact,
            from_number=to,
            spoken=[
                Spoken(severity=i.severity, host=i.host, title=i.title, started_at=i.started_at)
                for i in problems
            ],
            state="placed",
            placing_since=now,
            call_sid=sid,
            callback=True,
        )
        if await self.callbacks.calls.create(call_id, record) is None:
            # Twilio asked again for the same call: read what the first answer read.
            existing = await self.callbacks.calls.get(call_id)
            if existing is not None:
                record = existing[0]
        metrics.CALLBACK_CALLS.labels("read_out").inc()
        log.info("callback.read_out", problems=len(record.problems), to=contact.masked_number)
        return self.callbacks._twiml(
            call_twiml(
                [s.announcement() for s in record.spoken],
                phrases=phrases,
                voices=self.callbacks.voices,
                gather_url=(
                    f"{self.settings.public_base_url}/twilio/voice/gather?call={call_id}&round=1"
                ),
                gather_timeout=self.settings.dial_gather_timeout,
                now=now,
                keys=self.settings.keys(),
                newest_first=True,
            )
        )
