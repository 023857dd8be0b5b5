"""A circuit breaker per telephony account, kept in JetStream KV.

Every dialer replica reads and changes the same record with compare-and-set, so they agree
on which account is healthy, and a restart keeps what was learnt. An account opens on evidence:

- creates failing with 5xx, timeouts or auth errors ``threshold`` times within ``window``;
- an error that means the account or its number cannot call at all (suspended, unverified
  caller ID, no geo permission): at once;
- calls it accepted that, at the watchdog's time, have neither sent a status nor can be fetched
  with a status past ``queued``/``initiated`` (counted like failed creates).

After ``cooldown`` the first caller to ask gets a *probe*: one real call attempt on the account
(half-open). Its success closes the breaker; its failure opens it for another cooldown. Other
callers keep going to the next account meanwhile. A probe that never reports (its worker died)
is given up after ``probe_timeout`` and the next caller probes.

Asking a closed breaker costs no request: every replica follows the bucket through a KV watch
(`AccountPool.watch`, which feeds `Breaker.seen`), and its own writes update the same view. A
view a moment old is acceptable because an open breaker only orders the accounts, it never
silences the pager: a call sent to an account that another replica has just opened fails there
and moves on to the next account, as it did before the breaker opened. Every change of the
record (opening, probing, closing) is still a compare-and-set on a fresh read. While the watch
is not running (starting, or lost), each question reads the record, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from yobidashi_common.bus import Bus, KvStore
from yobidashi_common.subjects import BucketSpec
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer import metrics

log = get_logger(__name__)

BREAKERS = BucketSpec("yobidashi_breakers", "Circuit breaker per telephony account.")

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")
Admission = Literal["yes", "probe", "no"]


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 3
    window: float = 60.0
    cooldown: float = 30.0
    probe_timeout: float = 60.0


class BreakerState(BaseModel):
    state: State = "closed"
    since: float = 0.0  # when it entered ``state`` (epoch seconds)
    failures: list[float] = []  # recent failure times while closed
    reason: str = ""
    probe_until: float = 0.0  # half-open: the probe out now counts until then
    spent: dict[str, float] = {}  # seconds spent in each state, finished periods only

    def moved(self, to: State, now: float, reason: str = "") -> BreakerState:
        spent = dict(self.spent)
        if self.since:
            spent[self.state] = spent.get(self.state, 0.0) + max(now - self.since, 0.0)
        return BreakerState(state=to, since=now, reason=reason, spent=spent)


class Breaker:
    def __init__(
        self,
        bus: Bus,
        account: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.policy = policy
        self._store = KvStore(bus, BREAKERS.name, BreakerState)
        self._now = clock
        self._probe_until = 0.0  # the probe this replica was granted last (see forget_probe)
        # (state, revision) as the watch last reported it; None while it is not followed.
        self._view: tuple[BreakerState, int] | None = None

    def _observe(self, state: BreakerState | None) -> None:
        current = state or BreakerState()
        for name in STATES:
            metrics.BREAKER_STATE.labels(self.account, name).set(int(current.state == name))
            seconds = current.spent.get(name, 0.0)
            if current.state == name and current.since:
                seconds += max(self._now() - current.since, 0.0)
            metrics.BREAKER_SECONDS.labels(self.account, name).set(seconds)

    def _moved(self, before: State, after: BreakerState | None) -> None:
        if after is not None and after.state != before:
            metrics.BREAKER_TRANSITIONS.labels(self.account, after.state).inc()
            log.warning(
                "telephony.breaker", account=self.account, state=after.state, reason=after.reason
            )
        self._observe(after)

    async def state(self) -> BreakerState:
        found = await self._store.get(self.account)
        current = found[0] if found else BreakerState()
        self._observe(current)
        return current

    # -- the view the watch keeps ----------------------------------------------------------------

    def seen(self, state: BreakerState | None, revision: int) -> bool:
        """The shared record at ``revision`` (None: absent or deleted), from the watch or a full
        read. An older revision than the view's is ignored. True if the view changed."""
        if self._view is not None and revision <= self._view[1]:
            return False
        self._view = (state or BreakerState(), revision)
        self._observe(self._view[0])
        return True

    def unfollow(self) -> None:
        """The watch stopped: from now on every question reads the record again."""
        self._view = None

    @property
    def view(self) -> BreakerState | None:
        """What the watch says, or None if it is not followed."""
        return self._view[0] if self._view is not None else None

    async def refresh(self) -> bool:
        """Read the record and put it into the view. True if the view changed (the watch had
        not reported it)."""
        found = await self._store.get(self.account)
        if found is None:
            changed = self._view is None or self._view[0] != BreakerState()
            self._view = (BreakerState(), self._view[1] if self._view else 0)
            self._observe(self._view[0])
            return changed
        return self.seen(found[0], found[1])

    def _wrote(self, result: BreakerState | None) -> None:
        """Our own change (or what the fresh read under it found) goes into the view at once."""
        revision = self._store.last_revision(self.account)
        if self._view is not None and result is not None and revision is not None:
            self.seen(result, revision)

    async def _current(self) -> BreakerState | None:
        if self._view is not None:
            return self._view[0]
        found = await self._store.get(self.account)
        return found[0] if found else None

    def _due(self, state: BreakerState, now: float) -> bool:
        """Is an open (or half-open) breaker due for a probe?"""
        return (state.state == "open" and now >= state.since + self.policy.cooldown) or (
            state.state == "half_open" and now >= state.probe_until
        )

    async def admit(self) -> Admission:
        """May a new call go to this account now? "probe": yes, as the half-open probe."""
        verdict: Admission = "no"
        before: State = "closed"

        def change(current: BreakerState | None) -> BreakerState | None:
            nonlocal verdict, before
            state = current or BreakerState()
            before = state.state
            now = self._now()
            if state.state == "closed":
                verdict = "yes"
                return None
            if not self._due(state, now):
                verdict = "no"
                return None
            verdict = "probe"
            probing = state.moved("half_open", now, "probe") if state.state == "open" else state
            return probing.model_copy(update={"probe_until": now + self.policy.probe_timeout})

        # The usual case (closed) costs no request with the watch running (one read without),
        # and neither does an open breaker whose cooldown the view says is not over.
        current = await self._current()
        if current is None or current.state == "closed":
            self._observe(current)
            return "yes"
        if self._view is not None and not self._due(current, self._now()):
            self._observe(current)
            return "no"
        result = await self._store.mutate(self.account, change)
        self._wrote(result)
        self._moved(before, result)
        if verdict == "probe" and result is not None:
            self._probe_until = result.probe_until
        return verdict

    async def forget_probe(self) -> None:
        """The probe this replica was just granted will not be made (the call turned out to be
        placed, failed or being placed already): give it back, so that the next caller probes
        at once instead of after ``probe_timeout``. Nothing if another probe came since."""
        until, self._probe_until = self._probe_until, 0.0
        if not until:
            return

        def change(current: BreakerState | None) -> BreakerState | None:
            if current is None or current.state != "half_open" or current.probe_until != until:
                return None
            return current.model_copy(update={"probe_until": 0.0})

        result = await self._store.mutate(self.account, change)
        self._wrote(result)
        self._observe(result)

    async def failure(self, kind: str, detail: str, *, fatal: bool = False) -> bool:
        """Count evidence against the account. Returns True if the breaker is open now."""
        metrics.ACCOUNT_ERRORS.labels(self.account, kind).inc()
        before: State = "closed"

        def change(current: BreakerState | None) -> BreakerState | None:
            nonlocal before
            state = current or BreakerState()
            before = state.state
            now = self._now()
            reason = f"{kind}: {detail}"
            if state.state == "open":
                return None
            if state.state == "half_open":
                return state.moved("open", now, f"probe failed, {reason}")
            recent = [t for t in state.failures if t > now - self.policy.window] + [now]
            if fatal or len(recent) >= self.policy.threshold:
                return state.moved("open", now, reason)
            if not state.since:
                state = state.model_copy(update={"since": now})
            return state.model_copy(update={"failures": recent})

        result = await self._store.mutate(self.account, change)
        self._wrote(result)
        self._moved(before, result)
        return result is not None and result.state == "open"

    async def success(self) -> None:
        """A call was placed through the account: a half-open probe closes the breaker."""
        before: State = "closed"

        def change(current: BreakerState | None) -> BreakerState | None:
            nonlocal before
            if current is None:
                return None
            before = current.state
            if current.state != "half_open":
                return None
            return current.moved("closed", self._now(), "probe succeeded")

        current = await self._current()
        if current is None or current.state != "half_open":
            return
        result = await self._store.mutate(self.account, change)
        self._wrote(result)
        self._moved(before, result)
