"""zabbix_server with a private config; ``/etc/zabbix/zabbix_server.conf`` is never used."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from . import postgres
from .config import DevConfig
from .runtime import Runtime
from .system import (
    DevError,
    alive,
    is_root,
    port_open,
    port_owner,
    read_pid,
    say,
    wait_dead,
)
from .versions import version_tuple

SERVER_BIN = "/usr/sbin/zabbix_server"
SERVER_USER = "zabbix"  # zabbix_server drops root for this user (created by the package)


def render_conf(config: DevConfig) -> str:
    rt = Runtime.of(config)
    settings: dict[str, object] = {
        "ListenIP": "127.0.0.1",
        "ListenPort": config.server_port,
        "LogFile": rt.inside(config.server_log),
        "LogFileSize": 16,
        "PidFile": rt.inside(config.server_pid_file),
        # Default /tmp: two servers on one machine would share /tmp/zabbix_server_*.sock.
        "SocketDir": rt.inside(config.server_run_dir),
        "DBHost": "127.0.0.1",
        "DBPort": postgres.db_port(config),
        "DBName": config.db_name,
        "DBUser": config.db_user,
        "DBPassword": config.db_password,
        # New hosts/items/actions reach the server only at the next sync (default 60 s).
        "CacheUpdateFrequency": 2,
        "StartAlerters": 3,
        "StartEscalators": 1,
        # Each process below that talks to the database holds a connection for good, and the
        # shared PostgreSQL (max_connections 100) hosts several instances: none that nothing
        # here uses (discovery, web scenarios, proxies, calculated items).
        "StartPollers": 1,
        "StartPollersUnreachable": 1,
        "StartPingers": 1,
        "StartDiscoverers": 0,
        "StartHTTPPollers": 0,
        "StartProxyPollers": 0,
        "StartTrappers": 3,
        "StartPreprocessors": 2,
        "StartDBSyncers": 2,
        "StartLLDProcessors": 1,
        "StartHistoryPollers": 0,
        "StartTimers": 1,
        "StartReportWriters": 0,
        "StatsAllowedIP": "127.0.0.1",
        "Timeout": 4,
        "LogSlowQueries": 3000,
    }
    if version_tuple(config.version) >= (7, 0):
        # New in 7.0, and nothing here polls SNMP or runs browser items.
        settings.update(StartSNMPPollers=0, StartBrowserPollers=0)
    lines = ["# Written by yobidashi zabbix-dev; rewritten on every `up`."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def server_pid(config: DevConfig) -> int | None:
    pid = read_pid(config.server_pid_file)
    return pid if alive(pid, "zabbix_server", root=config.root) else None


def running(config: DevConfig) -> bool:
    return server_pid(config) is not None


def conf_current(config: DevConfig) -> bool:
    try:
        return config.server_conf.read_text() == render_conf(config)
    except OSError:
        return False


def _prepare_dirs(config: DevConfig, rt: Runtime) -> None:
    for directory in (config.server_log_dir, config.server_run_dir):
        directory.mkdir(parents=True, exist_ok=True)
        if is_root():
            rt.chown(directory, SERVER_USER)
    if is_root():
        probe = rt.run(
            ["test", "-w", rt.inside(config.server_run_dir)], user=SERVER_USER, check=False
        )
        if probe.returncode != 0:
            raise DevError(
                f"user {SERVER_USER} cannot write {config.server_run_dir} (is a parent directory "
                "private?); set ZBX_DEV_RUN_DIR to a directory it can reach, e.g. "
                "/var/tmp/yobidashi-zabbix"
            )
    # A socket left by an earlier run (for example one started as another user) belongs to
    # nobody now, and zabbix_server refuses to start when it cannot replace it.
    for stale in config.server_run_dir.glob("zabbix_server_*.sock"):
        stale.unlink()


def start(config: DevConfig) -> None:
    """Write the config; start the server, or restart it when the config changed."""
    if running(config) and conf_current(config):
        return
    if running(config):
        say("server config changed: restarting zabbix_server")
        stop(config)
    if port_open(config.server_port):
        raise DevError(
            f"127.0.0.1:{config.server_port} is taken by {port_owner(config.server_port)}; "
            f"set {config.setting_name('SERVER_PORT')}"
        )
    rt = Runtime.of(config)
    _prepare_dirs(config, rt)
    config.server_conf.write_text(render_conf(config))
    config.server_conf.chmod(0o640)
    if is_root():
        # It holds the DB password; the server reads it after dropping to its user.
        os.chown(config.server_conf, 0, rt.account(SERVER_USER).gid)
    config.server_pid_file.unlink(missing_ok=True)
    rt.run(
        [SERVER_BIN, "-c", rt.inside(config.server_conf)],
        env={"TZ": config.tz},
        stdout_path=config.log_dir / "zabbix_server.start.log",
        timeout=60,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if running(config) and port_open(config.server_port):
            return
        time.sleep(0.2)
    raise DevError(f"zabbix_server did not come up in 30 s; see {config.server_log}")


def stop(config: DevConfig) -> None:
    pid = server_pid(config)
    if pid is None:
        return
    say(f"stopping zabbix_server (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    # It flushes the history cache on TERM, which can take a few seconds.
    if not wait_dead(pid, 60):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_dead(pid, 5)
    config.server_pid_file.unlink(missing_ok=True)
