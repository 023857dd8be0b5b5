"""The real pyzabbix adapter against a fake Zabbix JSON-RPC API, for 6.0, 6.4, 7.0, 7.2 and 7.4.

The fake enforces each version's documented rules (see ``yobidashi_acker.zabbix.rules``):

- ``apiinfo.version`` and ``user.login`` must carry no auth, neither in the body nor as a
  Bearer header (6.0's message: 'The "apiinfo.version" method must be called without the
  "auth" parameter.').
- 6.0 accepts ``user`` (deprecated) and ``username`` at login, and takes auth only from the
  body: it ignores an ``Authorization: Bearer`` header (measured on 6.0.14).
- From 6.4, ``user`` is rejected ('Invalid parameter "/": unexpected parameter "user".') and
  the Bearer header is accepted (body auth still works until 7.0).
- From 7.2, body auth is rejected: -32600 'Invalid parameter "/": unexpected parameter "auth".'.
- 6.0 silently ignores unknown event.get options; from 7.0 only ``selectAcknowledges`` is
  accepted. [The exact release of that rename is unverified; the adapter falls back either way.]
- ``event.acknowledge`` answers ``{"eventids": [17]}`` with JSON numbers, and a second
  acknowledgement of an acknowledged event is stored as a message only (as 6.0.14 does).
- A proxy with HTTP basic auth in front passes ``Authorization: Basic …`` on to PHP, which
  then finds no Bearer value in it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]
import structlog
from prometheus_client import REGISTRY
from pyzabbix.api import ZabbixAPI

from yobidashi_acker.zabbix import (
    ErrorKind,
    PyZabbixApi,
    ZabbixConnection,
    ZabbixError,
    ZabbixVersion,
)
from yobidashi_acker.zabbix.rules import V6_4, V7_0, V7_2, parse_version
from yobidashi_common.telemetry import configure_logging

VERSIONS = ["6.0.14", "6.4.21", "7.0.12", "7.2.6", "7.4.2"]
USER = "yobidashi-acker"
PASSWORD = "Acker-pass-0123"
TOKEN = "a" * 48 + secrets.token_hex(8)  # 64 characters, like Zabbix's tokens
HTTP_USER, HTTP_PASSWORD = "proxy", "proxy-pass-0123"
NO_AUTH = {"apiinfo.version", "user.login"}
ALLOWED_CONTENT_TYPES = ("application/json-rpc", "application/json", "application/jsonrequest")


@dataclass
class FakeEvent:
    value: str = "1"
    acknowledged: bool = False
    r_eventid: str = "0"
    manual_close: bool = True
    acknowledges: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Seen:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def authorization(self) -> str:
        return self.headers.get("Authorization", "")


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.error = {"code": code, "message": message, "data": data}


def invalid_params(data: str) -> RpcError:
    return RpcError(-32602, "Invalid params.", data)


def application_error(data: str) -> RpcError:
    return RpcError(-32500, "Application error.", data)


class FakeZabbix:
    """A Zabbix JSON-RPC endpoint on 127.0.0.1 that follows one version's rules."""

    def __init__(
        self, version: str, *, basic_auth: bool = False, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.version_text = version
        self.basic_auth = basic_auth
        self.events: dict[str, FakeEvent] = {"17": FakeEvent(), "18": FakeEvent(value="0")}
        self.sessions: dict[str, str] = {}
        self.tokens: dict[str, str] = {TOKEN: USER}
        self.seen: list[Seen] = []
        self.inflight = 0
        self.max_inflight = 0
        self.http_status: int | None = None  # answer every request with this status
        self.raw_answer: bytes | None = None  # or with this body
        self.delay = 0.0
        self.gate: threading.Event | None = None  # event.acknowledge waits for it
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/zabbix"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def version(self) -> ZabbixVersion:
        return parse_version(self.version_text)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    # -- HTTP -----------------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            status, body = self._answer(request)
        finally:
            with self._lock:
                self.inflight -= 1
        # The client may have given up already (the timeout test).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            request.send_response(status)
            if status == 401:
                request.send_header("WWW-Authenticate", 'Basic realm="zabbix"')
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)

    def _answer(self, request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        raw = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        if request.path != "/zabbix/api_jsonrpc.php":
            return 404, b"not found"
        if self.basic_auth:
            expected = base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return 401, b"<html>401 Authorization Required</html>"
        content_type = (request.headers.get("Content-Type") or "").split(";")[0]
        if content_type not in (
            "application/json-rpc",
            "application/json",
            "application/jsonrequest",
        ):
            return 412, b""
        if self.delay:
            time.sleep(self.delay)
        if self.http_status is not None:
            return self.http_status, b"<html>Bad gateway</html>"
        if self.raw_answer is not None:
            return 200, self.raw_answer
        body = json.loads(raw)
        self.seen.append(Seen(body.get("method", ""), body, dict(request.headers.items())))
        try:
            result = self._call(body, request.headers.get("Authorization") or "")
            answer: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": body.get("id")}
        except RpcError as exc:
            answer = {"jsonrpc": "2.0", "error": exc.error, "id": body.get("id")}
        return 200, json.dumps(answer).encode()

    # -- JSON-RPC -------------------------------------------------------------------------------

    def _call(self, body: dict[str, Any], authorization: str) -> Any:
        version = self.version
        if body.get("jsonrpc") != "2.0" or "method" not in body or "params" not in body:
            raise RpcError(
                -32600, "Invalid request.", "The received JSON is not a valid JSON-RPC request."
            )
        if version >= V7_2 and "auth" in body:
            raise RpcError(
                -32600, "Invalid request.", 'Invalid parameter "/": unexpected parameter "auth".'
            )
        method, params = body["method"], body["params"]
        bearer = authorization[7:] if authorization.startswith("Bearer ") else None
        if method in NO_AUTH:
            if body.get("auth") is not None or bearer is not None:
                raise invalid_params(
                    f'The "{method}" method must be called without the "auth" parameter.'
                )
            return self._anonymous(method, params)
        secret = body.get("auth")
        if version >= V6_4 and bearer is not None:
            secret = bearer  # 6.0 ignores the header; 6.4+ prefers it
        user = self._authenticate(secret)
        return self._authenticated(method, params, user)

    def _anonymous(self, method: str, params: dict[str, Any]) -> Any:
        if method == "apiinfo.version":
            return self.version_text
        if "user" in params:
            if self.version >= V6_4:
                raise invalid_params('Invalid parameter "/": unexpected parameter "user".')
            if "username" in params:
                raise invalid_params('Parameter "user" is deprecated.')
        username = params.get("username", params.get("user"))
        if username != USER or params.get("password") != PASSWORD:
            raise application_error(
                "Incorrect user name or password or account is temporarily blocked."
            )
        session = secrets.token_hex(16)
        self.sessions[session] = USER
        return session

    def _authenticate(self, secret: Any) -> str:
        if not secret:
            raise invalid_params("Not authorized.")
        if len(secret) == 64:
            if secret not in self.tokens:
                raise invalid_params("Not authorized.")
            return self.tokens[secret]
        if secret not in self.sessions:
            raise invalid_params("Session terminated, re-login, please.")
        return self.sessions[secret]

    def _authenticated(self, method: str, params: Any, user: str) -> Any:
        if method == "event.get":
            return self._event_get(params)
        if method == "event.acknowledge":
            return self._acknowledge(params, user)
        if method == "user.logout":
            return True
        raise RpcError(-32601, "Method not found.", "The requested remote-procedure does not exist")

    def _event_get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        option = "selectAcknowledges" if self.version >= V7_0 else "select_acknowledges"
        wrong = "select_acknowledges" if option == "selectAcknowledges" else None
        if wrong and wrong in params:
            raise invalid_params(f'Invalid parameter "/": unexpected parameter "{wrong}".')
        found = []
        for eventid in params.get("eventids", []):
            event = self.events.get(str(eventid))
            if event is None:
                continue
            out: dict[str, Any] = {
                "eventid": str(eventid),
                "value": event.value,
                "acknowledged": "1" if event.acknowledged else "0",
                "r_eventid": event.r_eventid,
                "objectid": "23133",
            }
            if option in params:
                out["acknowledges"] = [dict(a) for a in event.acknowledges]
            if "selectRelatedObject" in params:
                out["relatedObject"] = {
                    "triggerid": "23133",
                    "manual_close": "1" if event.manual_close else "0",
                }
            found.append(out)
        return found

    def _acknowledge(self, params: dict[str, Any], user: str) -> dict[str, Any]:
        if self.gate is not None:
            self.gate.wait(10)
        action = int(params["action"])
        limit = 31 if self.version < V6_4 else 511
        if action & ~limit or action == 0:
            raise invalid_params(
                f'Incorrect value for field "action": unexpected value "{action}".'
            )
        if action & 4 and not params.get("message"):
            raise invalid_params('Incorrect value for field "message": cannot be empty.')
        eventids = [str(e) for e in params["eventids"]]
        events = [self.events.get(e) for e in eventids]
        if any(e is None or e.value != "1" for e in events):
            raise application_error("No permissions to referred object or it does not exist!")
        for eventid in eventids:
            event = self.events[eventid]
            if action & 1 and not event.manual_close:
                raise application_error(
                    "Cannot close problem: trigger does not allow manual closing."
                )
            stored = action & ~2 if event.acknowledged else action  # a second ack is a message
            event.acknowledged = event.acknowledged or bool(action & 2)
            event.acknowledges.append(
                {
                    "clock": str(int(time.time())),
                    "message": params.get("message", ""),
                    "action": str(stored),
                    "userid": "5",
                    "username": user,
                }
            )
        return {"eventids": [int(e) for e in eventids]}


@pytest.fixture
def fake_factory() -> Iterator[Callable[..., FakeZabbix]]:
    started: list[FakeZabbix] = []

    def make(
        version: str, *, basic_auth: bool = False, tls: tuple[Path, Path] | None = None
    ) -> FakeZabbix:
        fake = FakeZabbix(version, basic_auth=basic_auth, tls=tls)
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.close()


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def connect(fake: FakeZabbix, mode: str, *, basic_auth: bool = False, **kw: Any) -> PyZabbixApi:
    credentials: dict[str, Any] = (
        {"api_token": TOKEN} if mode == "token" else {"password": PASSWORD}
    )
    if basic_auth:
        credentials.update(http_user=HTTP_USER, http_password=HTTP_PASSWORD)
    return PyZabbixApi(
        ZabbixConnection(
            url=fake.url, username=USER, timeout=kw.pop("timeout", 5.0), **credentials, **kw
        )
    )


def assert_wire_rules(fake: FakeZabbix, *, basic_auth: bool) -> None:
    """What every version demands of what went over the wire."""
    assert fake.seen, "nothing was sent"
    header_auth = fake.version >= V6_4 and not basic_auth
    for seen in fake.seen:
        if seen.method in NO_AUTH:
            assert "auth" not in seen.body, seen
            assert not seen.authorization.startswith("Bearer"), seen
        elif header_auth:
            assert "auth" not in seen.body, seen
            assert seen.authorization.startswith("Bearer "), seen
        else:
            assert seen.body.get("auth"), seen
            assert not seen.authorization.startswith("Bearer"), seen
        if basic_auth:
            assert seen.authorization.startswith("Basic "), seen
        assert "user" not in seen.body["params"] if isinstance(seen.body["params"], dict) else True


# -- the matrix: every version × token/password × with/without basic auth --------------------


@pytest.mark.parametrize("mode", ["token", "password"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_acknowledge_round_trip(
    fake_factory: Callable[..., FakeZabbix], version: str, mode: str
) -> None:
    fake = fake_factory(version)
    api = connect(fake, mode)
    try:
        await api.check()
        assert await api.version() == parse_version(version)
        before = await api.get_event("17")
        assert before is not None
        assert (before.acknowledged, before.manual_close, before.acknowledges) == (False, True, ())
        await api.acknowledge("17", 6, "Acknowledged by phone … via Yobidashi [call CA1/ref r1]")
        after = await api.get_event("17")
        assert await api.get_event("999") is None
    finally:
        await api.close()
    assert after is not None
    assert after.acknowledged
    assert [(a.action, a.username) for a in after.acknowledges] == [(6, USER)]
    assert after.find("r1") is not None
    assert_wire_rules(fake, basic_auth=False)
    assert len(fake.calls("apiinfo.version")) == 1
    assert len(fake.calls("user.login")) == (1 if mode == "password" else 0)
    if mode == "password":
        assert fake.calls("user.logout"), "the session is closed on shutdown"
        assert fake.calls("user.login")[0].body["params"] == {
            "username": USER,
            "password": PASSWORD,
        }
    assert api.status.version == parse_version(version)
    assert api.status.auth_placement == ("header" if fake.version >= V6_4 else "body")


@pytest.mark.parametrize("mode", ["token", "password"])
@pytest.mark.parametrize("version", ["6.0.14", "6.4.21", "7.0.12"])
async def test_behind_basic_auth_up_to_7_0(
    fake_factory: Callable[..., FakeZabbix], version: str, mode: str
) -> None:
    fake = fake_factory(version, basic_auth=True)
    api = connect(fake, mode, basic_auth=True)
    try:
        await api.acknowledge("17", 6, "ack via Yobidashi [ref r2]")
    finally:
        await api.close()
    assert fake.events["17"].acknowledged
    assert_wire_rules(fake, basic_auth=True)


@pytest.mark.parametrize("version", ["7.2.6", "7.4.2"])
async def test_behind_basic_auth_from_7_2_is_a_loud_config_error(
    fake_factory: Callable[..., FakeZabbix], version: str
) -> None:
    fake = fake_factory(version, basic_auth=True)
    api = connect(fake, "token", basic_auth=True)
    before = sample("yobidashi_acker_zabbix_config_errors_total")
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.acknowledge("17", 6, "ack via Yobidashi")
    finally:
        await api.close()
    assert caught.value.kind is ErrorKind.CONFIG
    assert caught.value.transient, "the ack must wait on the bus, not be dropped"
    assert "only in the Authorization header" in str(caught.value)
    assert [s.method for s in fake.seen] == ["apiinfo.version"], "no auth was ever sent"
    assert sample("yobidashi_acker_zabbix_config_errors_total") == before + 1


async def test_wrong_basic_auth_is_an_auth_error(fake_factory: Callable[..., FakeZabbix]) -> None:
    fake = fake_factory("6.0.14", basic_auth=True)
    api = connect(fake, "token", http_user=HTTP_USER, http_password="wrong-password")
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.check()
    finally:
        await api.close()
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.http_status == 401


# -- what stock pyzabbix would have done ----------------------------------------------------------


def test_stock_pyzabbix_loses_the_bearer_header_behind_basic_auth(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    """Why the adapter overrides do_request: requests applies session.auth after the headers.

    If this starts failing, pyzabbix or requests changed: re-check `_ExplicitAuthZabbixAPI`.
    """
    fake = fake_factory("6.4.21", basic_auth=True)
    session = requests.Session()
    session.auth = (HTTP_USER, HTTP_PASSWORD)
    stock = ZabbixAPI(fake.url, session=session, timeout=5)
    stock.login(api_token=TOKEN)
    with pytest.raises(Exception, match="Not authorized"):
        stock.event.get(eventids=["17"])
    assert fake.calls("event.get")[0].authorization.startswith("Basic ")


# -- sessions, tokens and version changes ---------------------------------------------------------


async def test_an_expired_session_is_renewed_once_transparently(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    fake = fake_factory("7.0.12")
    api = connect(fake, "password")
    try:
        await api.check()
        fake.sessions.clear()  # autologout, or an admin killed the session
        await api.acknowledge("17", 6, "ack via Yobidashi")
    finally:
        await api.close()
    assert len(fake.calls("user.login")) == 2
    assert fake.events["17"].acknowledged
    assert api.status.credentials_rejected is False


async def test_a_revoked_token_is_transient_loud_and_marks_the_credentials_rejected(
    fake_factory: Callable[..., FakeZabbix], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("acker-test", "INFO", "json")
    fake = fake_factory("7.4.2")
    fake.tokens.clear()
    api = connect(fake, "token")
    before = sample("yobidashi_acker_zabbix_auth_failures_total")
    structlog.contextvars.bind_contextvars(event_id="17")
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.check()
    finally:
        structlog.contextvars.unbind_contextvars("event_id")
        await api.close()
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.transient
    assert api.status.credentials_rejected
    assert sample("yobidashi_acker_zabbix_auth_failures_total") == before + 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    errors = [line for line in lines if line["event"] == "zabbix.auth_failed"]
    assert errors
    assert errors[0]["level"] == "error"
    assert errors[0]["event_id"] == "17", "the log context reaches the Zabbix thread"
    assert errors[0]["service"] == "acker-test"


async def test_a_wrong_password_is_an_auth_error(fake_factory: Callable[..., FakeZabbix]) -> None:
    fake = fake_factory("6.0.14")
    api = PyZabbixApi(ZabbixConnection(url=fake.url, username=USER, password="wrong-pass-1"))
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.check()
    finally:
        await api.close()
    assert caught.value.kind is ErrorKind.AUTH


async def test_an_upgrade_under_a_running_acker_is_followed(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    fake = fake_factory("6.0.14")
    api = connect(fake, "token")
    try:
        await api.check()
        fake.version_text = "7.4.2"  # body auth is now refused
        await api.acknowledge("17", 6, "ack via Yobidashi")
        event = await api.get_event("17")
    finally:
        await api.close()
    assert event is not None
    assert event.acknowledged
    assert len(fake.calls("apiinfo.version")) == 2
    assert fake.calls("event.acknowledge")[-1].authorization == f"Bearer {TOKEN}"


# -- answers that are not JSON-RPC successes -----------------------------------------------------


async def test_http_5xx_is_a_transient_server_error(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    fake = fake_factory("6.0.14")
    fake.http_status = 502
    api = connect(fake, "token")
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.check()
    finally:
        await api.close()
    assert (caught.value.kind, caught.value.http_status, caught.value.transient) == (
        ErrorKind.SERVER,
        502,
        True,
    )
    assert api.status.reachable is True
    assert sample("yobidashi_acker_zabbix_up") == 0


@pytest.mark.parametrize(
    ("answer", "kind"),
    [(b"", ErrorKind.SERVER), (b"<html>maintenance</html>", ErrorKind.SERVER)],
)
async def test_empty_or_html_answers_are_transient(
    fake_factory: Callable[..., FakeZabbix], answer: bytes, kind: ErrorKind
) -> None:
    fake = fake_factory("6.0.14")
    fake.raw_answer = answer
    api = connect(fake, "token")
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.version()
    finally:
        await api.close()
    assert caught.value.kind is kind


async def test_unknown_event_and_bad_params_are_permanent(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    fake = fake_factory("6.0.14")
    api = connect(fake, "token")
    try:
        with pytest.raises(ZabbixError) as unknown:
            await api.acknowledge("999", 6, "x via Yobidashi")
        with pytest.raises(ZabbixError) as recovery:
            await api.acknowledge("18", 6, "x via Yobidashi")
        with pytest.raises(ZabbixError) as empty:
            await api.acknowledge("17", 6, "")
        fake.events["17"].manual_close = False
        with pytest.raises(ZabbixError) as close:
            await api.acknowledge("17", 7, "x via Yobidashi")
    finally:
        await api.close()
    assert unknown.value.kind is ErrorKind.NOT_FOUND
    assert recovery.value.kind is ErrorKind.NOT_FOUND
    assert empty.value.kind is ErrorKind.INVALID
    assert close.value.kind is ErrorKind.CANNOT_CLOSE
    assert not any(e.transient for e in (unknown.value, empty.value, close.value))


async def test_nothing_listening_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = PyZabbixApi(
        ZabbixConnection(url=f"http://127.0.0.1:{port}", username=USER, api_token=TOKEN)
    )
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.check()
    finally:
        await api.close()
    assert caught.value.kind is ErrorKind.TRANSPORT
    assert api.status.reachable is False


async def test_a_slow_answer_is_a_timeout(fake_factory: Callable[..., FakeZabbix]) -> None:
    fake = fake_factory("6.0.14")
    fake.delay = 1.0
    api = connect(fake, "token", timeout=0.2)
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.version()
    finally:
        fake.delay = 0
        await api.close()
    assert caught.value.kind is ErrorKind.TIMEOUT


# -- threading and logging ------------------------------------------------------------------------


async def test_calls_do_not_block_the_event_loop_and_are_serialised(
    fake_factory: Callable[..., FakeZabbix],
) -> None:
    fake = fake_factory("7.4.2")
    api = connect(fake, "token")
    try:
        await api.check()
        fake.gate = threading.Event()
        first = asyncio.create_task(api.acknowledge("17", 6, "one via Yobidashi"))
        second = asyncio.create_task(api.get_event("17"))
        # If the call blocked the loop, this loop could not run until the gate opened: a hang.
        for _ in range(500):
            if fake.calls("event.acknowledge"):
                break
            await asyncio.sleep(0.01)
        assert fake.calls("event.acknowledge"), "the request never reached the fake"
        assert not second.done()
        fake.gate.set()
        await first
        event = await second
    finally:
        await api.close()
    assert event is not None
    assert event.acknowledged, "the second call ran after the first: one thread, in order"
    assert fake.max_inflight == 1


async def test_no_password_or_token_reaches_the_logs_even_at_debug(
    fake_factory: Callable[..., FakeZabbix], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("acker-test", "DEBUG", "json")
    logging.getLogger("pyzabbix").setLevel(logging.DEBUG)  # someone turned it up: still safe
    fake = fake_factory("6.0.14", basic_auth=True)
    api = connect(fake, "password", basic_auth=True)
    bad = connect(fake, "token", basic_auth=True)
    try:
        await api.acknowledge("17", 6, "ack via Yobidashi")
        fake.tokens.clear()
        with pytest.raises(ZabbixError):
            await bad.check()
        session = next(iter(fake.sessions))
        # Even pyzabbix's own do_request (which logs bodies at DEBUG) stays silent.
        stock = ZabbixAPI(fake_factory("6.0.14").url, timeout=5)
        stock.login(api_token=TOKEN)
        stock.event.get(eventids=["17"])
    finally:
        await api.close()
        await bad.close()
        configure_logging("acker-test", "INFO", "json")
    out = capsys.readouterr().out
    assert "zabbix.version" in out
    for secret in (PASSWORD, TOKEN, HTTP_PASSWORD, session):
        assert secret not in out
    assert "Sending:" not in out, "pyzabbix's request-body lines are filtered out"


# -- TLS -----------------------------------------------------------------------------------------


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 signed by it, made with openssl."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=yobidashi-acker-test-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    return ca_crt, crt, key  # fmt: skip


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_tls_is_verified_by_default_and_a_custom_ca_can_be_trusted(
    fake_factory: Callable[..., FakeZabbix], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A system-wide bundle in the environment must not override ZABBIX_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    ca, crt, key = make_tls_files(tmp_path)
    fake = fake_factory("7.4.2", tls=(crt, key))
    untrusted = connect(fake, "token")
    trusted = connect(fake, "token", verify=str(ca))
    insecure = connect(fake, "token", verify=False)
    try:
        with pytest.raises(ZabbixError) as caught:
            await untrusted.check()
        await trusted.acknowledge("17", 6, "ack via Yobidashi")
        await insecure.check()  # ZABBIX_TLS_VERIFY=false: explicit opt-out only
    finally:
        for api in (untrusted, trusted, insecure):
            await api.close()
    assert caught.value.kind is ErrorKind.CONFIG
    assert "TLS failed" in str(caught.value)
    assert fake.events["17"].acknowledged
