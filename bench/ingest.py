"""Ingest throughput and latency against a real nats-server.

Runs, in one go and on this machine:
  1. ``raw-jetstream``: a nats-py loop publishing with Nats-Msg-Id and waiting for each PubAck
     from several concurrent tasks (the floor: what the bus alone costs);
  2. ``bare-fastapi``: a FastAPI endpoint that does nothing, under the same HTTP load
     (the floor for the HTTP stack);
  3. ``ingest``: the real ``yobidashi-ingest`` process, each request answered only after the
     JetStream ack, at full speed and at a fixed rate.

Prints a table and writes JSON to bench/results/ingest.json. No thresholds: numbers only.

    .venv/bin/python bench/ingest.py [--seconds 10] [--clients 32] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats

from yobidashi_testing import payloads
from yobidashi_testing.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_testing.processes import ServiceProcess

TOKEN = "bench-ingest-token-0123456789"
RESULTS = Path(__file__).parent / "results"


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: float | None = None

    def row(self) -> str:
        rss = f"{self.rss_mb:7.1f}" if self.rss_mb is not None else "      -"
        return (
            f"{self.name:<28}{self.per_second:>10.0f}{self.p50_ms:>9.2f}{self.p99_ms:>9.2f}"
            f"{self.max_ms:>9.2f}{self.errors:>8}{rss}"
        )


def summarize(name: str, latencies: list[float], errors: int, seconds: float) -> Result:
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return Result(
        name,
        len(latencies),
        errors,
        round(seconds, 2),
        len(latencies) / seconds if seconds else 0.0,
        round(pct(0.50), 3),
        round(pct(0.99), 3),
        round(ordered[-1] * 1000, 3),
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def raw_jetstream(url: str, seconds: float, clients: int) -> Result:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw"], duplicate_window=120)
    body = json.dumps(payloads.problem()).encode()
    latencies: list[float] = []
    counter = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop:
            counter += 1
            started = time.perf_counter()
            await js.publish("bench.raw", body, headers={"Nats-Msg-Id": f"raw-{counter}"})
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    await nc.close()
    return summarize("raw-jetstream publish", latencies, 0, elapsed)


async def http_load(
    name: str,
    url: str,
    seconds: float,
    clients: int,
    rate: float | None = None,
    headers: dict[str, str] | None = None,
) -> Result:
    """Closed-loop load (``rate`` None: as fast as the server answers) or an open-loop fixed
    rate, where latency is measured from each request's scheduled start."""
    latencies: list[float] = []
    errors = 0
    seq = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> None:
            nonlocal seq, errors
            seq += 1
            # a new event id each time: every request is a distinct alert that gets stored
            body = payloads.problem(event_id=100000 + seq)
            started = time.perf_counter()
            async with session.post(url, json=body) as resp:
                await resp.read()
                if resp.status >= 300:
                    errors += 1
                    return
            latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        stop = began + seconds
        if rate is None:

            async def worker() -> None:
                while time.perf_counter() < stop:
                    await one()

            await asyncio.gather(*(worker() for _ in range(clients)))
        else:
            tasks: set[asyncio.Task[None]] = set()
            interval = 1.0 / rate
            n = 0
            while (now := time.perf_counter()) < stop:
                due = began + n * interval
                if due > now:
                    await asyncio.sleep(due - now)
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return summarize(name, latencies, errors, elapsed)


BARE_APP = """
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/v1/zabbix", status_code=202)
async def receive(request: Request) -> dict[str, bool]:
    await request.body()
    return {"duplicate": False}
"""


async def bare_fastapi(seconds: float, clients: int, workdir: Path) -> Result:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=workdir,
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/docs")
        result = await http_load(
            "bare FastAPI endpoint", f"http://127.0.0.1:{port}/v1/zabbix", seconds, clients
        )
        result.rss_mb = round(rss_mb(proc.pid), 1)
        return result
    finally:
        proc.terminate()
        proc.wait()


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500.0, help="fixed-rate run (alerts/s)")
    args = parser.parse_args()
    binary = find_nats_server()
    if binary is None:
        sys.exit("nats-server not found: run `make venv`")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp, NatsServer(binary) as server:
        workdir = Path(tmp)
        results.append(await raw_jetstream(server.url, args.seconds, args.clients))
        results.append(await bare_fastapi(args.seconds, args.clients, workdir))
        env = {"NATS_URL": server.url, "INGEST_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"}
        with ServiceProcess("yobidashi-ingest", env, workdir / "ingest.log") as ingest:
            ingest.wait_ready()
            idle = rss_mb(ingest.pid or 0)
            url = f"{ingest.url}/v1/zabbix"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            full = await http_load(
                "ingest, closed loop", url, args.seconds, args.clients, None, auth
            )
            full.rss_mb = round(rss_mb(ingest.pid or 0), 1)
            fixed = await http_load(
                f"ingest at {args.rate:.0f}/s", url, args.seconds, args.clients, args.rate, auth
            )
            fixed.rss_mb = round(rss_mb(ingest.pid or 0), 1)
            results += [full, fixed]
    print(
        f"\nmachine: {os.cpu_count()} cores; {args.clients} clients, {args.seconds:.0f} s per run"
    )
    print(
        f"{'run':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'RSS MB':>7}"
    )
    for r in results:
        print(r.row())
    overhead = results[2].per_second / results[1].per_second if results[1].per_second else 0
    print(f"\ningest idle RSS {idle:.1f} MB; ingest/bare-FastAPI throughput ratio {overhead:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, Any] = {
        "cores": os.cpu_count(),
        "clients": args.clients,
        "seconds": args.seconds,
        "ingest_idle_rss_mb": round(idle, 1),
        "results": [asdict(r) for r in results],
    }
    (RESULTS / "ingest.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / 'ingest.json'}")


if __name__ == "__main__":
    asyncio.run(main())
