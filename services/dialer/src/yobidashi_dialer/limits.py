"""Calls-per-second and live-call budgets that hold across every dialer replica.

Twilio's CPS is account-wide: two replicas at 1 CPS each would make 2 CPS. So the budget lives
in JetStream KV and every replica takes slots from it with compare-and-set. Each account has
one value (`Slots`, key ``slots`` for the primary, ``slots.<name>`` for a fallback) holding
both budgets, so that the usual call takes its live-call slot and its create slot in one
compare-and-set, checked against both limits at once:

- ``sent``: the send times of the last second's creates (CPS at most). A create may go only
  once the oldest of them is more than a second (plus a margin) old, so no rolling second ever
  holds more than CPS creates, while a burst may still use the whole budget at once. A slot
  is recorded when it is granted and moved to the time the create's response came back once
  it has: whatever the delays on the way, Twilio saw the create no later than that, so
  counting from it keeps the window true at Twilio's end. It costs one request round-trip
  per window of throughput.
- ``calls``: the calls currently counted against the concurrency cap, each with an expiry so
  that a lost final callback cannot leak a slot forever.

A call that gets its live-call slot but not yet a create slot keeps the first and waits for
the second, one contender per replica, as before. The budgets used to be two values (``live``
and ``cps``, ``live.<name>`` and ``cps.<name>``): the first time a replica finds no ``slots``
value for an account, it starts it from those, so the calls that were live across an upgrade
and the last second's creates still count. Replicas of the old and the new version do not
share a budget: stop the old ones before starting the new.
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


class Slots(BaseModel):
    calls: dict[str, float] = {}  # call id -> expires at (epoch seconds)
    sent: list[float] = []  # the last CPS create times, oldest first


class CpsWindow(BaseModel):
    """The CPS window as it was kept before `Slots` (read once, to start `Slots` from)."""

    sent: list[float] = []


class LiveCalls(BaseModel):
    """The live calls as they were kept before `Slots` (read once, to start `Slots` from)."""

    calls: dict[str, float] = {}


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
        # Each telephony account has its own CPS and live-call budget, under its own key.
        self._key = f"slots.{account}" if account else "slots"
        self._old_cps_key = f"cps.{account}" if account else "cps"
        self._old_live_key = f"live.{account}" if account else "live"
        self._bus = bus
        self._store = KvStore(bus, LIMITS.name, Slots)
        self._started = False
        self.cps = cps
        self.max_concurrent = max_concurrent
        self.live_ttl = live_ttl
        self._now = clock
        self.waiting = 0
        # One contender per replica: if every waiting call woke at once and raced for the slot,
        # the losers' retries would delay the winner's actual send past the time it recorded.
        self._cps_turn = asyncio.Lock()
        # Every call changes this one value two or three times. Changes from this replica go one
        # at a time: each is then one compare-and-set from the last write, where concurrent ones
        # would mostly lose to each other and pay a read and another write each.
        self._writing = asyncio.Lock()

    async def _mutate(self, change: Callable[[Slots | None], Slots | None]) -> Slots | None:
        async with self._writing:
            if not self._started:
                await self._start()
            return await self._store.mutate(self._key, change)

    async def _start(self) -> None:
        """Once per process: if the account has no `Slots` yet, start it from the two values
        the budgets were kept in before (an upgrade keeps its live calls and its window)."""
        if await self._store.get(self._key) is None:
            live = await KvStore(self._bus, LIMITS.name, LiveCalls).get(self._old_live_key)
            window = await KvStore(self._bus, LIMITS.name, CpsWindow).get(self._old_cps_key)
            if live is not None or window is not None:
                # None: another replica started it first, from the same values.
                await self._store.create(
                    self._key,
                    Slots(
                        calls=live[0].calls if live else {},
                        sent=window[0].sent if window else [],
                    ),
                )
        self._started = True

    def _window(self, sent: list[float], now: float) -> list[float]:
        """The creates that still count at ``now``, oldest first: at most CPS of them, none older
        than the window. An older one can never make a create wait (see `_cps_free`), and
        keeping it would make every write of the value grow with the CPS budget, not the load."""
        return [t for t in sorted(sent) if t > now - 1.0 - WINDOW_MARGIN][-self.cps :]

    def _cps_free(self, sent: list[float], now: float) -> float:
        """How long until one more create fits the window ``sent`` (0: now)."""
        if len(sent) >= self.cps and now < sent[0] + 1.0 + WINDOW_MARGIN:
            return sent[0] + 1.0 + WINDOW_MARGIN - now
        return 0.0

    async def _take(self, call_id: str, *, create: bool) -> tuple[bool, float, float]:
        """Take a live-call slot for ``call_id`` and, with ``create``, a create slot too if the
        window allows, in one compare-and-set: (live slot held, wait for a create slot, grant
        time of the create slot or 0)."""
        got, wait, granted = False, 0.0, 0.0

        def change(current: Slots | None) -> Slots | None:
            nonlocal got, wait, granted
            now = self._now()
            state = current or Slots()
            live = {k: v for k, v in state.calls.items() if v > now}
            sent = self._window(state.sent, now)
            changed = len(live) != len(state.calls)  # expired entries were dropped
            wait, granted = 0.0, 0.0
            if call_id not in live:
                if self.max_concurrent and len(live) >= self.max_concurrent:
                    got = False
                    return Slots(calls=live, sent=sent) if changed else None
                live[call_id] = now + self.live_ttl
                changed = True
            got = True
            if create:
                wait = self._cps_free(sent, now)
                if wait <= 0:
                    granted = now
                    return Slots(calls=live, sent=self._window([*sent, now], now))
            return Slots(calls=live, sent=sent) if changed else None

        result = await self._mutate(change)
        metrics.CONCURRENT_CALLS.set(len(result.calls) if result else 0)
        return got, wait, granted

    async def _try_cps_slot(self) -> tuple[float, float]:
        """Take a create slot now if the window allows: (0, granted time); else (wait, 0)."""
        wait, granted = 0.0, 0.0

        def change(current: Slots | None) -> Slots | None:
            nonlocal wait, granted
            state = current or Slots()
            now = self._now()
            sent = self._window(state.sent, now)
            wait, granted = self._cps_free(sent, now), 0.0
            if wait > 0:
                return None
            granted = now
            return Slots(calls=state.calls, sent=self._window([*sent, now], now))

        await self._mutate(change)
        return wait, granted

    async def sent(self, granted: float, answered: float) -> None:
        """The create granted at ``granted`` got its response at ``answered``: count from then."""

        def change(current: Slots | None) -> Slots | None:
            if current is None:
                return None
            now = self._now()
            others = [t for t in current.sent if t != granted]
            if len(others) == len(current.sent) and answered <= now - 1.0 - WINDOW_MARGIN:
                return None  # its grant left the window, and so has its answer
            # A grant that already left the window (a create slower than the window) counts
            # again from its answer, as one still in it does.
            return Slots(calls=current.calls, sent=self._window([*others, answered], now))

        await self._mutate(change)

    async def acquire(
        self,
        call_id: str,
        *,
        still_wanted: Callable[[], Awaitable[bool]],
        keep_alive: Callable[[], Awaitable[None]],
        poll: float = 0.25,
    ) -> float | None:
        """Wait for a live-call slot, then for a CPS slot; returns the slot's grant time. None if
        the call stopped being wanted while it waited (e.g. the problem was acknowledged).

        Usually both slots are free: one compare-and-set takes them together. With a call of
        this replica already waiting for a create slot, only the live-call slot is taken, and
        the call queues behind it for the create slot."""
        self.waiting += 1
        metrics.CPS_QUEUE_DEPTH.set(self.waiting)
        try:
            checked = self._now()
            while True:
                if not self._cps_turn.locked():
                    async with self._cps_turn:
                        got, wait, granted = await self._take(call_id, create=True)
                        if got:
                            return granted if wait <= 0 else await self._wait_cps_held(wait)
                elif (await self._take(call_id, create=False))[0]:
                    return await self.wait_cps()
                await asyncio.sleep(poll)
                if self._now() - checked > 2:
                    checked = self._now()
                    await keep_alive()
                    if not await still_wanted():
                        return None
        finally:
            self.waiting -= 1
            metrics.CPS_QUEUE_DEPTH.set(self.waiting)

    async def wait_cps(self) -> float:
        """Return, with the slot's grant time, at a moment when one more create fits the budget.
        Call `sent` with that time once the create has its response."""
        async with self._cps_turn:
            return await self._wait_cps_held(0.0)

    async def _wait_cps_held(self, wait: float) -> float:
        """`wait_cps` with the turn already held, after sleeping ``wait`` first."""
        while True:
            if wait > 0:
                await asyncio.sleep(wait)
            wait, granted = await self._try_cps_slot()
            if wait <= 0:
                return granted

    async def release(self, call_id: str) -> None:
        def change(current: Slots | None) -> Slots | None:
            if current is None or call_id not in current.calls:
                return None
            calls = {k: v for k, v in current.calls.items() if k != call_id}
            return Slots(calls=calls, sent=self._window(current.sent, self._now()))

        result = await self._mutate(change)
        metrics.CONCURRENT_CALLS.set(len(result.calls) if result else 0)
