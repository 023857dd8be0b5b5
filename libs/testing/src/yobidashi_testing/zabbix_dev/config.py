"""Settings of the dev Zabbix, from ``ZBX_DEV_*`` environment variables.

The defaults avoid every standard port (10051, 80, 8080) so the dev instance can run next to a
real Zabbix or a second checkout's instance on another port set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

ADMIN_USERNAME = "Admin"
ADMIN_PASSWORD = "zabbix"


def find_repo_root(start: Path | None = None) -> Path:
    """The workspace root: the nearest ancestor holding ``uv.lock`` (from this file, then cwd)."""
    for origin in (Path(__file__).resolve(), (start or Path.cwd()).resolve()):
        for candidate in (origin, *origin.parents):
            if (candidate / "uv.lock").is_file() and (candidate / "pyproject.toml").is_file():
                return candidate
    return (start or Path.cwd()).resolve()


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    value = int(raw) if raw else default
    if not 0 < value < 65536:
        raise ValueError(f"{name}={raw!r} is not a TCP port")
    return value


def _ident(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    # Interpolated into SQL and config files, so only plain lower-case identifiers.
    if not _IDENT.match(value):
        raise ValueError(f"{name}={value!r}: use lower-case letters, digits and _")
    return value


@dataclass(frozen=True)
class DevConfig:
    run_dir: Path
    server_port: int = 10151
    web_port: int = 18081
    pg_port: int = 5432
    db_name: str = "yobidashi_zabbix"
    db_user: str = "yobidashi_zabbix"
    db_password: str = "yobidashi_zabbix"
    tz: str = "UTC"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DevConfig:
        env = os.environ if env is None else env
        raw_run_dir = env.get("ZBX_DEV_RUN_DIR", "").strip()
        run_dir = Path(raw_run_dir) if raw_run_dir else find_repo_root() / ".run" / "zabbix"
        return cls(
            run_dir=run_dir.resolve(),
            server_port=_port(env, "ZBX_DEV_SERVER_PORT", 10151),
            web_port=_port(env, "ZBX_DEV_WEB_PORT", 18081),
            pg_port=_port(env, "ZBX_DEV_PG_PORT", 5432),
            db_name=_ident(env, "ZBX_DEV_DB_NAME", "yobidashi_zabbix"),
            db_user=_ident(env, "ZBX_DEV_DB_USER", "yobidashi_zabbix"),
            db_password=env.get("ZBX_DEV_DB_PASSWORD", "").strip() or "yobidashi_zabbix",
            tz=env.get("ZBX_DEV_TZ", "").strip() or "UTC",
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api_jsonrpc.php"

    # Layout of the run dir. Everything the instance writes lives here.
    @property
    def log_dir(self) -> Path:
        return self.run_dir / "log"

    @property
    def server_run_dir(self) -> Path:
        """PID file and RTC sockets; owned by the ``zabbix`` user, which writes them."""
        return self.run_dir / "run"

    @property
    def server_conf(self) -> Path:
        return self.run_dir / "zabbix_server.conf"

    @property
    def server_pid_file(self) -> Path:
        return self.server_run_dir / "zabbix_server.pid"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "zabbix_server.log"

    @property
    def frontend_dir(self) -> Path:
        return self.run_dir / "frontend"

    @property
    def frontend_conf(self) -> Path:
        return self.frontend_dir / "conf" / "zabbix.conf.php"

    @property
    def php_pid_file(self) -> Path:
        return self.run_dir / "php.pid"

    @property
    def php_log(self) -> Path:
        return self.log_dir / "php.log"

    @property
    def pg_data(self) -> Path:
        return self.run_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        return self.run_dir / "pgsock"

    @property
    def pg_log(self) -> Path:
        return self.log_dir / "postgresql.log"

    @property
    def lock_file(self) -> Path:
        """Next to the run dir, not in it, so that ``purge`` can delete the run dir while locked."""
        return self.run_dir.with_name(f".{self.run_dir.name}.lock")
