"""The body our Zabbix media type posts, and how it becomes an `AlertEvent`.

Zabbix resolves every media-type parameter to a string when it creates the alert, and leaves a
macro that does not apply (``{EVENT.RECOVERY.ID}`` in a problem) as literal text; it writes
``*UNKNOWN*`` for some it cannot resolve. Our script maps literals to null, but an older or
hand-edited script may not, so the model does it again.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from yobidashi_common.events import (
    AlertEvent,
    AlertStatus,
    AlertUpdate,
    Severity,
    Tag,
    UpdateAction,
)

# What {USER.FULLNAME} renders as when the recipient may not see the user who made the update
# (measured on 6.0: an on-call user with the User role, an update by Admin).
INACCESSIBLE_USER = "Inaccessible user"

_SURROGATE = re.compile("[\ud800-\udfff]")
_LITERAL_MACRO = re.compile(r"^\{[?$#]?[A-Z][A-Z0-9_.]*(?:\[[^\]]*\])?(?::[^}]*)?\}$")
_UNKNOWN = {"*UNKNOWN*", "*UNKNOWN"}

# Generous caps: enough for any real trigger, small enough that one alert cannot bloat the bus.
TITLE_MAX = 1024
MESSAGE_MAX = 4000


def unresolved_to_none(value: object) -> object:
    """Literal ``{MACRO}`` text, ``*UNKNOWN*`` and empty strings mean "not given"."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped or stripped in _UNKNOWN or _LITERAL_MACRO.match(stripped):
            return None
    return value


# Validation context for JSON bytes: pydantic-core's parser refuses a lone surrogate, escaped or
# raw (a test pins that), so the walk below has nothing to find there. Only the tags, which
# arrive as JSON inside a string and are read by Python's json, still need it.
FROM_JSON_BYTES = "from_json_bytes"


def without_surrogates(value: Any, depth: int = 3) -> Any:
    """Lone UTF-16 surrogates (valid JSON as ``"\\ud800"``, never sent by Zabbix) become U+FFFD:
    such a string cannot be encoded as UTF-8, so it could be neither hashed nor stored. Only as
    deep as the body's shape goes (object, tag list, tag), so hostile nesting costs nothing."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if depth <= 0:
        return value
    if isinstance(value, list):
        return [without_surrogates(v, depth - 1) for v in value]
    if isinstance(value, dict):
        return {
            without_surrogates(k, 0): without_surrogates(v, depth - 1) for k, v in value.items()
        }
    return value


Text = Annotated[str | None, BeforeValidator(unresolved_to_none)]
# The constraint is nested so that it also reaches the OpenAPI schema; [0-9], because \d would
# also take Unicode digits such as ١٢٣.
ZabbixId = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")],
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
]


def _as_int(value: object) -> object:
    value = unresolved_to_none(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


Flag = Annotated[Annotated[int, Field(ge=0, le=1)], BeforeValidator(_as_int)]
NSeverity = Annotated[Annotated[int, Field(ge=0, le=5)] | None, BeforeValidator(_as_int)]


class ZabbixWebhook(BaseModel):
    """What ``deploy/zabbix/yobidashi/media_yobidashi.yaml`` sends; every value is a string."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "17",
                    "event_value": "1",
                    "event_update_status": "0",
                    "event_nseverity": "4",
                    "event_severity": "High",
                    "event_name": "web01: HTTP service is down",
                    "event_date": "2026.11.24",
                    "event_time": "18:49:47",
                    "event_tags": [{"tag": "service", "value": "web"}],
                    "event_ack_status": "No",
                    "trigger_id": "23133",
                    "host": "web01",
                    "host_name": "web01.example.jp",
                    "host_groups": "Linux servers, Web",
                    "sendto": "090-1234-5678",
                    "esc_history": "Problem started: 2026.11.24 18:49:47 Age: 0m",
                }
            ]
        },
    )

    event_id: ZabbixId = Field(description="{EVENT.ID}: the problem event's id.")
    event_value: Flag = Field(description="{EVENT.VALUE}: 1 problem, 0 recovery.")
    event_update_status: Flag = Field(
        0, description="{EVENT.UPDATE.STATUS}: 1 when the notification is a problem update."
    )
    event_nseverity: NSeverity = Field(
        None, description="{EVENT.NSEVERITY}: 0 (not classified) to 5 (disaster)."
    )
    event_severity: Text = Field(None, description="{EVENT.SEVERITY}: the severity's name.")
    event_name: Text = None
    event_date: Text = Field(None, description="{EVENT.DATE}, YYYY.MM.DD, recipient's timezone.")
    event_time: Text = Field(None, description="{EVENT.TIME}, HH:MM:SS.")
    event_tags: list[Tag] = Field(default_factory=list, description="{EVENT.TAGSJSON}.")
    event_ack_status: Text = Field(None, description="{EVENT.ACK.STATUS}: Yes or No.")
    event_opdata: Text = None
    trigger_id: Annotated[str | None, BeforeValidator(unresolved_to_none)] = None
    trigger_name: Text = None
    host: Text = Field(None, description="{HOST.HOST}, the technical name.")
    host_name: Text = Field(None, description="{HOST.NAME}, the visible name.")
    host_groups: Text = Field(None, description="{TRIGGER.HOSTGROUP.NAME}: ', '-separated.")
    recovery_event_id: Text = None
    recovery_date: Text = None
    recovery_time: Text = None
    update_action: Text = Field(None, description="{EVENT.UPDATE.ACTION}.")
    update_message: Text = None
    update_user: Text = Field(None, description="{USER.FULLNAME} of who updated.")
    update_date: Text = None
    update_time: Text = None
    update_nseverity: NSeverity = None
    sendto: Text = Field(None, description="{ALERT.SENDTO}: the recipient's phone number.")
    subject: Text = None
    message: Text = None
    esc_history: Text = Field(
        None,
        description="{ESC.HISTORY}: grows with each escalation step, so it tells a retry of one "
        "alert apart from the next step's alert to the same person.",
    )
    zabbix_url: Text = Field(None, description="Frontend base URL, for links back to Zabbix.")

    @model_validator(mode="before")
    @classmethod
    def _no_surrogates(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and info.context.get(FROM_JSON_BYTES):
            return data
        return without_surrogates(data)

    @field_validator("event_tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        value = unresolved_to_none(value)
        if value is None:
            return []
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise ValueError("must be a JSON array of {tag, value}") from None
            value = without_surrogates(value, 2)
        return value


_SEVERITY_NAMES = {
    "not classified": Severity.NOT_CLASSIFIED,
    "information": Severity.INFORMATION,
    "warning": Severity.WARNING,
    "average": Severity.AVERAGE,
    "high": Severity.HIGH,
    "disaster": Severity.DISASTER,
}


class NormalizationError(ValueError):
    """The payload is well-formed JSON but cannot describe an alert."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _severity(payload: ZabbixWebhook) -> Severity:
    if payload.event_nseverity is not None:
        return Severity.from_zabbix(payload.event_nseverity)
    if payload.event_severity and payload.event_severity.lower() in _SEVERITY_NAMES:
        return _SEVERITY_NAMES[payload.event_severity.lower()]
    raise NormalizationError("event_nseverity", "severity is missing: send {EVENT.NSEVERITY} (0-5)")


def status_of(payload: ZabbixWebhook) -> AlertStatus:
    if payload.event_update_status == 1:
        return AlertStatus.UPDATED
    return AlertStatus.PROBLEM if payload.event_value == 1 else AlertStatus.RESOLVED


# {EVENT.DATE} and {EVENT.TIME} as Zabbix renders them: "2026.11.24" and "18:49:47" (read by
# hand: strptime costs several times more, once or twice on every alert).
_ZABBIX_DATE_TIME = re.compile(
    r"([0-9]{4})\.([0-9]{1,2})\.([0-9]{1,2}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})"
)


def _zabbix_time(date: str | None, time: str | None, tz: ZoneInfo) -> datetime | None:
    if not date or not time:
        return None
    found = _ZABBIX_DATE_TIME.fullmatch(f"{date} {time}")
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:  # a day or an hour out of range
        return None


# Longest first where one phrase starts another ("unacknowledged" / "acknowledged").
_ACTION_PHRASES = (
    ("unacknowledged", UpdateAction.UNACKNOWLEDGED),
    ("acknowledged", UpdateAction.ACKNOWLEDGED),
    ("commented", UpdateAction.COMMENTED),
    ("changed severity", UpdateAction.SEVERITY_CHANGED),
    ("closed", UpdateAction.CLOSED),
    ("unsuppressed", UpdateAction.UNSUPPRESSED),
    ("suppressed", UpdateAction.SUPPRESSED),
)


def parse_update_actions(text: str | None) -> list[UpdateAction]:
    """Read Zabbix's {EVENT.UPDATE.ACTION}, e.g. "acknowledged, commented and changed severity
    from Warning to High", into flags. The phrases come from the server's alert code."""
    if not text:
        return []
    found: list[UpdateAction] = []
    for part in re.split(r",\s*|\s+and\s+(?=\w)", text.lower()):
        phrase = part.strip()
        action = next((a for prefix, a in _ACTION_PHRASES if phrase.startswith(prefix)), None)
        if action is not None:
            found.append(action)
    return list(dict.fromkeys(found))


_SEVERITY_CHANGE_TO = re.compile(r"changed severity from .+? to (.+?)(?:,| and |$)", re.I)


def _new_severity(payload: ZabbixWebhook, actions: list[UpdateAction]) -> Severity | None:
    if UpdateAction.SEVERITY_CHANGED not in actions:
        return None
    if payload.update_nseverity is not None:
        return Severity.from_zabbix(payload.update_nseverity)
    match = _SEVERITY_CHANGE_TO.search(payload.update_action or "")
    if match and match.group(1).strip().lower() in _SEVERITY_NAMES:
        return _SEVERITY_NAMES[match.group(1).strip().lower()]
    return Severity.from_zabbix(payload.event_nseverity) if payload.event_nseverity else None


def _is_own_update(payload: ZabbixWebhook, own_users: list[str], marker: str) -> bool:
    """Our acker's acknowledgement comes back as an update: recognise it by who made it.

    The username decides whenever Zabbix shows it: the marker is text anyone can type into
    an acknowledgement ("escalated via Yobidashi"), and a person's UI ack taken for ours would
    leave the phones ringing. Only when the recipient may not see the updater
    ("Inaccessible user") does the marker stand in for the username. (So an acker user
    renamed in Zabbix must be renamed in ZABBIX_OWN_USERS too.)
    """
    user = (payload.update_user or "").strip()
    message = payload.update_message or ""
    if user and user != INACCESSIBLE_USER:
        # {USER.FULLNAME} renders as "Name Surname (username)"; the username is the last group.
        username = user[user.rfind("(") + 1 : -1] if user.endswith(")") and "(" in user else user
        return username in own_users
    return bool(marker) and marker in message


def dedup_key(payload: ZabbixWebhook, status: AlertStatus) -> str:
    """Same for Zabbix's retries of one alert, different for any other notification.

    Zabbix stores an alert's resolved parameters when it creates it and resends them unchanged,
    so a hash of what distinguishes notifications is stable across retries. What distinguishes
    them: the recipient, the escalation step (``{ESC.HISTORY}`` grows with each step and each
    repeat), the update's who/what/when, and the recovery event.
    """
    material = {
        "event": payload.event_id,
        "status": status.value,
        "sendto": payload.sendto,
        "esc_history": payload.esc_history,
        "update": [
            payload.update_action,
            payload.update_user,
            payload.update_message,
            payload.update_date,
            payload.update_time,
            payload.update_nseverity,
        ],
        "recovery": payload.recovery_event_id,
    }
    digest = hashlib.sha256(
        json.dumps(material, ensure_ascii=False, sort_keys=True).encode()
    ).hexdigest()
    return f"zabbix.{payload.event_id}.{status.value}.{digest[:32]}"


def _truncate(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def to_alert_event(
    payload: ZabbixWebhook,
    *,
    received_at: datetime,
    timezone: ZoneInfo,
    own_users: list[str],
    own_marker: str,
    zabbix_url: str | None = None,
) -> AlertEvent:
    status = status_of(payload)
    severity = _severity(payload)
    update = None
    if status is AlertStatus.UPDATED:
        actions = parse_update_actions(payload.update_action)
        update = AlertUpdate(
            actions=actions,
            user=None if payload.update_user == INACCESSIBLE_USER else payload.update_user,
            message=_truncate(payload.update_message, MESSAGE_MAX),
            new_severity=_new_severity(payload, actions),
            at=_zabbix_time(payload.update_date, payload.update_time, timezone),
            from_yobidashi=_is_own_update(payload, own_users, own_marker),
        )
        if update.new_severity is not None:
            severity = update.new_severity
    groups = [g.strip() for g in (payload.host_groups or "").split(", ") if g.strip()]
    base_url = (payload.zabbix_url or zabbix_url or "").rstrip("/")
    url = None
    if base_url and payload.trigger_id:
        url = f"{base_url}/tr_events.php?triggerid={payload.trigger_id}&eventid={payload.event_id}"
    title = payload.event_name or payload.trigger_name or payload.subject or "(unnamed problem)"
    return AlertEvent(
        source_event_id=payload.event_id,
        problem_key=f"zabbix:{payload.event_id}",
        dedup_key=dedup_key(payload, status),
        status=status,
        severity=severity,
        title=_truncate(title, TITLE_MAX) or "",
        host=payload.host_name or payload.host or "(unknown host)",
        host_groups=groups,
        tags=payload.event_tags,
        trigger_id=payload.trigger_id,
        started_at=_zabbix_time(payload.event_date, payload.event_time, timezone),
        received_at=received_at,
        resolved_at=(
            _zabbix_time(payload.recovery_date, payload.recovery_time, timezone)
            if status is AlertStatus.RESOLVED
            else None
        ),
        recovery_event_id=payload.recovery_event_id if status is AlertStatus.RESOLVED else None,
        sendto=payload.sendto,
        acknowledged=(payload.event_ack_status or "").lower() == "yes",
        update=update,
        message=_truncate(payload.message, MESSAGE_MAX),
        url=url,
    )
