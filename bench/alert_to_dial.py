"""Alert-to-dial latency: from the alert (a webhook POST, or an AlertEvent on the bus) to the
Twilio create request arriving at the simulator.

Everything is a real process: nats-server, yobidashi-ingest, yobidashi-dialer and the Twilio
simulator, all on this machine (one clock). Each alert rings its own number, so every create
at the simulator is matched to the alert that caused it.

With ``--from webhook`` the clock starts when the POST to ingest is sent; with ``--from bus``
it starts when the AlertEvent is published. Rates above TWILIO_CPS queue on purpose: the
table then shows how long calls waited for the budget.

    .venv/bin/python bench/alert_to_dial.py [--rates 1,50,500] [--seconds 10] [--cps 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from yobidashi_testing import payloads
from yobidashi_testing.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_testing.processes import ServiceProcess
from yobidashi_testing.stack import Bus, SimAccount, alert_event, dialer_env

TOKEN = "bench-ingest-token-0123456789"
RESULTS = Path(__file__).parent / "results"


def number(n: int) -> str:
    return f"+8190{30000000 + n:08d}"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run_rate(
    rate: float, seconds: float, source: str, ingest_url: str, nats_url: str, sim_url: str,
    offset: int,
) -> dict[str, Any]:  # fmt: skip
    count = max(1, int(rate * seconds))
    sent_at: dict[str, float] = {}
    began = time.time()
    async with (
        Bus(nats_url) as bus,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        tasks = []

        async def fire(n: int) -> None:
            to = number(offset + n)
            sent_at[to] = time.time()
            if source == "bus":
                await bus.publish_alert(alert_event(offset + n, sendto=to))
            else:
                body = payloads.problem(event_id=offset + n, sendto=to)
                async with http.post(ingest_url, json=body) as resp:
                    await resp.read()

        for n in range(count):
            due = began + n / rate
            if (wait := due - time.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(fire(n)))
        await asyncio.gather(*tasks)
    # Wait for every create to reach the simulator.
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
        arrivals: dict[str, float] = {}
        deadline = time.time() + 120 + count / 10
        while time.time() < deadline:
            creates = (await sim.get("/sim/creates")).json()["creates"]
            arrivals = {
                c["params"]["To"][0]: c["arrived_at"]
                for c in creates
                if c["params"].get("To", [""])[0] in sent_at
            }
            if len(arrivals) >= count:
                break
            await asyncio.sleep(0.5)
        await sim.delete("/sim/journal")
    latencies = [(arrivals[to] - sent_at[to]) * 1000 for to in arrivals]
    return {
        "rate": rate,
        "source": source,
        "alerts": count,
        "dialled": len(latencies),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,50,500")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cps", type=int, default=1000, help="TWILIO_CPS of the dialer")
    parser.add_argument("--source", choices=["webhook", "bus"], default="webhook")
    args = parser.parse_args()
    binary = find_nats_server()
    if binary is None:
        sys.exit("nats-server not found: run `make venv`")
    rates = [float(r) for r in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, NatsServer(binary) as server:
        work = Path(tmp)
        sim_port = free_port()
        sim_env = {
            "TWILIO_SIM_PORT": str(sim_port),
            "TWILIO_SIM_CPS": "1000",
            "TWILIO_SIM_LOG_LEVEL": "warning",
            # nobody answers: the calls end quickly and cheaply
            "TWILIO_SIM_DEFAULT_SCENARIO": '{"answer": "busy", "answer_after": 0.1}',
            "TWILIO_SIM_TIME_SCALE": "0.05",
        }
        with ServiceProcess(
            "yobidashi-twilio-sim", sim_env, work / "sim.log", port=sim_port
        ) as sim:
            port = free_port()
            env = dialer_env(
                server.url, SimAccount(sim.url), port,
                TWILIO_CPS=str(args.cps), DIAL_MAX_ATTEMPTS="1", LOG_LEVEL="WARNING",
                DIAL_WORKERS="64",
            )  # fmt: skip
            ingest_env = {"NATS_URL": server.url, "INGEST_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"}
            with (
                ServiceProcess("yobidashi-dialer", env, work / "dialer.log", port=port) as dialer,
                ServiceProcess("yobidashi-ingest", ingest_env, work / "ingest.log") as ingest,
            ):
                dialer.wait_ready()
                ingest.wait_ready()
                # warm up: the first call through a fresh stack is not what we measure
                await run_rate(1, 2, args.source, f"{ingest.url}/v1/zabbix", server.url, sim.url, 0)
                for i, rate in enumerate(rates):
                    rows.append(
                        await run_rate(
                            rate,
                            args.seconds,
                            args.source,
                            f"{ingest.url}/v1/zabbix",
                            server.url,
                            sim.url,
                            (i + 1) * 100_000,
                        )
                    )
    start = "webhook POST" if args.source == "webhook" else "AlertEvent on the bus"
    print(f"\n{start} -> create at the simulator; TWILIO_CPS={args.cps}; {os.cpu_count()} cores")
    print(f"{'alerts/s':>9}{'alerts':>8}{'dialled':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}")
    for r in rows:
        print(
            f"{r['rate']:>9.0f}{r['alerts']:>8}{r['dialled']:>9}{r['p50_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['max_ms']:>10.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"alert_to_dial_{args.source}.json"
    out.write_text(json.dumps({"cps": args.cps, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
