"""The real client (`HttpZabbixApi`) against the Zabbix stand-in, for 6.0 to 8.0.

The stand-in (``yobidashi_zabbix_standin``, whose own tests show that it refuses what each real
version refuses) answers as one version would:

- ``apiinfo.version`` and ``user.login`` must carry no auth: no body ``auth``, and from 6.4 no
  Bearer header ('The "apiinfo.version" method must be called without authorization header.',
  measured on 7.0.22).
- 6.0 accepts ``user`` (deprecated) and ``username`` at login, and takes auth only from the
  body: it ignores an ``Authorization: Bearer`` header (measured on 6.0.14).
- From 6.4, ``user`` is rejected and the Bearer header is accepted (case-sensitive). 7.0 still
  takes body auth and ``select_acknowledges``, but as deprecated (measured), and refuses
  both acknowledges options at once.
- From 7.2, body auth is rejected: -32600 'Invalid parameter "/": unexpected parameter "auth".',
  and only ``selectAcknowledges`` exists. 8.0 also refuses any non-Bearer Authorization
  header, so no HTTP basic auth reaches its API.
- 6.0 silently ignores unknown event.get options.
- ``event.acknowledge`` answers ``{"eventids": [17]}`` with JSON numbers, and a second
  acknowledgement of an acknowledged event is stored as a message only (as 6.0.14 does).
- A proxy with HTTP basic auth in front passes ``Authorization: Basic …`` on to PHP, which
  up to 7.4 then finds no Bearer value in it.

On top of what the stand-in refuses, `assert_wire_rules` checks what the client promises for
every request: no Authorization header but the proxy's on the no-auth methods, a credential in
exactly one place, never ``user``, the acknowledges option of the version and never both, and
nothing a 7.0 would log as deprecated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import certifi
import pytest
import structlog
from prometheus_client import REGISTRY

from yobidashi_acker.zabbix import (
    ErrorKind,
    HttpZabbixApi,
    ZabbixConnection,
    ZabbixError,
)
from yobidashi_acker.zabbix.rules import V6_4, V7_0, parse_version
from yobidashi_common.telemetry import configure_logging
from yobidashi_harness.tls import make_tls_files
from yobidashi_zabbix_standin import ZabbixStandIn, serve

VERSIONS = ["6.0.14", "6.4.21", "7.0.22", "7.2.6", "7.4.2", "8.0.0"]
USER = "yobidashi-acker"
PASSWORD = "Acker-pass-0123"
TOKEN = "a" * 48 + secrets.token_hex(8)  # 64 characters, like Zabbix's tokens
HTTP_USER, HTTP_PASSWORD = "proxy", "proxy-pass-0123"
BASIC = "Basic " + base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()
NO_AUTH = {"apiinfo.version", "user.login"}
ACKS_OPTIONS = {"select_acknowledges", "selectAcknowledges"}

Frontend = Callable[..., Awaitable[ZabbixStandIn]]


async def error_of(
    api: HttpZabbixApi, call: Callable[[HttpZabbixApi], Awaitable[object]]
) -> ZabbixError:
    """The `ZabbixError` that ``call`` raises (the test fails if it raises none)."""
    try:
        with pytest.raises(ZabbixError) as caught:
            await call(api)
    finally:
        await api.close()
    return caught.value


@pytest.fixture
async def frontend() -> AsyncIterator[Frontend]:
    """Start stand-ins for a version, served on this event loop (a client that blocked the loop
    would hang here), with event 17 (a problem) and 18 (a recovery event)."""
    async with AsyncExitStack() as stack:

        async def start(
            version: str, *, basic_auth: bool = False, tls: tuple[Path, Path] | None = None
        ) -> ZabbixStandIn:
            zabbix = ZabbixStandIn(
                version,
                tokens={TOKEN: USER},
                users={USER: PASSWORD},
                basic_auth=(HTTP_USER, HTTP_PASSWORD) if basic_auth else None,
            )
            zabbix.add_event("17")
            zabbix.add_event("18", value="0")
            await stack.enter_async_context(serve(zabbix, tls=tls))
            return zabbix

        yield start


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def connect(
    zabbix: ZabbixStandIn, mode: str, *, basic_auth: bool = False, **kw: Any
) -> HttpZabbixApi:
    credentials: dict[str, Any] = (
        {"api_token": TOKEN} if mode == "token" else {"password": PASSWORD}
    )
    if basic_auth:
        credentials.update(http_user=HTTP_USER, http_password=HTTP_PASSWORD)
    return HttpZabbixApi(
        ZabbixConnection(
            url=f"{zabbix.url}/zabbix",
            username=USER,
            timeout=kw.pop("timeout", 5.0),
            **credentials,
            **kw,
        )
    )


@asynccontextmanager
async def connected(zabbix: ZabbixStandIn, mode: str, **kw: Any) -> AsyncIterator[HttpZabbixApi]:
    """`connect`, and the client closed on the way out, whatever the test body raised."""
    api = connect(zabbix, mode, **kw)
    try:
        yield api
    finally:
        await api.close()


@asynccontextmanager
async def checked(zabbix: ZabbixStandIn, mode: str, **kw: Any) -> AsyncIterator[HttpZabbixApi]:
    """`connected`, past the check the acker makes first (the version read and, with a
    password, a session opened): for the tests that start from a client that works."""
    async with connected(zabbix, mode, **kw) as api:
        await api.check()
        yield api


def assert_wire_rules(zabbix: ZabbixStandIn, *, basic_auth: bool) -> None:
    """What every version demands of what went over the wire, and what the client promises."""
    assert zabbix.seen, "nothing was sent"
    version = parse_version(zabbix.version)
    header_auth = version >= V6_4 and not basic_auth
    proxy = BASIC if basic_auth else ""
    option = "select_acknowledges" if version < V7_0 else "selectAcknowledges"
    for seen in zabbix.seen:
        body, authorization = seen.body, seen.authorization
        if seen.method in NO_AUTH:
            assert "auth" not in body, seen
            assert authorization == proxy, "no credential in any header"
        elif header_auth:
            assert "auth" not in body, seen
            assert authorization.startswith("Bearer "), seen  # exactly this case
            assert len(authorization) > len("Bearer "), seen
        else:
            assert body.get("auth"), seen
            assert authorization == proxy, seen
        params = body["params"]
        if isinstance(params, dict):
            assert "user" not in params, seen
            asked = ACKS_OPTIONS & params.keys()
            assert asked in (set(), {option}), f"{version}: {asked}"
    if not basic_auth:
        assert zabbix.deprecations == [], "nothing a real 7.0 would log as deprecated"


# -- the matrix: every version × token/password × with/without basic auth --------------------


@pytest.mark.parametrize("mode", ["token", "password"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_acknowledge_round_trip(frontend: Frontend, version: str, mode: str) -> None:
    zabbix = await frontend(version)
    async with checked(zabbix, mode) as api:
        assert await api.version() == parse_version(version)
        before = await api.get_event("17")
        assert before is not None
        assert (before.acknowledged, before.manual_close, before.acknowledges) == (False, True, ())
        await api.acknowledge("17", 6, "Acknowledged by phone … via Yobidashi [call CA1/ref r1]")
        after = await api.get_event("17")
        assert await api.get_event("999") is None
    assert after is not None
    assert after.acknowledged
    assert [(a.action, a.username) for a in after.acknowledges] == [(6, USER)]
    assert after.find("r1") is not None
    assert_wire_rules(zabbix, basic_auth=False)
    assert len(zabbix.calls("apiinfo.version")) == 1
    assert len(zabbix.calls("user.login")) == (1 if mode == "password" else 0)
    if mode == "password":
        assert zabbix.calls("user.logout"), "the session is closed on shutdown"
        assert zabbix.calls("user.login")[0].body["params"] == {
            "username": USER,
            "password": PASSWORD,
        }
    assert api.status.version == parse_version(version)
    assert api.status.auth_placement == ("header" if parse_version(version) >= V6_4 else "body")


@pytest.mark.parametrize("mode", ["token", "password"])
@pytest.mark.parametrize("version", ["6.0.14", "6.4.21", "7.0.22"])
async def test_behind_basic_auth_up_to_7_0(frontend: Frontend, version: str, mode: str) -> None:
    zabbix = await frontend(version, basic_auth=True)
    async with connected(zabbix, mode, basic_auth=True) as api:
        await api.acknowledge("17", 6, "ack via Yobidashi [ref r2]")
    assert zabbix.events["17"].acknowledged
    assert_wire_rules(zabbix, basic_auth=True)


@pytest.mark.parametrize("version", ["7.2.6", "7.4.2", "8.0.0"])
async def test_behind_basic_auth_from_7_2_is_a_loud_config_error(
    frontend: Frontend, version: str
) -> None:
    zabbix = await frontend(version, basic_auth=True)
    api = connect(zabbix, "token", basic_auth=True)
    before = sample("yobidashi_acker_zabbix_config_errors_total")
    error = await error_of(api, lambda api: api.acknowledge("17", 6, "ack via Yobidashi"))
    assert error.kind is ErrorKind.CONFIG
    assert error.transient, "the ack must wait on the bus, not be dropped"
    assert "only in the Authorization header" in str(error)
    assert [s.method for s in zabbix.seen] == ["apiinfo.version"], "no auth was ever sent"
    assert sample("yobidashi_acker_zabbix_config_errors_total") == before + 1


async def test_wrong_basic_auth_is_an_auth_error(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14", basic_auth=True)
    api = connect(zabbix, "token", http_user=HTTP_USER, http_password="wrong-password")
    error = await error_of(api, lambda api: api.check())
    assert error.kind is ErrorKind.AUTH
    assert error.http_status == 401


async def test_the_detected_version_and_auth_are_exported_as_an_info_metric(
    frontend: Frontend,
) -> None:
    zabbix = await frontend("7.0.22")
    async with connected(zabbix, "password") as api:
        await api.check()
    info = {"version": "7.0.22", "auth": "header", "credential": "password"}
    assert REGISTRY.get_sample_value("yobidashi_acker_zabbix_info", info) == 1


# -- sessions, tokens and version changes ---------------------------------------------------------


async def test_an_expired_session_is_renewed_once_transparently(frontend: Frontend) -> None:
    zabbix = await frontend("7.0.22")
    async with checked(zabbix, "password") as api:
        zabbix.sessions.clear()  # autologout, or an admin killed the session
        await api.acknowledge("17", 6, "ack via Yobidashi")
    assert len(zabbix.calls("user.login")) == 2
    assert zabbix.events["17"].acknowledged
    assert api.status.credentials_rejected is False


async def test_concurrent_calls_on_an_expired_session_log_in_again_once(
    frontend: Frontend,
) -> None:
    zabbix = await frontend("7.4.2")
    async with checked(zabbix, "password") as api:
        zabbix.sessions.clear()
        await asyncio.gather(*(api.get_event("17") for _ in range(4)))
    assert len(zabbix.calls("user.login")) == 2, "one login at start, one renewal for all four"


async def test_a_revoked_token_is_transient_loud_and_marks_the_credentials_rejected(
    frontend: Frontend, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("acker-test", "INFO", "json")
    zabbix = await frontend("7.4.2")
    zabbix.tokens.clear()
    api = connect(zabbix, "token")
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
    assert errors[0]["event_id"] == "17", "the log context reaches the client's log lines"
    assert errors[0]["service"] == "acker-test"


async def test_a_wrong_password_is_an_auth_error(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14")
    api = HttpZabbixApi(ZabbixConnection(url=zabbix.url, username=USER, password="wrong-pass-1"))
    error = await error_of(api, lambda api: api.check())
    assert error.kind is ErrorKind.AUTH


async def test_an_upgrade_under_a_running_acker_is_followed(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14")
    async with checked(zabbix, "token") as api:
        zabbix.version = "7.4.2"  # body auth is now refused
        await api.acknowledge("17", 6, "ack via Yobidashi")
        event = await api.get_event("17")
    assert event is not None
    assert event.acknowledged
    assert len(zabbix.calls("apiinfo.version")) == 2
    assert zabbix.calls("event.acknowledge")[-1].authorization == f"Bearer {TOKEN}"
    assert "selectAcknowledges" in zabbix.calls("event.get")[-1].body["params"]


# -- answers that are not JSON-RPC successes -----------------------------------------------------


async def test_http_5xx_is_a_transient_server_error(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14")
    zabbix.faults.http_status = 502
    api = connect(zabbix, "token")
    error = await error_of(api, lambda api: api.check())
    assert (error.kind, error.http_status, error.transient) == (
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
    frontend: Frontend, answer: bytes, kind: ErrorKind
) -> None:
    zabbix = await frontend("6.0.14")
    zabbix.faults.raw_answer = answer
    api = connect(zabbix, "token")
    error = await error_of(api, lambda api: api.version())
    assert error.kind is kind


async def test_unknown_event_and_bad_params_are_permanent(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14")
    async with connected(zabbix, "token") as api:
        with pytest.raises(ZabbixError) as unknown:
            await api.acknowledge("999", 6, "x via Yobidashi")
        with pytest.raises(ZabbixError) as recovery:
            await api.acknowledge("18", 6, "x via Yobidashi")
        with pytest.raises(ZabbixError) as empty:
            await api.acknowledge("17", 6, "")
        zabbix.events["17"].manual_close = False
        with pytest.raises(ZabbixError) as close:
            await api.acknowledge("17", 7, "x via Yobidashi")
    assert unknown.value.kind is ErrorKind.NOT_FOUND
    assert recovery.value.kind is ErrorKind.NOT_FOUND
    assert empty.value.kind is ErrorKind.INVALID
    assert close.value.kind is ErrorKind.CANNOT_CLOSE
    assert not any(e.transient for e in (unknown.value, empty.value, close.value))


async def test_nothing_listening_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = HttpZabbixApi(
        ZabbixConnection(url=f"http://127.0.0.1:{port}", username=USER, api_token=TOKEN)
    )
    error = await error_of(api, lambda api: api.check())
    assert error.kind is ErrorKind.TRANSPORT
    assert api.status.reachable is False


async def test_a_connection_closed_without_an_answer_is_a_transport_error(
    frontend: Frontend,
) -> None:
    zabbix = await frontend("7.0.22")
    zabbix.faults.down = True
    api = connect(zabbix, "token")
    error = await error_of(api, lambda api: api.check())
    assert error.kind is ErrorKind.TRANSPORT
    assert api.status.reachable is False


async def test_a_slow_answer_is_a_timeout(frontend: Frontend) -> None:
    zabbix = await frontend("6.0.14")
    zabbix.faults.delay = 1.0
    api = connect(zabbix, "token", timeout=0.2)
    try:
        with pytest.raises(ZabbixError) as caught:
            await api.version()
    finally:
        zabbix.faults.delay = 0
        await api.close()
    assert caught.value.kind is ErrorKind.TIMEOUT


# -- concurrency and logging ----------------------------------------------------------------------


async def test_calls_run_concurrently_up_to_the_connection_limit(frontend: Frontend) -> None:
    zabbix = await frontend("7.4.2")
    async with checked(zabbix, "token", max_connections=2) as api:
        zabbix.faults.gate = asyncio.Event()  # every event.acknowledge waits for it
        writes = [
            asyncio.create_task(api.acknowledge("17", 4, f"note {n} via Yobidashi"))
            for n in range(4)
        ]
        # Two held at the stand-in at once: calls no longer queue on one thread. (The stand-in
        # is served on this loop: a call that blocked the loop would hang the test here.)
        for _ in range(500):
            if zabbix.inflight >= 2:
                break
            await asyncio.sleep(0.01)
        assert zabbix.inflight >= 2, "the first two calls never overlapped"
        # A chance for the other two to (wrongly) get through as well; the limit holds them.
        await asyncio.sleep(0.2)
        assert zabbix.inflight == 2, "more requests at once than max_connections"
        zabbix.faults.gate.set()
        await asyncio.gather(*writes)
    assert zabbix.max_inflight == 2, "at most max_connections requests at once"
    first, second, *later = zabbix.calls("event.acknowledge")
    assert first.answered is not None
    assert second.answered is not None
    assert all(s.arrived >= min(first.answered, second.answered) for s in later), (
        "the third and fourth were sent only once a connection was free"
    )
    assert len(zabbix.writes) == 4


async def test_no_password_or_token_reaches_the_logs_even_at_debug(
    frontend: Frontend, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("acker-test", "DEBUG", "json")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # someone turned them up: still safe
    zabbix = await frontend("6.0.14", basic_auth=True)
    api = connect(zabbix, "password", basic_auth=True)
    bad = connect(zabbix, "token", basic_auth=True)
    try:
        await api.acknowledge("17", 6, "ack via Yobidashi")
        zabbix.tokens.clear()
        with pytest.raises(ZabbixError):
            await bad.check()
        session = next(iter(zabbix.sessions))
    finally:
        await api.close()
        await bad.close()
        configure_logging("acker-test", "INFO", "json")
    out = capsys.readouterr().out
    assert "zabbix.version" in out
    assert "HTTP Request" in out, "httpx's own lines were there to leak"
    for secret in (PASSWORD, TOKEN, HTTP_PASSWORD, BASIC.split()[1], session):
        assert secret not in out


# -- TLS -----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_is_verified_by_default_and_a_custom_ca_can_be_trusted(
    frontend: Frontend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A system-wide bundle in the environment must not override ZABBIX_CA_BUNDLE.
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    monkeypatch.setenv("SSL_CERT_DIR", str(Path(certifi.where()).parent))
    ca, crt, key = make_tls_files(tmp_path)
    zabbix = await frontend("7.4.2", tls=(crt, key))
    untrusted = connect(zabbix, "token")
    trusted = connect(zabbix, "token", verify=str(ca))
    insecure = connect(zabbix, "token", verify=False)
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
    assert zabbix.events["17"].acknowledged


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_without_a_ca_bundle_the_environments_trust_applies(
    frontend: Frontend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ZABBIX_CA_BUNDLE: SSL_CERT_FILE (how a site-wide CA is usually added) is trusted."""
    ca, crt, key = make_tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    zabbix = await frontend("7.4.2", tls=(crt, key))
    async with connected(zabbix, "token") as api:
        await api.check()
    assert api.status.authenticated
