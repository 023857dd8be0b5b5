"""What one alert and one call cost in JetStream requests and CPU, on one node and on a 3-node
R3 cluster (every request there waits for a quorum, so each one counts twice over).

Counted from the client side: every service counts each JetStream request that waits for an
answer in ``yobidashi_bus_jetstream_requests_total{operation}`` (publish, kv_get, kv_create,
kv_update, kv_put, kv_delete, ack, stream_get; fetch and consumer_info are long polls and the
lag gauge's refresh, which run whether or not anything happens, so they are shown but not in
the figures). The bench reads the services' /metrics before and after a batch.

Figures, each for ``single`` and ``cluster``:
  dialer requests per call, AlertEvent -> create
            one AlertEvent at a time published on the bus (as ingest would), each ringing its
            own number. The simulator holds every create's response for 2 s, so the dialer
            waits inside the create while its counters are read: the delta is exactly what
            came before the create (the decision, the escalation's writes, the dial queue, the
            budgets, the call record), including the alert's ack. Target: <= 8.
  dialer requests per call, whole call
            the same, with callbacks arriving and busy phones: everything a one-attempt page
            costs the dialer from its alert to its end (status callbacks, the escalation's end).
  ingest CPU per alert
            user + system CPU of the ingest process (from /proc) over a batch of webhook POSTs,
            divided by the alerts; beside it ingest's requests per alert (one publish).

    .venv/bin/python -m bench.round_trips [--quick|--full] [--only single|cluster]
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.common import (
    BUSY,
    INGEST_TOKEN,
    Figure,
    Samples,
    dialer_env,
    eventually,
    fmt,
    ingest_env,
    machine,
    nats_server,
    parser,
    print_figures,
    run,
    save,
    scrape,
    sim_client,
    sim_process,
    size,
)
from yobidashi_harness import payloads
from yobidashi_harness.nats_cluster import NatsCluster
from yobidashi_harness.nats_server import find_nats_server, free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import Bus, Sim, alert_event

REQUESTS = "yobidashi_bus_jetstream_requests_total"
# Long polls and the lag gauge: they tick while idle, so they are not a cost of one call.
BACKGROUND = {"fetch", "consumer_info"}
NEVER_ANSWERS = {"answer": "no-answer", "answer_after": 3600}
CREATE_HELD = 2.0  # seconds the simulator holds each create's response while counting
SIZES = {"quick": (5, 50), "default": (20, 500), "full": (100, 2000)}  # calls, ingest alerts


def requests_by_operation(before: Samples, after: Samples) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name == REQUESTS:
            op = dict(labels)["operation"]
            out[op] = value - before.get((name, labels), 0.0)
    return {op: n for op, n in sorted(out.items()) if n}


def per_call(ops: dict[str, float], calls: int) -> float:
    return sum(n for op, n in ops.items() if op not in BACKGROUND) / calls


def breakdown(ops: dict[str, float], calls: int) -> str:
    return ", ".join(f"{op} {n / calls:.2f}" for op, n in ops.items())


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    assert pid is not None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def number(n: int) -> str:
    return f"+8190{40000000 + n:08d}"


@contextmanager
def jetstream(kind: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(service URLs, the bench's own URL, env for the services) of one node or a cluster."""
    if kind == "single":
        with nats_server() as server:
            yield server.url, server.url, {}
        return
    binary = find_nats_server()
    assert binary is not None
    with NatsCluster(binary) as cluster:
        cluster.wait_healthy()
        yield cluster.urls, cluster.url_list[0], {"NATS_STREAM_REPLICAS": "3"}


async def settled(http: httpx.AsyncClient, url: str, pause: float = 0.3) -> Samples:
    """The dialer's metrics once the previous call's tail (its hang-up, its status callbacks)
    has stopped making requests, so that they are not counted against the next call. (Pull
    consumers keep polling while idle: those do not count here, nor in the figure.)"""
    last = await scrape(http, url)
    for _ in range(20):
        await asyncio.sleep(pause)
        now = await scrape(http, url)
        if not set(requests_by_operation(last, now)) - BACKGROUND:
            return now
        last = now
    return last


async def to_create(
    bus: Bus, sim: Sim, dialer: ServiceProcess, first: int, count: int
) -> dict[str, float]:
    """One alert at a time: the dialer's requests from the AlertEvent until it waits in the
    create (held by the simulator), summed over ``count`` alerts."""
    await sim.faults(latency_ms=int(CREATE_HELD * 1000))
    total: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(first, first + count):
            before = await settled(http, dialer.url)
            await bus.publish_alert(alert_event(n, sendto=number(n)))

            async def arrived(to: str = number(n)) -> bool:
                return any(c["params"].get("To", [""])[0] == to for c in await sim.creates())

            await eventually(arrived, f"the create for alert {n}", 60, interval=0.05)
            await asyncio.sleep(CREATE_HELD / 2)  # what runs beside the create has finished
            for op, value in requests_by_operation(before, await scrape(http, dialer.url)).items():
                total[op] = total.get(op, 0.0) + value
            await asyncio.sleep(CREATE_HELD / 2)
    await sim.faults()
    return total


async def dial_batch(
    bus: Bus, sim: Sim, dialer: ServiceProcess, first: int, count: int
) -> dict[str, float]:
    """Publish ``count`` AlertEvents at 20/s, wait for their creates and a quiet second; returns
    the dialer's requests by operation over the batch."""
    async with httpx.AsyncClient(timeout=30) as http:
        before = await scrape(http, dialer.url)
        wanted = {number(first + n) for n in range(count)}
        for n in range(count):
            await bus.publish_alert(alert_event(first + n, sendto=number(first + n)))
            await asyncio.sleep(0.05)

        async def all_created() -> bool:
            seen = {c["params"].get("To", [""])[0] for c in await sim.creates()}
            return wanted <= seen

        await eventually(all_created, f"{count} creates", 120 + count)
        # Wait until the dialer's counters stand still: the last writes after a create (or
        # after a call's end) are part of what the batch cost.
        previous: dict[str, float] = {}
        for _ in range(120):
            await asyncio.sleep(1.0)
            current = requests_by_operation(before, await scrape(http, dialer.url))
            quiet = {k: v for k, v in current.items() if k not in BACKGROUND}
            if quiet == previous:
                return current
            previous = quiet
        return current


async def ingest_batch(ingest: ServiceProcess, first: int, count: int) -> tuple[float, float]:
    """POST ``count`` webhooks, 8 at a time; returns (CPU ms per alert, requests per alert)."""
    url = f"{ingest.url}/v1/zabbix"
    async with (
        httpx.AsyncClient(timeout=30) as http,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as session,
    ):
        before = await scrape(http, ingest.url)
        cpu_before = cpu_seconds(ingest.pid)
        queue = iter(range(count))

        async def worker() -> None:
            for n in queue:
                body = payloads.problem(event_id=first + n, sendto=number(first + n))
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        raise RuntimeError(f"ingest answered {resp.status}")

        await asyncio.gather(*(worker() for _ in range(8)))
        cpu = cpu_seconds(ingest.pid) - cpu_before
        ops = requests_by_operation(before, await scrape(http, ingest.url))
    return cpu * 1000 / count, per_call(ops, count)


async def measure(kind: str, calls: int, alerts: int) -> dict[str, Any]:
    print(f"  {kind}: {calls} calls to the create, {calls} whole calls, {alerts} ingest alerts")
    with tempfile.TemporaryDirectory() as tmp, jetstream(kind) as (urls, own_url, extra):
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            bus = await stack.enter_async_context(Bus(own_url))
            result: dict[str, Any] = {"kind": kind}
            # to_create: the calls ring for ten minutes (a slow simulated clock), so no call's
            # end lands in a later alert's count; whole_call: busy at once, on a fast clock.
            for phase, scenario, scale in (
                ("to_create", NEVER_ANSWERS, "20"),
                ("whole_call", BUSY, "0.05"),
            ):
                sim_proc = stack.enter_context(
                    sim_process(work, scenario=scenario, time_scale=scale)
                )
                sim = sim_client(sim_proc.url)
                stack.push_async_callback(sim.http.aclose)
                port = free_port()
                env = dialer_env(urls, sim_proc.url, port, **extra)
                with ServiceProcess(
                    "yobidashi-dialer", env, work / f"dialer-{phase}.log", port=port
                ) as dialer:
                    dialer.wait_ready()
                    base = 1_000_000 if phase == "whole_call" else 0
                    await dial_batch(bus, sim, dialer, base, 5)  # warm-up
                    count = to_create if phase == "to_create" else dial_batch
                    ops = await count(bus, sim, dialer, base + 1000, calls)
                result[phase] = {"per_call": per_call(ops, calls), "operations": ops}
                print(f"    {phase}: {per_call(ops, calls):.2f} per call ({breakdown(ops, calls)})")
            ingest = stack.enter_context(
                ServiceProcess("yobidashi-ingest", ingest_env(urls, **extra), work / "ingest.log")
            )
            ingest.wait_ready()
            await ingest_batch(ingest, 2_000_000, 20)  # warm-up
            started = time.monotonic()
            cpu_ms, requests = await ingest_batch(ingest, 2_100_000, alerts)
            result["ingest"] = {
                "cpu_ms_per_alert": cpu_ms,
                "requests_per_alert": requests,
                "alerts_per_s": alerts / (time.monotonic() - started),
            }
            print(f"    ingest: {cpu_ms:.2f} ms CPU and {requests:.2f} requests per alert")
    return result


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", choices=["single", "cluster"])
    args = p.parse_args()
    calls, alerts = SIZES[size(args)]
    info = machine()
    kinds = [args.only] if args.only else ["single", "cluster"]
    results = [await measure(kind, calls, alerts) for kind in kinds]
    figures: list[Figure] = []
    for r in results:
        k = "3-node R3" if r["kind"] == "cluster" else "one node"
        figures += [
            Figure(f"dialer requests per call, AlertEvent -> create ({k})",
                   r["to_create"]["per_call"], "requests", 8, "lower",
                   breakdown(r["to_create"]["operations"], calls)),
            Figure(f"dialer requests per call, whole one-attempt call ({k})",
                   r["whole_call"]["per_call"], "requests", None, None,
                   breakdown(r["whole_call"]["operations"], calls)),
            Figure(f"ingest CPU per alert ({k})", r["ingest"]["cpu_ms_per_alert"], "ms",
                   note=f"{fmt(r['ingest']['requests_per_alert'])} JetStream requests per "
                   f"alert; {fmt(r['ingest']['alerts_per_s'])} alerts/s with 8 clients"),
        ]  # fmt: skip
    print_figures(figures)
    save("round_trips", info, figures, size=size(args), results=results)


if __name__ == "__main__":
    run(main)
