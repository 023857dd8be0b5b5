"""The dialer service: Twilio callback routes, the engine's consumers, and the dial workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from yobidashi_common.bus import Bus, Consumer, ConsumerSpec, Delivery, KvStore, RetryLater
from yobidashi_common.events import (
    FINAL_CALL_STATUSES,
    AckResult,
    AlertEvent,
    CallStatusChanged,
    KeyPressed,
)
from yobidashi_common.identity import ContactId
from yobidashi_common.service import service_app, start_stop_lifespan
from yobidashi_common.subjects import (
    ACKS_ALL,
    ACKS_STREAM,
    ALERTS_ALL,
    ALERTS_STREAM,
    CALLS_STREAM,
    KEYS_ALL,
    KEYS_STREAM,
    calls_subject,
    shared_streams,
)
from yobidashi_common.telemetry import bind_trace, register_secret
from yobidashi_dialer import overrides_api, pages, views
from yobidashi_dialer.accounts import AccountConfig
from yobidashi_dialer.breaker import BREAKERS, BreakerPolicy
from yobidashi_dialer.callback import PAGED, CallBackLine
from yobidashi_dialer.callbacks import Callbacks
from yobidashi_dialer.core.decide import Rules
from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import (
    AckReported,
    AlertArrived,
    CallProgress,
    Event,
    Incident,
    KeyPress,
    TimerFired,
)
from yobidashi_dialer.dialing import DialWorker
from yobidashi_dialer.failover import AccountPool, RoutedTelephony
from yobidashi_dialer.oncall import OnCallConfig
from yobidashi_dialer.oncall.overrides import with_overrides
from yobidashi_dialer.oncall.source import OnCallSource
from yobidashi_dialer.overrides import OVERRIDES, OverrideBook
from yobidashi_dialer.runner import Runner
from yobidashi_dialer.settings import DialerSettings
from yobidashi_dialer.store import (
    BUNDLES,
    CALLS,
    DIALER_STREAM,
    DIALS_SUBJECT,
    INCIDENTS,
    LIMITS,
    TIMERS_SUBJECT,
    CallRecord,
    DialRequest,
    TimerDue,
    dialer_stream,
)
from yobidashi_dialer.telephony import Telephony
from yobidashi_dialer.telephony.twilio import TwilioTelephony
from yobidashi_dialer.verification import VERIFICATIONS, Verifier


def rules_from(settings: DialerSettings, oncall: OnCallConfig | None = None) -> Rules:
    return Rules(
        max_attempts=settings.dial_max_attempts,
        redial_pause=timedelta(seconds=settings.dial_retry_pause),
        watchdog_after=timedelta(
            seconds=settings.twilio_ring_timeout + settings.dial_watchdog_grace
        ),
        watchdog_every=timedelta(seconds=settings.dial_watchdog_grace),
        default_region=settings.dial_default_region,
        default_language=settings.dial_default_language,
        default_timezone=settings.dial_default_timezone,
        bundle_window=timedelta(seconds=settings.dial_bundle_window),
        oncall=oncall or OnCallConfig(),
    )


class Dialer:
    """Everything the dialer runs, wired together once."""

    def __init__(
        self, settings: DialerSettings, bus: Bus | None = None, telephony: Telephony | None = None
    ) -> None:
        register_secret(settings.twilio_auth_token.get_secret_value())
        if settings.yobidashi_admin_token is not None:
            register_secret(settings.yobidashi_admin_token.get_secret_value())
        self.settings = settings
        self.bus = bus or Bus(
            settings,
            "yobidashi-dialer",
            streams=[*shared_streams(settings), dialer_stream(settings)],
            buckets=[INCIDENTS, CALLS, LIMITS, BUNDLES, BREAKERS, OVERRIDES, PAGED, VERIFICATIONS],
        )
        accounts = settings.accounts()
        for account in accounts[1:]:
            register_secret(account.auth_token)

        def make_telephony(account: AccountConfig) -> Telephony:
            if telephony is not None and account is accounts[0]:
                return telephony
            return TwilioTelephony(
                account.account_sid,
                account.auth_token,
                api_base_url=account.api_base_url,
                edge=account.edge,
                region=account.region,
                machine_detection=settings.twilio_machine_detection,
                request_timeout=settings.twilio_request_timeout,
            )

        self.pool = AccountPool(
            self.bus,
            accounts,
            make_telephony,
            live_ttl=settings.live_call_ttl,
            policy=BreakerPolicy(
                threshold=settings.twilio_breaker_failures,
                window=settings.twilio_breaker_window,
                cooldown=settings.twilio_breaker_cooldown,
                # A probe is one create; a worker that died with it out is given up after this.
                probe_timeout=max(settings.twilio_request_timeout * 3, 30.0),
            ),
        )
        self.telephony = RoutedTelephony(self.pool)
        self.config_source = OnCallSource(settings.yobidashi_config)
        self.rules = rules_from(settings, self.config_source.load_or_exit())
        self.overrides = OverrideBook(self.bus, lambda: self.rules.oncall)
        self._merged: tuple[Rules, int, Rules] | None = None
        self.incidents = KvStore(self.bus, INCIDENTS.name, Incident)
        self.calls = KvStore(self.bus, CALLS.name, CallRecord)
        self.runner = Runner(settings, self.bus, self.telephony)
        self.engine = Engine(self.incidents, self.current_rules, self.runner)
        self.budget = self.pool.primary.budget
        self.dial_worker = DialWorker(
            settings,
            self.bus,
            self.pool,
            self.telephony,
            self.calls,
            self.engine,
            hourly_cap=self.hourly_cap,
            # Only while call-backs are on: otherwise the index is one more write per call.
            remember=(
                (lambda record: self.callback_line.remember(record))
                if settings.dial_callback != "off"
                else None
            ),
        )
        self.callbacks = Callbacks(
            settings,
            self.bus,
            self.calls,
            self.engine,
            tokens={a.name: a.auth_token for a in accounts},
        )
        self.callback_line = CallBackLine(settings, self.bus, self.callbacks, self.current_rules)
        # Verification calls go through the primary account, within its budget.
        self.verifier = Verifier(
            settings, self.bus, self.telephony, self.budget, self.callbacks, self.current_rules
        )
        self._watch: asyncio.Task[None] | None = None
        self._breakers: asyncio.Task[None] | None = None
        ack_wait = settings.nats_ack_wait
        self.consumers: list[Consumer[Any]] = [
            Consumer(
                self.bus,
                ConsumerSpec(ALERTS_STREAM, "dialer-alerts", [ALERTS_ALL], ack_wait=ack_wait),
                AlertEvent,
                self.on_alert,
            ),
            Consumer(
                self.bus,
                ConsumerSpec(
                    CALLS_STREAM, "dialer-calls", [calls_subject("status.>")], ack_wait=ack_wait
                ),
                CallStatusChanged,
                self.on_call_status,
            ),
            Consumer(
                self.bus,
                ConsumerSpec(KEYS_STREAM, "dialer-keys", [KEYS_ALL], ack_wait=ack_wait),
                KeyPressed,
                self.on_key,
            ),
            Consumer(
                self.bus,
                ConsumerSpec(ACKS_STREAM, "dialer-acks", [ACKS_ALL], ack_wait=ack_wait),
                AckResult,
                self.on_ack,
            ),
            Consumer(
                self.bus,
                # Timers wait on the server as delayed naks, so they count as redeliveries.
                ConsumerSpec(
                    DIALER_STREAM,
                    "dialer-timers",
                    [TIMERS_SUBJECT],
                    max_deliveries=10_000,
                    max_ack_pending=100_000,
                    ack_wait=ack_wait,
                ),
                TimerDue,
                self.on_timer,
            ),
            Consumer(
                self.bus,
                ConsumerSpec(
                    DIALER_STREAM,
                    "dialer-dials",
                    [DIALS_SUBJECT],
                    concurrency=settings.dial_workers,
                    batch=settings.dial_workers,
                    max_deliveries=1_000,
                    max_ack_pending=10_000,
                    ack_wait=ack_wait,
                ),
                DialRequest,
                self.dial_worker.handle,
            ),
        ]

    def hourly_cap(self, who: ContactId) -> int:
        contact = self.rules.oncall.contact(who.config_id) if who.config_id else None
        if contact is not None and contact.max_calls_per_hour is not None:
            return contact.max_calls_per_hour
        return self.settings.dial_max_calls_per_hour

    def current_rules(self) -> Rules:
        """The rules with the runtime overrides folded in (recomputed only when either
        changed: this runs on every decision)."""
        base, version = self.rules, self.overrides.version
        if self._merged is None or self._merged[0] is not base or self._merged[1] != version:
            oncall = with_overrides(base.oncall, self.overrides.all())
            self._merged = (base, version, dataclasses.replace(base, oncall=oncall))
        return self._merged[2]

    def reload(self) -> bool:
        """Load the on-call config again; keep the old one (and say why) if the new is bad.
        Running escalations keep their policy: each took a copy when it started."""
        config = self.config_source.reload()
        if config is None:
            return False
        self.rules = rules_from(self.settings, config)
        return True

    async def apply(self, problem_key: str, event: Event) -> Incident | None:
        return await self.engine.apply(problem_key, event)

    async def on_alert(self, d: Delivery[AlertEvent]) -> None:
        bind_trace(d.traceparent, event_id=d.event.source_event_id)
        await self.apply(d.event.problem_key, AlertArrived(alert=d.event))

    async def on_call_status(self, d: Delivery[CallStatusChanged]) -> None:
        e = d.event
        bind_trace(d.traceparent, call_id=e.call_id, call_sid=e.call_sid)
        progress = CallProgress(
            call_id=e.call_id,
            call_sid=e.call_sid,
            status=e.status,
            answered_by=e.answered_by,
            sequence=e.sequence,
            at=e.at,
        )
        for problem in e.problems:
            await self.apply(problem.problem_key, progress)
        if e.status in FINAL_CALL_STATUSES:
            await self.pool.release(e.call_id)
            await self.dial_worker.call_ended(e.call_id)

    async def on_key(self, d: Delivery[KeyPressed]) -> None:
        bind_trace(d.traceparent, call_id=d.event.call_id, call_sid=d.event.call_sid)
        for problem in d.event.problems:
            await self.apply(problem.problem_key, KeyPress(key=d.event))

    async def on_ack(self, d: Delivery[AckResult]) -> None:
        await self.apply(d.event.problem.problem_key, AckReported(result=d.event))

    async def on_timer(self, d: Delivery[TimerDue]) -> None:
        timer = d.event
        wait = (timer.due_at - datetime.now(UTC)).total_seconds()
        if wait > 0.005:
            raise RetryLater("not due yet", delay=wait)
        await self.apply(timer.problem_key, TimerFired(**timer.timer_fields()))

    async def start(self) -> None:
        await self.telephony.warm_up()
        await self.bus.start()
        self.overrides.start()
        self.verifier.start()
        for consumer in self.consumers:
            consumer.start()
        self._watch = asyncio.create_task(self._watch_config(), name="config-watch")
        self._breakers = asyncio.create_task(self._watch_breakers(), name="breaker-watch")
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def _watch_breakers(self) -> None:
        await self.bus.wait_ready()
        await self.pool.watch()

    async def _watch_config(self) -> None:
        interval = self.settings.config_reload_interval
        if not interval or not self.settings.yobidashi_config:
            return
        while True:
            await asyncio.sleep(interval)
            if self.config_source.changed():
                self.reload()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._breakers is not None:
            self._breakers.cancel()
        for consumer in self.consumers:
            await consumer.stop(self.settings.shutdown_grace)
        await self.overrides.stop()
        await self.verifier.stop()
        await self.telephony.close()
        await self.bus.close()


def create_app(settings: DialerSettings, dialer: Dialer | None = None) -> FastAPI:
    dialer = dialer or Dialer(settings)
    app = service_app(
        "dialer",
        "Twilio's callbacks, and what the dialer knows: who is on call, incidents.",
        start_stop_lifespan(dialer.start, dialer.stop),
        lambda: {"nats": dialer.bus.ready},
    )
    app.state.dialer = dialer
    app.include_router(dialer.callbacks.router())
    app.include_router(dialer.callback_line.router())
    app.include_router(dialer.verifier.twilio_router())
    app.include_router(dialer.verifier.router(settings.yobidashi_admin_token))
    app.include_router(views.router(dialer.engine, lambda: dialer.current_rules().oncall))
    app.include_router(
        overrides_api.router(
            dialer.overrides, lambda: dialer.rules.oncall, settings.yobidashi_admin_token
        )
    )
    app.include_router(pages.router(dialer.engine, ZoneInfo(settings.dial_default_timezone)))
    return app
