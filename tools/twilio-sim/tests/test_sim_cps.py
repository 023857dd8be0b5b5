"""CPS queueing: creates are accepted at once, dials leave the queue at most CPS per second."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_twilio_sim.testing import eventually

CPS = 5


@pytest.fixture
def sim_settings() -> SimSettings:
    return SimSettings(time_scale=0.01, cps=CPS)


def max_dials_in_any_second(dials: list[float]) -> int:
    """The most dials inside any half-open window [t, t + 1 s) starting at a dial."""
    ordered = sorted(dials)
    return max(sum(1 for t in ordered if start <= t < start + 1.0) for start in ordered)


async def test_ten_calls_at_cps_5_never_exceed_5_dials_per_rolling_second(
    http: httpx.AsyncClient, async_twilio: Any
) -> None:
    await http.put("/sim/scenarios/default", json={"answer": "busy", "answer_after": 0})
    numbers = [f"+8190000000{i:02d}" for i in range(10)]
    calls = await asyncio.gather(
        *(
            async_twilio.calls.create_async(to=number, from_="+815012345678", twiml="<Response/>")
            for number in numbers
        )
    )
    assert all(call.status == "queued" for call in calls)

    async def all_dialled() -> list[dict[str, Any]] | None:
        creates: list[dict[str, Any]] = (await http.get("/sim/creates")).json()["creates"]
        return creates if all(c["dialled_at"] for c in creates) else None

    creates = await eventually(all_dialled, "every call to be dialled")
    assert len(creates) == 10
    assert all(c["http_status"] == 201 for c in creates)
    dials = [c["dialled_at"] for c in creates]
    assert max_dials_in_any_second(dials) <= CPS
    # FIFO: calls leave the queue in the order their creates arrived.
    by_arrival = sorted(creates, key=lambda c: c["arrived_at"])
    assert [c["dialled_at"] for c in by_arrival] == sorted(dials)
    # Every call waited in the queue, none was dialled before its create arrived.
    assert all(c["dialled_at"] >= c["arrived_at"] for c in creates)
    queue_times = [int(call.queue_time) for call in calls]
    assert max(queue_times) > 0  # later calls were told they would wait
