"""``yobidashi``: the operator's command.

- ``yobidashi config check FILE``: validate the on-call YAML (exit 1 if it has problems);
- ``yobidashi oncall now [--at T]``: who is on call per schedule (asks the dialer, or reads
  ``--config FILE`` directly);
- ``yobidashi contact verify NAME|NUMBER``: a call with a code to key in; ``config check`` and
  ``oncall now`` list the contacts whose number is not verified;
- ``yobidashi override add|list|remove``: who covers whom for a while (through the dialer);
- ``yobidashi send-test-alert``: post a realistic Zabbix problem to ingest;
- ``yobidashi heartbeat``: the canary, a synthetic alert through the whole paging path every few
  minutes, with its own ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from yobidashi_cli import contacts, heartbeat, overrides
from yobidashi_cli.settings import CliSettings, HeartbeatSettings
from yobidashi_cli.webhook import problem_notification
from yobidashi_common.telemetry import configure_logging
from yobidashi_dialer.oncall import ConfigError, load
from yobidashi_dialer.views import oncall_view


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def config_check(args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as exc:
        _print(exc.report())
        return 1
    _print(
        f"{args.file}: ok — {len(config.contacts)} contacts, {len(config.schedules)} schedules, "
        f"{len(config.policies)} policies, {len(config.routes)} routes"
    )
    if args.dialer:
        for line in contacts.unverified_lines(args.dialer, {c.id for c in config.contacts}):
            _print(line)
    return 0


def _when(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.astimezone()  # a bare time is local time


def oncall_now(args: argparse.Namespace) -> int:
    at = _when(args.at)
    if args.config:
        try:
            view = oncall_view(load(args.config), at)
        except ConfigError as exc:
            _print(exc.report())
            return 1
    else:
        try:
            response = httpx.get(
                f"{args.dialer.rstrip('/')}/v1/oncall", params={"at": at.isoformat()}, timeout=10
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            _print(f"cannot ask the dialer at {args.dialer}: {exc}")
            return 1
        view = response.json()
    if args.json:
        _print(json.dumps(view, ensure_ascii=False, indent=2))
        return 0
    _print(f"on call at {view['at']}:")
    for schedule in view["schedules"]:
        person = schedule["on_call"]
        who = f"{person['name']} ({person['phone']})" if person else "nobody"
        until = f" until {schedule['until']}" if schedule["until"] else ""
        because = f" [{person['because']}]" if person and person.get("because") else ""
        _print(f"  {schedule['name']:<20} {who}{until}{because}")
    if not args.config:
        for line in contacts.unverified_lines(args.dialer):
            _print(line)
    return 0


def test_alert(event_id: int, sendto: str, severity: int, host: str, name: str) -> dict[str, Any]:
    """A problem notification exactly as our media type posts it."""
    return problem_notification(
        event_id,
        at=datetime.now(UTC),
        sendto=sendto,
        name=name,
        host=host,
        severity=severity,
        tags=[{"tag": "source", "value": "yobidashi send-test-alert"}],
    )


def send_test_alert(args: argparse.Namespace) -> int:
    if not args.token:
        _print("give --token or set INGEST_TOKEN")
        return 1
    event_id = args.event_id or 900_000_000 + secrets.randbelow(99_999_999)
    body = test_alert(event_id, args.sendto, args.severity, args.host, args.name)
    try:
        response = httpx.post(
            f"{args.ingest.rstrip('/')}/v1/zabbix",
            json=body,
            headers={"Authorization": f"Bearer {args.token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        _print(f"cannot reach ingest at {args.ingest}: {exc}")
        return 1
    _print(f"ingest answered {response.status_code}: {response.text}")
    return 0 if response.status_code == 202 else 1


def heartbeat_command(args: argparse.Namespace) -> int:
    given = {
        "yobidashi_ingest_url": args.ingest,
        "yobidashi_dialer_url": args.dialer,
        "ingest_token": args.token,
        "heartbeat_number": args.number,
        "heartbeat_every": args.every,
        "heartbeat_timeout": args.timeout,
        "heartbeat_port": args.port,
    }
    try:
        settings = HeartbeatSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"]).upper()
            _print(f"{field}: {err['msg']} (a flag or the environment variable)")
        return 2
    configure_logging("heartbeat", "INFO", "json")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    canary = heartbeat.Canary(
        ingest=settings.yobidashi_ingest_url.rstrip("/"),
        dialer=settings.yobidashi_dialer_url.rstrip("/"),
        token=settings.ingest_token.get_secret_value(),
        number=settings.heartbeat_number,
        timeout=settings.heartbeat_timeout,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            heartbeat.run(
                canary,
                settings.heartbeat_every,
                settings.heartbeat_port,
                args.rounds,
                host=settings.heartbeat_host,
            )
        )
    return 0


def parser() -> argparse.ArgumentParser:
    env = CliSettings()
    root = argparse.ArgumentParser(prog="yobidashi", description="Yobidashi's operator command.")
    commands = root.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="the on-call config").add_subparsers(
        dest="config_command", required=True
    )
    check = config.add_parser("check", help="validate an on-call YAML file")
    check.add_argument("file")
    check.add_argument(
        "--dialer",
        default=env.yobidashi_dialer_url,
        help="also list the contacts whose number is not verified (empty: do not ask)",
    )
    check.set_defaults(run=config_check)

    oncall = commands.add_parser("oncall", help="who is on call").add_subparsers(
        dest="oncall_command", required=True
    )
    now = oncall.add_parser("now", help="who is on call per schedule")
    now.add_argument("--at", help="ISO 8601 time (default: now)")
    now.add_argument("--config", help="read this YAML instead of asking the dialer")
    now.add_argument("--dialer", default=env.yobidashi_dialer_url)
    now.add_argument("--json", action="store_true")
    now.set_defaults(run=oncall_now)

    admin = env.yobidashi_admin_token
    overrides.add_commands(
        commands, env.yobidashi_dialer_url, admin.get_secret_value() if admin else None
    )
    contacts.add_commands(
        commands, env.yobidashi_dialer_url, admin.get_secret_value() if admin else None
    )

    alert = commands.add_parser("send-test-alert", help="post a test problem to ingest")
    alert.add_argument("--ingest", default=env.yobidashi_ingest_url)
    token = env.ingest_token.get_secret_value() if env.ingest_token else None
    alert.add_argument("--token", default=token)
    alert.add_argument("--sendto", default="090-1234-5678", help="the number to ring")
    alert.add_argument("--severity", type=int, choices=range(6), default=4)
    alert.add_argument("--host", default="web01")
    alert.add_argument("--name", default="HTTP サービスが応答しません")
    alert.add_argument("--event-id", type=int)
    alert.set_defaults(run=send_test_alert)

    beat = commands.add_parser(
        "heartbeat", help="run the heartbeat canary (flags override the HEARTBEAT_* variables)"
    )
    beat.add_argument("--ingest")
    beat.add_argument("--dialer")
    beat.add_argument("--token")
    beat.add_argument(
        "--number", help="the canary number: a phone that answers (the simulator, or a test line)"
    )
    beat.add_argument("--every", help="time between rounds (default 5m)")
    beat.add_argument("--timeout", help="how long a round may take (default 2m)")
    beat.add_argument("--port", type=int, help="the metrics port (default 9102)")
    beat.add_argument("--rounds", type=int, help="stop after this many (default: forever)")
    beat.set_defaults(run=heartbeat_command)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
