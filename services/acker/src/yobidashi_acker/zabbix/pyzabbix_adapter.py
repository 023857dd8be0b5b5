"""`ZabbixApi` on pyzabbix 1.3, called from async code through one dedicated thread.

What pyzabbix 1.3.1 does on its own, and what we do instead (see ``rules.py``):

- ``login()`` sends ``user`` below 5.4 and ``username`` from 5.4. We call ``user.login``
  ourselves with `rules.login_params`, which never sends ``user``.
- ``do_request()`` puts auth in a ``Bearer`` header from 6.4 and in the body before, keyed on
  ``self.version``. With ``session.auth`` set for HTTP basic auth in front of the frontend,
  requests applies the session's auth *after* the per-request headers, so the Bearer header is
  silently replaced by ``Basic …`` and every call answers "Not authorized.". We override
  ``do_request`` so that the placement comes from `rules.auth_placement`, which knows that
  case.
- ``do_request()`` logs the whole request body (passwords, tokens) at DEBUG and the whole
  answer. Ours logs nothing; the shared logging setup also pins the ``pyzabbix`` logger at
  INFO, and every secret is registered with the log scrubber.
- TLS: ``verify`` goes with every request. Set on the session only (what pyzabbix users
  do), requests replaces it with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when those are in
  the environment, so a custom CA bundle would silently stop being used.
- pyzabbix raises one exception type for everything. Ours raises `ZabbixError` with an
  `ErrorKind` (``errors.py``), including for transport failures and HTTP statuses.

pyzabbix's session and request id counter are not thread-safe, so every call runs on a
single-thread executor: calls are serialised, and the event loop never blocks on HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from pyzabbix.api import ZabbixAPI

from yobidashi_acker import __version__, metrics
from yobidashi_acker.zabbix.api import EventInfo, ZabbixStatus
from yobidashi_acker.zabbix.errors import (
    ErrorKind,
    ZabbixError,
    classify_http_status,
    rpc_error,
)
from yobidashi_acker.zabbix.rules import (
    ANONYMOUS_METHODS,
    OTHER_ACKNOWLEDGES_OPTION,
    AuthPlacement,
    UnsupportedSetup,
    ZabbixVersion,
    acknowledges_option,
    auth_placement,
    check_supported,
    login_params,
    parse_version,
)
from yobidashi_common.telemetry import get_logger, register_secret

log = get_logger(__name__)
T = TypeVar("T")

EVENT_OUTPUT = ["eventid", "value", "acknowledged", "r_eventid", "objectid"]
ACK_OUTPUT = ["clock", "message", "action", "userid", "username"]


def _no_debug(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO


# pyzabbix logs whole request bodies (passwords, tokens) at DEBUG. Our do_request does not call
# its logging, and the shared logging setup pins the "pyzabbix" logger above DEBUG; this filter
# on the logger that emits them also holds if someone turns that logger up.
logging.getLogger("pyzabbix.api").addFilter(_no_debug)


@dataclass(frozen=True)
class ZabbixConnection:
    """How to reach and authenticate to the Zabbix API (built from `AckerSettings`)."""

    url: str  # frontend base URL; "/api_jsonrpc.php" is appended unless present
    username: str
    api_token: str | None = None
    password: str | None = None
    http_user: str | None = None
    http_password: str | None = None
    verify: bool | str = True  # requests' verify: a bool, or a CA bundle path
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.api_token and not self.password:
            raise ValueError("an API token or a password is required")

    @property
    def auth_mode(self) -> str:
        return "token" if self.api_token else "password"

    @property
    def api_url(self) -> str:
        if self.url.endswith("/api_jsonrpc.php"):
            return self.url
        return self.url.rstrip("/") + "/api_jsonrpc.php"


RequestAuth = Callable[[Any], Any]


def _bearer(secret: str) -> RequestAuth:
    def apply(request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {secret}"
        return request

    return apply


def _no_auth(request: Any) -> Any:
    """An explicit "no auth", so requests does not fall back to ~/.netrc credentials."""
    return request


class _ExplicitAuthZabbixAPI(ZabbixAPI):
    """pyzabbix's client with the auth placement and error mapping decided by us."""

    def __init__(self, connection: ZabbixConnection, session: Any) -> None:
        super().__init__(
            server=connection.api_url,
            session=session,
            timeout=connection.timeout,
            detect_version=False,
        )
        self.session.headers["User-Agent"] = f"yobidashi-acker/{__version__} (pyzabbix)"
        self.placement: AuthPlacement = AuthPlacement.BODY
        # Passed with every request, not set on the session: requests lets REQUESTS_CA_BUNDLE /
        # CURL_CA_BUNDLE from the environment override session.verify, which would silently
        # drop ZABBIX_CA_BUNDLE (and turn ZABBIX_TLS_VERIFY=false back on).
        self.verify: bool | str = connection.verify
        self.basic_auth: RequestAuth | None = None
        if connection.http_user:
            self.basic_auth = requests.auth.HTTPBasicAuth(
                connection.http_user, connection.http_password or ""
            )

    def do_request(
        self, method: str, params: Mapping[Any, Any] | Sequence[Any] | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": method,
            "params": {} if params is None else params,
            "id": self.id,
        }
        self.id += 1
        request_auth: RequestAuth = self.basic_auth or _no_auth
        if method not in ANONYMOUS_METHODS:
            if not self.auth:
                raise ZabbixError(ErrorKind.CONFIG, method, "called before authenticating")
            if self.placement is AuthPlacement.HEADER:
                request_auth = _bearer(self.auth)
            else:
                payload["auth"] = self.auth
        try:
            response = self.session.post(
                self.url, json=payload, auth=request_auth, timeout=self.timeout, verify=self.verify
            )
        except requests.exceptions.Timeout as exc:
            raise ZabbixError(ErrorKind.TIMEOUT, method, f"no answer: {exc}") from None
        except requests.exceptions.SSLError as exc:
            raise ZabbixError(ErrorKind.CONFIG, method, f"TLS failed: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise ZabbixError(ErrorKind.TRANSPORT, method, f"{type(exc).__name__}: {exc}") from None
        status = int(response.status_code)
        if status != 200:
            raise ZabbixError(
                classify_http_status(status), method, f"HTTP {status}", http_status=status
            )
        if not response.content:
            raise ZabbixError(ErrorKind.SERVER, method, "empty answer", http_status=status)
        try:
            answer = response.json()
        except ValueError:
            head = response.text[:120].replace("\n", " ")
            raise ZabbixError(
                ErrorKind.SERVER, method, f"answer is not JSON: {head!r}", http_status=status
            ) from None
        if not isinstance(answer, dict):
            raise ZabbixError(ErrorKind.SERVER, method, "answer is not a JSON-RPC object")
        if "error" in answer:
            raise rpc_error(method, answer["error"])
        if "result" not in answer:
            raise ZabbixError(ErrorKind.SERVER, method, "answer has no result")
        return answer


class PyZabbixApi:
    """The production `ZabbixApi`."""

    def __init__(self, connection: ZabbixConnection) -> None:
        register_secret(connection.api_token, connection.password, connection.http_password)
        self._conn = connection
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zabbix-api")
        session = requests.Session()
        self._client = _ExplicitAuthZabbixAPI(connection, session)
        self._version: ZabbixVersion | None = None
        self._acks_option: str | None = None
        self._status = ZabbixStatus(auth_mode=connection.auth_mode)
        self._closed = False

    @property
    def username(self) -> str:
        return self._conn.username

    @property
    def status(self) -> ZabbixStatus:
        return self._status

    # -- async surface --------------------------------------------------------------------------

    async def version(self) -> ZabbixVersion:
        return await self._run(self._version_sync)

    async def check(self) -> None:
        await self._run(self._check_sync)

    async def get_event(self, event_id: str) -> EventInfo | None:
        return await self._run(self._get_event_sync, event_id)

    async def acknowledge(self, event_id: str, action: int, message: str) -> None:
        await self._run(self._acknowledge_sync, event_id, action, message)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._logout_sync), 3)
        except Exception as exc:
            log.info("zabbix.logout_skipped", error=repr(exc))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.session.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise ZabbixError(ErrorKind.TRANSPORT, "client", "the Zabbix client is closed")
        loop = asyncio.get_running_loop()
        # Carry the log context (event_id, call_sid, trace) into the worker thread.
        context = contextvars.copy_context()
        call = functools.partial(context.run, self._guarded, fn, *args)
        return await loop.run_in_executor(self._executor, call)

    # -- everything below runs on the executor's one thread -------------------------------------

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except ZabbixError as exc:
            self._record_failure(exc)
            raise

    def _record_failure(self, exc: ZabbixError) -> None:
        now = datetime.now(UTC)
        status = self._status
        status.last_error, status.last_error_kind, status.last_error_at = str(exc), exc.kind, now
        status.reachable = exc.kind not in (ErrorKind.TRANSPORT, ErrorKind.TIMEOUT)
        metrics.ZABBIX_UP.set(
            0 if exc.kind in (ErrorKind.TRANSPORT, ErrorKind.TIMEOUT, ErrorKind.SERVER) else 1
        )
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

    def _request(self, method: str, params: Mapping[str, Any] | Sequence[Any]) -> Any:
        started = time.perf_counter()
        try:
            result = self._client.do_request(method, params)["result"]
        except ZabbixError as exc:
            metrics.ZABBIX_REQUESTS.labels(method, exc.kind.value).inc()
            if exc.kind in (ErrorKind.TRANSPORT, ErrorKind.TIMEOUT):
                self._version = None  # it may come back upgraded: ask again next time
            raise
        finally:
            metrics.ZABBIX_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - started)
        metrics.ZABBIX_REQUESTS.labels(method, "ok").inc()
        metrics.ZABBIX_UP.set(1)
        self._status.reachable = True
        if method not in ANONYMOUS_METHODS:
            now = datetime.now(UTC)
            self._status.authenticated = True
            self._status.credentials_rejected = False
            self._status.last_success_at = now
            metrics.ZABBIX_LAST_SUCCESS.set(now.timestamp())
        return result

    def _version_sync(self) -> ZabbixVersion:
        if self._version is not None:
            return self._version
        text = self._request("apiinfo.version", {})
        try:
            version = parse_version(str(text))
            check_supported(version)
            placement = auth_placement(version, http_basic_auth=self._client.basic_auth is not None)
        except (ValueError, UnsupportedSetup) as exc:
            raise ZabbixError(ErrorKind.CONFIG, "apiinfo.version", str(exc)) from None
        if self._status.version is not None and self._status.version != version:
            log.warning("zabbix.version_changed", old=str(self._status.version), new=str(version))
            self._acks_option = None
        if self._status.version != version:
            log.info(
                "zabbix.version",
                version=str(version),
                auth_mode=self._conn.auth_mode,
                # "_mode": the log scrubber blanks fields named like "auth..." otherwise.
                auth_placement_mode=placement.value,
            )
        self._client.placement = placement
        self._version = version
        self._status.version = version
        self._status.auth_placement = placement.value
        return version

    def _ensure_auth_sync(self) -> ZabbixVersion:
        version = self._version_sync()
        if not self._client.auth:
            if self._conn.api_token:
                self._client.auth = self._conn.api_token
            else:
                self._login_sync(version)
        return version

    def _login_sync(self, version: ZabbixVersion) -> None:
        assert self._conn.password is not None
        self._client.auth = ""
        session_id = self._request(
            "user.login", login_params(version, self._conn.username, self._conn.password)
        )
        if not isinstance(session_id, str) or not session_id:
            raise ZabbixError(ErrorKind.SERVER, "user.login", "no session ID in the answer")
        register_secret(session_id)
        self._client.auth = session_id
        log.info("zabbix.logged_in", user=self._conn.username, version=str(version))

    def _call(self, method: str, params: Mapping[str, Any] | Sequence[Any]) -> Any:
        """An authenticated call, re-logging in or re-detecting the version once if needed."""
        self._ensure_auth_sync()
        try:
            return self._request(method, params)
        except ZabbixError as exc:
            if exc.auth_transport_rejected:
                log.warning("zabbix.auth_transport_rejected", error=str(exc))
                self._version = None
                self._ensure_auth_sync()
                return self._request(method, params)
            if exc.session_expired and not self._conn.api_token:
                log.info("zabbix.session_expired", error=exc.data)
                self._login_sync(self._version_sync())
                return self._request(method, params)
            raise

    def _check_sync(self) -> None:
        # Cheapest authenticated call that the acker's role must allow anyway.
        self._call("event.get", {"eventids": ["0"], "output": ["eventid"]})

    def _get_event_sync(self, event_id: str) -> EventInfo | None:
        version = self._ensure_auth_sync()
        option = self._acks_option or acknowledges_option(version)
        for attempt in range(2):
            params = {
                "eventids": [event_id],
                "output": EVENT_OUTPUT,
                option: ACK_OUTPUT,
                "selectRelatedObject": ["triggerid", "manual_close"],
            }
            try:
                found = self._call("event.get", params)
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

    def _acknowledge_sync(self, event_id: str, action: int, message: str) -> None:
        params = {"eventids": [event_id], "action": action, "message": message}
        result = self._call("event.acknowledge", params)
        # 6.0 answers {"eventids": [21]}: numbers here, strings in every *.get.
        ids = result.get("eventids") if isinstance(result, dict) else None
        if not isinstance(ids, list) or event_id not in {str(i) for i in ids}:
            raise ZabbixError(
                ErrorKind.SERVER, "event.acknowledge", f"unexpected answer {result!r}"[:200]
            )

    def _logout_sync(self) -> None:
        if self._conn.api_token or not self._client.auth:
            return
        previous, self._client.timeout = self._client.timeout, 2.0
        try:
            self._client.do_request("user.logout", [])
        finally:
            self._client.auth = ""
            self._client.timeout = previous
