"""Calls-per-second and live-call budgets that hold across every dialer replica.

Twilio's CPS is account-wide: two replicas at 1 CPS each would make 2 CPS. So the budget lives
in JetStream KV and every replica takes slots from it with compare-and-set:

- ``cps``: the send times of the last CPS creates. A create may go only once the oldest of them
  is more than a second (plus a margin) old, so no rolling second ever holds more than CPS
  creates, while a burst may still use the whole budget at once. A slot is recorded when it
  is granted and moved to the time the create's response came back once it has: whatever the
  delays on the way, Twilio saw the create no later than that, so counting from it keeps the
  window true at Twilio's end. It costs one request round-trip per window of throughput.
- ``live``: the calls currently counted against the concurrency cap, each with an expiry so
  that a lost final callback cannot leak a slot forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from yobidashi_common.bus import Bus, KvStore
from yobidashi_dialer import metrics
from yobidashi_dialer.store import LIMITS

# Network jitter between taking a slot and Twilio receiving the request must not squeeze one
# create too many into a second at the far end; 20 ms costs 2% of the budget.
WINDOW_MARGIN = 0.02


class CpsWindow(BaseModel):
    sent: list[float] = []  # the last CPS create times, oldest first


class LiveCalls(BaseModel):
    calls: dict[str, float] = {}  # call id -> expires at (epoch seconds)


class Budget:
    def __init__(
        self,
        bus: Bus,
        cps: int,
        max_concurrent: int,
        live_ttl: float,
        *,
        account: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Each telephony account has its own CPS and live-call budget, under its own keys.
        self._cps_key = f"cps.{account}" if account else "cps"
        self._live_key = f"live.{account}" if account else "live"
        self._window_store = KvStore(bus, LIMITS.name, CpsWindow)
        self._live_store = KvStore(bus, LIMITS.name, LiveCalls)
        self.cps = cps
        self.max_concurrent = max_concurrent
        self.live_ttl = live_ttl
        self._now = clock
        self.waiting = 0
        # One contender per replica: if every waiting call woke at once and raced for the slot,
        # the losers' retries would delay the winner's actual send past the time it recorded.
        self._cps_turn = asyncio.Lock()

    async def _take_live_slot(self, call_id: str) -> bool:
        got = False

        def change(current: LiveCalls | None) -> LiveCalls | None:
            nonlocal got
            now = self._now()
            live = {k: v for k, v in (current.calls if current else {}).items() if v > now}
            if call_id in live:
                got = True
                return None
            if self.max_concurrent and len(live) >= self.max_concurrent:
                got = False
                # Write only when expired entries were dropped.
                return (
                    LiveCalls(calls=live) if current and len(live) != len(current.calls) else None
                )
            got = True
            live[call_id] = now + self.live_ttl
            return LiveCalls(calls=live)

        result = await self._live_store.mutate(self._live_key, change)
        metrics.CONCURRENT_CALLS.set(len(result.calls) if result else 0)
        return got

    async def _try_cps_slot(self) -> tuple[float, float]:
        """Take a create slot now if the window allows: (0, granted time); else (wait, 0)."""
        wait, granted = 0.0, 0.0

        def change(current: CpsWindow | None) -> CpsWindow | None:
            nonlocal wait, granted
            sent = current.sent[-self.cps :] if current else []
            now = self._now()
            if len(sent) >= self.cps and now < sent[0] + 1.0 + WINDOW_MARGIN:
                wait = sent[0] + 1.0 + WINDOW_MARGIN - now
                return None
            wait, granted = 0.0, now
            return CpsWindow(sent=sorted([*sent, now])[-self.cps :])

        await self._window_store.mutate(self._cps_key, change)
        return wait, granted

    async def sent(self, granted: float, answered: float) -> None:
        """The create granted at ``granted`` got its response at ``answered``: count from then."""

        def change(current: CpsWindow | None) -> CpsWindow | None:
            if current is None or granted not in current.sent:
                return None
            moved = [answered if t == granted else t for t in current.sent]
            return CpsWindow(sent=sorted(moved)[-self.cps :])

        await self._window_store.mutate(self._cps_key, change)

    async def acquire(
        self,
        call_id: str,
        *,
        still_wanted: Callable[[], Awaitable[bool]],
        keep_alive: Callable[[], Awaitable[None]],
        poll: float = 0.25,
    ) -> float | None:
        """Wait for a live-call slot, then for a CPS slot; returns the slot's grant time. None if
        the call stopped being wanted while it waited (e.g. the problem was acknowledged)."""
        self.waiting += 1
        metrics.CPS_QUEUE_DEPTH.set(self.waiting)
        try:
            checked = self._now()
            while not await self._take_live_slot(call_id):
                await asyncio.sleep(poll)
                if self._now() - checked > 2:
                    checked = self._now()
                    await keep_alive()
                    if not await still_wanted():
                        return None
            return await self.wait_cps()
        finally:
            self.waiting -= 1
            metrics.CPS_QUEUE_DEPTH.set(self.waiting)

    async def wait_cps(self) -> float:
        """Return, with the slot's grant time, at a moment when one more create fits the budget.
        Call `sent` with that time once the create has its response."""
        async with self._cps_turn:
            while True:
                wait, granted = await self._try_cps_slot()
                if wait <= 0:
                    return granted
                await asyncio.sleep(wait)

    async def release(self, call_id: str) -> None:
        def change(current: LiveCalls | None) -> LiveCalls | None:
            if current is None or call_id not in current.calls:
                return None
            return LiveCalls(calls={k: v for k, v in current.calls.items() if k != call_id})

        result = await self._live_store.mutate(self._live_key, change)
        metrics.CONCURRENT_CALLS.set(len(result.calls) if result else 0)
