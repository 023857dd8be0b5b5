"""A real Zabbix 6.0 (Debian bookworm packages) on loopback, for tests and local runs.

No systemd: PostgreSQL (shared or private), zabbix_server and PHP's built-in server are started
and stopped by this package, with every file under one run dir. See
``deploy/zabbix/dev/README.md``.
"""

from .config import ADMIN_PASSWORD, ADMIN_USERNAME, DevConfig
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

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USERNAME",
    "DevConfig",
    "DevError",
    "DevInstance",
    "Unsupported",
    "down",
    "instance",
    "purge",
    "start_frontend",
    "status",
    "stop_frontend",
    "up",
]
