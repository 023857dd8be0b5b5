"""Real Zabbix instances on loopback, for tests and local runs: 6.0 and 7.0 side by side.

6.0 runs from this (bookworm) machine's packages; 7.0 from Debian trixie's, in a chroot per run
dir. No systemd, no Docker: PostgreSQL (shared or private), zabbix_server and PHP's built-in
server are started and stopped by this package, with every file under one run dir. See
``deploy/zabbix/dev/README.md``.
"""

from .config import ADMIN_PASSWORD, ADMIN_USERNAME, DevConfig, selected_version
from .lifecycle import (
    DevInstance,
    down,
    instance,
    purge,
    start_frontend,
    status,
    stop_frontend,
    up,
)
from .system import DevError, Unsupported
from .versions import DEFAULT_VERSION, TESTED_VERSIONS

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USERNAME",
    "DEFAULT_VERSION",
    "TESTED_VERSIONS",
    "DevConfig",
    "DevError",
    "DevInstance",
    "Unsupported",
    "down",
    "instance",
    "purge",
    "selected_version",
    "start_frontend",
    "status",
    "stop_frontend",
    "up",
]
