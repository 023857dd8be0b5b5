"""Pure decisions: which ``event.acknowledge`` bits to send, and the message that goes with them.

The message says who pressed, at what local time (the contact's timezone), and how, and ends
with ``via Yobidashi [call <sid>/ref <ref>]``: ingest recognises our own update coming back by
"via Yobidashi", and the acker recognises its own earlier write by the ref when it reads the
event back after a crash. The ref is a hash of (keypress id, problem, intent), so every
redelivery of one keypress carries the same ref.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yobidashi_acker.zabbix.api import EventInfo
from yobidashi_acker.zabbix.rules import ACTION_ACKNOWLEDGE, ACTION_CLOSE, ACTION_MESSAGE
from yobidashi_common.events import OWN_ACK_MARKER, AckOutcome, ContactRef, KeyAction

# Zabbix 6.0's acknowledges.message is varchar(2048).
ZABBIX_MESSAGE_MAX = 2048
UNKNOWN_CONTACT = "the on-call engineer"
NAME_MAX = 128
CALL_SID_MAX = 64


class Intent(StrEnum):
    """The key actions the acker writes to Zabbix."""

    ACKNOWLEDGE = "acknowledge"
    CLOSE = "close"
    COMMENT = "comment"

    @classmethod
    def of(cls, action: KeyAction) -> Intent | None:
        try:
            return cls(action.value)
        except ValueError:
            return None


def make_ref(keypress_id: str, problem_key: str, intent: Intent) -> str:
    """12 hex characters, the same for every redelivery of this keypress on this problem."""
    digest = hashlib.sha256(f"{keypress_id}\x00{problem_key}\x00{intent.value}".encode())
    return digest.hexdigest()[:12]


def ref_marker(ref: str) -> str:
    """What the acker looks for in an event's update messages to find its own write.

    The bare ref: a custom template may frame it differently, and 48 random bits do not
    occur by chance in other messages.
    """
    return ref


def contact_zone(contact: ContactRef, default: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(contact.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def local_time(at: datetime, zone: ZoneInfo) -> str:
    """``2026-11-25 03:12 JST``: minutes are enough for a human, the zone avoids doubt."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or zone.key}"


def who(contact: ContactRef) -> str:
    name = " ".join((contact.name or "").split())
    return name[:NAME_MAX] if name else UNKNOWN_CONTACT


@dataclass(frozen=True)
class Plan:
    """What to send to Zabbix for one keypress on one problem, decided from its state."""

    action: int  # 0: nothing to write
    verb: str
    note: str = ""  # appended to the message, e.g. why the problem was not closed
    skipped: AckOutcome | None = None  # the outcome when nothing is written
    detail: str | None = None

    @property
    def write(self) -> bool:
        return self.action != 0


def describe_existing(event: EventInfo) -> str:
    """Who acknowledged before us, in words, from the event's update history."""
    last = event.last_acknowledgement()
    if last is None:
        return "already acknowledged in Zabbix"
    if OWN_ACK_MARKER in last.message:
        return "already acknowledged by phone through Yobidashi"
    by = last.username or (f"user id {last.userid}" if last.userid else "another user")
    when = datetime.fromtimestamp(last.clock, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"already acknowledged in Zabbix by {by} at {when}"


def plan(intent: Intent, event: EventInfo, *, allow_close: bool = True) -> Plan:
    """The action bitmask: 6 to acknowledge, 7 to close where the trigger allows it, 4 to comment.

    Nothing is written where it would change nothing but add a second message: Zabbix
    silently turns a second acknowledgement into a message. ``allow_close=False`` is the retry
    after Zabbix refused to close (trigger setting or role permission changed meanwhile).
    """
    if intent is Intent.COMMENT:
        return Plan(ACTION_MESSAGE, "Commented", detail="comment added, not acknowledged")
    if intent is Intent.ACKNOWLEDGE:
        if event.acknowledged:
            detail = describe_existing(event)
            return Plan(0, "", skipped=AckOutcome.ALREADY_ACKNOWLEDGED, detail=detail)
        return Plan(ACTION_ACKNOWLEDGE | ACTION_MESSAGE, "Acknowledged")
    # CLOSE: acknowledge (unless done) and close (where allowed and not already closing).
    action = ACTION_MESSAGE
    if not event.acknowledged:
        action |= ACTION_ACKNOWLEDGE
    note = ""
    if event.closing:
        reason = "the problem is already resolved or being closed"
    elif not allow_close:
        reason = "Zabbix refused to close the problem (trigger setting or role permission)"
    elif event.manual_close is not True:
        reason = "the trigger does not allow manual close"
    else:
        reason = ""
        action |= ACTION_CLOSE
    if reason:
        note = f" Close requested, but {reason}."
    if action == ACTION_MESSAGE:
        detail = describe_existing(event) + (f"; not closed: {reason}" if reason else "")
        return Plan(0, "", skipped=AckOutcome.ALREADY_ACKNOWLEDGED, detail=detail)
    if action & ACTION_CLOSE:
        verb = "Acknowledged and closed" if action & ACTION_ACKNOWLEDGE else "Closed"
        return Plan(action, verb, detail="closed")
    return Plan(action, "Acknowledged", note=note, detail=f"acknowledged, not closed: {reason}")


def render(
    template: str,
    *,
    verb: str,
    contact: ContactRef,
    at: datetime,
    zone: ZoneInfo,
    call_sid: str,
    ref: str,
    note: str = "",
    digit: str = "",
    keypress_id: str = "",
) -> str:
    """The update message. Always within Zabbix's 2048 characters and always ending in the ref."""
    fields = {
        "verb": verb,
        "who": who(contact),
        "number": contact.masked_number or "number unknown",
        "time": local_time(at, zone),
        "call_sid": call_sid[:CALL_SID_MAX],
        "ref": ref,
        "note": note,
        "digit": digit[:8],
        "keypress_id": keypress_id[:64],
    }
    text = template.format(**fields)
    if len(text) > ZABBIX_MESSAGE_MAX:
        # A custom template that grew too long: keep what must be there.
        text = (
            f"{verb} by phone by {fields['who']} at {fields['time']} via Yobidashi "
            f"[call {fields['call_sid']}/ref {ref}]"
        )
    return text
