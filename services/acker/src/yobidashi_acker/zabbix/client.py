"""`HttpZabbixApi`: the acker's Zabbix client, async JSON-RPC on httpx, for Zabbix 6.0 to 8.0.

- **Version first.** ``apiinfo.version`` (no auth) decides everything in ``rules.py``: login
  parameters, where the credential goes, the event.get option name. It is asked again after
  a transport error or a timeout (Zabbix may come back upgraded), and when Zabbix refuses
  where we put the auth (its version changed under us).
- **Credentials.** An API token is used as it is; a password logs in once (``user.login``
  with ``username``) and again when Zabbix says the session is gone. One detection or login
  runs at a time, and a login that another call already renewed is not repeated.
- **Concurrency.** Calls run concurrently on the event loop, over at most
  ``max_connections`` connections (``ACKER_CONCURRENCY``): requests beyond that wait for a
  free one, so one acker never opens more to Zabbix than it has keypresses in hand.
- **Secrets.** Nothing is logged per request. Token, password, basic-auth password and session
  ids are registered with the log scrubber, and httpx's own loggers stay at WARNING.
- **Status.** Every result feeds ``/status``, readiness (credentials refused) and the metrics,
  including ``yobidashi_acker_zabbix_info{version, auth, credential}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from yobidashi_acker import metrics
from yobidashi_acker.zabbix.api import EventInfo, ZabbixStatus
from yobidashi_acker.zabbix.connection import ZabbixConnection
from yobidashi_acker.zabbix.errors import ErrorKind, ZabbixError
from yobidashi_acker.zabbix.jsonrpc import Auth, JsonRpc, Params
from yobidashi_acker.zabbix.rules import (
    OTHER_ACKNOWLEDGES_OPTION,
    AuthPlacement,
    UnsupportedSetup,
    ZabbixVersion,
    acknowledges_option,
    auth_placement,
    basic_auth_unsupported,
    check_supported,
    login_params,
    parse_version,
)
from yobidashi_common.telemetry import get_logger, register_secret

log = get_logger(__name__)

EVENT_OUTPUT = ["eventid", "value", "acknowledged", "r_eventid", "objectid"]
ACK_OUTPUT = ["clock", "message", "action", "userid", "username"]
LOGOUT_TIMEOUT = 2.0
UNREACHABLE = (ErrorKind.TRANSPORT, ErrorKind.TIMEOUT)


class HttpZabbixApi:
    """The production `ZabbixApi`."""

    def __init__(self, connection: ZabbixConnection) -> None:
        register_secret(connection.api_token, connection.password, connection.http_password)
        self._conn = connection
        self._rpc = JsonRpc(connection)
        self._setup = asyncio.Lock()  # one version detection or login at a time
        self._version: ZabbixVersion | None = None  # None: ask before the next call
        self._placement = AuthPlacement.BODY
        self._secret: str | None = connection.api_token  # or the session id, once logged in
        self._acks_option: str | None = None
        self._status = ZabbixStatus(auth_mode=connection.auth_mode)
        self._closed = False

    @property
    def username(self) -> str:
        return self._conn.username

    @property
    def status(self) -> ZabbixStatus:
        return self._status

    # -- the ZabbixApi surface -------------------------------------------------------------------

    async def version(self) -> ZabbixVersion:
        async with self._reported():
            return await self._detect()

    async def check(self) -> None:
        async with self._reported():
            # Cheapest authenticated call that the acker's role must allow anyway.
            await self._call("event.get", {"eventids": ["0"], "output": ["eventid"]})

    async def get_event(self, event_id: str) -> EventInfo | None:
        async with self._reported():
            return await self._get_event(event_id)

    async def acknowledge(self, event_id: str, action: int, message: str) -> None:
        async with self._reported():
            params = {"eventids": [event_id], "action": action, "message": message}
            result = await self._call("event.acknowledge", params)
            # 6.0 answers {"eventids": [21]}: numbers here, strings in every *.get.
            ids = result.get("eventids") if isinstance(result, dict) else None
            if not isinstance(ids, list) or event_id not in {str(i) for i in ids}:
                raise ZabbixError(
                    ErrorKind.SERVER, "event.acknowledge", f"unexpected answer {result!r}"[:200]
                )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._secret and not self._conn.api_token:
            try:
                auth = Auth(self._secret, self._placement)
                await self._rpc.call("user.logout", [], auth, read_timeout=LOGOUT_TIMEOUT)
            except Exception as exc:
                log.info("zabbix.logout_skipped", error=repr(exc))
            self._secret = None
        await self._rpc.aclose()

    # -- calls -----------------------------------------------------------------------------------

    async def _get_event(self, event_id: str) -> EventInfo | None:
        version = await self._detect()
        option = self._acks_option or acknowledges_option(version)
        for attempt in range(2):
            params = {
                "eventids": [event_id],
                "output": EVENT_OUTPUT,
                option: ACK_OUTPUT,
                "selectRelatedObject": ["triggerid", "manual_close"],
            }
            try:
                found = await self._call("event.get", params)
            except ZabbixError as exc:
                if attempt == 0 and f'unexpected parameter "{option}"' in exc.data:
                    option = OTHER_ACKNOWLEDGES_OPTION[option]
                    continue
                raise
            if not isinstance(found, list):
                raise ZabbixError(ErrorKind.SERVER, "event.get", "answer is not a list")
            if not found:
                return None
            if "acknowledges" not in found[0]:
                # 6.0 ignores options it does not know instead of rejecting them.
                if attempt == 0:
                    option = OTHER_ACKNOWLEDGES_OPTION[option]
                    continue
                raise ZabbixError(ErrorKind.CONFIG, "event.get", "no acknowledges returned")
            self._acks_option = option
            return EventInfo.from_api(found[0])
        raise ZabbixError(ErrorKind.CONFIG, "event.get", "cannot read acknowledges")

    async def _call(self, method: str, params: Params) -> Any:
        """An authenticated call, re-detecting the version or logging in again once if needed."""
        auth = await self._credentials()
        try:
            return await self._request(method, params, auth)
        except ZabbixError as exc:
            if exc.auth_transport_rejected:
                log.warning("zabbix.auth_transport_rejected", error=str(exc))
                self._version = None
                return await self._request(method, params, await self._credentials())
            if exc.session_expired and not self._conn.api_token:
                log.info("zabbix.session_expired", error=exc.data)
                return await self._request(method, params, await self._login_again(auth))
            raise

    async def _request(self, method: str, params: Params, auth: Auth | None) -> Any:
        started = time.perf_counter()
        try:
            result = await self._rpc.call(method, params, auth)
        except ZabbixError as exc:
            metrics.ZABBIX_REQUESTS.labels(method, exc.kind.value).inc()
            if exc.kind in UNREACHABLE:
                self._version = None  # it may come back upgraded: ask again next time
            raise
        finally:
            metrics.ZABBIX_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - started)
        metrics.ZABBIX_REQUESTS.labels(method, "ok").inc()
        metrics.ZABBIX_UP.set(1)
        self._status.reachable = True
        if auth is not None:
            now = datetime.now(UTC)
            self._status.authenticated = True
            self._status.credentials_rejected = False
            self._status.last_success_at = now
            metrics.ZABBIX_LAST_SUCCESS.set(now.timestamp())
        return result

    # -- version and credentials -----------------------------------------------------------------

    async def _detect(self) -> ZabbixVersion:
        if self._version is not None:
            return self._version
        async with self._setup:
            return self._version or await self._ask_version()

    async def _credentials(self) -> Auth:
        await self._detect()
        if self._secret is None:
            async with self._setup:
                if self._secret is None:
                    await self._log_in(self._version or await self._ask_version())
        assert self._secret is not None
        return Auth(self._secret, self._placement)

    async def _login_again(self, expired: Auth) -> Auth:
        async with self._setup:
            if self._secret == expired.secret:  # nobody renewed it meanwhile
                await self._log_in(self._version or await self._ask_version())
        assert self._secret is not None
        return Auth(self._secret, self._placement)

    async def _ask_version(self) -> ZabbixVersion:
        """``apiinfo.version``, and the rules that follow from it. Called holding ``_setup``."""
        behind_basic_auth = self._conn.http_user is not None
        try:
            text = await self._request("apiinfo.version", {}, None)
        except ZabbixError as exc:
            if behind_basic_auth and "without authorization header" in exc.data:
                # 8.0 takes the proxy's Basic header for an attempt at API auth.
                message = basic_auth_unsupported("This Zabbix")
                raise ZabbixError(ErrorKind.CONFIG, "apiinfo.version", message) from None
            raise
        try:
            version = parse_version(str(text))
            check_supported(version)
            placement = auth_placement(version, http_basic_auth=behind_basic_auth)
        except (ValueError, UnsupportedSetup) as exc:
            raise ZabbixError(ErrorKind.CONFIG, "apiinfo.version", str(exc)) from None
        known = self._status.version
        if known is not None and known != version:
            log.warning("zabbix.version_changed", old=str(known), new=str(version))
            self._acks_option = None
        if known != version or self._status.auth_placement != placement.value:
            log.info(
                "zabbix.version",
                version=str(version),
                auth_mode=self._conn.auth_mode,
                # "_mode": the log scrubber blanks fields named like "auth..." otherwise.
                auth_placement_mode=placement.value,
            )
            metrics.ZABBIX_INFO.info(
                {
                    "version": str(version),
                    "auth": placement.value,
                    "credential": self._conn.auth_mode,
                }
            )
        self._placement, self._version = placement, version
        self._status.version, self._status.auth_placement = version, placement.value
        return version

    async def _log_in(self, version: ZabbixVersion) -> None:
        """``user.login`` with the password. Called holding ``_setup``."""
        assert self._conn.password is not None
        params = login_params(version, self._conn.username, self._conn.password)
        session = await self._request("user.login", params, None)
        if not isinstance(session, str) or not session:
            raise ZabbixError(ErrorKind.SERVER, "user.login", "no session ID in the answer")
        register_secret(session)
        self._secret = session
        log.info("zabbix.logged_in", user=self._conn.username, version=str(version))

    # -- status ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _reported(self) -> AsyncIterator[None]:
        """Run one public call: refused once closed; its failure recorded once, however many
        requests it took."""
        if self._closed:
            raise ZabbixError(ErrorKind.TRANSPORT, "client", "the Zabbix client is closed")
        try:
            yield
        except ZabbixError as exc:
            self._record_failure(exc)
            raise

    def _record_failure(self, exc: ZabbixError) -> None:
        status = self._status
        status.last_error, status.last_error_kind = str(exc), exc.kind
        status.last_error_at = datetime.now(UTC)
        status.reachable = exc.kind not in UNREACHABLE
        metrics.ZABBIX_UP.set(0 if exc.kind in (*UNREACHABLE, ErrorKind.SERVER) else 1)
        if exc.kind is ErrorKind.AUTH:
            status.authenticated = False
            status.credentials_rejected = True
            metrics.AUTH_FAILURES.inc()
            log.error(
                "zabbix.auth_failed",
                error=str(exc),
                auth_mode=self._conn.auth_mode,
                user=self._conn.username,
                hint="check ZABBIX_API_TOKEN / ZABBIX_USER / ZABBIX_PASSWORD "
                "(and ZABBIX_HTTP_USER); acknowledgements wait on the bus meanwhile",
            )
        elif exc.kind is ErrorKind.CONFIG:
            metrics.CONFIG_ERRORS.inc()
            log.error("zabbix.config_error", error=str(exc), url=self._conn.api_url)
