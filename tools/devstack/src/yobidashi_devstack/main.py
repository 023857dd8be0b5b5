"""``yobidashi-devstack``: what ``make run`` and ``make run-zabbix`` start."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from yobidashi_common.phone import InvalidPhoneNumber, normalize
from yobidashi_devstack.stack import SAMPLE_CONFIG, Options, run
from yobidashi_dialer.oncall import ConfigError
from yobidashi_harness.zabbix_dev.versions import DEFAULT_VERSION, KNOWN


def _number(raw: str) -> str:
    try:
        return normalize(raw)
    except InvalidPhoneNumber as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="yobidashi-devstack",
        description="Run NATS, ingest, dialer, acker and the Twilio simulator on this machine, "
        "with a web phone.",
    )
    parser.add_argument(
        "--with-zabbix",
        action="store_true",
        help="also bring up a local real Zabbix and wire its media type to ingest",
    )
    parser.add_argument(
        "--zabbix-version",
        default=os.environ.get("ZABBIX_VERSION", "").strip() or DEFAULT_VERSION,
        choices=KNOWN,
        help="with --with-zabbix: which one ($ZABBIX_VERSION, else %(default)s)",
    )
    parser.add_argument("--config", type=Path, default=SAMPLE_CONFIG, help="on-call YAML")
    parser.add_argument(
        "--phone",
        action="append",
        default=[],
        type=_number,
        metavar="NUMBER",
        help="also a web phone for this number, one the on-call config does not know "
        "(a Zabbix user's media, rung in Zabbix-driven mode); repeatable",
    )
    parser.add_argument("--run-dir", type=Path, default=Path(".run"), help="data and logs")
    parser.add_argument("--port", type=int, default=8080, help="the web phone's port")
    args = parser.parse_args()
    if args.zabbix_version not in KNOWN:  # argparse does not check a default
        parser.error(f"ZABBIX_VERSION={args.zabbix_version!r}: use one of {', '.join(KNOWN)}")
    options = Options(
        run_dir=args.run_dir,
        config=args.config,
        phones=tuple(args.phone),
        with_zabbix=args.with_zabbix,
        zabbix_version=args.zabbix_version,
        console_port=args.port,
    )
    try:
        sys.exit(asyncio.run(run(options)))
    except ConfigError as exc:
        sys.stderr.write(exc.report() + "\n")
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while starting: everything started is stopped already
        sys.exit(130)
