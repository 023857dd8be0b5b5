"""What differs between the 6.0 and 7.0 APIs, pinned against the real servers.

Each difference here is one the test client (`ZabbixRpc`) or the scenario helpers switch on;
if a test here starts failing after a package update, the switch may be wrong now.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from yobidashi_harness.waiting import wait_until
from yobidashi_harness.zabbix_api import ZabbixApiError, ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_harness.zabbix_php_log import PhpLog
from yobidashi_testing.zabbix_fixtures import ZabbixInstances, every_zabbix_version

pytestmark = pytest.mark.zabbix

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def raw_call(
    instance: DevInstance,
    method: str,
    params: dict[str, Any],
    *,
    auth: str | None = None,
    header: str | None = None,
) -> dict[str, Any]:
    """One JSON-RPC request exactly as given (the client would correct it)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if auth is not None:
        body["auth"] = auth
    headers = {"Content-Type": "application/json-rpc"}
    if header is not None:
        headers["Authorization"] = header
    request = urllib.request.Request(
        instance.api_url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with _NO_PROXY.open(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _session(instance: DevInstance) -> str:
    login = {"username": instance.admin_username, "password": instance.admin_password}
    session = raw_call(instance, "user.login", login)["result"]
    assert isinstance(session, str)
    return session


@every_zabbix_version
def test_the_client_authenticates_as_each_version_wants(zabbix_dev: DevInstance) -> None:
    rpc = ZabbixRpc(zabbix_dev.api_url)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    hosts = rpc.call("host.get", {"output": ["host"], "filter": {"host": ["Zabbix server"]}})
    assert [h["host"] for h in hosts] == ["Zabbix server"]
    assert rpc.api_version == zabbix_dev.zabbix_version


def test_6_0_ignores_the_authorization_header(zabbix_instance: ZabbixInstances) -> None:
    old = zabbix_instance("6.0")
    answer = raw_call(old, "host.get", {"limit": 1}, header=f"Bearer {_session(old)}")
    assert answer["error"]["data"] == "Not authorized."


def test_7_0_takes_bearer_with_that_exact_scheme(zabbix_instance: ZabbixInstances) -> None:
    new = zabbix_instance("7.0")
    session = _session(new)
    assert "result" in raw_call(new, "host.get", {"limit": 1}, header=f"Bearer {session}")
    refused = raw_call(new, "host.get", {"limit": 1}, header=f"bearer {session}")
    assert refused["error"]["data"] == "Not authorized."


def test_7_0_refuses_login_and_version_with_an_authorization_header(
    zabbix_instance: ZabbixInstances,
) -> None:
    new = zabbix_instance("7.0")
    header = f"Bearer {_session(new)}"
    for method, params in (
        ("apiinfo.version", {}),
        ("user.login", {"username": new.admin_username, "password": new.admin_password}),
    ):
        answer = raw_call(new, method, params, header=header)
        assert "must be called without authorization header" in answer["error"]["data"]


def test_7_0_refuses_the_old_user_parameter_of_login(zabbix_instance: ZabbixInstances) -> None:
    new = zabbix_instance("7.0")
    with pytest.raises(ZabbixApiError, match='unexpected parameter "user"'):
        ZabbixRpc(new.api_url).call("user.login", {"user": "Admin", "password": "zabbix"})


def test_7_0_logs_body_auth_as_deprecated(zabbix_instance: ZabbixInstances) -> None:
    """The guard in conftest.py relies on this log line; here it must appear."""
    new = zabbix_instance("7.0")
    log = PhpLog(new.config.php_log)
    answer = raw_call(new, "host.get", {"limit": 1}, auth=_session(new))
    assert "result" in answer, "body auth still works on 7.0"
    found = wait_until("a PHP Deprecated line", log.deprecations, timeout=10, interval=0.1)
    assert any('Parameter "/auth" is deprecated.' in line for line in found), found
