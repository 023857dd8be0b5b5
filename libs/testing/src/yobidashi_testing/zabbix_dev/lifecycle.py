"""The subcommands as functions: what the CLI and the pytest fixture both call."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import frontend, health, install, postgres, server
from .config import ADMIN_PASSWORD, ADMIN_USERNAME, DevConfig
from .system import locked, port_open, say


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
    )


def _healthy(config: DevConfig) -> bool:
    """Everything runs with the current config and answers: `up` has nothing to do."""
    return (
        server.running(config)
        and server.conf_current(config)
        and frontend.running(config)
        and frontend.current(config)
        and health.trapper_ok(config)
        and health.api_ok(config)
    )


def up(config: DevConfig | None = None) -> DevInstance:
    """Install, start and verify everything; a quick check and return when already up."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        if _healthy(config):
            return instance(config)
        started = time.monotonic()
        install.install(config)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.run_dir.chmod(0o755)
        config.log_dir.mkdir(parents=True, exist_ok=True)
        postgres.ensure_database(config)
        # Running but not answering (e.g. its database was dropped under it): start afresh.
        if server.running(config) and not health.trapper_ok(config):
            server.stop(config)
        if frontend.running(config) and not health.api_ok(config):
            frontend.stop(config)
        frontend.ensure_copy(config)
        server.start(config)
        frontend.start(config)
        health.wait_api(config)
        health.wait_trapper(config)
        say(f"up in {time.monotonic() - started:.1f} s")
    return instance(config)


def down(config: DevConfig | None = None) -> None:
    """Stop PHP, zabbix_server and a private PostgreSQL cluster; keep all data."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        frontend.stop(config)
        server.stop(config)
        postgres.stop_private(config)


def purge(config: DevConfig | None = None) -> None:
    """`down`, then drop the database (or the private cluster) and delete the run dir."""
    config = config or DevConfig.from_env()
    with locked(config.lock_file):
        frontend.stop(config)
        server.stop(config)
        postgres.purge(config)
        if config.run_dir.exists():
            say(f"removing {config.run_dir}")
            shutil.rmtree(config.run_dir)


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
        f"run dir:       {config.run_dir}",
        f"postgresql:    {postgres.describe(config)}",
        f"zabbix_server: {_state(server_pid)}, trapper 127.0.0.1:{config.server_port} "
        + ("answers zabbix.stats" if trapper else "not answering"),
        f"frontend:      {_state(php_pid)}, API {config.api_url} "
        + ("logs in" if api else "not answering"),
    ]
    pg_ok = port_open(config.pg_port)
    return (pg_ok and trapper and api), lines


def _state(pid: int | None) -> str:
    return f"running (pid {pid})" if pid else "stopped"
