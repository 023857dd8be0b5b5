"""Memory: RSS of ingest, dialer and acker, idle and after rounds of alerts, and whether it grows
from round to round.

The three services run as their real console scripts against a real nats-server, the Twilio
simulator (a process) and the Zabbix JSON-RPC stand-in (served in this process). RSS is VmRSS
from /proc/<pid>/status (VmHWM for the peak), read when everything is quiet: after start
("idle"), and after each round once every consumer has drained and no call is live.

What a round sends through ingest (``--alerts`` notifications, 16 concurrent clients), so that
the dialer does real but bounded work for each (100,000 distinct problems would mean 100,000
calls, far beyond ten minutes on two cores):

  phase 1  ``--problems`` distinct problems, each to its own number: one call each. Most phones
           are busy (the call ends at once, one attempt: DIAL_MAX_ATTEMPTS=1); one in ten
           answers and presses 1, so the acker acknowledges it in the stand-in.
  phase 2  an update (a comment by an engineer) and the recovery of every problem.

Every notification is then resent as Zabbix's media-type retries resend it (same body) until
the round has sent ``--alerts`` in all: ingest validates, hashes and publishes each one, and
JetStream's de-duplication stores it once. So ingest sees the full volume; the dialer and the
acker see every distinct problem, update, recovery, call and keypress.

Default: 3 rounds of 33,334 notifications (100,002 in all; "after 100,000 alerts" is after the
third round), 1,000 problems per round. ``--full``: 3 rounds of 100,000 (3,000 problems each).
Targets: <= 150 MB per service after the run; no growth from round 2 to round 3 (<= 5 MB: the
first round warms caches and allocator arenas up).

    .venv/bin/python -m bench.memory [--quick|--full] [--rounds 3]
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats

from bench.common import (
    BUSY,
    INGEST_TOKEN,
    PRESSES_ONE,
    Figure,
    clean,
    dialer_env,
    eventually,
    fmt,
    ingest_env,
    machine,
    nats_server,
    parser,
    print_figures,
    rss_mb,
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
from yobidashi_testing.stack import Sim
from yobidashi_zabbix_standin import USER as STANDIN_USER
from yobidashi_zabbix_standin import ZabbixStandIn, serve

SIZES = {"quick": (5_000, 200), "default": (33_334, 1_000), "full": (100_000, 3_000)}
SERVICES = ("ingest", "dialer", "acker")
CLIENTS = 16
GROWTH_LIMIT_MB = 5.0
ANSWER_EVERY = 10  # one problem in ten is answered and acknowledged


def number(round_no: int, i: int) -> str:
    return f"+8190{60000000 + round_no * 100_000 + i:08d}"


def bodies(round_no: int, problems: int, phase: int) -> list[dict[str, Any]]:
    """The distinct notifications of one phase of a round."""
    out: list[dict[str, Any]] = []
    for i in range(problems):
        event_id = 10_000_000 * (round_no + 1) + 2 * i
        common: dict[str, Any] = {
            "sendto": number(round_no, i),
            "host": f"host{i % 200:03d}",
            "name": f"host{i % 200:03d}: service {i} is down",
        }
        if phase == 1:
            out.append(payloads.problem(event_id, **common))
        else:
            out.append(
                payloads.update(
                    event_id,
                    action="commented",
                    user="Taro Yamada (yamada)",
                    message=f"looking into it ({i})",
                    **common,
                )
            )
            out.append(payloads.recovery(event_id, event_id + 1, **common))
    return out


def stream_of(distinct: list[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    """``total`` notifications: each distinct one first, then its retries, interleaved."""
    for n in range(total):
        yield distinct[n % len(distinct)]


async def post_all(url: str, items: Iterator[dict[str, Any]]) -> tuple[int, int]:
    """Closed loop with CLIENTS connections; returns (sent, errors)."""
    sent = errors = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker() -> None:
            nonlocal sent, errors
            for body in items:  # one shared iterator: each body is sent once
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    sent += 1
                    errors += resp.status >= 300

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return sent, errors


async def drained(nats_url: str, sim: Sim) -> bool:
    """No consumer has work left (timers excepted: they wait on the server on purpose) and the
    simulator has no queued or live call."""
    health = await sim.health()
    if health["queued"] or health["live"]:
        return False
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for stream in await js.streams_info():
            for consumer in await js.consumers_info(stream.config.name or ""):
                if consumer.name == "dialer-timers":
                    continue
                if consumer.num_pending or consumer.num_ack_pending:
                    return False
    finally:
        await nc.close()
    return True


async def settle(nats_url: str, sim: Sim, limit: float) -> float:
    began = time.monotonic()

    async def check() -> bool:
        return await drained(nats_url, sim)

    await eventually(check, "the services to drain", limit, 0.5)
    # twice, a second apart: a callback in flight may still add work
    await asyncio.sleep(1.0)
    await eventually(check, "the services to drain", limit, 0.5)
    return time.monotonic() - began


def snapshot(procs: dict[str, ServiceProcess]) -> dict[str, dict[str, float | None]]:
    return {
        name: {"rss_mb": clean(rss_mb(p.pid)), "peak_mb": clean(rss_mb(p.pid, "VmHWM"))}
        for name, p in procs.items()
    }


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--alerts", type=int, help="notifications per round")
    p.add_argument("--problems", type=int, help="distinct problems per round")
    args = p.parse_args()
    per_round, problems = SIZES[size(args)]
    per_round = args.alerts or per_round
    problems = args.problems or problems
    info = machine()
    snapshots: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, nats_server() as server:
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            sim_proc = stack.enter_context(sim_process(work, scenario=BUSY, time_scale="0.05"))
            sim = sim_client(sim_proc.url)
            stack.push_async_callback(sim.http.aclose)
            token = "bench-memory-token-" + "0" * 45
            standin = ZabbixStandIn("6.0.14", tokens={token: STANDIN_USER}, auto_problems=True)
            zabbix = await stack.enter_async_context(serve(standin))
            dport = free_port()
            procs = {
                "ingest": ServiceProcess(
                    "yobidashi-ingest", ingest_env(server.url), work / "ingest.log"
                ),
                "dialer": ServiceProcess(
                    "yobidashi-dialer",
                    dialer_env(server.url, sim_proc.url, dport, TWILIO_CPS="200"),
                    work / "dialer.log",
                    port=dport,
                ),
                "acker": ServiceProcess(
                    "yobidashi-acker",
                    {
                        "NATS_URL": server.url,
                        "ZABBIX_URL": f"{zabbix}/zabbix",
                        "ZABBIX_API_TOKEN": token,
                        "LOG_LEVEL": "WARNING",
                        "SHUTDOWN_GRACE": "3",
                    },
                    work / "acker.log",
                ),
            }
            for proc in procs.values():
                stack.enter_context(proc)
            for proc in procs.values():
                proc.wait_ready()
            await asyncio.sleep(2)
            snapshots.append({"after": "idle", "services": snapshot(procs)})
            print(f"  idle: {fmt_snapshot(snapshots[-1])}")
            url = f"{procs['ingest'].url}/v1/zabbix"
            for r in range(args.rounds):
                began = time.monotonic()
                for i in range(0, problems, ANSWER_EVERY):
                    await sim.scenario(number(r, i), PRESSES_ONE)
                phase1 = bodies(r, problems, 1)
                phase2 = bodies(r, problems, 2)
                n1 = per_round // 3
                s1, e1 = await post_all(url, stream_of(phase1, n1))
                wait1 = await settle(server.url, sim, 120 + problems / 5)
                s2, e2 = await post_all(url, stream_of(phase2, per_round - n1))
                wait2 = await settle(server.url, sim, 120 + problems / 5)
                async with httpx.AsyncClient(timeout=30) as http:
                    metrics = await scrape(http, procs["dialer"].url)
                placed = sample(metrics, "yobidashi_dialer_calls_placed_total")
                acks = sum(len(e.acknowledges) for e in standin.events.values())
                rounds.append(
                    {
                        "round": r + 1,
                        "notifications": s1 + s2,
                        "errors": e1 + e2,
                        "distinct": len(phase1) + len(phase2),
                        "calls_placed_total": placed,
                        "acks_total": acks,
                        "seconds": round(time.monotonic() - began, 1),
                        "drain_seconds": round(wait1 + wait2, 1),
                    }
                )
                await asyncio.sleep(1)
                snapshots.append({"after": f"round {r + 1}", "services": snapshot(procs)})
                print(
                    f"  round {r + 1}: {s1 + s2} notifications ({e1 + e2} errors), "
                    f"{placed:.0f} calls and {acks} acks so far, {rounds[-1]['seconds']} s; "
                    f"{fmt_snapshot(snapshots[-1])}"
                )
                await sim.clear()
    total = sum(r["notifications"] for r in rounds)
    print(f"\nRSS in MB (VmRSS; peak VmHWM in brackets); {total:,} notifications in all")
    print(f"{'after':<10}" + "".join(f"{s:>18}" for s in SERVICES))
    for snap in snapshots:
        cells = "".join(
            f"{fmt(snap['services'][s]['rss_mb']) + ' [' + fmt(snap['services'][s]['peak_mb'])}]"
            .rjust(18)
            for s in SERVICES
        )  # fmt: skip
        print(f"{snap['after']:<10}{cells}")
    figures: list[Figure] = []
    last = snapshots[-1]["services"]
    for s in SERVICES:
        figures.append(
            Figure(
                f"{s} RSS after {total:,} alerts",
                last[s]["rss_mb"],
                "MB",
                150,
                "lower",
                f"idle {fmt(snapshots[0]['services'][s]['rss_mb'])} MB, "
                f"peak {fmt(last[s]['peak_mb'])} MB",
            )
        )
    if len(snapshots) >= 4:
        for s in SERVICES:
            prev, now = snapshots[-2]["services"][s]["rss_mb"], last[s]["rss_mb"]
            growth = (now or 0) - (prev or 0)
            per_round_growth = [
                fmt((b["services"][s]["rss_mb"] or 0) - (a["services"][s]["rss_mb"] or 0))
                for a, b in itertools.pairwise(snapshots[1:])
            ]
            figures.append(
                Figure(
                    f"{s} RSS growth, last round",
                    growth,
                    "MB",
                    GROWTH_LIMIT_MB,
                    "lower",
                    "round to round: " + ", ".join(per_round_growth) + " MB",
                )
            )
    print_figures(figures)
    save(
        "memory",
        info,
        figures,
        size=size(args),
        notifications_per_round=per_round,
        problems_per_round=problems,
        snapshots=snapshots,
        rounds=rounds,
    )


def fmt_snapshot(snap: dict[str, Any]) -> str:
    return ", ".join(f"{s} {fmt(snap['services'][s]['rss_mb'])} MB" for s in SERVICES)


if __name__ == "__main__":
    run(main)
