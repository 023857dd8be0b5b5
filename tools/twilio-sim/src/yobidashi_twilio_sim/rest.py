"""The Twilio REST API surface: `/2010-04-01/Accounts/{AccountSid}/Calls[.../{Sid}].json`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import random
import time
from dataclasses import replace
from typing import Any, get_args
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from yobidashi_twilio_sim import errors
from yobidashi_twilio_sim.calls import (
    PROGRESS_EVENTS,
    Call,
    CallOptions,
    CallStatus,
    TwimlSource,
)
from yobidashi_twilio_sim.engine import CallEngine
from yobidashi_twilio_sim.errors import TwilioApiError
from yobidashi_twilio_sim.journal import ApiRequest, Journal
from yobidashi_twilio_sim.models import Faults
from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_twilio_sim.util import API_VERSION, is_endpoint, is_http_url, new_sid

MAX_TWIML_CHARS = 4000
MAX_TIMEOUT = 600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_STATUSES = frozenset(get_args(CallStatus))


class FaultInjector:
    """Decides, per request, whether to pretend Twilio is slow, overloaded or down."""

    def __init__(self) -> None:
        self.faults = Faults()
        self._rng = random.Random()  # noqa: S311 - test fault injection, not cryptography

    def configure(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311

    async def delay(self) -> None:
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)

    def unavailable(self) -> TwilioApiError | None:
        if self.faults.unavailable:
            return TwilioApiError(503, errors.SERVICE_UNAVAILABLE, "Service Unavailable")
        return None

    def create_fault(self) -> TwilioApiError | None:
        faults = self.faults
        if faults.refuse_creates is not None:
            refused, message = errors.ACCOUNT_REFUSALS[faults.refuse_creates]
            return TwilioApiError(refused, faults.refuse_creates, message)
        status: int | None = None
        if faults.next_create_statuses:
            status = faults.next_create_statuses.pop(0)
        elif faults.rate_429 or faults.rate_500:
            draw = self._rng.random()
            if draw < faults.rate_429:
                status = 429
            elif draw < faults.rate_429 + faults.rate_500:
                status = 500
        if status == 429:
            return TwilioApiError(429, errors.TOO_MANY_REQUESTS, "Too Many Requests")
        if status == 500:
            return TwilioApiError(500, errors.INTERNAL_ERROR, "Internal Server Error")
        if status == 503:
            return TwilioApiError(503, errors.SERVICE_UNAVAILABLE, "Service Unavailable")
        return None


def parse_form(body: bytes) -> dict[str, list[str]]:
    """Form params with repeated keys and blank values kept, in arrival order."""
    return parse_qs(body.decode("utf-8"), keep_blank_values=True)


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _method(form: dict[str, list[str]], name: str) -> str:
    value = (_first(form, name) or "POST").upper()
    if value not in ("GET", "POST"):
        raise TwilioApiError(400, errors.INVALID_PARAMETER, f"{name} must be GET or POST")
    return value


def _optional_url(form: dict[str, list[str]], name: str, code: int) -> str | None:
    value = _first(form, name)
    if not value:
        return None
    if not is_http_url(value):
        raise TwilioApiError(400, code, f"{name} is not a valid URL: {value}")
    return value


def _integer(form: dict[str, list[str]], name: str, default: int) -> int:
    value = _first(form, name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise TwilioApiError(400, errors.INVALID_PARAMETER, f"{name} must be an integer") from exc
    if number < 0:
        raise TwilioApiError(400, errors.INVALID_PARAMETER, f"{name} must not be negative")
    return number


def parse_create(form: dict[str, list[str]]) -> CallOptions:
    """Validate create params in Twilio's order and apply its defaults."""
    to = _first(form, "To")
    from_ = _first(form, "From")
    if not to:
        raise TwilioApiError(400, errors.TO_REQUIRED, "No 'To' number is specified")
    if not from_:
        raise TwilioApiError(400, errors.FROM_REQUIRED, "No 'From' number is specified")
    url = _first(form, "Url") or None
    twiml = _first(form, "Twiml") or None
    application_sid = _first(form, "ApplicationSid") or None
    if application_sid:
        raise TwilioApiError(
            400,
            errors.APPLICATION_SID_INVALID,
            "Invalid ApplicationSid: the simulator hosts no TwiML Applications; use Url or Twiml",
        )
    if url is None and twiml is None:
        raise TwilioApiError(
            400,
            errors.URL_INVALID,
            "Url parameter is required. For more information, see http://www.twilio.com/docs/api/twiml",
        )
    if url is not None and not is_http_url(url):
        raise TwilioApiError(400, errors.URL_INVALID, f"Url is not a valid URL: {url}")
    if url is None and twiml is not None and len(twiml) > MAX_TWIML_CHARS:
        raise TwilioApiError(
            400,
            errors.TWIML_TOO_LONG,
            "Twiml size exceeded maximum allowed value of 4000 characters",
        )
    if not is_endpoint(to):
        raise TwilioApiError(400, errors.TO_INVALID, f"Invalid 'To' Phone Number: {to}")
    if not is_endpoint(from_):
        raise TwilioApiError(
            400,
            errors.FROM_INVALID,
            f"The 'From' number {from_} is not a valid phone number, shortcode, "
            "or alphanumeric sender ID.",
        )
    if to == from_:
        raise TwilioApiError(
            400, errors.TO_INVALID, f"Invalid 'To' Phone Number: {to} (same as 'From')"
        )
    events = [e.strip().lower() for e in form.get("StatusCallbackEvent", []) if e.strip()]
    # Clients sometimes send one space-separated value; Twilio accepts that too (unverified).
    events = [part for event in events for part in event.split()]
    unknown = sorted(set(events) - set(PROGRESS_EVENTS))
    if unknown:
        raise TwilioApiError(
            400, errors.STATUS_CALLBACK_EVENT_INVALID, f"Invalid 'StatusCallbackEvent': {unknown}"
        )
    machine_detection = _first(form, "MachineDetection") or None
    if machine_detection is not None:
        normalized = {"enable": "Enable", "detectmessageend": "DetectMessageEnd"}.get(
            machine_detection.lower()
        )
        if normalized is None:
            raise TwilioApiError(
                400,
                errors.INVALID_PARAMETER,
                "MachineDetection must be Enable or DetectMessageEnd",
            )
        machine_detection = normalized
    async_amd_raw = (_first(form, "AsyncAmd") or "false").lower()
    if async_amd_raw not in ("true", "false"):
        raise TwilioApiError(400, errors.INVALID_PARAMETER, "AsyncAmd must be true or false")
    send_digits = _first(form, "SendDigits") or None
    if send_digits:
        machine_detection = None  # Twilio ignores AMD when SendDigits is set
    method = _method(form, "Method")
    source = (
        TwimlSource(url=url, method=method, kind="url")
        if url is not None
        else TwimlSource(twiml=twiml, kind="twiml")
    )
    return CallOptions(
        to=to,
        from_=from_,
        source=source,
        fallback_url=_optional_url(form, "FallbackUrl", errors.URL_INVALID),
        fallback_method=_method(form, "FallbackMethod"),
        status_callback=_optional_url(form, "StatusCallback", errors.STATUS_CALLBACK_INVALID),
        status_callback_method=_method(form, "StatusCallbackMethod"),
        status_callback_events=frozenset(events or ["completed"]),
        timeout=min(_integer(form, "Timeout", 60), MAX_TIMEOUT),
        time_limit=_integer(form, "TimeLimit", 14400),
        machine_detection=machine_detection,
        async_amd=async_amd_raw == "true",
        async_amd_status_callback=_optional_url(
            form, "AsyncAmdStatusCallback", errors.STATUS_CALLBACK_INVALID
        ),
        async_amd_status_callback_method=_method(form, "AsyncAmdStatusCallbackMethod"),
        send_digits=send_digits,
    )


def _update_source(form: dict[str, list[str]]) -> TwimlSource | None:
    url = _first(form, "Url") or None
    twiml = _first(form, "Twiml") or None
    if url and twiml:
        raise TwilioApiError(
            400, errors.INVALID_PARAMETER, "Twiml and Url parameters are mutually exclusive"
        )
    if url is not None:
        if not is_http_url(url):
            raise TwilioApiError(400, errors.URL_INVALID, f"Url is not a valid URL: {url}")
        return TwimlSource(url=url, method=_method(form, "Method"), kind="update")
    if twiml is not None:
        if len(twiml) > MAX_TWIML_CHARS:
            raise TwilioApiError(
                400,
                errors.TWIML_TOO_LONG,
                "Twiml size exceeded maximum allowed value of 4000 characters",
            )
        return TwimlSource(twiml=twiml, kind="update")
    return None


def _check_auth(request: Request, settings: SimSettings, account_sid: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    username = password = ""
    if scheme.lower() == "basic":
        try:
            username, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
    valid = hmac.compare_digest(username, settings.account_sid) & hmac.compare_digest(
        password, settings.auth_token
    )
    if not valid or account_sid != settings.account_sid:
        raise TwilioApiError(401, errors.AUTHENTICATE, "Authenticate")


def build_rest_router(
    settings: SimSettings, engine: CallEngine, journal: Journal, faults: FaultInjector
) -> APIRouter:
    router = APIRouter(prefix=f"/{API_VERSION}/Accounts/{{account_sid}}")

    async def preflight(request: Request, account_sid: str, operation: str) -> None:
        journal.requests.append(
            ApiRequest(request.method, request.url.path, request.headers.get("host", ""), operation)
        )
        await faults.delay()
        if (down := faults.unavailable()) is not None:
            raise down
        _check_auth(request, settings, account_sid)

    async def preflight_call(request: Request, account_sid: str, sid: str, operation: str) -> Call:
        """The account's call ``sid``, once the request has passed ``preflight``."""
        await preflight(request, account_sid, operation)
        call = journal.get(sid)
        if call is None or call.deleted or call.account_sid != account_sid:
            raise TwilioApiError(
                404,
                errors.NOT_FOUND,
                f"The requested resource /{API_VERSION}/Accounts/{account_sid}/Calls/{sid}.json "
                "was not found",
            )
        return call

    def ok(content: dict[str, Any], status: int = 200) -> JSONResponse:
        return JSONResponse(
            content, status_code=status, headers={"Twilio-Request-Id": new_sid("RQ")}
        )

    @router.post("/Calls.json")
    async def create_call(account_sid: str, request: Request) -> Response:
        arrived_at = time.time()
        form = parse_form(await request.body())
        record = journal.record_create(arrived_at, form)
        record.api_host = request.headers.get("host", "")
        try:
            await preflight(request, account_sid, "create")
            if (fault := faults.create_fault()) is not None:
                raise fault
            options = parse_create(form)
        except TwilioApiError as exc:
            record.http_status, record.error_code = exc.status, exc.code
            return exc.response()
        call = engine.create_call(account_sid, options, form, arrived_at)
        record.http_status, record.call_sid = 201, call.sid
        if faults.faults.create_answer_delay_ms:
            await asyncio.sleep(faults.faults.create_answer_delay_ms / 1000)
        return ok(call.resource(), 201)

    @router.get("/Calls.json")
    async def list_calls(account_sid: str, request: Request) -> Response:
        try:
            await preflight(request, account_sid, "list")
            query = request.query_params
            query_form = {key: query.getlist(key) for key in query}
            page_size = min(
                max(_integer(query_form, "PageSize", DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE
            )
            page = _integer(query_form, "Page", 0)
            status = query.get("Status")
            if status is not None and status not in _STATUSES:
                raise TwilioApiError(400, errors.INVALID_PARAMETER, f"Invalid Status: {status}")
        except TwilioApiError as exc:
            return exc.response()
        matches = [
            call
            for call in reversed(journal.calls.values())  # newest first, as Twilio lists
            if not call.deleted
            and call.account_sid == account_sid
            and (query.get("To") is None or call.options.to == query.get("To"))
            and (query.get("From") is None or call.options.from_ == query.get("From"))
            and (status is None or call.status == status)
        ]
        start = page * page_size
        chunk = matches[start : start + page_size]
        filters = [(key, query[key]) for key in ("To", "From", "Status") if key in query]
        base = f"/{API_VERSION}/Accounts/{account_sid}/Calls.json"

        def page_uri(number: int) -> str:
            return base + "?" + urlencode([*filters, ("PageSize", page_size), ("Page", number)])

        has_next = start + page_size < len(matches)
        return ok(
            {
                "calls": [call.resource() for call in chunk],
                "end": start + len(chunk) - 1 if chunk else start,
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            }
        )

    @router.get("/Calls/{sid}.json")
    async def fetch_call(account_sid: str, sid: str, request: Request) -> Response:
        try:
            call = await preflight_call(request, account_sid, sid, "fetch")
        except TwilioApiError as exc:
            return exc.response()
        return ok(call.resource())

    @router.post("/Calls/{sid}.json")
    async def update_call(account_sid: str, sid: str, request: Request) -> Response:
        form = parse_form(await request.body())
        try:
            call = await preflight_call(request, account_sid, sid, "update")
            if call.is_ended():
                raise TwilioApiError(
                    400, errors.CALL_NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect."
                )
            status = _first(form, "Status")
            if status is not None and status not in ("canceled", "completed"):
                raise TwilioApiError(
                    400, errors.INVALID_PARAMETER, "Status must be canceled or completed"
                )
            source = _update_source(form)
            changes: dict[str, Any] = {}
            callback = _optional_url(form, "StatusCallback", errors.STATUS_CALLBACK_INVALID)
            if callback:
                changes["status_callback"] = callback
            if "StatusCallbackMethod" in form:
                changes["status_callback_method"] = _method(form, "StatusCallbackMethod")
            fallback = _optional_url(form, "FallbackUrl", errors.URL_INVALID)
            if fallback:
                changes["fallback_url"] = fallback
            if "FallbackMethod" in form:
                changes["fallback_method"] = _method(form, "FallbackMethod")
            if "TimeLimit" in form:
                changes["time_limit"] = _integer(form, "TimeLimit", call.options.time_limit)
        except TwilioApiError as exc:
            return exc.response()
        call.updates.append({"at": time.time(), "params": form, "status_before": call.status})
        if changes:
            call.options = replace(call.options, **changes)
        if status is not None:
            engine.hang_up(call, status)
        elif source is not None:
            engine.redirect(call, source)
        call.updated_at = time.time()
        return ok(call.resource())

    @router.delete("/Calls/{sid}.json")
    async def delete_call(account_sid: str, sid: str, request: Request) -> Response:
        try:
            call = await preflight_call(request, account_sid, sid, "delete")
        except TwilioApiError as exc:
            return exc.response()
        call.deleted = True  # gone from the REST API, still in the journal
        return Response(status_code=204)

    return router
