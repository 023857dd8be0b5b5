"""Alert-to-dial latency: from the alert to the Twilio create request arriving at the simulator.

Everything is a real process on this machine (one clock): nats-server, yobidashi-ingest,
yobidashi-dialer and the Twilio simulator. Each alert rings its own number, so every create at
the simulator is matched to the alert that caused it.

Clock points (all ``time.time()`` on this host):
  sent      the bench sends the webhook POST to ingest (``--from webhook``, the default) or
            publishes the AlertEvent (``--from bus``);
  marker    the dialer's call record in KV (``yobidashi_calls``) was created: ``placing_since``,
            written just before the dialer asks the CPS budget for a slot;
  create    the simulator journals the create request's arrival (``/sim/creates``).

``sent -> create`` is the figure. Targets: p99 <= 20 ms at 50 alerts/s on one node and <= 40 ms
on the 3-node cluster (issue 17); p99 <= 50 ms at the other rates under the CPS budget (issue 7).
``sent -> marker`` is the pipeline (ingest, bus, escalation decision, dial queue) and
``marker -> create`` is the budget wait plus the REST request: under the budget it is a few
milliseconds; above it, it is the queue wait, reported separately.

Rows (default): 1, 50 and 500 alerts/s with TWILIO_CPS=1000 (the pipeline, never waiting for
the budget), then a burst at 500/s with a realistic TWILIO_CPS=20, where calls must queue.
The phones are busy at once, so calls end immediately and every page has one attempt
(DIAL_MAX_ATTEMPTS=1).

``--cluster``: the same on a 3-node JetStream cluster (every node's URL in NATS_URL,
NATS_STREAM_REPLICAS=3), so each alert and each KV write is acknowledged by a quorum of two
nodes; saved as ``alert_to_dial_cluster`` and printed beside the single node by ``run_all``.

    .venv/bin/python -m bench.alert_to_dial [--from webhook|bus] [--cluster] [--quick|--full]
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
from nats.js.errors import KeyNotFoundError

from bench.common import (
    BUSY,
    INGEST_TOKEN,
    Figure,
    Sampler,
    clean,
    dialer_env,
    dist,
    fmt,
    histogram_quantile,
    ingest_env,
    machine,
    nats_backend,
    parser,
    print_figures,
    run,
    sample,
    save,
    scrape,
    sim_client,
    sim_process,
    size,
)
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import Bus, Sim, alert_event


def target_p99_ms(rate: float, *, cluster: bool) -> float:
    """The p99 target of a row under the CPS budget (see the module's docstring)."""
    if rate == 50:
        return 40 if cluster else 20
    return 50


@dataclass(frozen=True)
class Row:
    rate: float
    count: int
    cps: int

    @property
    def under_budget(self) -> bool:
        return self.rate < self.cps


SIZES = {
    "quick": [Row(1, 5, 1000), Row(50, 100, 1000), Row(500, 250, 1000), Row(500, 60, 20)],
    "default": [Row(1, 20, 1000), Row(50, 500, 1000), Row(500, 1000, 1000), Row(500, 200, 20)],
    "full": [Row(1, 60, 1000), Row(50, 3000, 1000), Row(500, 5000, 1000), Row(500, 1000, 20)],
}


def number(n: int) -> str:
    return f"+8190{30000000 + n:08d}"


async def call_markers(nats_url: str) -> dict[str, float]:
    """call SID -> when its dial marker was written (``placing_since``), from the dialer's KV."""
    nc = await nats.connect(nats_url.split(","))
    try:
        kv = await nc.jetstream().key_value("yobidashi_calls")
        out: dict[str, float] = {}
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return out
        for key in keys:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            if not entry.value:
                continue
            record = json.loads(entry.value)
            if record.get("call_sid"):
                out[record["call_sid"]] = datetime.fromisoformat(
                    record["placing_since"]
                ).timestamp()
        return out
    finally:
        await nc.close()


async def fire(
    row: Row, offset: int, source: str, ingest_url: str, nats_url: str
) -> dict[str, float]:
    """Send ``row.count`` alerts at ``row.rate``/s (open loop); returns number -> sent time."""
    sent_at: dict[str, float] = {}
    async with (
        Bus(nats_url) as bus,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as http,
    ):

        async def one(n: int) -> None:
            to = number(offset + n)
            if source == "bus":
                event = alert_event(offset + n, sendto=to)
                sent_at[to] = time.time()
                await bus.publish_alert(event)
            else:
                body = payloads.problem(event_id=offset + n, sendto=to)
                sent_at[to] = time.time()
                async with http.post(ingest_url, json=body) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        raise RuntimeError(f"ingest answered {resp.status}")

        began = time.time()
        tasks = []
        for n in range(row.count):
            if (wait := began + n / row.rate - time.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return sent_at


async def measure(
    row: Row,
    offset: int,
    source: str,
    ingest: ServiceProcess,
    dialer: ServiceProcess,
    nats_url: str,
    sim: Sim,
) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        before = await scrape(http, dialer.url)

        async def depth() -> float:
            return sample(await scrape(http, dialer.url), "yobidashi_dialer_cps_queue_depth")

        async with Sampler(depth, 0.25) as queue:
            began = time.time()
            sent_at = await fire(row, offset, source, f"{ingest.url}/v1/zabbix", nats_url)
            fired_in = time.time() - began
            arrivals: dict[str, tuple[float, str]] = {}
            deadline = time.time() + 120 + row.count / 5
            while time.time() < deadline:
                arrivals = {
                    c["params"]["To"][0]: (c["arrived_at"], c["call_sid"])
                    for c in await sim.creates()
                    if c["params"].get("To", [""])[0] in sent_at
                }
                if len(arrivals) >= len(sent_at):
                    break
                await asyncio.sleep(0.5)
        after = await scrape(http, dialer.url)
    markers = await call_markers(nats_url)
    total, pipeline, budget = [], [], []
    for to, (arrived, sid) in arrivals.items():
        total.append((arrived - sent_at[to]) * 1000)
        if sid in markers:
            pipeline.append((markers[sid] - sent_at[to]) * 1000)
            budget.append((arrived - markers[sid]) * 1000)
    times = sorted(a for a, _ in arrivals.values())
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    redelivered = sample(after, "yobidashi_bus_messages_redelivered_total") - sample(
        before, "yobidashi_bus_messages_redelivered_total"
    )
    return {
        "rate": row.rate,
        "cps": row.cps,
        "source": source,
        "alerts": row.count,
        "fired_in_s": round(fired_in, 2),
        "dialled": len(total),
        "total": dist(total),
        "pipeline": dist(pipeline),
        "budget_and_create": dist(budget),
        "achieved_creates_per_s": clean(achieved),
        "peak_cps_queue_depth": clean(queue.peak),
        "dialer_dial_latency_p50_s": clean(
            histogram_quantile(before, after, "yobidashi_dialer_dial_latency_seconds", 0.5)
        ),
        "dialer_dial_latency_p99_s": clean(
            histogram_quantile(before, after, "yobidashi_dialer_dial_latency_seconds", 0.99)
        ),
        "bus_redeliveries": redelivered,
    }


async def settle(sim: Sim) -> None:
    """Wait until the simulator has no queued or live call, then empty its journal."""
    for _ in range(240):
        health = await sim.health()
        if not health["queued"] and not health["live"]:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)  # the last callbacks reach the dialer
    await sim.clear()


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--from", dest="source", choices=["webhook", "bus"], default="webhook")
    p.add_argument(
        "--pipeline-cps",
        type=int,
        default=1000,
        help="TWILIO_CPS of the under-budget rows (default 1000: above every row's rate)",
    )
    p.add_argument("--rows", help="only these rates, e.g. 1,50 (for a look at one row)")
    p.add_argument("--cluster", action="store_true", help="on a 3-node JetStream cluster (R3)")
    args = p.parse_args()
    rows = [
        Row(r.rate, r.count, args.pipeline_cps if r.cps == 1000 else r.cps)
        for r in SIZES[size(args)]
        if not args.rows or f"{r.rate:g}" in args.rows.split(",")
    ]
    info = machine()
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        nats_backend(args.cluster) as (nats_url, nats_env),
    ):
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            sim_proc = stack.enter_context(sim_process(work, scenario=BUSY, time_scale="0.05"))
            sim = sim_client(sim_proc.url)
            stack.push_async_callback(sim.http.aclose)
            ingest = stack.enter_context(
                ServiceProcess(
                    "yobidashi-ingest", ingest_env(nats_url, **nats_env), work / "ingest.log"
                )
            )
            ingest.wait_ready()
            offset = 0
            for cps in dict.fromkeys(r.cps for r in rows):
                port = free_port()
                env = dialer_env(nats_url, sim_proc.url, port, TWILIO_CPS=str(cps), **nats_env)
                with ServiceProcess(
                    "yobidashi-dialer", env, work / f"dialer-{cps}.log", port=port
                ) as dialer:
                    dialer.wait_ready()
                    # warm-up: the first calls through a fresh process are not what we measure
                    offset += 100_000
                    await measure(Row(5, 5, cps), offset, args.source, ingest, dialer,
                                  nats_url, sim)  # fmt: skip
                    await settle(sim)
                    for row in (r for r in rows if r.cps == cps):
                        offset += 100_000
                        print(f"  {row.count} alerts at {row.rate:g}/s, TWILIO_CPS={cps} ...")
                        results.append(
                            await measure(row, offset, args.source, ingest, dialer, nats_url, sim)
                        )
                        await settle(sim)
    start = "webhook POST" if args.source == "webhook" else "AlertEvent on the bus"
    where = "3-node cluster, R3" if args.cluster else "one nats-server"
    print(f"\n{start} -> create at the simulator ({where}); {info['cores']} cores, "
          f"size {size(args)}")  # fmt: skip
    print(
        f"{'alerts/s':>8}{'CPS':>6}{'alerts':>7}{'dialled':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'pipe p99':>10}{'queue p50':>10}{'queue p99':>10}{'creates/s':>10}"
        f"{'redeliv':>8}"
    )
    for r in results:
        t, pl, b = r["total"], r["pipeline"], r["budget_and_create"]
        print(
            f"{r['rate']:>8g}{r['cps']:>6}{r['alerts']:>7}{r['dialled']:>8}{fmt(t['p50_ms']):>9}"
            f"{fmt(t['p99_ms']):>9}{fmt(t['max_ms']):>9}{fmt(pl['p99_ms']):>10}"
            f"{fmt(b['p50_ms']):>10}{fmt(b['p99_ms']):>10}"
            f"{fmt(r['achieved_creates_per_s']):>10}{r['bus_redeliveries']:>8.0f}"
        )
    print(
        "pipe: sent -> dial marker in KV; queue: marker -> create (CPS budget wait + the REST"
        " request); creates/s: achieved rate at the simulator; redeliv: bus redeliveries"
        " in the dialer during the row"
    )
    figures: list[Figure] = []
    prefix = "cluster: " if args.cluster else ""
    for r in results:
        label = f"{prefix}alert->dial at {r['rate']:g}/s, CPS {r['cps']}"
        if r["rate"] < r["cps"]:
            target = target_p99_ms(r["rate"], cluster=args.cluster)
            figures.append(Figure(f"{label}: p99", r["total"]["p99_ms"], "ms", target, "lower",
                                  f"{r['dialled']}/{r['alerts']} dialled; p50 "
                                  f"{fmt(r['total']['p50_ms'])} ms, max "
                                  f"{fmt(r['total']['max_ms'])} ms"))  # fmt: skip
        else:
            figures += [
                Figure(f"{label}: p99 total (incl. queue)", r["total"]["p99_ms"], "ms"),
                Figure(f"{label}: p99 pipeline (sent->marker)", r["pipeline"]["p99_ms"], "ms"),
                Figure(
                    f"{label}: queue wait p50 / p99",
                    r["budget_and_create"]["p50_ms"],
                    "ms",
                    note=f"p99 {fmt(r['budget_and_create']['p99_ms'])} ms; peak CPS queue "
                    f"depth {fmt(r['peak_cps_queue_depth'])}; creates/s "
                    f"{fmt(r['achieved_creates_per_s'])}",
                ),
            ]
    print_figures(figures)
    name = f"alert_to_dial_{args.source}" if args.source != "webhook" else "alert_to_dial"
    save(
        f"{name}_cluster" if args.cluster else name,
        info,
        figures,
        size=size(args),
        source=args.source,
        rows=results,
    )


if __name__ == "__main__":
    run(main)
