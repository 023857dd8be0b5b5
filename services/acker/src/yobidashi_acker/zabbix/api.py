"""The small interface the acker needs from Zabbix, independent of how it is reached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from yobidashi_acker.zabbix.rules import ACTION_ACKNOWLEDGE, ACTION_CLOSE, ZabbixVersion


@dataclass(frozen=True)
class AckEntry:
    """One entry of an event's update history (Zabbix calls them acknowledges)."""

    action: int
    message: str
    clock: int = 0
    username: str | None = None
    userid: str | None = None

    @property
    def acknowledged(self) -> bool:
        return bool(self.action & ACTION_ACKNOWLEDGE)

    @property
    def closed(self) -> bool:
        return bool(self.action & ACTION_CLOSE)


@dataclass(frozen=True)
class EventInfo:
    """What the acker reads back before writing: state, history, and whether it may close."""

    event_id: str
    is_problem: bool
    acknowledged: bool
    resolved: bool
    manual_close: bool | None
    acknowledges: tuple[AckEntry, ...] = ()

    @property
    def closing(self) -> bool:
        """Resolved, or a close was already requested (the server closes asynchronously)."""
        return self.resolved or any(a.closed for a in self.acknowledges)

    def find(self, marker: str) -> AckEntry | None:
        """The update whose message contains ``marker`` (our per-keypress ref), if any."""
        for entry in self.acknowledges:
            if marker in entry.message:
                return entry
        return None

    def last_acknowledgement(self) -> AckEntry | None:
        acks = [a for a in self.acknowledges if a.acknowledged]
        return max(acks, key=lambda a: a.clock) if acks else None

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> EventInfo:
        related = raw.get("relatedObject")
        manual_close = None
        if isinstance(related, dict) and "manual_close" in related:
            manual_close = str(related["manual_close"]) == "1"
        entries = tuple(
            AckEntry(
                action=int(a.get("action", 0) or 0),
                message=str(a.get("message", "")),
                clock=int(a.get("clock", 0) or 0),
                username=a.get("username"),
                userid=str(a["userid"]) if a.get("userid") is not None else None,
            )
            for a in raw.get("acknowledges") or []
            if isinstance(a, dict)
        )
        return cls(
            event_id=str(raw["eventid"]),
            is_problem=str(raw.get("value", "1")) == "1",
            acknowledged=str(raw.get("acknowledged", "0")) == "1",
            resolved=str(raw.get("r_eventid", "0") or "0") != "0",
            manual_close=manual_close,
            acknowledges=entries,
        )


@dataclass
class ZabbixStatus:
    """What the acker last learned about Zabbix, for /status, readiness and metrics."""

    version: ZabbixVersion | None = None
    auth_mode: str = ""
    auth_placement: str | None = None
    reachable: bool | None = None  # None: not tried yet
    authenticated: bool | None = None
    credentials_rejected: bool = False  # Zabbix said our credentials are wrong
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": str(self.version) if self.version else None,
            "auth_mode": self.auth_mode,
            "auth_placement": self.auth_placement,
            "reachable": self.reachable,
            "authenticated": self.authenticated,
            "credentials_rejected": self.credentials_rejected,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "last_error_kind": self.last_error_kind,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }


class ZabbixApi(Protocol):
    """Async access to the parts of the Zabbix API the acker uses.

    Every method raises `ZabbixError` (with its `ErrorKind`) when the call does not succeed.
    """

    @property
    def username(self) -> str:
        """The Zabbix user the acknowledgements appear under."""
        ...

    @property
    def status(self) -> ZabbixStatus: ...

    async def version(self) -> ZabbixVersion:
        """``apiinfo.version`` (no auth), cached until a transport error."""
        ...

    async def check(self) -> None:
        """Detect the version, log in if needed and make one cheap authenticated call."""
        ...

    async def get_event(self, event_id: str) -> EventInfo | None:
        """The event with its updates and its trigger's manual-close flag; None if unknown."""
        ...

    async def acknowledge(self, event_id: str, action: int, message: str) -> None:
        """``event.acknowledge`` one event with the action bitmask and message."""
        ...

    async def close(self) -> None: ...
