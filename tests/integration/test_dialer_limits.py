"""The CPS budget that every dialer replica shares, on a real nats-server's KV.

Twilio's CPS is account-wide. Two replicas take create slots from one record in KV; each
grant is decided on the budget's clock, so the grants themselves (not the arrival times a
loaded machine would skew) must never put more than CPS creates in any rolling second. (The
network between the grant and Twilio is allowed WINDOW_MARGIN of jitter.)
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from yobidashi_common.bus import Bus
from yobidashi_common.settings import NatsSettings
from yobidashi_dialer.limits import WINDOW_MARGIN, Budget
from yobidashi_dialer.store import LIMITS

pytestmark = pytest.mark.integration

CPS = 2


def most_in_any_second(times: list[float]) -> int:
    """The most of ``times`` in any half-open window [t, t + 1)."""
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


async def test_two_replicas_never_grant_more_than_the_shared_cps(nats_url: str) -> None:
    buses = [Bus(NatsSettings(nats_url=nats_url), f"replica-{n}", buckets=[LIMITS]) for n in (1, 2)]
    for bus in buses:
        await bus.start()
        await asyncio.wait_for(bus.wait_ready(), 30)
    budgets = [Budget(bus, CPS, 0, live_ttl=60) for bus in buses]
    spans: list[tuple[float, float]] = []

    async def create(budget: Budget) -> None:
        granted = await budget.wait_cps()
        await asyncio.sleep(random.uniform(0, 0.2))
        answered = time.time()
        await budget.sent(granted, answered)
        spans.append((granted, answered))

    try:
        await asyncio.gather(*(create(budgets[n % 2]) for n in range(12)))
    finally:
        for bus in buses:
            await bus.close()
    assert len(spans) == 12
    grants = sorted(g for g, _ in spans)
    assert most_in_any_second(grants) <= CPS
    # Shared, not per replica: the twelfth grant waited for the budget of both.
    assert grants[-1] - grants[0] >= (12 / CPS - 1) * (1.0 + WINDOW_MARGIN) - 1e-6
