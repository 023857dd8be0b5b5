"""Failover time: from the primary telephony account failing to the first call placed through the
fallback, and how many calls the switch delayed.

Each trial: a fresh nats-server, two Twilio simulators as two accounts (different credentials),
the dialer in this process with the fallback configured (breaker defaults: 3 failures in 60 s).
One call goes through the primary; then the primary starts answering 503 to everything (the
moment of failure, t0) and a burst of alerts arrives at once. Measured at the fallback simulator:
the arrival of its first create minus t0. "Delayed" calls are those that were tried on the
primary (and refused) before the fallback placed them; the others went straight to the fallback.
Every call of every trial is checked to be rung exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.common import (
    Figure,
    eventually,
    machine,
    nats_server,
    parser,
    pct,
    print_figures,
    run,
    save,
    size,
)
from yobidashi_testing.stack import (
    Bus,
    alert_event,
    dialer_in_process,
    fallback_env,
    fallback_simulator,
    simulator,
)

SIZES = {"quick": (2, 3), "default": (7, 5), "full": (25, 10)}  # (trials, calls per burst)
TARGET_P99_S = 5.0
BUSY = {"answer": "busy", "answer_after": 0.1}


async def trial(n: int, burst: int) -> dict[str, Any]:
    with nats_server() as server:
        async with (
            simulator(cps=100) as primary,
            fallback_simulator(cps=100) as fallback,
            dialer_in_process(
                server.url,
                primary,
                fallback_env(fallback, CPS="5"),
                TWILIO_CPS="5",
                DIAL_MAX_ATTEMPTS="1",  # busy ends the page: any second call would be a duplicate
                allow_handler_errors=True,
            ),
            Bus(server.url) as bus,
        ):
            numbers = [f"+8190{66600000 + n * 100 + i:08d}" for i in range(burst + 1)]
            for number in numbers:
                await primary.scenario(number, BUSY)
                await fallback.scenario(number, BUSY)
            await bus.publish_alert(alert_event(90_000 + n * 100, sendto=numbers[0]))
            await primary.wait_calls(numbers[0], 1)
            failed_at = time.time()
            await primary.faults(unavailable=True)
            for i, number in enumerate(numbers[1:], start=1):
                await bus.publish_alert(alert_event(90_000 + n * 100 + i, sendto=number))

            async def all_placed() -> list[dict[str, Any]] | None:
                creates = [c for c in await fallback.creates() if c["http_status"] == 201]
                return creates if len(creates) >= burst else None

            placed = await eventually(all_placed, "the burst placed by the fallback", 120)
            refused = [c for c in await primary.creates() if c["http_status"] != 201]
            rung = Counter(c["params"]["To"][0] for c in placed)
            rung.update(c["params"]["To"][0] for c in await primary.creates() if c["call_sid"])
    assert set(rung) == set(numbers), f"a call was lost: {rung}"
    assert max(rung.values()) == 1, f"a call was rung twice: {rung}"
    first = min(c["arrived_at"] for c in placed)
    return {
        "failover_s": first - failed_at,
        "delayed": len({c["params"]["To"][0] for c in refused}),
        "burst": burst,
    }


async def main() -> None:
    args = parser(__doc__).parse_args()
    trials, burst = SIZES[size(args)]
    info = machine()
    rows = []
    for n in range(trials):
        row = await trial(n, burst)
        print(f"  trial {n + 1}/{trials}: {row['failover_s']:.2f} s, {row['delayed']} delayed")
        rows.append(row)
    seconds = [r["failover_s"] for r in rows]
    delayed = [float(r["delayed"]) for r in rows]
    figures = [
        Figure("failover time p50", pct(seconds, 0.5), "s", TARGET_P99_S, "lower"),
        Figure("failover time p99", pct(seconds, 0.99), "s", TARGET_P99_S, "lower"),
        Figure(
            "calls delayed by the switch (mean per burst)",
            sum(delayed) / len(delayed),
            "",
            note=f"of {burst} calls per burst; the rest went straight to the fallback",
        ),
        Figure("calls lost or rung twice", 0, "", 0, "lower", "asserted in every trial"),
    ]
    print_figures(figures)
    save("failover_time", info, figures, size=size(args), trials=rows)


if __name__ == "__main__":
    run(main)
