"""The subcommands as functions: what the CLI and the pytest fixture both call."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import chroot, frontend, health, install, postgres, server
from .config import ADMIN_PASSWORD, ADMIN_USERNAME, DevConfig
from .mounts import remove_tree
from .runtime import Runtime
from .system import DevError, locked, port_open, port_owner, say


@dataclass(frozen=True)
class DevInstance:
    """What a client needs to talk to the running dev Zabbix."""

    api_url: str
    admin_username: str
    admin_password: str
    server_host: str
    server_port: int
    web_port: int
    run_dir: Path
    config: DevConfig  # for stop_frontend(config) / start_frontend(config) and friends
    zabbix_version: str  # what the API reports, e.g. "7.0.22"
    package_version: str  # the Debian package that runs, e.g. "1:7.0.22+dfsg-1~deb13u1"

    @property
    def version(self) -> str:
        """The major.minor this instance was asked for: "6.0" or "7.0"."""
        return self.config.version


def package_version(config: DevConfig) -> str:
    return Runtime.of(config).package_version("zabbix-server-pgsql") or "not installed"


def instance(config: DevConfig) -> DevInstance:
    return DevInstance(
        api_url=config.api_url,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        server_host="127.0.0.1",
        server_port=config.server_port,
        web_port=config.web_port,
        run_dir=config.run_dir,
        config=config,
        zabbix_version=health.wait_api_version(config),
        package_version=package_version(config),
    )


def _chroot_current(config: DevConfig) -> bool:
    """The chroot was unpacked from the tarball today's settings (suite, mirror) ask for."""
    if not config.in_chroot:
        return True
    try:
        wanted = chroot.tarball(config).name
    except DevError:
        return False
    return chroot.unpacked_from(config) == wanted


def _healthy(config: DevConfig) -> bool:
    """Everything runs with the current config and answers: `up` has nothing to do."""
    return (
        _chroot_current(config)
        and server.running(config)
        and server.conf_current(config)
        and frontend.running(config)
        and frontend.current(config)
        and health.trapper_ok(config)
        and health.api_ok(config)
    )


def _refuse_foreign_listeners(config: DevConfig) -> None:
    """Never attach to (or start next to) another instance that holds our ports."""
    ours = {
        config.web_port: ("WEB_PORT", frontend.running(config)),
        config.server_port: ("SERVER_PORT", server.running(config)),
    }
    for port, (setting, running_here) in ours.items():
        if not running_here and port_open(port):
            raise DevError(
                f"Zabbix {config.version}: 127.0.0.1:{port} is taken by {port_owner(port)}, "
                f"not by this run dir's instance ({config.run_dir}); stop that or set "
                f"{config.setting_name(setting)}"
            )


def _stop_processes(config: DevConfig) -> None:
    frontend.stop(config)
    server.stop(config)
    postgres.stop_private(config)


def up(config: DevConfig | None = None) -> DevInstance:
    """Install, start and verify everything; a quick check and return when already up."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        if _healthy(config):
            return instance(config)
        started = time.monotonic()
        _refuse_foreign_listeners(config)
        install.install(config)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.run_dir.chmod(0o755)
        config.log_dir.mkdir(parents=True, exist_ok=True)
        if config.in_chroot:
            if not _chroot_current(config):
                _stop_processes(config)
            chroot.sweep_orphans(config)
            chroot.ensure_root(config, chroot.ensure_tarball(config))
            chroot.attach(config)
            _link_logs(config)
        su = postgres.ensure_database(config)
        # Running but not answering (e.g. its database was dropped under it): start afresh.
        if server.running(config) and not health.trapper_ok(config):
            server.stop(config)
        if frontend.running(config) and not health.api_ok(config):
            frontend.stop(config)
        if not server.running(config) and not frontend.running(config):
            postgres.check_unused(config, su)
        if not server.running(config):
            postgres.check_capacity(config, su)
        frontend.ensure_copy(config)
        server.start(config)
        frontend.start(config)
        health.wait_api(config)
        health.wait_trapper(config)
        say(f"Zabbix {config.version} up in {time.monotonic() - started:.1f} s")
    return instance(config)


def _link_logs(config: DevConfig) -> None:
    """The server's and a private cluster's logs are in the chroot; link them next to the rest.

    Links to files only: a link to the chroot itself would lead repository walkers into it.
    """
    for target in (config.server_log, config.pg_log):
        link = config.log_dir / target.name
        if not link.is_symlink() or link.readlink() != target:
            link.unlink(missing_ok=True)
            link.symlink_to(target)


def down(config: DevConfig | None = None) -> None:
    """Stop PHP, zabbix_server and a private PostgreSQL cluster; unmount; keep all data."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        _stop_processes(config)
        if config.in_chroot:
            chroot.release(config)


def purge(config: DevConfig | None = None) -> None:
    """`down`, then drop the database (or the private cluster) and delete the run dir."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        frontend.stop(config)
        server.stop(config)
        if config.in_chroot and config.root is not None and config.root.is_dir():
            # psql runs in the chroot; mounted only for this and unmounted again.
            with chroot.attached(config):
                postgres.purge(config)
            chroot.release(config)
        else:
            postgres.purge(config)
        if config.root is not None:
            remove_tree(config.root)
        remove_tree(config.run_dir)


def stop_frontend(config: DevConfig | None = None) -> None:
    """Stop only PHP: the API goes away while zabbix_server keeps running."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        frontend.stop(config)


def start_frontend(config: DevConfig | None = None) -> None:
    """Start PHP again (after `stop_frontend`) and wait until the API logs in."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        frontend.ensure_copy(config)
        frontend.start(config)
        health.wait_api(config)


def status(config: DevConfig | None = None) -> tuple[bool, list[str]]:
    """Whether everything is up, and one line per component."""
    config = config or DevConfig.from_env()
    server_pid = server.server_pid(config)
    php_pid = frontend.php_pid(config)
    trapper = health.trapper_ok(config)
    api = health.api_ok(config)
    lines = [
        f"Zabbix {config.version}: {package_version(config)}"
        + (f" (API {health.api_version(config)})" if api else ""),
        f"run dir:       {config.run_dir}",
    ]
    if config.in_chroot:
        lines.append(f"chroot:        {_describe_chroot(config)}")
    lines += [
        f"postgresql:    {postgres.describe(config)}",
        f"zabbix_server: {_state(server_pid)}, trapper 127.0.0.1:{config.server_port} "
        + ("answers zabbix.stats" if trapper else "not answering"),
        f"frontend:      {_state(php_pid)}, API {config.api_url} "
        + ("logs in" if api else "not answering"),
    ]
    pg_ok = port_open(postgres.db_port(config))
    return (pg_ok and trapper and api), lines


def _describe_chroot(config: DevConfig) -> str:
    unpacked = chroot.unpacked_from(config)
    if unpacked is None:
        return f"not unpacked yet (suite {config.suite})"
    try:
        wanted = chroot.tarball(config).name
    except DevError as exc:
        return f"{config.root} from {unpacked}; {exc}"
    note = "" if unpacked == wanted else f"; settings now want {wanted} (next `up` replaces it)"
    return f"{config.root} from {unpacked}{note}"


def _state(pid: int | None) -> str:
    return f"running (pid {pid})" if pid else "stopped"
