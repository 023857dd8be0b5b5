"""Chaos: many problems while processes crash and dependencies fail, then an audit of it all.

The load is Zabbix-shaped: every problem is a real event in the real dev Zabbix (its own
trapper item and trigger), announced to ingest with the body our media type sends, and retried
like Zabbix retries a webhook until ingest answers 2xx. Each problem rings its own number at the
Twilio simulator, where a simulated engineer answers and presses 1, answers and presses nothing,
presses 2, does not answer, is busy first, or is a voicemail. Some problems recover, and some
are acknowledged in the Zabbix UI (a real acknowledgement by Admin, then the update webhook).

Meanwhile a driver, at random moments, kill -9s ingest, the dialer or the acker and starts it
again, restarts nats-server, stops the Zabbix API for a while, and makes the simulator answer
30 % of call creates with 429 or 500.

Afterwards `audit` compares every 2xx'd alert with what happened: the simulator's journal (every
call and keypress), the dialer's incidents, the keys and acks streams, and the acknowledgements
in Zabbix.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from yobidashi_common.events import AckOutcome, AckResult, KeyAction, KeyPressed
from yobidashi_common.subjects import ACKS_STREAM, KEYS_STREAM
from yobidashi_testing import payloads, zabbix_dev
from yobidashi_testing import zabbix_scenario as zs
from yobidashi_testing.media_type import MEDIA_TYPE_YAML
from yobidashi_testing.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_testing.processes import ServiceProcess
from yobidashi_testing.stack import Bus, SimAccount, dialer_env
from yobidashi_testing.zabbix_api import ZabbixRpc
from yobidashi_testing.zabbix_sender import send_values

PREFIX = "chaos"
INGEST_TOKEN = "chaos-ingest-token-0123456789"
UI_USER = "Admin (Zabbix Administrator)"
# The page statuses after which nothing more happens (the dialer's model.FINAL, as its API
# spells them).
FINAL_PAGE_STATUSES = frozenset({"acknowledged", "passed", "reached", "unreached", "cancelled"})
STOP_NOTES = ("resolved", "acknowledged by phone", "acknowledged in Zabbix", "closed in Zabbix")


@dataclass(frozen=True)
class ChaosConfig:
    problems: int = 60
    seconds: float = 20.0  # over which the problems arrive
    zabbix_outage: float = 20.0  # how long the Zabbix API is stopped, once
    seed: int = 7
    time_scale: float = 0.1  # simulator seconds to real seconds
    twilio_cps: int = 20


# -- the plan: who answers what, which problems recover -----------------------------------------

BEHAVIOURS = {
    "press_1": 30,
    "reached": 12,  # answers, presses nothing
    "press_2": 8,
    "no_answer": 13,
    "busy_then_press_1": 10,
    "voicemail": 7,
    "slow_press_1": 20,  # rings a long time: recoveries and UI acks meet it ringing
}


def scenario(behaviour: str, rng: random.Random) -> list[dict[str, Any]]:
    def human(after: float, keys: str | None) -> dict[str, Any]:
        digits = [{"after": rng.uniform(0.5, 4), "keys": keys}] if keys else []
        return {"answer": "human", "answer_after": after, "digits": digits}

    if behaviour == "press_1":
        return [human(rng.uniform(2, 12), "1")]
    if behaviour == "reached":
        return [human(rng.uniform(2, 10), None)]
    if behaviour == "press_2":
        return [human(rng.uniform(2, 10), "2")]
    if behaviour == "no_answer":
        return [{"answer": "no-answer"}]
    if behaviour == "busy_then_press_1":
        return [{"answer": "busy", "answer_after": 2}, human(rng.uniform(2, 8), "1")]
    if behaviour == "voicemail":
        return [{"answer": "machine", "answer_after": 3}]
    assert behaviour == "slow_press_1"
    return [human(rng.uniform(20, 28), "1")]


@dataclass
class Problem:
    n: int
    number: str
    behaviour: str
    arrive_after: float  # seconds into the load
    stop: str | None  # "recover" | "ui_ack" | None
    stop_after: float  # seconds after the problem was accepted
    eventid: str = ""
    accepted_at: float | None = None  # when ingest answered 2xx to the problem
    stop_accepted_at: float | None = None
    posts: int = 0


def plan(config: ChaosConfig) -> tuple[list[Problem], dict[str, list[dict[str, Any]]]]:
    rng = random.Random(config.seed)
    names, weights = zip(*BEHAVIOURS.items(), strict=True)
    problems, scenarios = [], {}
    for n in range(config.problems):
        behaviour = rng.choices(names, weights)[0]
        draw = rng.random()
        stop = "recover" if draw < 0.2 else "ui_ack" if draw < 0.27 else None
        number = f"+8190{50000000 + n:08d}"
        problems.append(
            Problem(
                n=n,
                number=number,
                behaviour=behaviour,
                arrive_after=rng.uniform(0, config.seconds),
                stop=stop,
                stop_after=rng.uniform(0.3, 6),
            )
        )
        scenarios[number] = scenario(behaviour, rng)
    return problems, scenarios


# -- Zabbix: one trapper item and trigger per problem --------------------------------------------


@dataclass
class ZabbixSide:
    instance: zabbix_dev.DevInstance
    rpc: ZabbixRpc
    scenario: zs.Scenario
    triggers: dict[int, str]  # problem n -> triggerid

    @property
    def host(self) -> str:
        return self.scenario.names.host

    @classmethod
    def provision(cls, instance: zabbix_dev.DevInstance, count: int) -> ZabbixSide:
        rpc = ZabbixRpc(instance.api_url)
        rpc.login(instance.admin_username, instance.admin_password)
        scenario = zs.provision(
            rpc,
            zs.ScenarioNames.for_prefix(PREFIX),
            media_type_yaml=MEDIA_TYPE_YAML,
            # Zabbix itself sends nothing here: the driver plays its webhook.
            media_parameters={"URL": "http://127.0.0.1:9/v1/zabbix", "token": INGEST_TOKEN},
            phones=["+819050000000"],
        )
        rpc.call("action.update", {"actionid": scenario.actionid, "status": 1})
        keys = [f"chaos.value[{n}]" for n in range(count)]
        hostid, host = scenario.hostid, scenario.names.host
        existing = {
            i["key_"]
            for i in rpc.call(
                "item.get",
                {"hostids": [hostid], "search": {"key_": "chaos.value"}, "output": ["key_"]},
            )
        }
        missing = [k for k in keys if k not in existing]
        for start in range(0, len(missing), 200):
            batch = missing[start : start + 200]
            rpc.call(
                "item.create",
                [{"hostid": hostid, "name": k, "key_": k, "type": 2, "value_type": 0}
                 for k in batch],
            )  # fmt: skip
            rpc.call(
                "trigger.create",
                [{"description": f"chaos {k}", "expression": f"last(/{host}/{k})>5",
                  "priority": 4, "manual_close": 1} for k in batch],
            )  # fmt: skip
        found = rpc.call(
            "trigger.get",
            {"hostids": [hostid], "search": {"description": "chaos chaos.value"},
             "output": ["triggerid", "description"]},
        )  # fmt: skip
        by_key = {t["description"].removeprefix("chaos "): t["triggerid"] for t in found}
        triggers = {n: by_key[k] for n, k in enumerate(keys)}
        if missing:
            zs.wait_for_config_sync(
                host, keys[-1], server_port=instance.server_port, changed_at=time.time()
            )
        return cls(instance, rpc, scenario, triggers)

    def send(self, ns: list[int], value: float) -> None:
        values = [(self.host, f"chaos.value[{n}]", value) for n in ns]
        for start in range(0, len(values), 500):
            send_values(values[start : start + 500], port=self.instance.server_port)

    def raise_problems(self, problems: list[Problem]) -> None:
        """A fresh problem event per trigger: back to 0 (closing leftovers), then 10."""
        ns = [p.n for p in problems]
        self.send(ns, 0)
        baseline = max((int(e) for e in self._open_events(ns)), default=0)
        baseline = max(baseline, self._last_eventid())
        self.send(ns, 10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = self._new_problems(ns, baseline)
            if len(events) == len(ns):
                for p in problems:
                    p.eventid = events[self.triggers[p.n]]
                return
            time.sleep(1)
        raise AssertionError(f"Zabbix raised {len(events)} of {len(ns)} problems")

    def _last_eventid(self) -> int:
        last = self.rpc.call(
            "event.get",
            {"output": ["eventid"], "sortfield": ["eventid"], "sortorder": "DESC", "limit": 1},
        )
        return int(last[0]["eventid"]) if last else 0

    def _open_events(self, ns: list[int]) -> list[str]:
        found = self.rpc.call(
            "problem.get",
            {"objectids": [self.triggers[n] for n in ns], "output": ["eventid"]},
        )
        return [p["eventid"] for p in found]

    def _new_problems(self, ns: list[int], baseline: int) -> dict[str, str]:
        found = self.rpc.call(
            "event.get",
            {"objectids": [self.triggers[n] for n in ns], "eventid_from": baseline + 1,
             "value": 1, "source": 0, "object": 0, "output": ["eventid", "objectid"]},
        )  # fmt: skip
        return {e["objectid"]: e["eventid"] for e in found}

    def acknowledges(self, eventids: list[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(eventids), 200):
            for event in self.rpc.call(
                "event.get",
                {"eventids": eventids[start : start + 200], "output": ["eventid"],
                 zs.acknowledges_option(self.rpc): ["userid", "action", "message", "clock"]},
            ):  # fmt: skip
                found[event["eventid"]] = event["acknowledges"]
        return found

    def ui_acknowledge(self, eventid: str) -> None:
        self.rpc.call(
            "event.acknowledge",
            {"eventids": [eventid], "action": 6, "message": "chaos: acknowledged in the UI"},
        )

    def down(self) -> None:
        zabbix_dev.stop_frontend(self.instance.config)

    def up(self) -> None:
        zabbix_dev.start_frontend(self.instance.config)


# -- the stack, with processes that can be killed and started again -----------------------------


@dataclass
class ChaosStack:
    workdir: Path
    nats: NatsServer
    sim: ServiceProcess
    ingest: ServiceProcess
    dialer: ServiceProcess
    acker: ServiceProcess

    @classmethod
    def create(
        cls,
        workdir: Path,
        config: ChaosConfig,
        scenarios: dict[str, list[dict[str, Any]]],
        zabbix: ZabbixSide,
    ) -> ChaosStack:
        binary = find_nats_server()
        assert binary is not None, "nats-server is installed by `make venv`"
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        nats = NatsServer(binary, workdir / "nats", log_file=logs / "nats.log")
        scenario_file = workdir / "scenarios.json"
        scenario_file.write_text(json.dumps(scenarios))
        sim_port = free_port()
        sim = ServiceProcess(
            "yobidashi-twilio-sim",
            {
                "TWILIO_SIM_PORT": str(sim_port),
                "TWILIO_SIM_TIME_SCALE": str(config.time_scale),
                "TWILIO_SIM_CPS": "200",
                "TWILIO_SIM_SCENARIOS": str(scenario_file),
                "TWILIO_SIM_LOG_LEVEL": "warning",
            },
            logs / "sim.log",
            port=sim_port,
        )
        common = {"NATS_URL": nats.url, "NATS_ACK_WAIT": "5", "SHUTDOWN_GRACE": "3"}
        frontend = zabbix.instance.api_url.removesuffix("/api_jsonrpc.php")
        ingest = ServiceProcess(
            "yobidashi-ingest",
            {**common, "INGEST_TOKEN": INGEST_TOKEN, "ZABBIX_URL": frontend},
            logs / "ingest.log",
        )
        dialer_port = free_port()
        dialer = ServiceProcess(
            "yobidashi-dialer",
            dialer_env(
                nats.url,
                SimAccount(sim.url),
                dialer_port,
                **common,
                TWILIO_CPS=str(config.twilio_cps),
                DIAL_MAX_ATTEMPTS="2",
                DIAL_RETRY_PAUSE="1",
                DIAL_RECOVERY_AFTER="3",
                DIAL_WATCHDOG_GRACE="10",
                DIAL_BUNDLE_WINDOW="0",
                DIAL_MAX_CALLS_PER_HOUR="0",
            ),
            logs / "dialer.log",
            port=dialer_port,
        )
        acker = ServiceProcess(
            "yobidashi-acker",
            {
                **common,
                "ZABBIX_URL": frontend,
                "ZABBIX_API_TOKEN": zabbix.scenario.acker_token.token,
                "ZABBIX_USER": zabbix.scenario.names.acker_user,
                "ZABBIX_TIMEOUT": "3",
                "ZABBIX_PROBE_INTERVAL": "2",
                "ACKER_RETRY_BACKOFF": "0.5,1,2,3",
            },
            logs / "acker.log",
        )
        return cls(workdir, nats, sim, ingest, dialer, acker)

    @property
    def services(self) -> dict[str, ServiceProcess]:
        return {"ingest": self.ingest, "dialer": self.dialer, "acker": self.acker}

    def start(self) -> None:
        self.nats.start()
        self.sim.start()
        for proc in self.services.values():
            proc.start(timeout=60)
            proc.wait_ready(60)

    def stop(self) -> None:
        for proc in [*self.services.values(), self.sim]:
            proc.stop()
        self.nats.stop()

    def revive(self) -> None:
        """Whatever the driver left down comes back, before the audit waits for quiet."""
        if not self.nats.running:
            self.nats.start()
        for proc in self.services.values():
            if not proc.running:
                proc.start(timeout=60)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Driver:
    stack: ChaosStack
    zabbix: ZabbixSide
    config: ChaosConfig
    rng: random.Random
    actions: list[tuple[float, str]] = field(default_factory=list)
    outage: tuple[float, float] | None = None

    def note(self, action: str) -> None:
        self.actions.append((time.time(), action))

    async def post(self, http: httpx.AsyncClient, p: Problem, body: dict[str, Any]) -> float | None:
        """Like Zabbix's webhook retries, but patient: until ingest answers 2xx."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            p.posts += 1
            try:
                response = await http.post(
                    f"{self.stack.ingest.url}/v1/zabbix",
                    json=body,
                    headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                )
                if response.is_success:
                    return time.time()
                assert response.status_code == 503, f"ingest refused: {response.text}"
            except httpx.HTTPError:
                pass  # killed, or restarting
            await asyncio.sleep(1)
        return None

    async def problem(self, http: httpx.AsyncClient, p: Problem, started: float) -> None:
        await asyncio.sleep(max(0.0, started + p.arrive_after - time.monotonic()))
        body = payloads.problem(
            p.eventid,
            sendto=p.number,
            host=self.zabbix.host,
            name=f"chaos problem {p.n}",
            trigger_id=self.zabbix.triggers[p.n],
            **zabbix_now("event"),
        )
        p.accepted_at = await self.post(http, p, body)
        if p.accepted_at is None or p.stop is None:
            return
        await asyncio.sleep(p.stop_after)
        if p.stop == "recover":
            body = payloads.recovery(
                p.eventid,
                f"9{p.eventid}",
                sendto=p.number,
                host=self.zabbix.host,
                name=f"chaos problem {p.n}",
                **zabbix_now("event"),
                **zabbix_now("recovery"),
            )
        else:
            while True:  # the UI needs the API: wait out an outage like a person would
                try:
                    await asyncio.to_thread(self.zabbix.ui_acknowledge, p.eventid)
                    break
                except Exception:
                    await asyncio.sleep(2)
            body = payloads.update(
                p.eventid,
                sendto=p.number,
                user=UI_USER,
                host=self.zabbix.host,
                name=f"chaos problem {p.n}",
                **zabbix_now("event"),
                **zabbix_now("update"),
            )
        p.stop_accepted_at = await self.post(http, p, body)

    async def load(self, problems: list[Problem]) -> None:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            await asyncio.gather(*(self.problem(http, p, started) for p in problems))

    # -- the monkey -----------------------------------------------------------------------------

    async def kill_and_restart(self, name: str) -> None:
        proc = self.stack.services[name]
        self.note(f"kill -9 {name}")
        proc.kill()
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        await asyncio.to_thread(proc.start, 60)

    async def restart_nats(self) -> None:
        self.note("restart nats-server")
        await asyncio.to_thread(self.stack.nats.restart)

    async def twilio_faults(self) -> None:
        self.note("Twilio answers 30% of creates 429/500")
        async with httpx.AsyncClient(base_url=self.stack.sim.url, trust_env=False) as http:
            await http.put("/sim/faults", json={"rate_429": 0.15, "rate_500": 0.15})
            await asyncio.sleep(self.rng.uniform(5, 12))
            await http.put("/sim/faults", json={})

    async def zabbix_outage(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.2, 0.5) * self.config.seconds)
        self.note(f"Zabbix API down for {self.config.zabbix_outage:.0f}s")
        began = time.time()
        await asyncio.to_thread(self.zabbix.down)
        try:
            await asyncio.sleep(self.config.zabbix_outage)
        finally:
            await asyncio.to_thread(self.zabbix.up)
            self.outage = (began, time.time())

    async def monkey(self, until: asyncio.Event) -> None:
        moves: list[Callable[[], Awaitable[None]]] = [
            lambda: self.kill_and_restart("ingest"),
            lambda: self.kill_and_restart("dialer"),
            lambda: self.kill_and_restart("acker"),
            self.restart_nats,
            self.twilio_faults,
        ]
        order = self.rng.sample(moves, len(moves))  # each at least once
        while not until.is_set():
            move = order.pop() if order else self.rng.choice(moves)
            await asyncio.sleep(self.rng.uniform(1.0, 3.5))
            await move()


def zabbix_now(kind: str) -> dict[str, Any]:
    now = datetime.now(UTC)  # ingest runs with ZABBIX_TIMEZONE=UTC
    return {f"{kind}_date": now.strftime("%Y.%m.%d"), f"{kind}_time": now.strftime("%H:%M:%S")}


# -- the audit ----------------------------------------------------------------------------------


@dataclass
class Report:
    counts: dict[str, int]
    details: dict[str, list[str]]
    actions: list[str]

    def table(self) -> str:
        width = max(len(k) for k in self.counts)
        lines = [f"  {k:<{width}}  {v:>6}" for k, v in self.counts.items()]
        return "\n".join(["chaos run", *(f"  · {a}" for a in self.actions), "", *lines])

    def failures(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.details.items() if v}


def call_id(call: dict[str, Any]) -> str | None:
    callback = (call["params"].get("StatusCallback") or [""])[0]
    found = parse_qs(urlsplit(callback).query).get("call")
    return str(found[0]) if found else None


@dataclass(frozen=True)
class IncidentSeen:
    """A problem's escalation as the dialer's API shows it (GET /v1/incidents/{event id})."""

    pages: list[str]  # each page's status
    pending_commands: int
    stopped_at: float | None  # when the calling stopped: acknowledged, resolved or closed

    @property
    def settled(self) -> bool:
        return not self.pending_commands and all(s in FINAL_PAGE_STATUSES for s in self.pages)

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> IncidentSeen:
        stops = [t["at"] for t in view["timeline"] if t["what"] in STOP_NOTES]
        return cls(
            pages=[c["status"] for c in view["calls"]],
            pending_commands=int(view["pending_commands"]),
            stopped_at=datetime.fromisoformat(stops[0]).timestamp() if stops else None,
        )


async def incidents_seen(dialer: str, problems: list[Problem]) -> dict[str, IncidentSeen]:
    """Every accepted problem's incident, read through the dialer's API."""
    found: dict[str, IncidentSeen] = {}
    async with httpx.AsyncClient(base_url=dialer, timeout=30, trust_env=False) as http:
        for p in problems:
            if p.accepted_at is None:
                continue
            response = await http.get(f"/v1/incidents/{p.eventid}")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            found[p.eventid] = IncidentSeen.from_view(response.json())
    return found


async def audit(
    stack: ChaosStack, zabbix: ZabbixSide, problems: list[Problem], actions: list[str]
) -> Report:
    async with httpx.AsyncClient(base_url=stack.sim.url, timeout=60, trust_env=False) as http:
        calls = (await http.get("/sim/calls")).json()["calls"]
        creates = (await http.get("/sim/creates")).json()["creates"]
    by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_number[call["to"]].append(call)
    async with Bus(stack.nats.url) as bus:
        keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.", KeyPressed)
        results = await bus.messages(ACKS_STREAM, "yobidashi.acks.", AckResult)
    incidents = await incidents_seen(stack.dialer.url, problems)
    zabbix_acks = await asyncio.to_thread(zabbix.acknowledges, [p.eventid for p in problems])
    acker_userid = str(zabbix.scenario.acker_userid)

    details: dict[str, list[str]] = defaultdict(list)
    accepted = [p for p in problems if p.accepted_at is not None]
    ack_keys = {k.id: k for k in keys if k.action in (KeyAction.ACKNOWLEDGE, KeyAction.CLOSE)}
    result_by_key: dict[str, set[AckOutcome]] = defaultdict(set)
    for r in results:
        result_by_key[r.keypress_id].add(r.outcome)
    keys_by_sid: dict[str, list[KeyPressed]] = defaultdict(list)
    for k in ack_keys.values():
        keys_by_sid[k.call_sid].append(k)
    counts: Counter[str] = Counter()

    for p in accepted:
        label = f"problem {p.n} (event {p.eventid}, {p.behaviour}, stop={p.stop})"
        incident = incidents.get(p.eventid)
        mine = sorted(by_number.get(p.number, []), key=lambda c: c["times"]["created"])
        counts["calls placed"] += len(mine)
        if incident is None:
            details["lost: no incident"].append(label)
            continue
        stopped_at = incident.stopped_at
        if not mine and stopped_at is None:
            tried = any(c["params"].get("To") == [p.number] for c in creates)
            what = "Twilio refused every create" if tried else "no call at all"
            details[f"lost: {what}"].append(label)
        if not incident.settled:
            details["lost: escalation stuck"].append(
                f"{label}: pages {incident.pages}, {incident.pending_commands} commands pending"
            )
        # Never twice for the same problem, person and attempt.
        for cid, n in Counter(call_id(c) for c in mine).items():
            if n > 1:
                details["duplicate calls"].append(f"{label}: call {cid} placed {n} times")
        # Nothing after the calling stopped, except a call already on its way, ended at once.
        if stopped_at is not None:
            for c in mine:
                if keys_by_sid.get(c["sid"]):
                    continue  # the call the 1 was pressed on says thank you and hangs up
                ended_by_us = bool(c["updates"])
                ended = c["times"]["ended"]
                if c["times"]["created"] > stopped_at:
                    counts["calls raced the stop (ended at once)"] += int(ended_by_us)
                    if not ended_by_us:
                        details["calls after the stop"].append(f"{label}: {c['sid']}")
                elif (ended is None or ended > stopped_at + 1) and not ended_by_us:
                    details["live calls not ended at the stop"].append(f"{label}: {c['sid']}")
        # Every accepted 1 became exactly one acknowledgement.
        pressed = [
            (c["sid"], h)
            for c in mine
            for h in c["webhooks"]
            if h["kind"] == "gather-action"
            and (h["params"].get("Digits") or "").startswith("1")
            and h["response_status"] == 200
        ]
        counts["keypresses 1 accepted"] += len(pressed)
        for sid, _ in pressed:
            if not keys_by_sid.get(sid):
                details["keypress 1 without a KeyPressed"].append(f"{label}: {sid}")
        ours = [
            a
            for a in zabbix_acks.get(p.eventid, [])
            if str(a["userid"]) == acker_userid and "via Yobidashi" in a["message"]
        ]
        wrote = 0
        for sid, _ in pressed:
            for k in keys_by_sid.get(sid, []):
                outcomes = result_by_key.get(k.id, set())
                if not outcomes:
                    details["ack lost (no AckResult)"].append(f"{label}: keypress {k.id}")
                elif AckOutcome.FAILED in outcomes:
                    details["ack failed"].append(f"{label}: keypress {k.id}")
                elif AckOutcome.ACKNOWLEDGED in outcomes:
                    wrote += 1
                    counts["acknowledged in Zabbix by the acker"] += 1
                else:
                    counts["already acknowledged (UI first)"] += 1
        if len(ours) != wrote:
            details["Zabbix acks != keypresses"].append(
                f"{label}: {len(ours)} acks by the acker, {wrote} expected"
            )
        counts[f"stop: {p.stop or 'none'}"] += 1
        for page_status in incident.pages:
            counts[f"page {page_status}"] += 1

    counts_out = {
        "problems": len(problems),
        "accepted (2xx)": len(accepted),
        "webhook POSTs (with retries)": sum(p.posts for p in problems),
        **dict(sorted(counts.items())),
        "lost escalations": sum(len(v) for k, v in details.items() if k.startswith("lost")),
        "duplicate calls": len(details["duplicate calls"]),
        "missing or duplicate acks": sum(
            len(details[k])
            for k in (
                "keypress 1 without a KeyPressed",
                "ack lost (no AckResult)",
                "ack failed",
                "Zabbix acks != keypresses",
            )
        ),
        "calls after an ack or recovery, not ended": len(details["calls after the stop"])
        + len(details["live calls not ended at the stop"]),
        "Twilio creates refused (429/500)": sum(
            1 for c in creates if c.get("http_status") in (429, 500)
        ),
    }
    return Report(counts_out, dict(details), actions)


async def quiet(stack: ChaosStack, problems: list[Problem], limit: float = 300) -> None:
    """Until no call is live, no keypress waits for the acker, and every page has ended."""
    deadline = time.monotonic() + limit
    calm = 0
    async with (
        httpx.AsyncClient(base_url=stack.sim.url, timeout=30, trust_env=False) as http,
        Bus(stack.nats.url) as bus,
    ):
        while time.monotonic() < deadline:
            phones = (await http.get("/sim/phones")).json()["phones"]
            live = [p for p in phones if p["call"]]
            acker = await bus.js.consumer_info(KEYS_STREAM, "acker")
            waiting = acker.num_pending + acker.num_ack_pending
            seen = await incidents_seen(stack.dialer.url, problems)
            accepted = [p for p in problems if p.accepted_at is not None]
            unsettled = sum(
                1 for p in accepted if p.eventid not in seen or not seen[p.eventid].settled
            )
            calm = calm + 1 if not live and not waiting and not unsettled else 0
            if calm >= 3:
                return
            await asyncio.sleep(2)


async def run(workdir: Path, instance: zabbix_dev.DevInstance, config: ChaosConfig) -> Report:
    problems, scenarios = plan(config)
    zabbix = await asyncio.to_thread(ZabbixSide.provision, instance, config.problems)
    await asyncio.to_thread(zabbix.raise_problems, problems)
    stack = ChaosStack.create(workdir, config, scenarios, zabbix)
    driver = Driver(stack, zabbix, config, random.Random(config.seed + 1))
    async with AsyncExitStack() as cleanup:
        cleanup.callback(zabbix.send, [p.n for p in problems], 0)  # leave nothing open
        cleanup.push_async_callback(asyncio.to_thread, stack.stop)
        await asyncio.to_thread(stack.start)
        done = asyncio.Event()
        monkey = asyncio.create_task(driver.monkey(done))
        outage = asyncio.create_task(driver.zabbix_outage())
        try:
            await driver.load(problems)
        finally:
            done.set()
            await asyncio.gather(monkey, outage)
        await asyncio.to_thread(stack.revive)
        await quiet(stack, problems)
        began = driver.actions[0][0] if driver.actions else time.time()
        actions = [f"+{t - began:5.1f}s {what}" for t, what in driver.actions]
        return await audit(stack, zabbix, problems, actions)
    raise AssertionError("unreachable")
