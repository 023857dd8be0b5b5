"""Places calls: never the same call twice, and calmly in a storm.

Each call request first asks the person's bundle record (`bundling.arbitrate`) whether to call
now, wait (window, hourly cap, already on the phone with us) or join a call that another
request placed. Then the `CallRecord` in KV is the dial marker: it is created ("placing") before
Twilio is asked and updated with the SID after. A replayed request finds it and does not dial
again. A request that finds it still "placing" long after (its worker died mid-create) asks
Twilio whether the call exists before placing it, so a crash can neither lose the call nor ring
the phone twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from yobidashi_common.bus import Bus, Delivery, KvStore, RetryLater
from yobidashi_common.events import CallFailed
from yobidashi_common.identity import ContactId
from yobidashi_common.subjects import calls_subject
from yobidashi_common.telemetry import bind_trace, get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.bundling import (
    BundleState,
    Decision,
    Waiting,
    arbitrate,
    bundle_key_for,
    call_over,
    call_placed,
)
from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import CallNotPlaced, CallPlaced, Incident, PageStatus
from yobidashi_dialer.failover import Account, AccountPool, RoutedTelephony, evidence
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import BUNDLES, CallRecord, CallTarget, DialRequest, Spoken
from yobidashi_dialer.telephony import CallInfo, CallRequest, TelephonyError
from yobidashi_dialer.voice import PHRASES, Voices, call_twiml

log = get_logger(__name__)

CREATE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
# After a create got no answer: the pauses before each further look for the call on that
# account (about 7 s in all), before the create is tried again or moves on.
LOOKUP_BACKOFF = (1.0, 2.0, 4.0)
NO_ACCOUNT_PAUSE = 5.0
# A dial request delivered this soon after this process stored its incident (the usual case: it
# decided the call and published the request a moment ago) is checked against that view instead
# of a fresh read, when the view says the page waits for it (see `_wanted`; "no" is only ever
# said on a fresh read). A stop another replica made in that second is caught as every stop
# that races the create is: the engine hangs up a call placed for a page no longer dialling.
OWN_VIEW_SECONDS = 1.0


class SwitchAccount(Exception):
    """The account failed this create in a way another account may not: try the next one."""

    def __init__(self, error: TelephonyError) -> None:
        super().__init__(str(error))
        self.error = error


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class DialWorker:
    settings: DialerSettings
    bus: Bus
    pool: AccountPool
    routed: RoutedTelephony
    calls: KvStore[CallRecord]
    engine: Engine
    hourly_cap: Callable[[ContactId], int]
    remember: Callable[[CallRecord], Awaitable[None]] | None = None
    bundles: KvStore[BundleState] = field(init=False)
    voices: Voices = field(init=False)

    def __post_init__(self) -> None:
        self.bundles = KvStore(self.bus, BUNDLES.name, BundleState)
        self.voices = Voices(self.settings.twilio_voice_ja, self.settings.twilio_voice_en)

    def urls(self, call_id: str, account: str | None = None) -> tuple[str, str, str]:
        """The call's callback URLs. A fallback account's carry ``acct=<name>``: the callbacks
        are signed with that account's token and verified against it (the primary's, with no
        parameter, look exactly as they did before there were fallbacks)."""
        base = f"{self.settings.public_base_url}/twilio/voice"
        acct = f"&acct={account}" if account and account != self.pool.primary.name else ""
        return (
            f"{base}/gather?call={call_id}&round=1{acct}",
            f"{base}/status?call={call_id}{acct}",
            f"{base}/amd?call={call_id}{acct}",
        )

    # -- one request ----------------------------------------------------------------------------

    async def handle(self, delivery: Delivery[DialRequest]) -> None:
        request = delivery.event
        bind_trace(delivery.traceparent, call_id=request.call_id)
        me = Waiting(call_id=request.call_id, target=request.targets[0])
        mine = await self._wanted(me, seen_within=OWN_VIEW_SECONDS)
        if mine is None:
            log.info("dial.dropped", reason="no longer wanted")
            return
        bundle_key = bundle_key_for(request.contact.id, request.bundle)
        decision = await self._arbitrate(bundle_key, me, request)
        if decision.action == "wait":
            raise RetryLater(decision.reason, delay=max(decision.until - time.time(), 0.05))
        if decision.action == "taken" and decision.call_id != request.call_id:
            await self._join(decision.call_id or "", me)
            return
        group = decision.requests or await self._group(bundle_key, request.call_id, me)
        wanted = [
            (w, i) for w in group if (i := mine if w == me else await self._wanted(w)) is not None
        ]
        if not wanted:
            await self.bundles.mutate(bundle_key, lambda s: call_over(s, request.call_id))
            log.info("dial.dropped", reason="every problem of the call was taken care of")
            return
        await self._call(delivery, bundle_key, wanted)

    async def _arbitrate(self, key: str, me: Waiting, request: DialRequest) -> Decision:
        decision: Decision | None = None
        newly_held = False

        def change(state: BundleState | None) -> BundleState:
            nonlocal decision, newly_held
            newly_held = state is None or all(w.call_id != me.call_id for w in state.pending)
            new, decision = arbitrate(
                state,
                me,
                now=time.time(),
                window=request.bundle_window,
                cap=self.hourly_cap(request.contact.id),
                redial=request.redial,
                live_ttl=self.settings.live_call_ttl,
            )
            return new

        await self.bundles.mutate(key, change)
        assert decision is not None
        if decision.action == "wait" and newly_held:
            metrics.HELD.labels(decision.reason).inc()
            log.info("dial.held", reason=decision.reason, until=round(decision.until, 1))
        return decision

    async def _group(self, key: str, call_id: str, me: Waiting) -> tuple[Waiting, ...]:
        """What a call that we lead covers (after a redelivery of our own request)."""
        found = await self.bundles.get(key)
        group = found[0].groups.get(call_id) if found else None
        return tuple(group) if group else (me,)

    async def _wanted(self, request: Waiting, seen_within: float = 0.0) -> Incident | None:
        """The incident, if its page still waits for exactly this call request.

        With ``seen_within``, this process's recent view is tried first, but only trusted when
        it says yes: a view that names this very call request is at least as new as the write
        that queued it. One that says no may be older than that write (another replica moved
        the page on since), so the answer no is only ever given on a fresh read."""
        if seen_within > 0:
            seen = self.engine.seen(request.target.problem_key, seen_within)
            if self._waits_for(seen, request):
                return seen
        incident = await self.engine.load(request.target.problem_key)
        return incident if self._waits_for(incident, request) else None

    @staticmethod
    def _waits_for(incident: Incident | None, request: Waiting) -> bool:
        target = request.target
        page = incident.page(target.page_id) if incident else None
        return (
            incident is not None
            and incident.open
            and page is not None
            and page.attempt == target.attempt
            and page.call_id == request.call_id
            and page.status is PageStatus.DIALLING
        )

    async def _join(self, call_id: str, me: Waiting) -> None:
        """Our page rides a call another request placed (a bundle)."""
        found = await self.calls.get(call_id)
        record = found[0] if found else None
        if record is None or record.state == "placing":
            raise RetryLater("the bundled call is being placed", delay=1.0)
        if record.state == "failed" or not record.call_sid:
            await self._tell_not_placed([me.target], call_id, record.failure or "failed")
            return
        await self._tell_placed(
            [me.target], call_id, record.call_sid, len(record.targets) > 1, record.account
        )

    # -- the call -------------------------------------------------------------------------------

    async def _call(
        self,
        delivery: Delivery[DialRequest],
        bundle_key: str,
        wanted: list[tuple[Waiting, Incident]],
    ) -> None:
        request = delivery.event
        # The account is chosen before the marker exists, so that the marker names it from the
        # start: creating the marker and writing down where the create goes are one request.
        choice = await self.pool.choose()
        try:
            record = await self._claim(request, bundle_key, wanted, choice)
            if record is not None and self.remember is not None:
                # Before Twilio is asked, so a call-back knows every call that may have rung.
                # If this fails, the request comes back and finds its marker "placing": it is
                # retaken after DIAL_RECOVERY_AFTER and remembered then.
                await self.remember(record)
        except Exception:
            await self._unprobe(choice)
            raise
        if record is None:
            await self._unprobe(choice)
            return
        tried: set[str] = set()
        while True:
            if choice is None:
                choice = await self.pool.choose(frozenset(tried))
            if choice is None:
                # Every account failed this very call: the request stays on the bus and comes
                # back, and its marker keeps it from being placed twice.
                raise RetryLater("no telephony account can take the call now", NO_ACCOUNT_PAUSE)
            account, probe = choice
            choice = None  # the next round chooses again, without the accounts tried
            if probe:
                log.info("telephony.probe", account=account.name)
            record = await self._on_account(record, account.name)
            granted = await account.budget.acquire(
                request.call_id,
                still_wanted=partial(self._any_wanted, record),
                keep_alive=delivery.msg.in_progress,
            )
            if granted is None:
                await self._give_up(record, "stopped while waiting for a free line")
                return
            if (
                not probe
                and len(tried) + 1 < len(self.pool.accounts)
                and (await account.breaker.admit() == "no")
            ):
                # It opened while this call waited for its line (queued behind the failure):
                # the call goes on to the next account rather than into a known-bad one.
                await account.budget.sent(granted, time.time())
                await account.budget.release(record.call_id)
                tried.add(account.name)
                continue
            try:
                info = await self._create(record, delivery, granted, account)
            except SwitchAccount as switch:
                await account.budget.release(record.call_id)
                tried.add(account.name)
                log.warning("dial.next_account", account=account.name, error=str(switch.error))
                continue
            except TelephonyError as exc:
                await account.budget.release(record.call_id)
                if exc.retryable:
                    raise RetryLater(f"Twilio unavailable: {exc}", delay=5.0) from exc
                await self._failed(record, exc)
                return
            await account.breaker.success()
            self.routed.placed_on(info.sid, account.name)
            await self._placed(record, info, request.requested_at)
            return

    async def _unprobe(self, choice: tuple[Account, bool] | None) -> None:
        """The call chosen for an account's half-open probe is not placed after all (its marker
        says it is placed, failed or being placed elsewhere): let the next call probe."""
        if choice is not None and choice[1]:
            await choice[0].breaker.forget_probe()

    async def _placed_anyway(
        self, record: CallRecord, account: Account, delivery: Delivery[DialRequest]
    ) -> CallInfo | None:
        """Whether a create that got no answer was carried out after all. Looked up more than
        once: an account that timed out may still be creating the call, or not answer the
        lookup at once either. Only when it has shown no call for a while is the create tried
        again or the call moved on (an account that stays unreachable through every look is a
        remaining risk of ringing twice; not ringing at all would be worse)."""
        since = record.placing_since - timedelta(seconds=5)
        for pause in (0.0, *LOOKUP_BACKOFF):
            if pause:
                await delivery.msg.in_progress()
                await asyncio.sleep(pause)
            try:
                found = await account.telephony.find_calls(
                    record.contact.number, record.from_number, since
                )
            except TelephonyError as exc:
                log.warning("dial.lookup_failed", account=account.name, error=str(exc))
                continue
            if found:
                self.routed.placed_on(found[-1].sid, account.name)
                return found[-1]
        return None

    async def _on_account(self, record: CallRecord, account: str) -> CallRecord:
        """Write down, before the create, which account it goes to (see `CallRecord.accounts`).
        A new marker names its first account already: this writes only when the call moves on
        to another account, or a retaken marker names a different one."""
        if record.account == account:
            return record
        number = self.pool.get(account).config.caller_id_for(record.contact.number)
        moved = record.model_copy(
            update={"accounts": [*record.accounts, account], "from_number": number}
        )
        await self.calls.put(record.call_id, moved)
        return moved

    async def _any_wanted(self, record: CallRecord) -> bool:
        for target in record.targets:
            incident = await self.engine.load(target.problem_key)
            if incident is not None and incident.open:
                return True
        return False

    async def _claim(
        self,
        request: DialRequest,
        bundle_key: str,
        wanted: list[tuple[Waiting, Incident]],
        choice: tuple[Account, bool] | None,
    ) -> CallRecord | None:
        """Create the dial marker, or decide what an existing one means. None: nothing to do.

        A new marker already names the account ``choice`` chose (see `CallRecord.accounts`):
        crash recovery asks exactly that account, and no second write is needed for it."""
        # Create first: on the usual path the marker does not exist yet, and this is one round
        # trip instead of two.
        account = choice[0] if choice is not None else None
        fresh = CallRecord(
            call_id=request.call_id,
            targets=[w.target for w, _ in wanted],
            problems=[i.problem for _, i in wanted],
            contact=request.contact,
            from_number=(
                account.config.caller_id_for(request.contact.number)
                if account is not None
                else self.settings.caller_id_for(request.contact.number)
            ),
            accounts=[account.name] if account is not None else [],
            spoken=[
                Spoken(severity=i.severity, host=i.host, title=i.title, started_at=i.started_at)
                for _, i in wanted
            ],
            state="placing",
            placing_since=_now(),
            bundle_key=bundle_key,
        )
        if await self.calls.create(request.call_id, fresh) is not None:
            return fresh
        existing = await self.calls.get(request.call_id)
        if existing is None:
            raise RetryLater("the call's marker changed under us", delay=1.0)
        record, revision = existing
        if record.state == "placed" and record.call_sid:
            await self._tell_placed(
                record.targets,
                record.call_id,
                record.call_sid,
                len(record.targets) > 1,
                record.account,
            )
            return None
        if record.state == "failed":
            await self._tell_not_placed(record.targets, record.call_id, record.failure or "failed")
            return None
        age = (_now() - record.placing_since).total_seconds()
        if age < self.settings.dial_recovery_after:
            raise RetryLater("being placed", delay=self.settings.dial_recovery_after - age)
        # Its worker died while placing it. Did an account take the create before that? Ask each
        # one a create went to (the primary, for a marker written before there were several).
        since = record.placing_since - timedelta(seconds=5)
        for name in record.accounts or [self.pool.primary.name]:
            account = self.pool.get(name)
            number = account.config.caller_id_for(record.contact.number)
            found = await account.telephony.find_calls(record.contact.number, number, since)
            if found:
                log.warning("dial.recovered", call_sid=found[0].sid, account=name)
                self.routed.placed_on(found[-1].sid, name)
                await self._placed(record, found[-1], record.placing_since)
                return None
        retaken = record.model_copy(update={"placing_since": _now()})
        if await self.calls.update(request.call_id, retaken, revision) is None:
            raise RetryLater("another worker took this call over", delay=1.0)
        log.warning("dial.retaken", age_seconds=round(age, 1))
        return retaken

    async def _create(
        self,
        record: CallRecord,
        delivery: Delivery[DialRequest],
        granted: float,
        account: Account,
    ) -> CallInfo:
        gather, status, amd = self.urls(record.call_id, account.name)
        twiml = call_twiml(
            [s.announcement() for s in record.spoken],
            phrases=PHRASES[record.language],
            voices=self.voices,
            gather_url=gather,
            gather_timeout=self.settings.dial_gather_timeout,
            now=_now(),
            keys=self.settings.keys(),
        )
        request = CallRequest(
            to=record.contact.number,
            # Each account calls from its own caller IDs (sticky per recipient within it).
            from_=account.config.caller_id_for(record.contact.number),
            twiml=twiml,
            status_callback=status,
            amd_callback=amd,
            ring_timeout=self.settings.twilio_ring_timeout,
            time_limit=self.settings.twilio_time_limit,
        )
        pauses = iter(CREATE_BACKOFF)
        while True:
            try:
                info = await account.telephony.place_call(request)
            except TelephonyError as exc:
                await account.budget.sent(granted, time.time())
                found = evidence(exc)
                result = f"code_{exc.code}" if exc.code else f"http_{exc.status or 'none'}"
                metrics.ACCOUNT_CREATES.labels(account.name, result).inc()
                if found is None:
                    raise  # about this call (e.g. a bad number): another account fails it too
                if exc.may_have_reached:
                    # The create may have been carried out: if the call exists, it is placed,
                    # and creating it again, here or through another account, would ring the
                    # phone twice.
                    existing = await self._placed_anyway(record, account, delivery)
                    if existing is not None:
                        return existing
                kind, fatal = found
                opened = await account.breaker.failure(kind, str(exc), fatal=fatal)
                pause = next(pauses, None)
                if fatal or opened or not exc.retryable or pause is None:
                    # Done with this account for this call; with another to go to, go there.
                    if len(self.pool.accounts) > 1:
                        raise SwitchAccount(exc) from exc
                    raise
                log.warning("dial.retry", error=str(exc), pause=pause, account=account.name)
                await delivery.msg.in_progress()
                await asyncio.sleep(pause)
                granted = await account.budget.wait_cps()  # a retry is a create too
                continue
            await account.budget.sent(granted, time.time())
            metrics.ACCOUNT_CREATES.labels(account.name, "ok").inc()
            return info

    async def _placed(self, record: CallRecord, info: CallInfo, requested_at: datetime) -> None:
        placed = record.model_copy(update={"state": "placed", "call_sid": info.sid})
        await self.calls.put(record.call_id, placed)
        if record.bundle_key:
            at = time.time()
            await self.bundles.mutate(
                record.bundle_key, lambda s: call_placed(s, record.call_id, at)
            )
        metrics.CALLS_PLACED.inc()
        metrics.DIAL_LATENCY.observe((_now() - requested_at).total_seconds())
        if len(record.targets) > 1:
            metrics.BUNDLED_CALLS.inc()
            metrics.BUNDLED_PROBLEMS.inc(len(record.targets))
        log.info(
            "dial.placed",
            call_sid=info.sid,
            to=record.contact.masked_number,
            problems=len(record.targets),
            account=record.account or self.pool.primary.name,
        )
        await self._tell_placed(
            placed.targets, placed.call_id, info.sid, len(record.targets) > 1, placed.account
        )

    async def _tell_placed(
        self,
        targets: list[CallTarget],
        call_id: str,
        sid: str,
        shared: bool,
        account: str | None = None,
    ) -> None:
        for target in targets:
            await self.engine.apply(
                target.problem_key,
                CallPlaced(
                    call_id=call_id,
                    page_id=target.page_id,
                    attempt=target.attempt,
                    call_sid=sid,
                    at=_now(),
                    shared=shared,
                    account=account or self.pool.primary.name,
                ),
            )

    async def _tell_not_placed(self, targets: list[CallTarget], call_id: str, reason: str) -> None:
        for target in targets:
            await self.engine.apply(
                target.problem_key,
                CallNotPlaced(
                    call_id=call_id, page_id=target.page_id, attempt=target.attempt, reason=reason
                ),
            )

    async def _give_up(self, record: CallRecord, reason: str) -> None:
        failed = record.model_copy(update={"state": "failed", "failure": reason})
        await self.calls.put(record.call_id, failed)
        if record.bundle_key:
            await self.bundles.mutate(record.bundle_key, lambda s: call_over(s, record.call_id))
        await self._tell_not_placed(failed.targets, failed.call_id, reason)

    async def _failed(self, record: CallRecord, exc: TelephonyError) -> None:
        reason = f"Twilio refused the call: {exc}"
        metrics.DIAL_ERRORS.labels(f"twilio_{exc.code or exc.status}").inc()
        log.error("dial.failed", code=exc.code, error=str(exc))
        await self.bus.publish(
            calls_subject("failed"),
            CallFailed(
                call_id=record.call_id,
                problems=record.problems,
                contact=record.contact_ref(),
                code=exc.code,
                reason=reason,
                at=_now(),
            ),
            msg_id=f"failed.{record.call_id}",
        )
        await self._give_up(record, reason)

    async def call_ended(self, call_id: str) -> None:
        """The call reached its final status: its person is off the phone."""
        found = await self.calls.get(call_id)
        if found and found[0].bundle_key:
            await self.bundles.mutate(found[0].bundle_key, lambda s: call_over(s, call_id))
