"""The stand-in refuses what each real version refuses, and its faults look like the real thing.

The acker's contract tests are only as strict as this stand-in, so its rules are checked here
on their own, request by request, without any client's help.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from yobidashi_zabbix_standin import (
    DROP,
    LOST_ANSWER,
    RpcError,
    StandInSettings,
    ZabbixStandIn,
    http_error,
    serve,
)

TOKEN = "f" * 64
USER, PASSWORD = "yobidashi-acker", "Acker-pass-0123"


def standin(version: str) -> ZabbixStandIn:
    zabbix = ZabbixStandIn(version, tokens={TOKEN: USER}, users={USER: PASSWORD})
    zabbix.add_event("17")
    return zabbix


def rpc(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": 1, **extra}


def refused(zabbix: ZabbixStandIn, body: dict[str, Any], authorization: str = "") -> str:
    with pytest.raises(RpcError) as caught:
        zabbix.call(body, authorization)
    return str(caught.value.error["data"])


EVENT = {"eventids": ["17"], "output": ["eventid"]}


# -- authorization -------------------------------------------------------------------------------


def test_6_0_takes_body_auth_and_ignores_the_header() -> None:
    zabbix = standin("6.0.14")
    assert zabbix.call(rpc("event.get", EVENT, auth=TOKEN)) == [
        {"eventid": "17", "value": "1", "acknowledged": "0", "r_eventid": "0", "objectid": "23133"}
    ]
    assert refused(zabbix, rpc("event.get", EVENT), f"Bearer {TOKEN}") == "Not authorized."
    # It does not read the header at all, so not even the no-auth methods mind it.
    assert zabbix.call(rpc("apiinfo.version"), f"Bearer {TOKEN}") == "6.0.14"


@pytest.mark.parametrize("version", ["6.4.21", "7.0.22", "7.4.2", "8.0.0"])
def test_from_6_4_the_bearer_header_works_and_its_scheme_is_case_sensitive(version: str) -> None:
    zabbix = standin(version)
    assert zabbix.call(rpc("event.get", EVENT), f"Bearer {TOKEN}")
    assert refused(zabbix, rpc("event.get", EVENT), f"bearer {TOKEN}") == "Not authorized."


@pytest.mark.parametrize("version", ["6.4.21", "7.0.22", "7.2.6", "8.0.0"])
@pytest.mark.parametrize("method", ["apiinfo.version", "user.login"])
def test_no_auth_methods_refuse_a_bearer_header_from_6_4(version: str, method: str) -> None:
    params = {"username": USER, "password": PASSWORD} if method == "user.login" else {}
    assert refused(standin(version), rpc(method, params), f"Bearer {TOKEN}") == (
        f'The "{method}" method must be called without authorization header.'
    )


@pytest.mark.parametrize("version", ["6.0.14", "7.0.22"])
def test_no_auth_methods_refuse_body_auth(version: str) -> None:
    assert refused(standin(version), rpc("apiinfo.version", auth=TOKEN)) == (
        'The "apiinfo.version" method must be called without the "auth" parameter.'
    )


def test_7_0_takes_body_auth_as_deprecated_and_prefers_the_header() -> None:
    zabbix = standin("7.0.22")
    zabbix.call(rpc("event.get", EVENT, auth=TOKEN))
    assert zabbix.deprecations == ['Parameter "/auth" is deprecated.']
    # Both sent: the header wins (a wrong body auth does not matter).
    assert zabbix.call(rpc("event.get", EVENT, auth="x" * 64), f"Bearer {TOKEN}")


@pytest.mark.parametrize("version", ["7.2.6", "7.4.2", "8.0.0"])
def test_from_7_2_body_auth_is_an_invalid_request(version: str) -> None:
    with pytest.raises(RpcError) as caught:
        standin(version).call(rpc("event.get", EVENT, auth=TOKEN))
    assert caught.value.error["code"] == -32600
    assert caught.value.error["data"] == 'Invalid parameter "/": unexpected parameter "auth".'


def test_8_0_lets_no_other_authorization_scheme_reach_the_api() -> None:
    zabbix = standin("8.0.0")
    basic = "Basic " + base64.b64encode(b"proxy:pass").decode()
    assert refused(zabbix, rpc("apiinfo.version"), basic).endswith("without authorization header.")
    assert refused(zabbix, rpc("event.get", EVENT), basic) == "Not authorized."
    # 7.4 does not look at a scheme that is not Bearer.
    assert standin("7.4.2").call(rpc("apiinfo.version"), basic) == "7.4.2"


def test_unknown_secrets_are_told_apart_by_length_as_zabbix_does() -> None:
    zabbix = standin("6.0.14")
    assert refused(zabbix, rpc("event.get", EVENT, auth="0" * 64)) == "Not authorized."
    assert refused(zabbix, rpc("event.get", EVENT, auth="0" * 32)) == (
        "Session terminated, re-login, please."
    )


# -- login ---------------------------------------------------------------------------------------


def test_6_0_takes_user_but_not_together_with_username() -> None:
    zabbix = standin("6.0.14")
    assert zabbix.call(rpc("user.login", {"user": USER, "password": PASSWORD}))
    both = {"user": USER, "username": USER, "password": PASSWORD}
    assert refused(zabbix, rpc("user.login", both)) == 'Parameter "user" is deprecated.'


@pytest.mark.parametrize("version", ["6.4.21", "7.0.22", "8.0.0"])
def test_from_6_4_only_username_logs_in(version: str) -> None:
    zabbix = standin(version)
    assert refused(zabbix, rpc("user.login", {"user": USER, "password": PASSWORD})) == (
        'Invalid parameter "/": unexpected parameter "user".'
    )
    session = zabbix.call(rpc("user.login", {"username": USER, "password": PASSWORD}))
    assert zabbix.call(rpc("event.get", EVENT), f"Bearer {session}")


# -- event.get's acknowledges ----------------------------------------------------------------------


def acks_params(*options: str) -> dict[str, Any]:
    return {"eventids": ["17"], **{o: ["clock"] for o in options}}


def test_6_0_ignores_the_7_0_spelling() -> None:
    new_spelling = rpc("event.get", acks_params("selectAcknowledges"), auth=TOKEN)
    [event] = standin("6.0.14").call(new_spelling)
    assert "acknowledges" not in event


def test_7_0_takes_both_spellings_but_never_both_at_once() -> None:
    zabbix = standin("7.0.22")
    bearer = f"Bearer {TOKEN}"
    for option in ("selectAcknowledges", "select_acknowledges"):
        [event] = zabbix.call(rpc("event.get", acks_params(option)), bearer)
        assert event["acknowledges"] == []
    assert zabbix.deprecations == ['Parameter "/select_acknowledges" is deprecated.']
    both = rpc("event.get", acks_params("selectAcknowledges", "select_acknowledges"))
    assert "cannot be used together" in refused(zabbix, both, bearer)


@pytest.mark.parametrize("version", ["7.2.6", "8.0.0"])
def test_from_7_2_the_old_spelling_is_refused(version: str) -> None:
    old = rpc("event.get", acks_params("select_acknowledges"))
    assert refused(standin(version), old, f"Bearer {TOKEN}") == (
        'Invalid parameter "/": unexpected parameter "select_acknowledges".'
    )


# -- event.acknowledge ---------------------------------------------------------------------------


def test_a_second_acknowledgement_is_stored_as_a_message_and_ids_come_back_as_numbers() -> None:
    zabbix = standin("6.0.14")
    ack = {"eventids": ["17"], "action": 6, "message": "on it"}
    assert zabbix.call(rpc("event.acknowledge", ack, auth=TOKEN)) == {"eventids": [17]}
    zabbix.call(rpc("event.acknowledge", ack, auth=TOKEN))
    assert [a["action"] for a in zabbix.events["17"].acknowledges] == ["6", "4"]
    assert [w.action for w in zabbix.writes] == [6, 6]


def test_close_needs_manual_close_and_suppression_bits_need_6_4() -> None:
    zabbix = standin("6.0.14")
    zabbix.events["17"].manual_close = False
    close = {"eventids": ["17"], "action": 7, "message": "closing"}
    assert refused(zabbix, rpc("event.acknowledge", close, auth=TOKEN)).startswith(
        "Cannot close problem"
    )
    suppress = {"eventids": ["17"], "action": 32}
    assert "unexpected value" in refused(zabbix, rpc("event.acknowledge", suppress, auth=TOKEN))
    assert zabbix.writes == []


# -- over HTTP, with faults ----------------------------------------------------------------------


async def test_faults_look_like_a_broken_frontend_to_a_client() -> None:
    zabbix = standin("7.0.22")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    ack = rpc("event.acknowledge", {"eventids": ["17"], "action": 6, "message": "m"})
    async with serve(zabbix) as base, httpx.AsyncClient(base_url=base) as http:
        url = "/zabbix/api_jsonrpc.php"
        assert (await http.post(url, content=b"{}")).status_code == 412  # not JSON
        assert (await http.post(url, json=rpc("apiinfo.version"))).json()["result"] == "7.0.22"
        zabbix.faults.script(http_error(503), DROP)
        assert (await http.post(url, json=rpc("apiinfo.version"))).status_code == 503
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, json=rpc("apiinfo.version"))
        zabbix.faults.script(LOST_ANSWER, method="event.acknowledge")
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, json=ack, headers=headers)
        assert zabbix.events["17"].acknowledged, "it took effect before the answer was lost"
        down = await http.put("/standin/faults", json={"down": True})
        assert down.json()["down"] is True
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, json=rpc("apiinfo.version"))
        assert (await http.get("/healthz")).text == "ok"
    assert [s.method for s in zabbix.calls("apiinfo.version")][:2] == ["apiinfo.version"] * 2


def test_settings_build_a_stand_in_that_accepts_the_configured_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZABBIX_STANDIN_VERSION", "8.0.0")
    monkeypatch.setenv("ZABBIX_STANDIN_API_TOKEN", "dev-only-token")
    zabbix = StandInSettings().standin()
    assert zabbix.call(rpc("apiinfo.version")) == "8.0.0"
    found = zabbix.call(rpc("event.get", {"eventids": ["42"]}), "Bearer dev-only-token")
    assert [e["eventid"] for e in found] == ["42"], "any event asked about is an open problem"
    monkeypatch.delenv("ZABBIX_STANDIN_API_TOKEN")
    with pytest.raises(ValueError, match="API_TOKEN or ZABBIX_STANDIN_PASSWORD"):
        StandInSettings()
