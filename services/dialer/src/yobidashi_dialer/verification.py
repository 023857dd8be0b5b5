"""Contact verification: a call that reads a one-time code, which the person keys in.

``POST /v1/contacts/verify`` (admin token) rings the contact's first number, or any number (a
number only Zabbix knows is verified by its number). The call reads a six-digit code twice in
the contact's language; keyed in, the contact is verified, with the time, in the KV bucket
``yobidashi_verifications``. A wrong code, no code or no answer leaves it unverified and says
which. ``GET /v1/contacts`` lists the on-call config's contacts with their state; two gauges
count the unverified ones, and the on-call people among them.

Everything about an attempt is in KV (``attempt.<id>``, the code only as a hash), and its
callbacks are signed like every other, so any replica takes them: a replica killed after
placing the call does not stop the verification. One killed between storing the attempt and
placing the call leaves an attempt that never rings; it reads as ``no_answer`` once
``TWILIO_RING_TIMEOUT`` + ``TWILIO_TIME_LIMIT`` have passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from twilio.twiml.voice_response import VoiceResponse

from yobidashi_common.bus import Bus, BusUnavailable, KvStore, kv_key
from yobidashi_common.events import FINAL_CALL_STATUSES
from yobidashi_common.identity import ContactId
from yobidashi_common.phone import InvalidPhoneNumber, mask, normalize
from yobidashi_common.service import bearer_json_body
from yobidashi_common.subjects import BucketSpec
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.background import BackgroundTask
from yobidashi_dialer.callbacks import Callbacks
from yobidashi_dialer.core.decide import Rules
from yobidashi_dialer.limits import Budget
from yobidashi_dialer.oncall.schedule import on_call
from yobidashi_dialer.overrides_api import ErrorBody, admin_refusal, error_response
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.telephony import CallRequest, Telephony, TelephonyError
from yobidashi_dialer.voice import PHRASES, Language, after_key

log = get_logger(__name__)

VERIFICATIONS = BucketSpec(
    "yobidashi_verifications", "Contact verification: attempts, and who is verified."
)
CODE_DIGITS = 6
Outcome = Literal["calling", "verified", "wrong_code", "no_code", "no_answer", "failed"]

SAY: dict[Language, dict[str, str]] = {
    "ja": {
        "code": "こちらはヨビダシです。電話番号の確認です。確認コードは、{code}です。"
        "繰り返します。{code}です。このコードを押してください。",
        "verified": "確認できました。この番号に呼び出しが届きます。ありがとうございました。",
        "wrong_code": "コードが違います。確認できませんでした。",
        "no_code": "入力がなかったため、電話を切ります。",
    },
    "en": {
        "code": "This is Yobidashi, checking this phone number. Your code is {code}. "
        "Again, {code}. Please key in the code now.",
        "verified": "Thank you. This number is verified and will receive pages.",
        "wrong_code": "That code is not right. The number is not verified.",
        "no_code": "No input received. Goodbye.",
    },
}


class Attempt(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    identity: str
    number: str
    language: Language
    code_hash: str
    outcome: Outcome = "calling"
    started_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    call_sid: str | None = None
    detail: str = ""


class ContactState(BaseModel):
    """Whether a person's number is verified: the number and when, or the last failure."""

    model_config = ConfigDict(extra="ignore")

    identity: str
    number: str
    verified_at: AwareDatetime | None = None
    last_outcome: Outcome
    last_at: AwareDatetime


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str = Field(
        min_length=1,
        max_length=64,
        description="A contact id from the on-call config, or a number.",
    )


def code_hash(attempt_id: str, code: str) -> str:
    return hashlib.sha256(f"{attempt_id}:{code}".encode()).hexdigest()


def spoken_code(code: str, language: Language) -> str:
    """Digit by digit, with pauses, so text-to-speech does not read "123456" as a number."""
    return ("、" if language == "ja" else ", ").join(code)


def is_verified(state: ContactState | None, number: str) -> bool:
    return state is not None and state.verified_at is not None and state.number == number


def outcome_of(attempt: Attempt, now: datetime, stale_after: timedelta) -> Outcome:
    """What an attempt came to; one left calling far too long never rang (its replica died)."""
    if attempt.outcome == "calling" and now - attempt.started_at > stale_after:
        return "no_answer"
    return attempt.outcome


def unverified_counts(
    rules: Rules, states: dict[str, ContactState], now: datetime
) -> tuple[list[str], int]:
    """The config contacts not verified (ids), and how many schedules have one on call now."""
    contacts = rules.oncall.contacts
    unverified = [c.id for c in contacts if not is_verified(states.get(c.id), str(c.phones[0]))]
    on_call_now = [on_call(s, now) for s in rules.oncall.schedules]
    return unverified, sum(1 for who in on_call_now if who is not None and who in unverified)


@dataclass(eq=False)
class Verifier:
    settings: DialerSettings
    bus: Bus
    telephony: Telephony
    budget: Budget
    callbacks: Callbacks
    rules: Callable[[], Rules]
    attempts: KvStore[Attempt] = field(init=False)
    contacts: KvStore[ContactState] = field(init=False)
    stale_after: timedelta = field(init=False)
    _states: dict[str, ContactState] = field(init=False, default_factory=dict)
    _refreshing: BackgroundTask = field(init=False)

    def __post_init__(self) -> None:
        self.attempts = KvStore(self.bus, VERIFICATIONS.name, Attempt)
        self.contacts = KvStore(self.bus, VERIFICATIONS.name, ContactState)
        self.stale_after = timedelta(
            seconds=self.settings.twilio_ring_timeout + self.settings.twilio_time_limit
        )
        self._refreshing = BackgroundTask(self._refresh, "verification-gauges")

    # -- who is verified ------------------------------------------------------------------------

    async def states(self) -> dict[str, ContactState]:
        found: dict[str, ContactState] = {}
        for key in await self.contacts.keys("contact."):
            got = await self.contacts.get(key)
            if got is not None:
                found[got[0].identity] = got[0]
        self._states = found
        self._gauges()
        return found

    def _gauges(self) -> None:
        unverified, on_call_count = unverified_counts(self.rules(), self._states, datetime.now(UTC))
        metrics.CONTACTS_UNVERIFIED.set(len(unverified))
        metrics.ONCALL_UNVERIFIED.set(on_call_count)

    def start(self) -> None:
        self._refreshing.start()

    async def stop(self) -> None:
        await self._refreshing.stop()

    async def _refresh(self) -> None:
        # Who is on call changes with the clock, and another replica may have verified someone.
        while True:
            try:
                await self.bus.wait_ready()
                await self.states()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the gauges must keep coming, whatever went wrong once
                log.warning("verification.refresh_failed", error=str(exc))
            await asyncio.sleep(30)

    # -- placing the call -----------------------------------------------------------------------

    def resolve(self, wanted: str) -> tuple[ContactId, str, Language] | None:
        """(identity, number to ring, language) for a contact id or a number."""
        rules = self.rules()
        contact = rules.oncall.contact(wanted)
        if contact is None:
            try:
                number = normalize(wanted, rules.default_region)
            except InvalidPhoneNumber:
                return None
            contact = rules.oncall.contact_by_number(number)
            if contact is None:
                return ContactId.of_number(number), number, rules.default_language
        return ContactId(contact.id), str(contact.phones[0]), contact.language

    async def start_attempt(self, wanted: str) -> Attempt | None:
        resolved = self.resolve(wanted)
        if resolved is None:
            return None
        identity, number, language = resolved
        attempt_id = f"v-{secrets.token_hex(6)}"
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        attempt = Attempt(
            id=attempt_id,
            identity=str(identity),
            number=number,
            language=language,
            code_hash=code_hash(attempt_id, code),
            started_at=datetime.now(UTC),
        )
        await self.attempts.create(kv_key("attempt", attempt_id), attempt)
        base = f"{self.settings.public_base_url}/twilio/voice/verify"
        phrases = PHRASES[language]
        response = VoiceResponse()
        gather = response.gather(
            num_digits=CODE_DIGITS,
            action=f"{base}?v={attempt_id}",
            method="POST",
            timeout=self.settings.dial_gather_timeout * 2,
            action_on_empty_result=True,
        )
        gather.say(
            SAY[language]["code"].format(code=spoken_code(code, language)),
            language=phrases.code,
            voice=self.callbacks.voices.for_code(phrases.code),
        )
        request = CallRequest(
            to=number,
            from_=self.settings.caller_id_for(number),
            twiml=str(response),
            status_callback=f"{base}/status?v={attempt_id}",
            amd_callback=f"{base}/amd?v={attempt_id}",
            ring_timeout=self.settings.twilio_ring_timeout,
            time_limit=self.settings.twilio_time_limit,
        )
        granted = await self.budget.wait_cps()  # the account's calls per second hold here too
        try:
            info = await self.telephony.place_call(request)
        except TelephonyError as exc:
            await self.budget.sent(granted, time.time())
            return await self._finish(attempt_id, "failed", f"Twilio refused the call: {exc}")
        await self.budget.sent(granted, time.time())
        placed = await self.attempts.mutate(
            kv_key("attempt", attempt_id),
            lambda a: a.model_copy(update={"call_sid": info.sid}) if a else None,
        )
        log.info("verification.calling", attempt=attempt_id, to=mask(number))
        return placed or attempt

    async def _finish(self, attempt_id: str, outcome: Outcome, detail: str = "") -> Attempt | None:
        """Record the outcome once (the first one wins), and the person's state with it."""
        now = datetime.now(UTC)

        changed = False

        def change(current: Attempt | None) -> Attempt | None:
            nonlocal changed
            changed = False
            if current is None or current.outcome != "calling":
                return None
            changed = True
            return current.model_copy(
                update={"outcome": outcome, "finished_at": now, "detail": detail}
            )

        done = await self.attempts.mutate(kv_key("attempt", attempt_id), change)
        if done is None or not changed:
            return done
        state = ContactState(
            identity=done.identity,
            number=done.number,
            verified_at=now if outcome == "verified" else None,
            last_outcome=outcome,
            last_at=now,
        )
        await self.contacts.put(kv_key("contact", done.identity), state)
        self._states[done.identity] = state
        self._gauges()
        metrics.VERIFICATIONS.labels(outcome).inc()
        log.info("verification.done", attempt=attempt_id, outcome=outcome, to=mask(done.number))
        return done

    # -- the routes -----------------------------------------------------------------------------

    def router(self, admin_token: SecretStr | None) -> APIRouter:
        routes = APIRouter(prefix="/v1", tags=["contacts"])

        def refused(request: Request) -> JSONResponse | None:
            return admin_refusal(request, admin_token)

        def view(attempt: Attempt) -> dict[str, Any]:
            return {
                "id": attempt.id,
                "contact": attempt.identity,
                "phone": mask(attempt.number),
                "outcome": outcome_of(attempt, datetime.now(UTC), self.stale_after),
                "started_at": attempt.started_at.isoformat(),
                "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
                "detail": attempt.detail,
            }

        @routes.get("/contacts", summary="The on-call config's contacts and whether verified")
        async def list_contacts() -> dict[str, Any]:
            states = await self.states()
            out = []
            for contact in self.rules().oncall.contacts:
                state = states.get(contact.id)
                verified = is_verified(state, str(contact.phones[0]))
                out.append(
                    {
                        "id": contact.id,
                        "name": contact.name,
                        "phone": mask(contact.phones[0]),
                        "verified": verified,
                        "verified_at": state.verified_at.isoformat()
                        if verified and state and state.verified_at
                        else None,
                        "last_outcome": state.last_outcome if state else None,
                    }
                )
            return {"contacts": out}

        @routes.post(
            "/contacts/verify",
            status_code=202,
            summary="Ring a contact (id or number) with a one-time code to key in",
            responses={
                401: {"model": ErrorBody},
                422: {"model": ErrorBody},
                503: {"model": ErrorBody},
            },
            openapi_extra=bearer_json_body(VerifyRequest.model_json_schema()),
        )
        async def verify(request: Request) -> Any:
            if (refusal := refused(request)) is not None:
                return refusal
            try:
                wanted = VerifyRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                field = ".".join(str(p) for p in first["loc"]) or "(body)"
                return error_response(422, "invalid_field", first["msg"], field)
            try:
                attempt = await self.start_attempt(wanted.contact)
            except BusUnavailable as exc:
                return error_response(503, "unavailable", f"cannot start it now, retry: {exc}")
            if attempt is None:
                return error_response(
                    422,
                    "invalid_field",
                    f"{wanted.contact!r} is neither a contact in the on-call config nor a "
                    "phone number",
                    "contact",
                )
            return JSONResponse(view(attempt), status_code=202)

        @routes.get(
            "/contacts/verify/{attempt_id}",
            summary="How a verification went",
            responses={404: {"model": ErrorBody, "description": "No such verification."}},
        )
        async def get_attempt(attempt_id: str) -> Any:
            found = await self.attempts.get(kv_key("attempt", attempt_id))
            if found is None:
                return error_response(
                    404, "not_found", f"no verification {attempt_id!r}", "attempt_id"
                )
            return view(found[0])

        return routes

    def twilio_router(self) -> APIRouter:
        routes = APIRouter(prefix="/twilio/voice/verify", include_in_schema=False)
        routes.add_api_route("", self.on_digits, methods=["POST"])
        routes.add_api_route("/status", self.on_status, methods=["POST"])
        routes.add_api_route("/amd", self.on_amd, methods=["POST"])
        return routes

    async def _attempt(self, request: Request, sid: str) -> Attempt | None:
        found = await self.attempts.get(kv_key("attempt", request.query_params.get("v", "")))
        if found is None or (found[0].call_sid and found[0].call_sid != sid):
            return None
        return found[0]

    async def on_digits(self, request: Request) -> Response:
        form = await self.callbacks._verified(request, "verify")
        attempt = await self._attempt(request, str(form.get("CallSid", "")))
        language = attempt.language if attempt else self.settings.dial_default_language
        phrases = PHRASES[language]
        if attempt is None:
            text = SAY[language]["no_code"]
        else:
            keyed = str(form.get("Digits", ""))
            if not keyed:
                outcome: Outcome = "no_code"
            elif hmac.compare_digest(code_hash(attempt.id, keyed), attempt.code_hash):
                outcome = "verified"
            else:
                outcome = "wrong_code"
            await self._finish(attempt.id, outcome)
            text = SAY[language][outcome]
        return self.callbacks._twiml(after_key(text, phrases=phrases, voices=self.callbacks.voices))

    async def on_status(self, request: Request) -> Response:
        form = await self.callbacks._verified(request, "verify_status")
        attempt = await self._attempt(request, str(form.get("CallSid", "")))
        status = str(form.get("CallStatus", ""))
        if attempt is not None and status in FINAL_CALL_STATUSES:
            # Only if no code was keyed: the first outcome stays.
            await self._finish(attempt.id, "no_answer", f"call {status}")
        return Response(status_code=204)

    async def on_amd(self, request: Request) -> Response:
        await self.callbacks._verified(request, "verify_amd")
        return Response(status_code=204)
