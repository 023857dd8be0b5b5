"""Every Grafana panel's query returns data from a real Prometheus scraping the real services.

The scenario runs through the project's end-to-end harness (real Zabbix 6.0 → ingest → dialer →
Twilio simulator → acker) and produces each signal the dashboard shows: alerts of several
severities and statuses, calls answered, unanswered, busy and taken by a machine, keypresses
that acknowledge in Zabbix, Twilio errors, forged callbacks, dead letters, calls that cannot be
placed, a storm that is bundled and a policy that runs out. A real ``/usr/bin/prometheus`` with a
1 s scrape interval and ``deploy/prometheus/rules.yml`` scrapes the three processes and the
heartbeat canary; each panel's query is then evaluated over
its HTTP API as Grafana would send it. Nothing here measures speed: it waits, with generous
limits, for the data to arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from yobidashi_common.events import FINAL_CALL_STATUSES
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.processes import script
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing import dashboard_preview
from yobidashi_testing.dashboard_preview import Series, panels
from yobidashi_testing.e2e import E2E, INGEST_TOKEN, e2e_stack
from yobidashi_testing.people import ANSWERS_AND_PRESSES_1
from yobidashi_testing.stack import Bus

pytestmark = [pytest.mark.integration, pytest.mark.zabbix, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "yobidashi.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
SCREENSHOT = REPO / "docs" / "images" / "dashboard-preview.png"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

DATA_LIMIT = 180.0  # hang guards, never speed assertions
PAUSE = 3.0  # longer than two scrapes: the second of two events shows in rate()/increase()
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval becomes (>= 4 scrapes of 1 s)
STEP = "1s"

ONCALL = "+819060000001"  # the Zabbix user's phone: answers and presses 1
NO_ANSWER = "+819060000002"
BUSY = "+819060000003"
MACHINE = "+819060000004"
ANSWERS = "+819060000005"
STORM_CONTACT = "+819060000006"  # a policy with a bundle window: answers, presses nothing
NOBODY = "+819060000007"  # a one-step policy whose only call fails: the policy runs out
TWILIO_ERRORS = "+819060000008"  # answers, after Twilio refused the first creates
CANARY = "+819060000009"

HUMAN: dict[str, Any] = {"answer": "human", "answer_after": 1}
ATTEMPTS = 3  # DIAL_MAX_ATTEMPTS: no-answer and busy are redialled this often

ONCALL_CONFIG = f"""\
contacts:
  - {{id: storm, name: Storm, phones: ["{STORM_CONTACT}"]}}
  - {{id: nobody, name: Nobody, phones: ["{NOBODY}"]}}
policies:
  - id: bundled
    attempts: 1
    steps:
      - {{targets: [{{contact: storm}}], wait: 10m}}
  - id: tiny
    attempts: 1
    steps:
      - {{targets: [{{contact: nobody}}], wait: 1s}}
routes:
  - id: storm
    match: {{hosts: ["storm-*"]}}
    policy: bundled
    bundle_window: 3s
  - id: runs-out
    match: {{hosts: ["runs-out-*"]}}
    policy: tiny
"""


# -- the dashboard's queries -------------------------------------------------------------------


# Queries whose honest answer in this scenario is 0: nothing waits for a CPS slot (10 calls a
# second are allowed), consumers keep up, NATS never drops a connection, and Zabbix-driven
# alerts have no escalation policy whose duplicates could be suppressed.
ZERO_IS_FINE = {
    ("CPS queue and live calls", "A"),
    ("Consumer lag (undelivered)", "A"),
    ("Redeliveries and reconnects", "B"),
    ("Escalation", "F"),
}


@dataclass(frozen=True)
class Query:
    panel_id: int
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"#{self.panel_id} {self.panel} [{self.ref}]"

    @property
    def may_be_zero(self) -> bool:
        return (self.panel, self.ref) in ZERO_IS_FINE

    def promql(self, range_seconds: int) -> str:
        """The query as Grafana sends it, its variables filled in."""
        return (
            self.expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__interval", STEP)
            .replace("$__range", f"{range_seconds}s")
        )


def dashboard_queries() -> list[Query]:
    board = json.loads(DASHBOARD.read_text())
    return [
        Query(
            panel["id"],
            panel["title"],
            target["refId"],
            target["expr"],
            bool(target.get("instant")),
        )
        for panel in panels(board["panels"])
        for target in panel.get("targets", [])
    ]


# -- a real Prometheus -------------------------------------------------------------------------


class Prometheus:
    """``/usr/bin/prometheus`` on a free port with a temporary config and data directory."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = workdir / "prometheus.log"
        every_second = {"scrape_interval": "1s", "scrape_timeout": "1s"}
        config = {
            "global": {**every_second, "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [address]}]}
                for job, address in targets.items()
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self._proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30, trust_env=False)

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def check_running(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_file.read_text()[-3000:]}")

    async def api(self, path: str, **params: str) -> Any:
        response = await self.http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + DATA_LIMIT
        while time.monotonic() < deadline:
            self.check_running()
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/-/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    async def wait_targets_up(self, jobs: set[str]) -> None:
        deadline = time.monotonic() + DATA_LIMIT
        up: set[str] = set()
        while time.monotonic() < deadline:
            data = await self.api("query", query="up == 1")
            up = {series["metric"]["job"] for series in data["result"]}
            if jobs <= up:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"targets not up: {sorted(jobs - up)}")

    async def evaluate(self, query: Query, started: float) -> list[float]:
        """Every sample value the query returns: at the end of the range for instant queries
        (stat panels), at each step from Prometheus' start for range queries."""
        series = await self.series(query, started)
        return [v for s in series for v in s.values if math.isfinite(v)]

    async def series(self, query: Query, started: float) -> list[Series]:
        """What the panel draws: each series with its labels, one value per step (NaN where
        Prometheus has no sample), or its one value for an instant query."""
        now = time.time()
        promql = query.promql(max(int(now - started), 1))
        if query.instant:
            data = await self.api("query", query=promql, time=f"{now:.3f}")
            return [Series(s["metric"], [float(s["value"][1])]) for s in data["result"]]
        data = await self.api(
            "query_range", query=promql, start=f"{started:.3f}", end=f"{now:.3f}", step=STEP
        )
        steps = int(now - started) + 1
        found = []
        for s in data["result"]:
            values = [math.nan] * steps
            for at, value in s["values"]:
                values[min(round(float(at) - started), steps - 1)] = float(value)
            found.append(Series(s["metric"], values))
        return found

    async def active_alerts(self) -> set[str]:
        data = await self.api("alerts")
        return {alert["labels"]["alertname"] for alert in data["alerts"]}


@contextlib.asynccontextmanager
async def prometheus(workdir: Path, targets: dict[str, str]) -> AsyncIterator[Prometheus]:
    prom = Prometheus(workdir, targets)
    prom.start()
    try:
        await prom.wait_ready()
        await prom.wait_targets_up(set(targets))
        yield prom
    finally:
        prom.stop()
        await prom.http.aclose()


@contextlib.contextmanager
def heartbeat_canary(e2e: E2E, port: int, log_file: Path) -> Iterator[None]:
    """``yobidashi heartbeat`` every 2 s against this stack, metrics on ``port``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    args = [
        script("yobidashi"), "heartbeat", "--ingest", e2e.ingest.url, "--dialer", e2e.dialer.url,
        "--token", INGEST_TOKEN, "--number", CANARY, "--every", "2s", "--timeout", "20s",
        "--port", str(port),
    ]  # fmt: skip
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the scenario -------------------------------------------------------------------------------


class Scenario:
    """Produces every signal the dashboard shows, each kind at least twice, PAUSE apart, so that
    a rate or increase over a window sees it (a labelled series' first sample is its start)."""

    def __init__(self, e2e: E2E, http: httpx.AsyncClient) -> None:
        self.e2e = e2e
        self.http = http
        self.ids = itertools.count(7_000_001)
        self.round = 0

    async def post(self, body: dict[str, Any]) -> None:
        response = await self.http.post(
            f"{self.e2e.ingest.url}/v1/zabbix",
            json=body,
            headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
        )
        assert response.status_code == 202, response.text

    async def problem(self, severity: int, sendto: str, host: str = "web01") -> int:
        event_id = next(self.ids)
        await self.post(payloads.problem(event_id, severity=severity, sendto=sendto, host=host))
        return event_id

    async def resolve(self, event_id: int, severity: int, sendto: str) -> None:
        await self.post(
            payloads.recovery(event_id, next(self.ids), severity=severity, sendto=sendto)
        )

    async def zabbix_problem_acknowledged_by_phone(self) -> None:
        """A real trigger fires, Zabbix's webhook rings ONCALL, 1 acknowledges it in Zabbix
        (our ack comes back as an update), then the problem recovers."""
        eventid = await asyncio.to_thread(self.e2e.fire)
        await self.e2e.wait_acknowledged(eventid, limit=DATA_LIMIT)
        await asyncio.to_thread(self.e2e.send, 0)

    async def calls_with_every_outcome(self) -> None:
        """Problems of four severities, each ringing a phone that behaves differently; each is
        resolved once its calls (and redials) are over, so every attempt ends as itself."""
        for severity, number in ((2, NO_ANSWER), (3, BUSY), (5, MACHINE), (1, ANSWERS)):
            event_id = await self.problem(severity, number)
            wanted = self.round * (ATTEMPTS if number in (NO_ANSWER, BUSY) else 1)
            deadline = time.monotonic() + DATA_LIMIT
            while len(await self.finished_calls(number)) < wanted:
                assert time.monotonic() < deadline, f"calls to {number} did not finish"
                await asyncio.sleep(0.2)
            await self.resolve(event_id, severity, number)

    async def finished_calls(self, number: str) -> list[dict[str, Any]]:
        return [c for c in await self.e2e.sim.calls(number) if c["status"] in FINAL_CALL_STATUSES]

    async def twilio_errors(self) -> None:
        await self.e2e.sim.faults(next_create_statuses=[500, 503])
        await self.problem(4, TWILIO_ERRORS)

    async def invalid_number(self) -> None:
        await self.problem(4, "not-a-phone-number")

    async def forged_callbacks(self) -> None:
        url = f"{self.e2e.dialer.url}/twilio/voice/status?call=forged"
        form = {"CallSid": "CA" + "0" * 32, "CallStatus": "completed"}
        forged = await self.http.post(url, data=form, headers={"X-Twilio-Signature": "AAAA"})
        unsigned = await self.http.post(url, data=form)
        assert [forged.status_code, unsigned.status_code] == [403, 403]

    async def dead_letter(self, bus: Bus, n: int) -> None:
        """Undecodable bytes on a subject the acker and the dialer consume."""
        await bus.js.publish(
            "yobidashi.keys.v1.acknowledge",
            b"this is not a KeyPressed",
            headers={"Nats-Msg-Id": f"dashboard-garbage-{n}"},
        )

    async def storm(self) -> None:
        """Problems for a policy with a bundle window: one call at once, the rest in one."""
        for n in range(3):
            await self.problem(4, STORM_CONTACT, host=f"storm-{self.round}-{n}")

    async def policy_runs_out(self) -> None:
        await self.problem(5, NOBODY, host=f"runs-out-{self.round}")

    async def run(self) -> None:
        sim = self.e2e.sim
        await sim.scenario(ONCALL, ANSWERS_AND_PRESSES_1)
        await sim.scenario(NO_ANSWER, {"answer": "no-answer"})
        await sim.scenario(BUSY, {"answer": "busy"})
        await sim.scenario(MACHINE, {"answer": "machine", "answer_after": 1, "amd_after": 2})
        await sim.scenario(ANSWERS, HUMAN)
        await sim.scenario(TWILIO_ERRORS, HUMAN)
        await sim.scenario(STORM_CONTACT, HUMAN)
        await sim.scenario(NOBODY, {"answer": "failed"})
        async with Bus(self.e2e.nats.url) as bus:
            for n in range(2):
                self.round = n + 1
                await self.zabbix_problem_acknowledged_by_phone()
                await self.calls_with_every_outcome()
                await self.twilio_errors()
                await self.invalid_number()
                await self.forged_callbacks()
                await self.dead_letter(bus, n)
                await self.storm()
                await self.policy_runs_out()
                await asyncio.sleep(PAUSE)


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.timeout(900)
async def test_every_dashboard_query_returns_data_from_the_real_services(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    queries = dashboard_queries()
    assert queries, "the dashboard has no queries"
    config = tmp_path / "oncall.yaml"
    config.write_text(ONCALL_CONFIG)
    dialer_env = {"YOBIDASHI_CONFIG": str(config), "DIAL_MAX_ATTEMPTS": str(ATTEMPTS)}
    async with e2e_stack(
        zabbix_dev, tmp_path, prefix="dash", phones=[ONCALL], dialer_env=dialer_env
    ) as e2e:
        targets = {
            "yobidashi-ingest": f"127.0.0.1:{e2e.ingest.port}",
            "yobidashi-dialer": f"127.0.0.1:{e2e.dialer.port}",
            "yobidashi-acker": f"127.0.0.1:{e2e.acker.port}",
        }
        # The canary's first round meets only no-answers (a failure at the call stage), the
        # later ones are answered.
        await e2e.sim.scenario(CANARY, [{"answer": "no-answer"}] * ATTEMPTS + [HUMAN])
        port = free_port()
        targets["yobidashi-heartbeat"] = f"127.0.0.1:{port}"
        started = time.time()
        with heartbeat_canary(e2e, port, tmp_path / "heartbeat.log"):
            async with (
                prometheus(tmp_path / "prometheus", targets) as prom,
                httpx.AsyncClient(timeout=30, trust_env=False) as http,
            ):
                await Scenario(e2e, http).run()
                results = await wait_for_data(prom, queries, started)
                drawn = {(q.panel_id, q.ref): await prom.series(q, started) for q in queries}
                rules = await prom.api("rules")
                active = await prom.active_alerts()

    report(results)
    # The README's picture of the dashboard: Grafana cannot be installed here, so a preview of
    # the same panels with this data (yobidashi_testing.dashboard_preview says how it differs).
    preview = tmp_path / "dashboard.png"
    note = "preview drawn by tests/integration/test_dashboard_queries.py, not by Grafana"
    document = dashboard_preview.page(json.loads(DASHBOARD.read_text()), drawn, note)
    await asyncio.to_thread(dashboard_preview.screenshot, document, preview)
    assert preview.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("YOBIDASHI_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(preview, SCREENSHOT)
    empty = [name for name, values in results.items() if not any(map(math.isfinite, values))]
    assert empty == [], f"panels without data: {empty}"
    # Data is not enough: each panel shows the scenario's signal, not a flat zero.
    flat = [q.name for q in queries if not shows_signal(q, results[q.name])]
    assert flat == [], f"panels that show nothing but zeros: {flat}"

    # The rules evaluate cleanly against what the services really export...
    broken = [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in rules["groups"]
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert broken == []
    # ...the scenario's failures trip theirs, and the healthy parts stay quiet.
    print(f"alerts active at the end: {sorted(active)}")
    assert {
        "YobidashiDeadLetters",
        "YobidashiEscalationExhausted",
        "YobidashiCallsNotPlaced",
    } <= active
    assert active.isdisjoint(
        {"YobidashiServiceDown", "YobidashiNatsDisconnected", "YobidashiAckerZabbixDown"}
    )


def shows_signal(query: Query, values: list[float]) -> bool:
    """A finite sample, and one above 0 unless 0 is this query's honest answer here."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and (query.may_be_zero or max(finite) > 0)


async def wait_for_data(
    prom: Prometheus, queries: list[Query], started: float
) -> dict[str, list[float]]:
    """Evaluate every query until each shows its signal or the limit passes; the last results."""
    deadline = time.monotonic() + DATA_LIMIT
    while True:
        prom.check_running()
        results = {q.name: await prom.evaluate(q, started) for q in queries}
        if all(shows_signal(q, results[q.name]) for q in queries):
            return results
        if time.monotonic() > deadline:
            return results
        await asyncio.sleep(2)


def report(results: dict[str, list[float]]) -> None:
    for name, values in results.items():
        finite = [v for v in values if math.isfinite(v)]
        peak = f"{max(finite):.3g}" if finite else "-"
        print(f"{name:<60} samples={len(finite):>5}  max={peak}")
