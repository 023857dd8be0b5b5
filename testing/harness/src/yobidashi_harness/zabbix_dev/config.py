"""Settings of a dev Zabbix instance, from ``ZBX_DEV_*`` environment variables.

Every setting can be given for all versions (``ZBX_DEV_WEB_PORT``) or for one version
(``ZBX_DEV_70_WEB_PORT``, which wins). The defaults avoid every standard port (10051, 80, 8080)
and differ per version, so 6.0 and 7.0 run side by side and next to a real Zabbix.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .versions import DEFAULT_VERSION, Source, VersionSpec, spec_for

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A suite name goes into a file name and an apt source line.
_SUITE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")

ADMIN_USERNAME = "Admin"
ADMIN_PASSWORD = "zabbix"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE_DIR = Path("/var/cache/yobidashi/zabbix-dev")
# Chroots live outside the checkout: while one runs, /proc is mounted in it, and a `grep -r`
# or file watcher walking the checkout must not wander into it (reading /proc/kmsg blocks).
DEFAULT_CHROOT_DIR = Path("/var/lib/yobidashi/zabbix-dev/chroots")
# Inside a chroot, everything the instance's processes write lives here.
CHROOT_STATE_DIR = Path("/var/lib/yobidashi-dev")


def find_repo_root(start: Path | None = None) -> Path:
    """The workspace root: the nearest ancestor holding ``uv.lock`` (from this file, then cwd)."""
    for origin in (Path(__file__).resolve(), (start or Path.cwd()).resolve()):
        for candidate in (origin, *origin.parents):
            if (candidate / "uv.lock").is_file() and (candidate / "pyproject.toml").is_file():
                return candidate
    return (start or Path.cwd()).resolve()


def selected_version(env: Mapping[str, str] | None = None) -> str:
    """``ZABBIX_VERSION``, else the default (7.0); validated."""
    env = os.environ if env is None else env
    return spec_for(env.get("ZABBIX_VERSION", "").strip() or DEFAULT_VERSION).version


class _Settings:
    """Reads ``ZBX_DEV_<TOKEN>_<NAME>`` first, then ``ZBX_DEV_<NAME>``."""

    def __init__(self, env: Mapping[str, str], spec: VersionSpec) -> None:
        self.env = env
        self.spec = spec

    def raw(self, name: str) -> tuple[str, str]:
        """(the variable that was set, its value); ("", "") when neither is set."""
        for variable in (f"ZBX_DEV_{self.spec.token}_{name}", f"ZBX_DEV_{name}"):
            value = self.env.get(variable, "").strip()
            if value:
                return variable, value
        return "", ""

    def text(self, name: str, default: str) -> str:
        return self.raw(name)[1] or default

    def port(self, name: str, default: int) -> int:
        variable, raw = self.raw(name)
        if not raw:
            return default
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ValueError(f"{variable}={raw!r} is not a TCP port")
        return int(raw)

    def ident(self, name: str, default: str) -> str:
        variable, raw = self.raw(name)
        value = raw or default
        # Interpolated into SQL and config files, so only plain lower-case identifiers.
        if not _IDENT.match(value):
            raise ValueError(f"{variable or name}={value!r}: use lower-case letters, digits and _")
        return value

    def suite(self) -> str | None:
        variable, raw = self.raw("SUITE")
        if raw and not _SUITE.match(raw):
            raise ValueError(f"{variable}={raw!r} is not a Debian suite name")
        return raw or self.spec.suite

    def mirror(self) -> str:
        variable, raw = self.raw("MIRROR")
        if raw and not re.match(r"^(https?|file)://\S+$", raw):
            raise ValueError(f"{variable}={raw!r} is not an http(s):// or file:// URL")
        return (raw or DEFAULT_MIRROR).rstrip("/")


@dataclass(frozen=True)
class DevConfig:
    """One dev instance: a version, its run dir, ports and database."""

    version: str
    run_dir: Path
    server_port: int
    web_port: int
    pg_port: int  # a PostgreSQL already listening here is reused
    private_pg_port: int  # else a private cluster listens here
    db_name: str
    db_user: str
    db_password: str = "yobidashi_zabbix"
    tz: str = "UTC"
    suite: str | None = None  # chroot versions: the Debian suite
    mirror: str = DEFAULT_MIRROR
    cache_dir: Path = DEFAULT_CACHE_DIR
    chroot_dir: Path = DEFAULT_CHROOT_DIR

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, version: str | None = None
    ) -> DevConfig:
        """The instance of ``version`` (default: ``ZABBIX_VERSION``, else 7.0)."""
        env = os.environ if env is None else env
        spec = spec_for(version or selected_version(env))
        settings = _Settings(env, spec)
        raw_run_dir = settings.text("RUN_DIR", "")
        default_run_dir = find_repo_root() / ".run" / spec.run_dir_name
        run_dir = Path(raw_run_dir) if raw_run_dir else default_run_dir
        db_name = settings.ident("DB_NAME", spec.db_name)
        config = cls(
            version=spec.version,
            run_dir=run_dir.resolve(),
            server_port=settings.port("SERVER_PORT", spec.server_port),
            web_port=settings.port("WEB_PORT", spec.web_port),
            pg_port=settings.port("PG_PORT", 5432),
            private_pg_port=settings.port("PRIVATE_PG_PORT", spec.private_pg_port),
            db_name=db_name,
            # Its own role per database: `purge` drops the role, which must own nothing else.
            db_user=settings.ident("DB_USER", spec.db_name),
            db_password=settings.text("DB_PASSWORD", "yobidashi_zabbix"),
            tz=settings.text("TZ", "UTC"),
            suite=settings.suite() if spec.source is Source.CHROOT else None,
            mirror=settings.mirror(),
            cache_dir=Path(settings.text("CACHE_DIR", str(DEFAULT_CACHE_DIR))).resolve(),
            chroot_dir=Path(settings.text("CHROOT_DIR", str(DEFAULT_CHROOT_DIR))).resolve(),
        )
        if config.web_port == config.server_port:
            raise ValueError(
                f"Zabbix {spec.version}: web and server port are both {config.web_port}"
            )
        return config

    @classmethod
    def for_versions(
        cls, versions: Iterable[str], env: Mapping[str, str] | None = None
    ) -> list[DevConfig]:
        """Configs for several versions at once, refusing any two that would collide."""
        configs = [cls.from_env(env, version=v) for v in dict.fromkeys(versions)]
        for index, one in enumerate(configs):
            for other in configs[index + 1 :]:
                check_no_clash(one, other)
        return configs

    @property
    def spec(self) -> VersionSpec:
        return spec_for(self.version)

    @property
    def in_chroot(self) -> bool:
        return self.spec.source is Source.CHROOT

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api_jsonrpc.php"

    def setting_name(self, name: str) -> str:
        """The variable that sets ``name`` for this version alone (for error messages)."""
        return f"ZBX_DEV_{self.spec.token}_{name}"

    # Layout. Host-side files live in the run dir; the files the instance's own processes open
    # by path live in `state_dir`, which for a chroot version is inside the chroot. Every path
    # below is as seen from this (host) process; `runtime.Runtime.inside` translates.
    @property
    def root(self) -> Path | None:
        """This run dir's own chroot (chroot versions only), named after the run dir."""
        if not self.in_chroot:
            return None
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:10]
        return self.chroot_dir / f"{self.run_dir.name}-{digest}"

    @property
    def state_dir(self) -> Path:
        return self.root / CHROOT_STATE_DIR.relative_to("/") if self.root else self.run_dir

    @property
    def log_dir(self) -> Path:
        """Logs written from the host side (apt, PHP's output, the schema import)."""
        return self.run_dir / "log"

    @property
    def server_log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def server_run_dir(self) -> Path:
        """PID file and RTC sockets; owned by the ``zabbix`` user, which writes them."""
        return self.state_dir / "run"

    @property
    def server_conf(self) -> Path:
        return self.state_dir / "zabbix_server.conf"

    @property
    def server_pid_file(self) -> Path:
        return self.server_run_dir / "zabbix_server.pid"

    @property
    def server_log(self) -> Path:
        return self.server_log_dir / "zabbix_server.log"

    @property
    def frontend_dir(self) -> Path:
        """6.0's private copy of /usr/share/zabbix (a chroot serves its own, unchanged)."""
        return self.run_dir / "frontend"

    @property
    def frontend_conf(self) -> Path:
        if self.root:
            # Debian's frontend reads this fixed path; in a chroot it belongs to us alone.
            return self.root / "etc/zabbix/zabbix.conf.php"
        return self.frontend_dir / "conf" / "zabbix.conf.php"

    @property
    def php_pid_file(self) -> Path:
        return self.run_dir / "php.pid"

    @property
    def php_log(self) -> Path:
        return self.log_dir / "php.log"

    @property
    def pg_data(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        return self.state_dir / "pgsock"

    @property
    def pg_log(self) -> Path:
        return self.server_log_dir / "postgresql.log"

    @property
    def lock_file(self) -> Path:
        """Next to the run dir, not in it, so that ``purge`` can delete the run dir while locked."""
        return self.run_dir.with_name(f".{self.run_dir.name}.lock")


def check_no_clash(one: DevConfig, other: DevConfig) -> None:
    """Two instances configured in one process must not share a run dir, port or database."""
    shared = []
    if one.run_dir == other.run_dir:
        shared.append(("RUN_DIR", str(one.run_dir)))
    ports = {
        "WEB_PORT": (one.web_port, other.web_port),
        "SERVER_PORT": (one.server_port, other.server_port),
        "PRIVATE_PG_PORT": (one.private_pg_port, other.private_pg_port),
    }
    shared += [(name, str(a)) for name, (a, b) in ports.items() if a == b]
    if (one.pg_port, one.db_name) == (other.pg_port, other.db_name):
        shared.append(("DB_NAME", one.db_name))
    if one.db_user == other.db_user:
        shared.append(("DB_USER", one.db_user))
    if shared:
        detail = "; ".join(
            f"{value} (set {one.setting_name(name)} / {other.setting_name(name)})"
            for name, value in shared
        )
        raise ValueError(f"Zabbix {one.version} and {other.version} would share: {detail}")
