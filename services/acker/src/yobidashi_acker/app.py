"""Acker service: the consumer, the Zabbix client, and the HTTP ops surface.

Readiness (``/readyz``) is NATS connected **and** Zabbix not rejecting our credentials. It
deliberately does not depend on Zabbix being reachable: the acker serves no traffic, and a
keypress waits safely on the bus while Zabbix is down, so taking pods out of service (or
stalling a rollout) for a Zabbix outage would fix nothing and hide the real alert
(``yobidashi_acker_zabbix_up == 0``, the retries counter). Credentials that Zabbix refuses are
different: a configuration error that a rollout should stop on. ``/status`` shows the details
(version, auth placement, last success, last error).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from yobidashi_acker import __version__
from yobidashi_acker.acks import Acker, acks_bucket, consumer_spec
from yobidashi_acker.settings import AckerSettings
from yobidashi_acker.zabbix import HttpZabbixApi, ZabbixApi, ZabbixError
from yobidashi_common.bus import Bus, Consumer
from yobidashi_common.events import KeyPressed
from yobidashi_common.service import service_app
from yobidashi_common.subjects import shared_streams
from yobidashi_common.telemetry import get_logger

log = get_logger(__name__)


async def probe_zabbix(zabbix: ZabbixApi, interval: float) -> None:
    """Check Zabbix once at start, then every ``interval`` seconds (0: only at start).

    The first check is what logs the detected version and auth placement (``zabbix.version``)
    and sets ``yobidashi_acker_zabbix_info`` before any keypress needs them; the later ones
    keep /status, readiness and the zabbix_up metric fresh between acknowledgements.
    """
    while True:
        try:
            await zabbix.check()
        except ZabbixError as exc:
            # Auth and config problems were already logged loudly by the client.
            log.warning("zabbix.probe_failed", kind=exc.kind.value, error=str(exc))
        except Exception:
            log.exception("zabbix.probe_error")
        if interval <= 0:
            return
        await asyncio.sleep(interval)


def create_app(
    settings: AckerSettings, bus: Bus | None = None, zabbix: ZabbixApi | None = None
) -> FastAPI:
    bus = bus or Bus(
        settings,
        "yobidashi-acker",
        streams=shared_streams(settings),
        buckets=[acks_bucket(settings)],
    )
    zabbix = zabbix or HttpZabbixApi(settings.zabbix_connection())
    acker = Acker(settings, bus, zabbix)
    consumer = Consumer(bus, consumer_spec(settings), KeyPressed, acker.handle)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "acker.starting",
            version=__version__,
            zabbix_url=settings.zabbix_url,
            zabbix_user=settings.zabbix_user,
            auth_mode=zabbix.status.auth_mode,
            http_basic_auth_mode="on" if settings.zabbix_http_user else "off",
            tls_verify=settings.zabbix_tls_verify,
        )
        patience = settings.acker_max_deliveries * settings.acker_retry_backoff[-1]
        if patience < settings.nats_events_max_age:
            log.warning(
                "acker.retry_budget_short",
                hint="a Zabbix outage longer than max_deliveries x the last backoff "
                "dead-letters acks before the keys stream would expire them",
                retry_budget_seconds=patience,
                stream_max_age_seconds=settings.nats_events_max_age,
            )
        if not settings.zabbix_tls_verify:
            log.warning("acker.tls_verification_disabled", zabbix_url=settings.zabbix_url)
        await bus.start()
        consumer.start()
        probe = asyncio.create_task(
            probe_zabbix(zabbix, settings.zabbix_probe_interval), name="zabbix-probe"
        )
        try:
            yield
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
            # Stop taking keypresses and let in-flight ones finish; anything unfinished is
            # redelivered (and recognised by its ref if Zabbix already took it).
            await consumer.stop(settings.shutdown_grace)
            await zabbix.close()
            await bus.close()
            log.info("acker.stopped")

    app = service_app(
        "acker",
        "Turns phone keypresses into Zabbix acknowledgements.",
        lifespan,
        lambda: {"nats": bus.ready, "zabbix_credentials": not zabbix.status.credentials_rejected},
    )
    app.state.bus = bus
    app.state.zabbix = zabbix
    app.state.acker = acker
    app.state.consumer = consumer

    @app.get("/status", include_in_schema=False)
    async def status() -> dict[str, Any]:
        return {"nats": bus.ready, "zabbix": zabbix.status.snapshot()}

    return app
