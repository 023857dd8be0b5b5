"""The heartbeat canary: a synthetic alert through the whole paging path, every few minutes.

It posts a problem to ingest exactly as Zabbix would, tagged ``yobidashi: heartbeat`` (the
dialer then rings the canary number, whatever the on-call routes say), waits until the dialer
reports that call answered, records the round trip, and resolves the problem again. If the path
is broken anywhere (ingest, NATS, the dialer, Twilio, the number), the success timestamp stops
moving, and the ``YobidashiHeartbeatMissing`` alert fires: route that alert to a second channel,
because the first one is what just broke.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from yobidashi_cli.webhook import problem_notification, recovery_notification
from yobidashi_common.telemetry import get_logger

log = get_logger(__name__)

# Its own registry: the CLI imports dialer modules, whose metrics (bus connected = 0 ...) must
# not appear on the canary's /metrics and trip alerts about a dialer that is not there.
REGISTRY = CollectorRegistry()
ROUND_TRIP = Histogram(
    "yobidashi_heartbeat_round_trip_seconds",
    "From the canary's alert posted to ingest to its call answered.",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "yobidashi_heartbeat_last_success_timestamp_seconds",
    "When a canary alert last made it all the way to an answered call (unix time).",
    registry=REGISTRY,
)
FAILURES = Counter(
    "yobidashi_heartbeat_failures_total",
    "Canary rounds that did not end in an answered call, by stage.",
    ["stage"],
    registry=REGISTRY,
)
ROUNDS_BY_ACCOUNT = Counter(
    "yobidashi_heartbeat_rounds_total",
    "Answered canary rounds by the telephony account that carried the call (its configured "
    "name): anything but the primary here means the path works only through a fallback.",
    ["account"],
    registry=REGISTRY,
)
ANSWERED = {"answered", "reached", "acknowledged", "passed"}


@dataclass(frozen=True)
class Canary:
    ingest: str
    dialer: str
    token: str
    number: str
    timeout: float = 120.0


def canary_alert(event_id: int, number: str, value: int) -> dict[str, Any]:
    """The canary's problem (``value`` 1) or its recovery (0), tagged so the dialer rings the
    canary number whatever the routes say."""
    now = datetime.now(UTC)
    problem = problem_notification(
        event_id,
        at=now,
        sendto=number,
        name="Yobidashi heartbeat",
        host="yobidashi-heartbeat",
        severity=1,
        tags=[{"tag": "yobidashi", "value": "heartbeat"}],
        step_history=f"heartbeat {event_id}",
    )
    if value:
        return problem
    return recovery_notification(problem, recovery_event_id=event_id + 1, at=now)


async def one_round(
    http: httpx.AsyncClient, canary: Canary, event_id: int
) -> tuple[float, str] | None:
    """Seconds from posting the alert to an answered call, and the telephony account that
    carried it; None (and a counted failure)."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {canary.token}"}
    try:
        posted = await http.post(
            f"{canary.ingest}/v1/zabbix", json=canary_alert(event_id, canary.number, 1),
            headers=headers,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        FAILURES.labels("ingest").inc()
        log.error("heartbeat.ingest_unreachable", error=repr(exc))
        return None
    if posted.status_code != 202:
        FAILURES.labels("ingest").inc()
        log.error("heartbeat.ingest_refused", status=posted.status_code)
        return None
    try:
        while time.monotonic() - started < canary.timeout:
            response = await http.get(f"{canary.dialer}/v1/incidents/{event_id}")
            if response.status_code == 200:
                incident = response.json()
                answered = next((c for c in incident["calls"] if c["status"] in ANSWERED), None)
                if answered is not None:
                    # A dialer from before fallback accounts names none: its only account.
                    return time.monotonic() - started, answered.get("account") or "primary"
                refusal = next(
                    (e for e in incident["timeline"] if e["what"] == "not calling"), None
                )
                if refusal is not None:  # e.g. a canary number the dialer cannot dial
                    FAILURES.labels("dialer").inc()
                    log.error("heartbeat.not_called", reason=refusal["detail"])
                    return None
            await asyncio.sleep(0.5)
        FAILURES.labels("call").inc()
        log.error("heartbeat.no_answer", timeout=canary.timeout)
        return None
    except httpx.HTTPError as exc:
        FAILURES.labels("dialer").inc()
        log.error("heartbeat.dialer_unreachable", error=repr(exc))
        return None
    finally:
        # Resolve it, so nobody keeps ringing the canary number.
        try:
            await http.post(
                f"{canary.ingest}/v1/zabbix", json=canary_alert(event_id, canary.number, 0),
                headers=headers,
            )  # fmt: skip
        except httpx.HTTPError:
            log.warning("heartbeat.resolve_failed")


async def run(
    canary: Canary, every: float, port: int, rounds: int | None = None, host: str = "0.0.0.0"
) -> None:
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("heartbeat.started", every=every, metrics_port=port)
    done = 0
    async with httpx.AsyncClient(timeout=10) as http:
        while rounds is None or done < rounds:
            # A fresh event id per round, far above real Zabbix ids.
            event_id = 8_000_000_000 + int(time.time())
            result = await one_round(http, canary, event_id)
            if result is not None:
                seconds, account = result
                ROUND_TRIP.observe(seconds)
                LAST_SUCCESS.set(time.time())
                ROUNDS_BY_ACCOUNT.labels(account).inc()
                log.info("heartbeat.ok", round_trip_seconds=round(seconds, 2), account=account)
            done += 1
            if rounds is None or done < rounds:
                await asyncio.sleep(every)
