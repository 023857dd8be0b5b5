"""``yobidashi override add|list|remove``: on-call overrides through the dialer's API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _explain(response: httpx.Response) -> str:
    """The dialer's refusal in one line, naming the field at fault."""
    try:
        body = response.json()
    except ValueError:
        return f"the dialer answered {response.status_code}: {response.text[:200]}"
    details = body.get("details") or []
    if details:
        fields = "; ".join(f"--{_flag(d['field'])}: {d['message']}" for d in details)
        return f"refused ({response.status_code}): {fields}"
    return f"refused ({response.status_code}): {body.get('message', body)}"


def _flag(field: str) -> str:
    # The API's field names, as the options that set them
    return field.removeprefix("body.")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return {"Authorization": f"Bearer {args.token}"} if args.token else {}


def _line(o: dict[str, Any]) -> str:
    text = f"{o['id']}  {o['schedule']}: {o['contact']} from {o['from']} until {o['until']}"
    if o.get("replacing"):
        text += f" replacing {o['replacing']}"
    if o.get("by"):
        text += f" (by {o['by']})"
    if o.get("note"):
        text += f" — {o['note']}"
    return text


def _call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> httpx.Response:
    url = f"{args.dialer.rstrip('/')}/v1/overrides{path}"
    return httpx.request(method, url, headers=_headers(args), timeout=10, **kwargs)


def _change(
    args: argparse.Namespace, method: str, path: str, *, expect: int, verb: str, **kwargs: Any
) -> int:
    """One admin change: refused here without the token, reported as ``<verb> <override>``
    when the dialer answers ``expect``."""
    if not args.token:
        _print("give --token or set YOBIDASHI_ADMIN_TOKEN (changes need the admin token)")
        return 1
    try:
        response = _call(args, method, path, **kwargs)
    except httpx.HTTPError as exc:
        _print(f"cannot reach the dialer at {args.dialer}: {exc}")
        return 1
    if response.status_code != expect:
        _print(_explain(response))
        return 1
    _print(f"{verb} {_line(response.json())}")
    return 0


def add(args: argparse.Namespace) -> int:
    body = {
        "schedule": args.schedule,
        "contact": args.contact,
        "from": args.from_,
        "until": args.until,
    }
    for name in ("replacing", "by", "note"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    return _change(args, "POST", "", expect=201, verb="added", json=body)


def list_(args: argparse.Namespace) -> int:
    params = {"schedule": args.schedule} if args.schedule else {}
    try:
        response = _call(args, "GET", "", params=params)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        _print(f"cannot ask the dialer at {args.dialer}: {exc}")
        return 1
    overrides = response.json()["overrides"]
    if not overrides:
        _print("no overrides")
    for each in overrides:
        _print(_line(each))
    return 0


def remove(args: argparse.Namespace) -> int:
    return _change(args, "DELETE", f"/{args.id}", expect=200, verb="removed")


def add_commands(commands: Any, dialer_url: str, token: str | None) -> None:
    override = commands.add_parser(
        "override", help="who covers whom, for a while, without editing the YAML"
    ).add_subparsers(dest="override_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dialer", default=dialer_url)
        p.add_argument("--token", default=token, help="the admin token (YOBIDASHI_ADMIN_TOKEN)")

    new = override.add_parser(
        "add", help="add an override (times without an offset are in the schedule's timezone)"
    )
    new.add_argument("--schedule", required=True)
    new.add_argument("--contact", required=True, help="who is on call instead")
    new.add_argument("--from", dest="from_", required=True, help="e.g. 2026-12-04T18:00")
    new.add_argument("--until", required=True, help="e.g. 2026-12-07T09:00")
    new.add_argument("--replacing", help="only while this person would be on call")
    new.add_argument("--by", help="who arranged it")
    new.add_argument("--note", help="why")
    common(new)
    new.set_defaults(run=add)

    listing = override.add_parser("list", help="overrides not over yet")
    listing.add_argument("--schedule")
    common(listing)
    listing.set_defaults(run=list_)

    drop = override.add_parser("remove", help="remove an override by its id")
    drop.add_argument("id")
    common(drop)
    drop.set_defaults(run=remove)
