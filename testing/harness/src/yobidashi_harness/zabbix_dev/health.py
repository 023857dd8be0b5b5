"""Readiness: the API logs Admin in, and the trapper answers ``zabbix.stats``."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from ..zabbix_api import ZabbixApiError, ZabbixRpc, ZabbixUnreachable
from ..zabbix_sender import ZabbixProtocolError, server_stats
from .config import ADMIN_PASSWORD, ADMIN_USERNAME, DevConfig
from .system import DevError

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


def api_ok(config: DevConfig, timeout: float = 5) -> bool:
    try:
        session = ZabbixRpc(config.api_url, timeout=timeout).login(ADMIN_USERNAME, ADMIN_PASSWORD)
    except (ZabbixApiError, ZabbixUnreachable):
        return False
    return bool(_SESSION_ID.match(session))


def api_version(config: DevConfig, timeout: float = 5) -> str:
    """What ``apiinfo.version`` answers (e.g. "7.0.22"), or "unknown" when the API is down."""
    try:
        return ZabbixRpc(config.api_url, timeout=timeout).version()
    except (ZabbixApiError, ZabbixUnreachable):
        return "unknown"


def wait_api_version(config: DevConfig, timeout: float = 30) -> str:
    """``apiinfo.version``, retried: a frontend that just logged Admin in may still stumble."""
    found: list[str] = []

    def probe() -> bool:
        version = api_version(config)
        if version != "unknown":
            found.append(version)
        return bool(found)

    _wait(f"API {config.api_url} (apiinfo.version)", probe, timeout, f"see {config.php_log}")
    return found[0]


def trapper_ok(config: DevConfig, timeout: float = 5) -> bool:
    try:
        server_stats(port=config.server_port, timeout=timeout)
    except (OSError, ZabbixProtocolError, ValueError):
        return False
    return True


def _wait(check: str, probe: Callable[[], bool], timeout: float, hint: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise DevError(f"{check} not ready after {timeout:.0f} s; {hint}")
        time.sleep(0.25)


def wait_api(config: DevConfig, timeout: float = 120) -> None:
    _wait(
        f"API {config.api_url} (user.login as Admin)",
        lambda: api_ok(config),
        timeout,
        f"see {config.php_log} and {config.server_log}",
    )


def wait_trapper(config: DevConfig, timeout: float = 60) -> None:
    _wait(
        f"trapper 127.0.0.1:{config.server_port} (zabbix.stats)",
        lambda: trapper_ok(config),
        timeout,
        f"see {config.server_log}",
    )
