"""Ingest throughput and latency against a real nats-server.

Three systems under the same load, one after the other, on this machine:

  raw-jetstream  a nats-py loop publishing the same AlertEvent JSON with a Nats-Msg-Id and
                 waiting for each PubAck (the floor: what the bus alone costs);
  bare FastAPI   an endpoint that reads the body and answers 202 without doing anything
                 (the floor for the HTTP stack: uvicorn + FastAPI, as ingest runs them);
  ingest         the real ``yobidashi-ingest`` process: bearer token, validation, hashing,
                 and the answer only after JetStream stored the alert.

Each runs closed loop (``--clients`` connections, each sending its next request when the last
is answered: the most it can take) and open loop at a fixed rate (``--rate``/s, latency counted
from each request's *scheduled* time, so a stall is not hidden by the client waiting). Every
request is a distinct, realistic Zabbix notification (problems, recoveries and updates of our
media type, as Zabbix 6.0 sends them), so every one is stored; errors are non-2xx answers.

Targets: >= 2,000 accepted alerts/s closed loop (issue 7); at least 0.5x the bare FastAPI
endpoint's closed-loop throughput in the same run, and p99 <= 10 ms at 500 alerts/s (issue 17).
The load generator is Python too and shares the two cores with the server under test.

    .venv/bin/python -m bench.ingest [--seconds 8] [--clients 32] [--rate 500] [--quick]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats

from bench.common import (
    INGEST_TOKEN,
    Figure,
    clean,
    fmt,
    ingest_env,
    machine,
    nats_server,
    parser,
    pct,
    print_figures,
    rss_mb,
    run,
    save,
    size,
)
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import alert_event

SEVERITIES = [2, 3, 4, 4, 5]
HOSTS = [f"{role}{n:02d}" for role in ("web", "db", "app", "lb") for n in range(1, 13)]
PROBLEMS = [
    "HTTP service is down",
    "Disk usage above 90% on /var",
    "High CPU utilization (over 90% for 5m)",
    "MySQL: replication lag over 60s",
    "Zabbix agent is not available (for 3m)",
]


def realistic(seq: int) -> dict[str, Any]:
    """The ``seq``-th notification of a busy Zabbix: mostly problems, then recoveries and
    updates (acknowledged, commented), each a distinct alert (its own event or update)."""
    host = HOSTS[seq % len(HOSTS)]
    name = f"{host}: {PROBLEMS[seq % len(PROBLEMS)]}"
    event_id = 1_000_000 + seq
    common: dict[str, Any] = {
        "severity": SEVERITIES[seq % len(SEVERITIES)],
        "host": host,
        "name": name,
        "sendto": f"+8190{20000000 + seq % 5000:08d}",
    }
    kind = seq % 10
    if kind < 7:
        return payloads.problem(event_id, **common)
    if kind < 9:
        return payloads.recovery(event_id, event_id + 1, **common)
    return payloads.update(event_id, action="commented", message=f"checking ({seq})", **common)


@dataclass
class Result:
    name: str
    mode: str  # "closed" or "<rate>/s"
    requests: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: float | None = None
    peak_rss_mb: float | None = None

    def row(self, bare: Result | None, raw: Result | None) -> str:
        def ratio(floor: Result | None) -> str:
            if floor is None or floor is self or not floor.per_second:
                return "-"
            return f"{self.per_second / floor.per_second:.2f}x"

        def lat_ratio(floor: Result | None) -> str:
            if floor is None or floor is self or not floor.p50_ms:
                return "-"
            return f"{self.p50_ms / floor.p50_ms:.1f}x"

        rss = fmt(self.rss_mb) if self.rss_mb is not None else "-"
        return (
            f"{self.name:<16}{self.mode:>8}{self.per_second:>9.0f}{self.p50_ms:>8.2f}"
            f"{self.p99_ms:>8.2f}{self.max_ms:>8.1f}{self.errors:>7}{rss:>7}"
            f"{ratio(bare):>9}{ratio(raw):>9}{lat_ratio(bare):>9}"
        )


HEADER = (
    f"{'system':<16}{'load':>8}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>7}"
    f"{'RSS MB':>7}{'rps/bare':>9}{'rps/raw':>9}{'p50/bare':>9}"
)


def summarize(name: str, mode: str, latencies: list[float], errors: int, seconds: float) -> Result:
    ms = [x * 1000 for x in latencies]
    return Result(
        name,
        mode,
        len(ms),
        errors,
        round(seconds, 2),
        round(len(ms) / seconds, 1) if seconds else 0.0,
        clean(pct(ms, 0.50)) or 0.0,
        clean(pct(ms, 0.99)) or 0.0,
        clean(max(ms, default=float("nan"))) or 0.0,
    )


async def drive(
    send: Callable[[int], Awaitable[bool]],
    seconds: float,
    clients: int,
    rate: float | None,
    first_seq: int,
) -> tuple[list[float], int, float]:
    """Closed loop (``rate`` None) or open loop; returns latencies (s), errors, elapsed."""
    latencies: list[float] = []
    errors = 0
    seq = first_seq

    async def one(started: float) -> None:
        nonlocal seq, errors
        seq += 1
        ok = await send(seq)
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1

    began = time.perf_counter()
    stop = began + seconds
    if rate is None:

        async def worker() -> None:
            while time.perf_counter() < stop:
                await one(time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(clients)))
    else:
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (due := began + n / rate) < stop:
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            # latency counts from the scheduled time: a late send is the server's delay too
            task = asyncio.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
    return latencies, errors, time.perf_counter() - began


async def http_runs(
    name: str, url: str, headers: dict[str, str], args: Any, first_seq: int
) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def send(seq: int) -> bool:
            async with session.post(url, json=realistic(seq)) as resp:
                await resp.read()
                return resp.status < 300

        await drive(send, args.warmup, args.clients, None, first_seq - 100_000)
        closed = summarize(
            name, "closed", *await drive(send, args.seconds, args.clients, None, first_seq)
        )
        fixed = summarize(
            name,
            f"{args.rate:.0f}/s",
            *await drive(send, args.seconds, args.clients, args.rate, first_seq + 500_000),
        )
    return [closed, fixed]


async def raw_jetstream(url: str, args: Any) -> list[Result]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"], duplicate_window=120)
        # the same kind of bytes ingest stores: an AlertEvent as JSON
        body = alert_event(1).model_dump_json().encode()

        async def send(seq: int) -> bool:
            await js.publish("bench.raw.alert", body, headers={"Nats-Msg-Id": f"raw-{seq}"})
            return True

        await drive(send, args.warmup, args.clients, None, 9_000_000)
        closed = summarize(
            "raw JetStream", "closed", *await drive(send, args.seconds, args.clients, None, 0)
        )
        fixed = summarize(
            "raw JetStream",
            f"{args.rate:.0f}/s",
            *await drive(send, args.seconds, args.clients, args.rate, 5_000_000),
        )
        await js.delete_stream("BENCH_RAW")
    finally:
        await nc.close()
    return [closed, fixed]


BARE_APP = """
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/v1/zabbix", status_code=202)
async def receive(request: Request) -> dict[str, bool]:
    await request.body()
    return {"duplicate": False}
@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
"""


async def bare_fastapi(workdir: Path, args: Any) -> list[Result]:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    # the same server settings as ingest (yobidashi_common.service.run): uvicorn's defaults
    # (uvloop, httptools), no access log
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--no-server-header"],
        cwd=workdir,
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        results = await http_runs("bare FastAPI", f"http://127.0.0.1:{port}/v1/zabbix", {}, args, 0)
        for r in results:
            r.rss_mb = round(rss_mb(proc.pid), 1)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=None, help="per run (default 8, quick 3)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rate", type=float, default=500.0, help="open-loop rate (alerts/s)")
    args = p.parse_args()
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 20.0 if args.full else 8.0
    args.warmup = 1.0
    info = machine()
    results: list[Result] = []
    idle = float("nan")
    with tempfile.TemporaryDirectory() as tmp, nats_server() as server:
        workdir = Path(tmp)
        results += await raw_jetstream(server.url, args)
        results += await bare_fastapi(workdir, args)
        with ServiceProcess(
            "yobidashi-ingest", ingest_env(server.url), workdir / "ingest.log"
        ) as ingest:
            ingest.wait_ready()
            idle = rss_mb(ingest.pid)
            url = f"{ingest.url}/v1/zabbix"
            auth = {"Authorization": f"Bearer {INGEST_TOKEN}"}
            ours = await http_runs("ingest", url, auth, args, 10_000_000)
            for r in ours:
                r.rss_mb = round(rss_mb(ingest.pid), 1)
                r.peak_rss_mb = round(rss_mb(ingest.pid, "VmHWM"), 1)
            results += ours
    raw_c, raw_f, bare_c, bare_f, ing_c, ing_f = results
    print(
        f"\n{info['cores']} cores, load {info['load_average_at_start']}; {args.clients} clients"
        f" (closed loop), {args.seconds:.0f} s per run after {args.warmup:.0f} s of warm-up"
    )
    print(HEADER)
    for r in results:
        bare = bare_c if r.mode == "closed" else bare_f
        raw = raw_c if r.mode == "closed" else raw_f
        print(r.row(bare, raw))
    print(
        f"\nratios: rps/bare and rps/raw compare throughput with the floor at the same load; "
        f"p50/bare is ingest's median latency over bare FastAPI's.\n"
        f"ingest RSS: idle {fmt(idle)} MB, after the runs {fmt(ing_f.rss_mb)} MB "
        f"(peak {fmt(ing_f.peak_rss_mb)} MB)"
    )
    figures = [
        Figure(
            "ingest accepted alerts/s, closed loop",
            ing_c.per_second,
            "/s",
            2000,
            "higher",
            f"{args.clients} clients; errors {ing_c.errors}",
        ),
        Figure(f"ingest p99 at {args.rate:.0f}/s (open loop)", ing_f.p99_ms, "ms", 10, "lower"),
        Figure(f"ingest p50 at {args.rate:.0f}/s", ing_f.p50_ms, "ms"),
        Figure(f"ingest max at {args.rate:.0f}/s", ing_f.max_ms, "ms"),
        Figure("ingest closed-loop p99", ing_c.p99_ms, "ms"),
        Figure(
            "ingest / bare FastAPI throughput",
            ing_c.per_second / bare_c.per_second,
            "x",
            0.5,
            "higher",
        ),
        Figure("ingest / raw JetStream throughput", ing_c.per_second / raw_c.per_second, "x"),
        Figure("ingest RSS idle", idle, "MB"),
        Figure("ingest RSS after the runs", ing_f.rss_mb, "MB"),
    ]
    print_figures(figures)
    save(
        "ingest",
        info,
        figures,
        size=size(args),
        clients=args.clients,
        seconds=args.seconds,
        rate=args.rate,
        ingest_idle_rss_mb=clean(idle),
        results=[asdict(r) for r in results],
        sample_payload=json.loads(json.dumps(realistic(0))),
    )


if __name__ == "__main__":
    run(main)
