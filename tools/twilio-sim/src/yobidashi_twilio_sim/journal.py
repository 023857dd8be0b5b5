"""In-memory record of every call and every create request, in arrival order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yobidashi_twilio_sim.calls import Call


@dataclass
class CreateRecord:
    """One `POST .../Calls.json`, whatever its outcome; the basis for CPS checks."""

    seq: int
    arrived_at: float
    params: dict[str, list[str]]
    http_status: int = 0
    error_code: int | None = None
    call_sid: str | None = None
    api_host: str = ""


@dataclass(frozen=True)
class ApiRequest:
    """One REST request and the host it was addressed to. The Twilio library splices the edge
    and region into the host (api.tokyo.jp1.twilio.com); a client redirected to the simulator
    still sends that host, so tests can see which edge each create, fetch and update used."""

    method: str
    path: str
    host: str
    operation: str


@dataclass
class Journal:
    calls: dict[str, Call] = field(default_factory=dict)
    creates: list[CreateRecord] = field(default_factory=list)
    requests: list[ApiRequest] = field(default_factory=list)

    def record_create(self, arrived_at: float, params: dict[str, list[str]]) -> CreateRecord:
        record = CreateRecord(seq=len(self.creates), arrived_at=arrived_at, params=params)
        self.creates.append(record)
        return record

    def add_call(self, call: Call) -> None:
        self.calls[call.sid] = call

    def get(self, sid: str) -> Call | None:
        return self.calls.get(sid)

    def live_call_for(self, number: str) -> Call | None:
        """The most recent not-yet-ended call to `number`."""
        for call in reversed(self.calls.values()):
            phone = call.options.from_ if call.options.direction == "inbound" else call.options.to
            if phone == number and not call.is_ended():
                return call
        return None

    def numbers(self) -> list[str]:
        seen: dict[str, None] = {}
        for call in self.calls.values():
            seen.setdefault(call.options.to, None)
        return list(seen)

    def creates_view(self) -> list[dict[str, Any]]:
        out = []
        for record in self.creates:
            call = self.calls.get(record.call_sid) if record.call_sid else None
            out.append(
                {
                    "seq": record.seq,
                    "arrived_at": record.arrived_at,
                    "params": record.params,
                    "http_status": record.http_status,
                    "error_code": record.error_code,
                    "call_sid": record.call_sid,
                    "api_host": record.api_host,
                    "dialled_at": call.dialled_at if call else None,
                    "status": call.status if call else None,
                }
            )
        return out

    def clear(self) -> None:
        self.calls.clear()
        self.creates.clear()
        self.requests.clear()
