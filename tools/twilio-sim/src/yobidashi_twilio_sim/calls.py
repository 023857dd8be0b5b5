"""The state of one simulated call: its REST resource fields, its journal, its live controls."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from yobidashi_twilio_sim.models import DigitPress, Scenario
from yobidashi_twilio_sim.util import API_VERSION, format_number, rfc2822

CallStatus = Literal[
    "queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"
]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "busy", "failed", "no-answer", "canceled"}
)
PROGRESS_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass(frozen=True)
class TwimlSource:
    """Where the next TwiML document comes from: inline text, or a URL to request."""

    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    kind: str = "url"  # url | fallback | redirect | gather-action | update
    extra_params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CallOptions:
    """The create (and later update) parameters, validated and with Twilio's defaults."""

    to: str
    from_: str
    source: TwimlSource
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout: int = 60
    time_limit: int = 14400
    machine_detection: str | None = None  # Enable | DetectMessageEnd
    async_amd: bool = False
    async_amd_status_callback: str | None = None
    async_amd_status_callback_method: str = "POST"
    send_digits: str | None = None
    direction: str = "outbound-api"  # or "inbound": someone called one of our numbers


@dataclass
class CallControl:
    """Live-call plumbing; never serialised."""

    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    pending_redirect: TwimlSource | None = None
    gather_inbox: asyncio.Queue[str] | None = None
    buffered_digits: list[str] = field(default_factory=list)
    scenario_presses: deque[DigitPress] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    callbacks: asyncio.Queue[tuple[str, str, list[tuple[str, str]]] | None] | None = None
    callback_worker: asyncio.Task[None] | None = None
    timers: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class Call:
    sid: str
    account_sid: str
    options: CallOptions
    received_params: dict[str, list[str]]
    scenario: Scenario
    created_at: float = field(default_factory=time.time)
    queue_time_ms: int = 0
    status: CallStatus = "queued"
    updated_at: float = field(default_factory=time.time)
    dialled_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    answered_by: str | None = None
    call_duration: int | None = None
    sip_response_code: int | None = None
    activity: str = "queued"
    deleted: bool = False
    sequence_number: int = 0
    status_history: list[dict[str, Any]] = field(default_factory=list)
    progress_events: list[dict[str, Any]] = field(default_factory=list)
    spoken: list[dict[str, Any]] = field(default_factory=list)
    digits: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    control: CallControl = field(default_factory=CallControl)

    def is_ended(self) -> bool:
        # A method, not a property: mypy would otherwise keep it narrowed across awaits.
        return self.status in TERMINAL_STATUSES

    def set_status(self, status: CallStatus) -> None:
        self.status = status
        self.updated_at = time.time()
        self.status_history.append({"status": status, "at": self.updated_at})

    def error(self, code: int, message: str, **extra: Any) -> None:
        self.errors.append({"code": code, "message": message, "at": time.time(), **extra})

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The Call resource exactly as the REST API renders it."""
        base = self.uri[: -len(".json")]
        subresources = (
            ("notifications", "Notifications"),
            ("recordings", "Recordings"),
            ("payments", "Payments"),
            ("events", "Events"),
            ("siprec", "Siprec"),
            ("streams", "Streams"),
            ("transcriptions", "Transcriptions"),
            ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
            ("user_defined_messages", "UserDefinedMessages"),
        )
        return {
            "account_sid": self.account_sid,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.created_at),
            "date_updated": rfc2822(self.updated_at),
            "direction": self.options.direction,
            "duration": None if self.call_duration is None else str(self.call_duration),
            "end_time": rfc2822(self.ended_at) if self.dialled_at is not None else None,
            "forwarded_from": None,
            "from": self.options.from_,
            "from_formatted": format_number(self.options.from_),
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "start_time": rfc2822(self.dialled_at),
            "status": self.status,
            "subresource_uris": {key: f"{base}/{name}.json" for key, name in subresources},
            "to": self.options.to,
            "to_formatted": format_number(self.options.to),
            "trunk_sid": None,
            "uri": self.uri,
            "queue_time": str(self.queue_time_ms),
        }

    def journal(self) -> dict[str, Any]:
        """Everything the simulator observed about this call, for `GET /sim/calls/{sid}`."""
        return {
            "sid": self.sid,
            "to": self.options.to,
            "from": self.options.from_,
            "direction": self.options.direction,
            "status": self.status,
            "activity": self.activity,
            "answered_by": self.answered_by,
            "deleted": self.deleted,
            "params": self.received_params,
            "scenario": self.scenario.model_dump(),
            "times": {
                "created": self.created_at,
                "dialled": self.dialled_at,
                "answered": self.answered_at,
                "ended": self.ended_at,
            },
            "queue_time_ms": self.queue_time_ms,
            "call_duration": self.call_duration,
            "sip_response_code": self.sip_response_code,
            "status_history": self.status_history,
            "progress_events": self.progress_events,
            "spoken": self.spoken,
            "digits": self.digits,
            "webhooks": self.webhooks,
            "errors": self.errors,
            "updates": self.updates,
            "resource": self.resource(),
        }
