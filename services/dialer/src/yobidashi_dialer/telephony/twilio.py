"""Twilio Programmable Voice through the official ``twilio`` library's async client."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from yobidashi_dialer import metrics
from yobidashi_dialer.telephony.base import CallInfo, CallRequest, TelephonyError

# Twilio answers 21220 when a call is already over; ending it again is then a no-op for us.
CALL_NOT_IN_PROGRESS = 21220
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# Errors raised before a request could be sent: nothing reached Twilio.
NEVER_CONNECTED = (aiohttp.ClientConnectorError, ConnectionRefusedError)


def _parse_date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return None


def _info(call: Any) -> CallInfo:
    return CallInfo(
        sid=str(call.sid),
        status=str(call.status),
        to=str(call.to or ""),
        from_=str(call._from or ""),  # the library names it _from (``from`` is a keyword)
        created_at=_parse_date(call.date_created),
        answered_by=call.answered_by,
    )


def _error(exc: TwilioRestException) -> TelephonyError:
    # 429 (20429: too many concurrent requests) and 5xx were never processed or may succeed later.
    retryable = exc.status == 429 or exc.status >= 500
    return TelephonyError(
        f"Twilio {exc.status} code {exc.code}: {exc.msg}",
        retryable=retryable,
        code=exc.code,
        status=exc.status,
    )


class HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # untyped library
    """The library's async client with its timeout in force, optionally sending every request
    to ``base_url``.

    The timeout: twilio 9.13 keeps the timeout it is constructed with but sends every request
    with none, which aiohttp takes as no limit at all; a create to a hung API would wait
    forever (and its dial request be redelivered to a second worker meanwhile).

    ``base_url`` (the simulator, a test double or an egress proxy) receives every request, with
    the host the library meant kept in the Host header. The library puts the edge and region
    into the host name (api.tokyo.jp1.twilio.com), so overriding ``Client.api.base_url`` would
    have them spliced into the simulator's address instead. Redirecting below the library
    keeps its URL building untouched, and whoever answers sees exactly which edge every create,
    fetch and update was meant for."""

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._target = urlsplit(base_url.rstrip("/")) if base_url else None

    async def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's signature
        allow_redirects: bool = False,
    ) -> Any:
        if self._target is not None:
            meant = urlsplit(url)
            target = self._target
            url = urlunsplit(
                (target.scheme, target.netloc, target.path + meant.path, meant.query, "")
            )
            headers = {**(headers or {}), "Host": meant.netloc}
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=self.timeout if timeout is None else timeout,
            allow_redirects=allow_redirects,
        )


class TwilioTelephony:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_base_url: str | None = None,
        edge: str | None = None,
        region: str | None = None,
        machine_detection: str = "DetectMessageEnd",
        request_timeout: float = 10.0,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._api_base_url = api_base_url
        self._edge = edge
        self._region = region
        self._request_timeout = request_timeout
        self._machine_detection = machine_detection
        self._http: AsyncTwilioHttpClient | None = None
        self._twilio: Client | None = None

    @property
    def _client(self) -> Any:
        # aiohttp wants a running event loop, so the client is made on first use, not at import.
        if self._twilio is None:
            self._http = HttpClient(self._api_base_url, timeout=self._request_timeout)
            # The library's own edge/region parameters (it builds api.<edge>.<region>.twilio.com).
            self._twilio = Client(
                self._account_sid,
                self._auth_token,
                http_client=self._http,
                edge=self._edge,
                region=self._region,
            )
            # Without an edge the library reads TWILIO_EDGE from os.environ itself, which is the
            # primary's: a fallback account without an edge must not inherit it.
            self._twilio.edge, self._twilio.region = self._edge, self._region
        return self._twilio

    async def _call(self, operation: str, coro: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await coro
        except TwilioRestException as exc:
            metrics.TWILIO_REQUESTS.labels(operation, f"http_{exc.status}").inc()
            raise _error(exc) from None
        except (OSError, TimeoutError) as exc:
            metrics.TWILIO_REQUESTS.labels(operation, "unreachable").inc()
            raise TelephonyError(
                f"Twilio unreachable: {type(exc).__name__}",
                retryable=True,
                code=None,
                status=None,
                # Only a connection never made is sure to have carried nothing.
                may_have_reached=not isinstance(exc, NEVER_CONNECTED),
            ) from None
        finally:
            metrics.TWILIO_SECONDS.labels(operation).observe(time.perf_counter() - started)
        metrics.TWILIO_REQUESTS.labels(operation, "ok").inc()
        return result

    async def warm_up(self) -> None:
        """Build the client and import the library's lazily loaded Calls modules now, so that
        the first page after a start is not a quarter of a second late (and late after its
        CPS slot was taken)."""
        _ = self._client.calls

    async def place_call(self, request: CallRequest) -> CallInfo:
        call = await self._call(
            "create",
            self._client.calls.create_async(
                to=request.to,
                from_=request.from_,
                twiml=request.twiml,
                status_callback=request.status_callback,
                status_callback_event=STATUS_EVENTS,
                status_callback_method="POST",
                timeout=request.ring_timeout,
                time_limit=request.time_limit,
                machine_detection=self._machine_detection,
                async_amd="true",
                async_amd_status_callback=request.amd_callback,
                async_amd_status_callback_method="POST",
            ),
        )
        return _info(call)

    async def end_call(self, sid: str) -> None:
        try:
            await self._call("end", self._client.calls(sid).update_async(status="completed"))
        except TelephonyError as exc:
            if exc.code != CALL_NOT_IN_PROGRESS:
                raise

    async def play(self, sid: str, twiml: str) -> None:
        try:
            await self._call("play", self._client.calls(sid).update_async(twiml=twiml))
        except TelephonyError as exc:
            if exc.code != CALL_NOT_IN_PROGRESS:
                raise

    async def fetch_call(self, sid: str) -> CallInfo:
        return _info(await self._call("fetch", self._client.calls(sid).fetch_async()))

    async def find_calls(self, to: str, from_: str, since: datetime) -> list[CallInfo]:
        calls = await self._call(
            "list", self._client.calls.list_async(to=to, from_=from_, limit=50)
        )
        found = [_info(c) for c in calls]
        return [c for c in found if c.created_at is None or c.created_at >= since]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
