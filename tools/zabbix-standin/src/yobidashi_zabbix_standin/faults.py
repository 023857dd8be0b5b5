"""Failure injection: what a Zabbix frontend does on a bad day, on demand.

Standing faults (``down``, ``http_status``, ``raw_answer``, ``delay``) hold until they are
cleared; scripted ones (`Faults.script`) are used up one per matching request, in order. A
client sees them as it would see the real thing: ``DROP`` closes the connection without an
answer (a crash, a reset: a transport error), ``LOST_ANSWER`` does the same *after*
``event.acknowledge`` took effect (the write landed, its answer never arrived), an HTTP
status is a proxy's or PHP's error page, an RPC error is Zabbix's own JSON-RPC error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

ANY_METHOD = "*"


@dataclass(frozen=True)
class Fault:
    drop: bool = False  # close the connection without an answer
    after_applying: bool = False  # ...but only after the call took effect
    http_status: int | None = None
    rpc_error: tuple[int, str, str] | None = None  # (code, message, data)


DROP = Fault(drop=True)
LOST_ANSWER = Fault(drop=True, after_applying=True)
NOT_AUTHORIZED = Fault(rpc_error=(-32602, "Invalid params.", "Not authorized."))
CANNOT_CLOSE = Fault(
    rpc_error=(
        -32500,
        "Application error.",
        "Cannot close problem: trigger does not allow manual closing.",
    )
)


def http_error(status: int) -> Fault:
    return Fault(http_status=status)


def rpc_error(code: int, message: str, data: str) -> Fault:
    return Fault(rpc_error=(code, message, data))


@dataclass
class Faults:
    down: bool = False  # every request is dropped
    http_status: int | None = None  # every request answered with this status and an HTML page
    raw_answer: bytes | None = None  # every request answered 200 with this body
    delay: float = 0.0  # seconds before each answer: latency, or a timeout for the client
    gate: asyncio.Event | None = None  # event.acknowledge waits until it is set
    _scripted: deque[tuple[str, Fault]] = field(default_factory=deque)

    def script(self, *faults: Fault, method: str = ANY_METHOD) -> None:
        """The next requests for ``method`` (any method by default) fail like this, in order."""
        self._scripted.extend((method, fault) for fault in faults)

    def take(self, method: str) -> Fault | None:
        """The first scripted fault for this method, used up; None when there is none."""
        for entry in self._scripted:
            if entry[0] in (ANY_METHOD, method):
                self._scripted.remove(entry)
                return entry[1]
        return None

    @property
    def scripted(self) -> int:
        return len(self._scripted)

    def clear(self) -> None:
        self.down, self.http_status, self.raw_answer, self.delay = False, None, None, 0.0
        self._scripted.clear()
        if self.gate is not None:
            self.gate.set()
        self.gate = None
