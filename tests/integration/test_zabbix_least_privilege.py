"""The least permission the acker's Zabbix user needs, measured on the real 6.0 and 7.0.

deploy/zabbix/yobidashi/README.md says: read permission on the host groups, a role whose API
access may be narrowed to ``event.get`` and ``event.acknowledge``, with the actions
*Acknowledge problems* and *Add problem comments*. These tests give the acker exactly that
through the real client, and show that each part is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from yobidashi_acker.zabbix import ErrorKind, HttpZabbixApi, ZabbixConnection, ZabbixError
from yobidashi_acker.zabbix.rules import ACTION_ACKNOWLEDGE, ACTION_CLOSE, ACTION_MESSAGE
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing.zabbix_fixtures import every_zabbix_version

pytestmark = [pytest.mark.zabbix, pytest.mark.integration, every_zabbix_version]

PREFIX = "least-privilege"
ACK = ACTION_ACKNOWLEDGE | ACTION_MESSAGE
USER_TYPE = 1  # "User", the lowest role type
ALLOW_LIST = 1  # api.mode: only the methods listed


@dataclass(frozen=True)
class Setup:
    rpc: ZabbixRpc
    zabbix: DevInstance
    host: str
    key: str
    triggerid: str
    groupid: str


def ensure_role(rpc: ZabbixRpc, name: str, actions: dict[str, int]) -> str:
    rules: dict[str, Any] = {
        "api.access": 1,
        "api.mode": ALLOW_LIST,
        "api": ["event.get", "event.acknowledge"],
        "actions.default_access": 0,
        "actions": [{"name": action, "status": on} for action, on in actions.items()],
    }
    found = rpc.call("role.get", {"filter": {"name": [name]}, "output": ["roleid"]})
    if found:
        roleid = str(found[0]["roleid"])
        rpc.call("role.update", {"roleid": roleid, "rules": rules})
        return roleid
    created = rpc.call("role.create", {"name": name, "type": USER_TYPE, "rules": rules})
    return str(created["roleids"][0])


@pytest.fixture
def setup(zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc) -> Iterator[Setup]:
    rpc = zabbix_admin
    where = zs.ensure_trapper_host(rpc, PREFIX, "least.privilege.value")
    triggerid = zs.ensure_trigger(
        rpc, where.hostid, f"{PREFIX} problem", where.above(5), manual_close=True
    )
    port = zabbix_dev.server_port
    zs.wait_for_config_sync(where.host, where.key, server_port=port, changed_at=time.time())
    yield Setup(rpc, zabbix_dev, where.host, where.key, triggerid, where.groupid)
    zs.send(where.host, where.key, 0, server_port=port)


def fresh_problem(setup: Setup) -> str:
    baseline = zs.last_event_id(setup.rpc, setup.triggerid)
    port = setup.zabbix.server_port
    zs.send(setup.host, setup.key, 0, server_port=port)
    zs.send(setup.host, setup.key, 10, server_port=port)
    return str(zs.wait_for_problem(setup.rpc, setup.triggerid, after_eventid=baseline)["eventid"])


def acker_with(setup: Setup, role: str, actions: dict[str, int]) -> HttpZabbixApi:
    """The acker's client as a user with only read permission and ``role``."""
    ensure_role(setup.rpc, role, actions)
    group = zs.ensure_user_group(setup.rpc, f"{PREFIX} readers", [setup.groupid])
    username = f"{PREFIX}-{role.lower().replace(' ', '-')}"
    userid = zs.ensure_user(setup.rpc, zs.UserSpec(username=username, usrgrpids=[group], role=role))
    token = zs.ensure_api_token(setup.rpc, userid, PREFIX)
    return HttpZabbixApi(
        ZabbixConnection(url=setup.zabbix.api_url, username=username, api_token=token.token)
    )


async def test_read_permission_and_two_api_methods_are_enough_to_acknowledge(
    setup: Setup,
) -> None:
    eventid = fresh_problem(setup)
    api = acker_with(
        setup,
        "Yobidashi acker",
        {"acknowledge_problems": 1, "add_problem_comments": 1, "close_problems": 0},
    )
    try:
        await api.check()
        event = await api.get_event(eventid)
        assert event is not None
        assert not event.acknowledged
        await api.acknowledge(eventid, ACK, f"least privilege via Yobidashi [{eventid}]")
        with pytest.raises(ZabbixError) as refused:
            await api.acknowledge(eventid, ACTION_CLOSE, "and close it")
    finally:
        await api.close()
    assert refused.value.kind in (ErrorKind.CANNOT_CLOSE, ErrorKind.NOT_FOUND)
    [ack] = zs.acknowledges(setup.rpc, eventid)
    assert ack["message"] == f"least privilege via Yobidashi [{eventid}]"
    assert int(ack["action"]) & ACTION_ACKNOWLEDGE
    assert zs.get_event(setup.rpc, eventid)["acknowledged"] == "1"


async def test_without_the_acknowledge_action_the_acker_says_it_is_a_configuration_error(
    setup: Setup,
) -> None:
    eventid = fresh_problem(setup)
    api = acker_with(setup, "Yobidashi no ack", {"acknowledge_problems": 0})
    try:
        with pytest.raises(ZabbixError) as refused:
            await api.acknowledge(eventid, ACK, "should not land via Yobidashi")
    finally:
        await api.close()
    assert refused.value.kind is ErrorKind.CONFIG
    assert refused.value.transient, "a keypress waits on the bus until a human fixes the role"
    assert zs.acknowledges(setup.rpc, eventid) == []
