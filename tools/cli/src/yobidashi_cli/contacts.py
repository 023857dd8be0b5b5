"""``yobidashi contact verify NAME|NUMBER``, and the unverified contacts other commands list."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

OUTCOMES = {
    "verified": "verified",
    "wrong_code": "NOT verified: a wrong code was keyed in",
    "no_code": "NOT verified: the call was answered but no code was keyed in",
    "no_answer": "NOT verified: nobody answered",
    "failed": "NOT verified: the call could not be placed",
}


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def unverified(dialer: str) -> list[dict[str, Any]] | None:
    """The dialer's unverified contacts, or None if it cannot be asked."""
    try:
        response = httpx.get(f"{dialer.rstrip('/')}/v1/contacts", timeout=5)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return [c for c in response.json()["contacts"] if not c["verified"]]


def unverified_lines(dialer: str, ids: set[str] | None = None) -> list[str]:
    """What `config check` and `oncall now` print about verification."""
    found = unverified(dialer)
    if found is None:
        return [f"(cannot ask the dialer at {dialer} which contacts are verified)"]
    found = [c for c in found if ids is None or c["id"] in ids]
    if not found:
        return ["every contact's number is verified"]
    names = ", ".join(f"{c['id']} ({c['phone']})" for c in found)
    return [f"unverified ({len(found)}): {names} — yobidashi contact verify NAME"]


def verify(args: argparse.Namespace) -> int:
    if not args.token:
        _print("give --token or set YOBIDASHI_ADMIN_TOKEN (a verification call needs it)")
        return 1
    base = args.dialer.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"}
    try:
        response = httpx.post(
            f"{base}/v1/contacts/verify", json={"contact": args.who}, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        _print(f"cannot reach the dialer at {args.dialer}: {exc}")
        return 1
    if response.status_code != 202:
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        details = body.get("details") or []
        field = f"--{details[0]['field']}: " if details else ""
        _print(f"refused ({response.status_code}): {field}{body.get('message', response.text)}")
        return 1
    attempt = response.json()
    _print(f"calling {attempt['contact']} ({attempt['phone']}): key in the code you hear")
    deadline = time.monotonic() + args.wait
    while attempt["outcome"] == "calling" and time.monotonic() < deadline:
        time.sleep(1)
        try:
            attempt = httpx.get(f"{base}/v1/contacts/verify/{attempt['id']}", timeout=10).json()
        except httpx.HTTPError:
            continue  # the dialer restarting: the attempt is in KV, ask again
    outcome = attempt["outcome"]
    if outcome == "calling":
        _print(
            f"still calling after {args.wait:.0f} s; "
            f"ask again: GET /v1/contacts/verify/{attempt['id']}"
        )
        return 1
    detail = f" ({attempt['detail']})" if attempt.get("detail") else ""
    _print(f"{attempt['contact']} ({attempt['phone']}): {OUTCOMES.get(outcome, outcome)}{detail}")
    return 0 if outcome == "verified" else 1


def add_commands(commands: Any, dialer_url: str, token: str | None) -> None:
    contact = commands.add_parser("contact", help="contacts' phone numbers").add_subparsers(
        dest="contact_command", required=True
    )
    check = contact.add_parser(
        "verify", help="ring a contact with a one-time code to key in (id or number)"
    )
    check.add_argument("who", help="a contact id from the on-call config, or a phone number")
    check.add_argument("--dialer", default=dialer_url)
    check.add_argument("--token", default=token, help="the admin token (YOBIDASHI_ADMIN_TOKEN)")
    check.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the outcome")
    check.set_defaults(run=verify)
