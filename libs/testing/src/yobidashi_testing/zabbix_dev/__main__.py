"""``python -m yobidashi_testing.zabbix_dev <command>``; see deploy/zabbix/dev/README.md."""

from __future__ import annotations

import argparse
import sys
import time

from . import install, lifecycle
from .config import DevConfig
from .system import DevError, say

COMMANDS = {
    "install": "install the missing Debian packages (nothing when all are there)",
    "up": "install if needed, start everything and wait until healthy (idempotent)",
    "down": "stop PHP, zabbix_server and a private PostgreSQL; keep the data",
    "purge": "down, then drop the database or private cluster and delete the run dir",
    "status": "show what runs; exit 0 when healthy, 3 otherwise",
    "stop-frontend": "stop only the PHP frontend (the API goes away)",
    "start-frontend": "start the PHP frontend again and wait for the API",
}


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zabbix-dev", description="Dev Zabbix 6.0 on loopback (deploy/zabbix/dev/README.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        config = DevConfig.from_env()
        if args.command == "install":
            installed = install.install(config)
            _out("installed: " + " ".join(installed) if installed else "nothing to install")
        elif args.command == "up":
            info = lifecycle.up(config)
            _out(f"API URL: {info.api_url}")
            _out(f"trapper: {info.server_host}:{info.server_port}")
        elif args.command == "down":
            lifecycle.down(config)
        elif args.command == "purge":
            lifecycle.purge(config)
        elif args.command == "status":
            healthy, lines = lifecycle.status(config)
            for line in lines:
                _out(line)
            return 0 if healthy else 3
        elif args.command == "stop-frontend":
            lifecycle.stop_frontend(config)
        elif args.command == "start-frontend":
            lifecycle.start_frontend(config)
            _out(f"API URL: {config.api_url}")
    except (DevError, ValueError) as exc:
        say(f"error: {exc}")
        return 1
    say(f"{args.command} done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
