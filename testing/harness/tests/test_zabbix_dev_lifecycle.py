"""Each dev Zabbix comes up idempotently, answers its API, and its frontend can be bounced."""

from __future__ import annotations

import re

import pytest

from yobidashi_harness.zabbix_api import ZabbixApiError, ZabbixRpc, ZabbixUnreachable
from yobidashi_harness.zabbix_dev import (
    DevInstance,
    selected_version,
    start_frontend,
    status,
    stop_frontend,
    up,
)
from yobidashi_harness.zabbix_dev import frontend as dev_frontend
from yobidashi_harness.zabbix_dev import server as dev_server
from yobidashi_harness.zabbix_sender import server_stats
from yobidashi_testing.zabbix_fixtures import ZabbixInstances, every_zabbix_version

pytestmark = pytest.mark.zabbix


def test_zabbix_dev_unparametrised_is_the_selected_version(zabbix_dev: DevInstance) -> None:
    # 7.0 unless ZABBIX_VERSION says otherwise (see test_zabbix_dev_config for the rule).
    assert zabbix_dev.version == selected_version()
    assert zabbix_dev.zabbix_version.startswith(selected_version() + ".")


@every_zabbix_version
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


@every_zabbix_version
def test_the_instance_reports_the_version_it_was_asked_for(
    zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc
) -> None:
    anonymous = ZabbixRpc(zabbix_dev.api_url)
    assert re.fullmatch(re.escape(zabbix_dev.version) + r"\.\d+", anonymous.version())
    assert anonymous.version() == zabbix_dev.zabbix_version
    # The Debian package that runs, e.g. 1:7.0.22+dfsg-1~deb13u1, is the API's version.
    upstream = zabbix_dev.package_version.split(":", 1)[-1].split("+", 1)[0]
    assert upstream == zabbix_dev.zabbix_version
    assert zabbix_admin.auth is not None
    assert re.fullmatch(r"[0-9a-f]{32}", zabbix_admin.auth)
    hosts = zabbix_admin.call("host.get", {"output": ["host", "status"]})
    stock = [h for h in hosts if h["host"] == "Zabbix server"]
    assert stock == [{"hostid": stock[0]["hostid"], "host": "Zabbix server", "status": "1"}], (
        "the stock host should be disabled"
    )


@every_zabbix_version
def test_api_errors_carry_code_message_and_data(zabbix_dev: DevInstance) -> None:
    # An unknown user, not Admin: failed logins count towards blocking an account.
    with pytest.raises(ZabbixApiError) as caught:
        ZabbixRpc(zabbix_dev.api_url).login("zbxdev-no-such-user", "wrong")
    # A failed login is "Invalid params." on 6.0 and an "Application error." on 7.0.
    code, message = {"6.0": (-32602, "Invalid params."), "7.0": (-32500, "Application error.")}[
        zabbix_dev.version
    ]
    assert caught.value.method == "user.login"
    assert caught.value.code == code
    assert caught.value.message == message
    assert "Incorrect user name or password" in caught.value.data
    assert str(code) in str(caught.value)


@every_zabbix_version
def test_trapper_answers_stats(zabbix_dev: DevInstance) -> None:
    stats = server_stats(zabbix_dev.server_host, zabbix_dev.server_port)
    assert stats["version"] == zabbix_dev.zabbix_version


@every_zabbix_version
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
    assert rpc.version() == zabbix_dev.zabbix_version
    assert rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)


def test_both_versions_run_side_by_side(zabbix_instance: ZabbixInstances) -> None:
    old, new = zabbix_instance("6.0"), zabbix_instance("7.0")

    assert (old.web_port, old.server_port) != (new.web_port, new.server_port)
    assert old.run_dir != new.run_dir
    assert old.config.db_name != new.config.db_name
    assert ZabbixRpc(old.api_url).version().startswith("6.0.")
    assert ZabbixRpc(new.api_url).version().startswith("7.0.")
    assert server_stats(port=old.server_port)["version"].startswith("6.0.")
    assert server_stats(port=new.server_port)["version"].startswith("7.0.")
