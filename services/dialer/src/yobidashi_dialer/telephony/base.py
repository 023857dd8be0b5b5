"""What the dialer needs from a telephony provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class CallRequest:
    to: str
    from_: str
    twiml: str
    status_callback: str
    amd_callback: str
    ring_timeout: int
    time_limit: int


@dataclass(frozen=True)
class CallInfo:
    sid: str
    status: str
    to: str
    from_: str
    created_at: datetime | None
    answered_by: str | None = None


class TelephonyError(Exception):
    """A provider error. ``retryable`` says whether trying again later can succeed;
    ``may_have_reached``, that the request may have been carried out although no answer came
    (a timeout, a connection lost after sending), so a create must be looked up, not repeated."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: int | None,
        status: int | None,
        may_have_reached: bool = False,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.status = status
        self.may_have_reached = may_have_reached


class Telephony(Protocol):
    async def warm_up(self) -> None:
        """Get ready to place the first call without delay."""

    async def place_call(self, request: CallRequest) -> CallInfo: ...

    async def end_call(self, sid: str) -> None:
        """Hang up a queued, ringing or answered call. Ending a finished call is not an error."""

    async def play(self, sid: str, twiml: str) -> None:
        """Replace what a live call is doing (e.g. leave a voicemail after the beep)."""

    async def fetch_call(self, sid: str) -> CallInfo: ...

    async def find_calls(self, to: str, from_: str, since: datetime) -> list[CallInfo]:
        """Calls to ``to`` from ``from_`` created at or after ``since`` (crash recovery)."""

    async def close(self) -> None: ...
