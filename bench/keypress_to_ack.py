"""Keypress-to-ack latency: from the Gather callback carrying the digit to ``event.acknowledge``
arriving at Zabbix.

A simulated engineer answers after 0.5 s and presses 1; the simulator POSTs the digit to the
dialer's Gather action (signed as Twilio does); the dialer stores a KeyPressed on the bus and
answers; the acker reads the event back (``event.get``) and writes ``event.acknowledge``.

Clock points (all ``time.time()`` on this host):
  pressed   the simulator journals the Gather-action webhook (``sent_at``, just before it
            POSTs; ``GET /sim/calls/{sid}`` -> ``webhooks``);
  answered  pressed + the webhook's ``elapsed_ms``: the dialer's answer (KeyPressed stored);
  read      ``event.get`` for the event arrives at Zabbix (the acker's read-back);
  ack       ``event.acknowledge`` arrives at Zabbix (the figure: p99 <= 100 ms);
  done      Zabbix answered that ``event.acknowledge`` (real Zabbix only).

Two variants, one stack (nats-server, ingest, dialer, simulator as processes; acker as a
process too, pointed at each in turn):
  (a) stand-in: the Zabbix JSON-RPC stand-in (yobidashi_zabbix_standin, 6.0's rules, as in
      ``make run``), served by uvicorn in this process; it stamps each request's arrival and
      answer: the pure figure;
  (b) the real Zabbix of ``ZABBIX_VERSION`` (7.0 unless set; ``yobidashi_harness.zabbix_dev``),
      provisioned with the prefix "bench" as the end-to-end tests do; each sample is a real
      problem raised over the trapper, which Zabbix notifies to ingest through our media
      type. A recording reverse proxy in front of the frontend (the acker's ZABBIX_URL)
      stamps when each request arrived and when Zabbix answered. Samples are sequential:
      one on-call phone, one problem at a time.

    .venv/bin/python -m bench.keypress_to_ack [--quick|--full] [--no-zabbix]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import (
    INGEST_TOKEN,
    PRESSES_ONE,
    Figure,
    dialer_env,
    dist,
    eventually,
    fmt,
    ingest_env,
    machine,
    nats_server,
    parser,
    print_figures,
    run,
    save,
    sim_client,
    sim_process,
    size,
)
from yobidashi_harness import payloads, zabbix_dev
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_testing.media_type import MEDIA_TYPE_YAML
from yobidashi_testing.stack import Sim
from yobidashi_zabbix_standin import USER as STANDIN_USER
from yobidashi_zabbix_standin import ZabbixStandIn, serve

SIZES = {"quick": (30, 5), "default": (100, 20), "full": (300, 50)}  # (stand-in, real Zabbix)
STANDIN_RATE = 5.0  # keypresses per second in (a): a storm, not a flood
PREFIX = "bench"
CALL_SID = re.compile(r"\bcall (CA[0-9a-f]{32})\b")


@dataclass
class Arrival:
    method: str
    arrived: float
    eventids: list[str]
    message: str
    answered: float | None = None

    @property
    def call_sid(self) -> str | None:
        found = CALL_SID.search(self.message)
        return found.group(1) if found else None


@dataclass
class Recorder:
    arrivals: list[Arrival] = field(default_factory=list)
    # events whose requests met a stopped frontend: their samples measure the outage, not us
    disturbed: set[str] = field(default_factory=set)

    def record(self, body: Any, arrived: float) -> Arrival | None:
        if not isinstance(body, dict) or body.get("method") not in (
            "event.get",
            "event.acknowledge",
        ):
            return None
        params = body.get("params") or {}
        entry = Arrival(
            str(body["method"]),
            arrived,
            [str(e) for e in params.get("eventids", [])],
            str(params.get("message", "")),
        )
        self.arrivals.append(entry)
        return entry

    def acks(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.method == "event.acknowledge"]


# -- (a) the stand-in, which stamps every request itself -------------------------------------


def recorded(standin: ZabbixStandIn) -> Recorder:
    """The stand-in's own record of requests (arrived: when the request started to arrive,
    before its body was read; answered: when its answer went out), as the proxy records them."""
    recorder = Recorder()
    for seen in standin.seen:
        entry = recorder.record(seen.body, seen.arrived)
        if entry is not None:
            entry.answered = seen.answered
    return recorder


# -- (b) the recording proxy in front of the real frontend -------------------------------------


async def recording_proxy(
    upstream: str, recorder: Recorder, stack: AsyncExitStack
) -> str:  # fmt: skip
    """Forward everything to ``upstream``; stamp JSON-RPC arrivals and Zabbix's answers."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)
    stack.push_async_callback(session.close)

    async def forward(request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        body = await request.read()
        entry = None
        if request.method == "POST":
            try:
                entry = recorder.record(json.loads(body), arrived)
            except ValueError:
                entry = None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        try:
            async with session.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as resp:
                payload = await resp.read()
                status, upstream_headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            # the frontend is down (the shared Zabbix: a test may stop it): the acker retries
            if entry is not None:
                recorder.arrivals.remove(entry)
                recorder.disturbed.update(entry.eventids)
            return web.Response(status=502, text=f"bench proxy: {type(exc).__name__}")
        if entry is not None:
            entry.answered = time.time()
        out_headers = {
            k: v
            for k, v in upstream_headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        }
        return web.Response(status=status, body=payload, headers=out_headers)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}"


# -- matching ---------------------------------------------------------------------------------


async def presses(sim: Sim) -> dict[str, tuple[float, float | None]]:
    """call SID -> (when the simulator sent the digit '1', when the dialer answered it)."""
    out: dict[str, tuple[float, float | None]] = {}
    for call in await sim.calls():
        for hook in call["webhooks"]:
            if hook["kind"] == "gather-action" and hook["params"].get("Digits") == "1":
                elapsed = hook.get("elapsed_ms")
                answered = hook["sent_at"] + elapsed / 1000 if elapsed is not None else None
                out[call["sid"]] = (hook["sent_at"], answered)
                break
    return out


def breakdown(recorder: Recorder, pressed: dict[str, tuple[float, float | None]]) -> dict[str, Any]:
    to_ack, to_answer, to_dialer, to_read, read_to_ack = [], [], [], [], []
    reads: dict[str, float] = {}
    for a in recorder.arrivals:
        if a.method == "event.get":
            for e in a.eventids:
                reads.setdefault(e, a.arrived)  # the first read-back of the event
    matched = excluded = 0
    for ack in recorder.acks():
        sid = ack.call_sid
        if sid is None or sid not in pressed:
            continue
        if recorder.disturbed & set(ack.eventids):
            excluded += 1
            continue
        matched += 1
        start, dialer_done = pressed[sid]
        to_ack.append((ack.arrived - start) * 1000)
        if ack.answered is not None:
            to_answer.append((ack.answered - start) * 1000)
        if dialer_done is not None:
            to_dialer.append((dialer_done - start) * 1000)
        read = next((reads[e] for e in ack.eventids if e in reads), None)
        if read is not None and read >= start:
            to_read.append((read - start) * 1000)
            read_to_ack.append((ack.arrived - read) * 1000)
    return {
        "presses": len(pressed),
        "acks_matched": matched,
        "excluded_frontend_down": excluded,
        "press_to_ack_request": dist(to_ack),
        "press_to_zabbix_answer": dist(to_answer),
        "press_to_dialer_answer": dist(to_dialer),
        "press_to_read_back": dist(to_read),
        "read_back_to_ack": dist(read_to_ack),
    }


# -- the runs ----------------------------------------------------------------------------------


def acker_process(work: Path, name: str, nats_url: str, **env: str) -> ServiceProcess:
    return ServiceProcess(
        "yobidashi-acker",
        {"NATS_URL": nats_url, "LOG_LEVEL": "WARNING", "SHUTDOWN_GRACE": "3", **env},
        work / f"acker-{name}.log",
    )


async def standin_run(
    work: Path, nats_url: str, ingest: ServiceProcess, sim: Sim, count: int
) -> dict[str, Any]:
    token = "bench-standin-token-" + "0" * 44
    standin = ZabbixStandIn("6.0.14", tokens={token: STANDIN_USER}, auto_problems=True)
    async with serve(standin) as base:
        with acker_process(
            work, "standin", nats_url, ZABBIX_URL=f"{base}/zabbix", ZABBIX_API_TOKEN=token
        ) as acker:
            acker.wait_ready()
            async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {INGEST_TOKEN}"}
            ) as http:
                began = time.time()
                for n in range(count):
                    if (wait := began + n / STANDIN_RATE - time.time()) > 0:
                        await asyncio.sleep(wait)
                    body = payloads.problem(event_id=500_000 + n, sendto=f"+8190{40000000 + n:08d}")
                    async with http.post(f"{ingest.url}/v1/zabbix", json=body) as resp:
                        await resp.read()

            async def all_acked() -> bool:
                return len(standin.calls("event.acknowledge")) >= count

            try:
                await eventually(all_acked, f"{count} acknowledgements", 60 + count / 2)
            except TimeoutError as exc:
                print(f"  (a) {exc}; reporting what arrived")
            await asyncio.sleep(0.5)
    return breakdown(recorded(standin), await presses(sim))


async def shared_zabbix() -> zabbix_dev.DevInstance:
    """The dev Zabbix, which the test suite shares: when it is not all up, a test may be in the
    middle of a "Zabbix is down" phase (it stops the frontend on purpose), so wait for it to
    come back before bringing it up ourselves."""
    config = zabbix_dev.DevConfig.from_env()
    for _ in range(60 if config.run_dir.exists() else 0):
        ok, _lines = await asyncio.to_thread(zabbix_dev.status, config)
        if ok:
            return zabbix_dev.instance(config)
        await asyncio.sleep(1)
    return await asyncio.to_thread(zabbix_dev.up, config)


async def zabbix_run(
    work: Path,
    nats_url: str,
    ingest_port: int,
    sim: Sim,
    count: int,
    stack: AsyncExitStack,
) -> dict[str, Any]:
    instance = await shared_zabbix()
    rpc = ZabbixRpc(instance.api_url)
    await asyncio.to_thread(rpc.login, instance.admin_username, instance.admin_password)
    scenario = await asyncio.to_thread(
        zs.provision,
        rpc,
        zs.ScenarioNames.for_prefix(PREFIX),
        media_type_yaml=MEDIA_TYPE_YAML,
        media_parameters={
            "URL": f"http://127.0.0.1:{ingest_port}/v1/zabbix",
            "token": INGEST_TOKEN,
        },
        phones=["+819050000001"],
    )
    names = scenario.names
    frontend = instance.api_url.removesuffix("/api_jsonrpc.php")
    recorder = Recorder()
    proxy = await recording_proxy(frontend, recorder, stack)

    def send(value: float) -> None:
        zs.send(names.host, names.item_key, value, server_port=instance.server_port)

    def close_problem() -> None:
        with contextlib.suppress(Exception):
            send(0)

    acker = stack.enter_context(
        acker_process(
            work, "zabbix", nats_url, ZABBIX_URL=proxy,
            ZABBIX_API_TOKEN=scenario.acker_token.token, ZABBIX_USER=names.acker_user,
        )
    )  # fmt: skip
    stack.callback(close_problem)  # leave no problem open (runs before the acker stops)
    acker.wait_ready()
    await asyncio.to_thread(
        zs.wait_for_config_sync,
        names.host,
        names.item_key,
        server_port=instance.server_port,
        changed_at=scenario.changed_at,
    )
    cycle: list[float] = []
    for n in range(count):
        started = time.monotonic()
        baseline = await asyncio.to_thread(zs.last_event_id, rpc, scenario.triggerid)
        await asyncio.to_thread(send, 0)
        await asyncio.to_thread(send, 10)
        event = await asyncio.to_thread(
            zs.wait_for_problem, rpc, scenario.triggerid, after_eventid=baseline
        )
        eventid = str(event["eventid"])

        async def acked(eventid: str = eventid) -> bool:
            return any(eventid in a.eventids and a.answered is not None for a in recorder.acks())

        try:
            await eventually(acked, f"event.acknowledge of problem {eventid}", 90, 0.05)
        except TimeoutError as exc:
            print(f"  (b) sample {n + 1}: {exc}")
            continue
        cycle.append(time.monotonic() - started)
        if (n + 1) % 5 == 0 or n + 1 == count:
            print(f"  (b) {n + 1}/{count} problems acknowledged")
    out = breakdown(recorder, await presses(sim))
    out["zabbix_version_url"] = instance.api_url
    out["seconds_per_sample"] = round(sum(cycle) / len(cycle), 2) if cycle else None
    return out


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--no-zabbix", action="store_true", help="only the stand-in variant")
    args = p.parse_args()
    n_standin, n_zabbix = SIZES[size(args)]
    info = machine()
    results: dict[str, Any] = {}
    skipped: str | None = None
    real = zabbix_dev.DevConfig.from_env().version
    with tempfile.TemporaryDirectory() as tmp, nats_server() as server:
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            sim_proc = stack.enter_context(sim_process(work, scenario=PRESSES_ONE))
            sim = sim_client(sim_proc.url)
            stack.push_async_callback(sim.http.aclose)
            ingest_port = free_port()
            ingest = stack.enter_context(
                ServiceProcess(
                    "yobidashi-ingest", ingest_env(server.url), work / "ingest.log",
                    port=ingest_port,
                )
            )  # fmt: skip
            dport = free_port()
            dialer = stack.enter_context(
                ServiceProcess(
                    "yobidashi-dialer",
                    dialer_env(server.url, sim_proc.url, dport),
                    work / "dialer.log",
                    port=dport,
                )
            )
            ingest.wait_ready()
            dialer.wait_ready()
            print(f"  (a) {n_standin} keypresses at {STANDIN_RATE:g}/s against the stand-in ...")
            results["standin"] = await standin_run(work, server.url, ingest, sim, n_standin)
            await sim.clear()
            if args.no_zabbix:
                skipped = "--no-zabbix"
            else:
                print(f"  (b) {n_zabbix} keypresses against the real Zabbix {real} ...")
                try:
                    async with AsyncExitStack() as zstack:
                        results["zabbix"] = await zabbix_run(
                            work, server.url, ingest_port, sim, n_zabbix, zstack
                        )
                except zabbix_dev.DevError as exc:
                    skipped = f"the real Zabbix is not available here: {exc}"
    print(f"\nGather callback (digit 1) -> event.acknowledge; {info['cores']} cores")
    print(
        f"{'variant':<12}{'acks':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'->dialer':>10}{'->read':>9}{'read->ack':>10}{'->answer p99':>14}"
    )
    for name, r in results.items():
        a, d = r["press_to_ack_request"], r["press_to_dialer_answer"]
        rd, ra, z = r["press_to_read_back"], r["read_back_to_ack"], r["press_to_zabbix_answer"]
        print(
            f"{name:<12}{r['acks_matched']:>6}{fmt(a['p50_ms']):>9}{fmt(a['p99_ms']):>9}"
            f"{fmt(a['max_ms']):>9}{fmt(d['p50_ms']):>10}{fmt(rd['p50_ms']):>9}"
            f"{fmt(ra['p50_ms']):>10}{fmt(z['p99_ms']):>14}"
        )
    print(
        "->dialer: p50 until the dialer answered the Gather (KeyPressed stored); ->read: p50 "
        "until the acker's event.get; read->ack: p50 from event.get to event.acknowledge"
    )
    if skipped:
        print(f"real Zabbix variant skipped: {skipped}")
    figures: list[Figure] = []
    labels = {"standin": "stand-in", "zabbix": f"real Zabbix {real}"}
    for name, r in results.items():
        a = r["press_to_ack_request"]
        figures.append(
            Figure(
                f"keypress->ack request, {labels[name]}: p99",
                a["p99_ms"],
                "ms",
                100,
                "lower",
                f"{a['count']} samples; p50 {fmt(a['p50_ms'])} ms, max {fmt(a['max_ms'])} ms"
                + (
                    f"; {r['excluded_frontend_down']} left out: the shared frontend was down"
                    if r["excluded_frontend_down"]
                    else ""
                ),
            )
        )
        if name == "zabbix":
            z = r["press_to_zabbix_answer"]
            figures.append(
                Figure(
                    f"keypress->Zabbix answered, real Zabbix {real}: p99",
                    z["p99_ms"],
                    "ms",
                    note=f"p50 {fmt(z['p50_ms'])} ms, max {fmt(z['max_ms'])} ms",
                )
            )
    print_figures(figures)
    save(
        "keypress_to_ack",
        info,
        figures,
        size=size(args),
        standin_rate=STANDIN_RATE,
        skipped=skipped,
        variants=results,
    )


if __name__ == "__main__":
    run(main)
