"""The dev Zabbix comes up idempotently, answers its API, and its frontend can be bounced."""

from __future__ import annotations

import re

import pytest

from yobidashi_testing.zabbix_api import ZabbixApiError, ZabbixRpc, ZabbixUnreachable
from yobidashi_testing.zabbix_dev import DevInstance, start_frontend, status, stop_frontend, up
from yobidashi_testing.zabbix_dev import frontend as dev_frontend
from yobidashi_testing.zabbix_dev import server as dev_server
from yobidashi_testing.zabbix_sender import server_stats

pytestmark = pytest.mark.zabbix


def test_up_twice_is_a_noop_that_still_verifies(zabbix_dev: DevInstance) -> None:
    config = zabbix_dev.config
    server_pid = dev_server.server_pid(config)
    php_pid = dev_frontend.php_pid(config)
    assert server_pid is not None
    assert php_pid is not None

    again = up(config)

    assert again == zabbix_dev
    assert dev_server.server_pid(config) == server_pid, "up restarted a healthy zabbix_server"
    assert dev_frontend.php_pid(config) == php_pid, "up restarted a healthy frontend"
    healthy, lines = status(config)
    assert healthy, "\n".join(lines)


def test_api_logs_in_and_is_zabbix_6_0(zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc) -> None:
    anonymous = ZabbixRpc(zabbix_dev.api_url)
    assert re.fullmatch(r"6\.0\.\d+", anonymous.version())
    assert zabbix_admin.auth is not None
    assert re.fullmatch(r"[0-9a-f]{32}", zabbix_admin.auth)
    hosts = zabbix_admin.call("host.get", {"output": ["host", "status"]})
    stock = [h for h in hosts if h["host"] == "Zabbix server"]
    assert stock == [{"hostid": stock[0]["hostid"], "host": "Zabbix server", "status": "1"}], (
        "the stock host should be disabled"
    )


def test_api_errors_carry_code_message_and_data(zabbix_dev: DevInstance) -> None:
    # An unknown user, not Admin: failed logins count towards blocking an account.
    with pytest.raises(ZabbixApiError) as caught:
        ZabbixRpc(zabbix_dev.api_url).login("zbxdev-no-such-user", "wrong")
    assert caught.value.method == "user.login"
    assert caught.value.code == -32602
    assert caught.value.message == "Invalid params."
    assert "Incorrect user name or password" in caught.value.data
    assert "-32602" in str(caught.value)


def test_trapper_answers_stats(zabbix_dev: DevInstance) -> None:
    stats = server_stats(zabbix_dev.server_host, zabbix_dev.server_port)
    assert stats["version"].startswith("6.0.")


def test_stop_frontend_takes_the_api_away_and_start_brings_it_back(
    zabbix_dev: DevInstance,
) -> None:
    rpc = ZabbixRpc(zabbix_dev.api_url, timeout=5)
    try:
        stop_frontend(zabbix_dev.config)
        with pytest.raises(ZabbixUnreachable):
            rpc.version()
        # Only the API is gone: the server keeps taking values.
        assert server_stats(zabbix_dev.server_host, zabbix_dev.server_port)
    finally:
        start_frontend(zabbix_dev.config)
    assert rpc.version().startswith("6.0.")
    assert rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
