"""Several telephony accounts, tried in order, each behind its own circuit breaker.

`AccountPool` says which account a new call goes to: the first whose breaker admits it.
`RoutedTelephony` is the `Telephony` the rest of the dialer uses for calls that already exist
(hang up, voicemail, the watchdog's fetch): a call SID belongs to exactly one account, so it asks
the account that placed the call first (remembered in this process, a hint only) and the others
after it on 404. No table of SID → account has to survive anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import nats.errors
from pydantic import ValidationError

from yobidashi_common.bus import Bus
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.accounts import AccountConfig
from yobidashi_dialer.breaker import BREAKERS, Breaker, BreakerPolicy, BreakerState
from yobidashi_dialer.limits import Budget
from yobidashi_dialer.telephony import CallInfo, CallRequest, Telephony, TelephonyError

log = get_logger(__name__)

# Twilio errors that mean the account or its caller ID cannot call at all, whatever the number
# dialled: account not active or suspended (10001, 20005), caller ID not verified or not owned
# (21210), geo permissions that do not allow the destination (21215, 21216). Another account,
# with its own caller IDs and permissions, may well be able to.
ACCOUNT_CANNOT_CALL = frozenset({10001, 20005, 21210, 21215, 21216})
NOT_FOUND = 404
HINTS_KEPT = 10_000


def evidence(exc: TelephonyError) -> tuple[str, bool] | None:
    """What a failed create says about the account: (kind, fatal), or None if it is about
    this one call (a bad number) and another account would fail it the same way."""
    if exc.code in ACCOUNT_CANNOT_CALL:
        return "cannot_call", True
    if exc.retryable or exc.status in (401, 403):
        return "create", False
    return None


@dataclass
class Account:
    config: AccountConfig
    telephony: Telephony
    budget: Budget
    breaker: Breaker
    order: int

    @property
    def name(self) -> str:
        return self.config.name


class AccountPool:
    def __init__(
        self,
        bus: Bus,
        configs: list[AccountConfig],
        make_telephony: Callable[[AccountConfig], Telephony],
        *,
        live_ttl: float,
        policy: BreakerPolicy,
    ) -> None:
        self.bus = bus
        self.accounts = [
            Account(
                config=config,
                telephony=make_telephony(config),
                # The primary keeps the keys it always had, so an upgrade keeps its window.
                budget=Budget(
                    bus,
                    config.cps,
                    config.max_concurrent_calls,
                    live_ttl=live_ttl,
                    account="" if order == 0 else config.name,
                ),
                breaker=Breaker(bus, config.name, policy),
                order=order,
            )
            for order, config in enumerate(configs)
        ]
        self.by_name = {a.name: a for a in self.accounts}

    @property
    def primary(self) -> Account:
        return self.accounts[0]

    def get(self, name: str | None) -> Account:
        return self.by_name.get(name or "", self.primary) if name else self.primary

    async def choose(self, exclude: frozenset[str] = frozenset()) -> tuple[Account, bool] | None:
        """The account a new call goes to, and whether it is that account's half-open probe.
        None once every account has failed this very call."""
        chosen: tuple[Account, bool] | None = None
        for account in self.accounts:
            if account.name in exclude:
                continue
            verdict = await account.breaker.admit()
            if verdict != "no":
                chosen = (account, verdict == "probe")
                break
        if chosen is None:
            # Every account left is open. An open breaker orders the accounts, it never
            # silences the pager: with no healthy account (one account only, or all of them
            # failing) the call still goes to the first one not yet tried, as it did before
            # there were breakers, with its retries and backoff.
            rest = [a for a in self.accounts if a.name not in exclude]
            if not rest:
                return None
            chosen = (rest[0], False)
        for account in self.accounts:
            in_use = chosen[0] is account
            metrics.ACCOUNT_IN_USE.labels(account.name, str(account.order)).set(int(in_use))
        return chosen

    async def release(self, call_id: str) -> None:
        for account in self.accounts:
            await account.budget.release(call_id)

    async def warm_up(self) -> None:
        for account in self.accounts:
            await account.telephony.warm_up()

    async def watch(self, every: float = 15.0) -> None:
        """Follow every account's breaker record through a KV watch, so that choosing an
        account costs no request (see `breaker`). Every ``every`` seconds each record is also
        read in full: a watch can go quiet without an error (a server restart), and the breaker
        metrics stay current (time in state grows between calls). While the watch is down, the
        breakers read their record on every question, as they would without it."""
        try:
            while True:
                try:
                    await self.bus.wait_ready()
                    await self._read_all()
                    await self._follow(every)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep following whatever went wrong
                    self._unfollow()
                    log.warning("telephony.breaker_watch_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
        finally:
            self._unfollow()

    def _unfollow(self) -> None:
        for account in self.accounts:
            account.breaker.unfollow()

    async def _read_all(self) -> bool:
        """Read every account's record into its view. True if one had changed unreported."""
        missed = False
        for account in self.accounts:
            missed = await account.breaker.refresh() or missed
        return missed

    async def _follow(self, every: float) -> None:
        kv = await self.bus.kv(BREAKERS.name)
        watcher = await kv.watchall()
        loop = asyncio.get_running_loop()
        full_read_at = loop.time() + every
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=every)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    entry = None
                if loop.time() >= full_read_at:
                    full_read_at = loop.time() + every
                    if await self._read_all():
                        log.info("telephony.breaker_watch_restarted", reason="missed a change")
                        return  # it missed a change: start a new watch
                if entry is None:
                    continue
                account = self.by_name.get(entry.key)
                if account is None:
                    continue
                revision = int(entry.revision or 0)
                if entry.operation is not None or not entry.value:
                    account.breaker.seen(None, revision)
                    continue
                try:
                    state = BreakerState.model_validate_json(entry.value)
                except ValidationError as exc:
                    log.error("telephony.breaker_unreadable", key=entry.key, error=str(exc))
                    continue
                account.breaker.seen(state, revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        for account in self.accounts:
            await account.telephony.close()


class RoutedTelephony:
    """`Telephony` over every account, for calls that exist already (see the module doc)."""

    def __init__(self, pool: AccountPool) -> None:
        self.pool = pool
        self._hints: dict[str, str] = {}

    def placed_on(self, sid: str, account: str) -> None:
        if len(self._hints) >= HINTS_KEPT:
            self._hints.pop(next(iter(self._hints)))
        self._hints[sid] = account

    def _order(self, sid: str) -> list[Account]:
        hint = self._hints.get(sid)
        first = [a for a in self.pool.accounts if a.name == hint]
        return first + [a for a in self.pool.accounts if a.name != hint]

    async def _each(self, sid: str, what: Callable[[Telephony], object]) -> tuple[object, Account]:
        error: TelephonyError | None = None
        for account in self._order(sid):
            try:
                result = await what(account.telephony)  # type: ignore[misc]
            except TelephonyError as exc:
                # 404: not this account's call. Anything else: remember, try the others (the
                # call may be theirs), and report it if none of them has the call.
                if error is None or (error.status == NOT_FOUND and exc.status != NOT_FOUND):
                    error = exc
                continue
            self.placed_on(sid, account.name)
            return result, account
        assert error is not None
        raise error

    async def warm_up(self) -> None:
        await self.pool.warm_up()

    async def place_call(self, request: CallRequest) -> CallInfo:
        return await self.pool.primary.telephony.place_call(request)

    async def end_call(self, sid: str) -> None:
        await self._each(sid, lambda t: t.end_call(sid))

    async def play(self, sid: str, twiml: str) -> None:
        await self._each(sid, lambda t: t.play(sid, twiml))

    async def fetch_call(self, sid: str) -> CallInfo:
        info, _ = await self.fetch_call_on(sid)
        return info

    async def fetch_call_on(self, sid: str) -> tuple[CallInfo, Account]:
        info, account = await self._each(sid, lambda t: t.fetch_call(sid))
        assert isinstance(info, CallInfo)
        return info, account

    async def find_calls(self, to: str, from_: str, since: datetime) -> list[CallInfo]:
        return await self.pool.primary.telephony.find_calls(to, from_, since)

    async def close(self) -> None:
        await self.pool.close()
