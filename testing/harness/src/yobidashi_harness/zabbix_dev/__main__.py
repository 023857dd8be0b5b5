"""``python -m yobidashi_harness.zabbix_dev <command> [version…]``; see the dev README."""

from __future__ import annotations

import argparse
import sys
import time

from . import install, lifecycle
from .config import DevConfig, selected_version
from .system import DevError, say
from .versions import KNOWN, TESTED_VERSIONS

COMMANDS = {
    "install": "install what is missing: Debian packages, and a chroot version's cached tarball",
    "up": "install if needed, start everything and wait until healthy (idempotent)",
    "down": "stop PHP, zabbix_server and a private PostgreSQL, unmount the chroot; keep the data",
    "purge": "down, then drop the database or private cluster and delete the run dir",
    "status": "show what runs; exit 0 when healthy, 3 otherwise",
    "stop-frontend": "stop only the PHP frontend (the API goes away)",
    "start-frontend": "start the PHP frontend again and wait for the API",
}


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _versions(given: list[str]) -> list[str]:
    if "all" in given:
        return list(TESTED_VERSIONS)
    return given or [selected_version()]


def _run(command: str, config: DevConfig) -> bool:
    """One command for one instance; False when `status` finds it unhealthy."""
    if command == "install":
        installed = install.install(config)
        done = "installed " + " ".join(installed) if installed else "nothing to install"
        _out(f"Zabbix {config.version}: {done}")
    elif command == "up":
        info = lifecycle.up(config)
        _out(f"Zabbix {info.zabbix_version} ({info.package_version})")
        _out(f"API URL: {info.api_url}")
        _out(f"trapper: {info.server_host}:{info.server_port}")
    elif command == "down":
        lifecycle.down(config)
    elif command == "purge":
        lifecycle.purge(config)
    elif command == "status":
        healthy, lines = lifecycle.status(config)
        for line in lines:
            _out(line)
        return healthy
    elif command == "stop-frontend":
        lifecycle.stop_frontend(config)
    elif command == "start-frontend":
        lifecycle.start_frontend(config)
        _out(f"API URL: {config.api_url}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zabbix-dev",
        description="Dev Zabbix on loopback (deploy/zabbix/dev/README.md). Without a version: "
        "$ZABBIX_VERSION, else 7.0; 'all' means " + " and ".join(TESTED_VERSIONS) + ".",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "versions",
            nargs="*",
            metavar="VERSION",
            help="Zabbix version(s): " + ", ".join(KNOWN) + " or all",
        )
    args = parser.parse_args(argv)
    started = time.monotonic()
    healthy = True
    try:
        for config in DevConfig.for_versions(_versions(args.versions)):
            healthy = _run(args.command, config) and healthy
    except (DevError, ValueError) as exc:
        say(f"error: {exc}")
        return 1
    say(f"{args.command} done in {time.monotonic() - started:.1f} s")
    return 0 if healthy else 3


if __name__ == "__main__":
    sys.exit(main())
