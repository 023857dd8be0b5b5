"""Pytest fixtures for the dev Zabbix (register with ``pytest_plugins``).

``zabbix_dev`` runs the same idempotent ``up`` as ``deploy/zabbix/dev/zabbix-dev up`` once per
session and leaves Zabbix running afterwards, so the next session starts in about a second.
Where Zabbix cannot exist (not Debian, or packages missing and neither root nor sudo), tests
that use it are skipped with the reason, unless ``ZBX_DEV_REQUIRED=1`` (then they fail).
"""

from __future__ import annotations

import os

import pytest

from .zabbix_api import ZabbixRpc
from .zabbix_dev import DevConfig, DevInstance, Unsupported, up


@pytest.fixture(scope="session")
def zabbix_dev() -> DevInstance:
    """The running dev Zabbix: API URL, Admin credentials, trapper port, run dir, config."""
    try:
        instance = up(DevConfig.from_env())
    except Unsupported as exc:
        reason = f"dev Zabbix cannot run on this machine: {exc}"
        if os.environ.get("ZBX_DEV_REQUIRED") == "1":
            pytest.fail(f"{reason} (and ZBX_DEV_REQUIRED=1)", pytrace=False)
        pytest.skip(reason)
    return instance


@pytest.fixture
def zabbix_admin(zabbix_dev: DevInstance) -> ZabbixRpc:
    """A `ZabbixRpc` logged in as Admin (a fresh session per test)."""
    rpc = ZabbixRpc(zabbix_dev.api_url)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    return rpc
