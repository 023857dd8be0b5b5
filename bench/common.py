"""What every benchmark shares: figures with their targets, results files, percentiles, RSS,
metrics scraping, the Twilio simulator's journal, and clean start/stop of the real processes.

Every bench is run as a module from the repository root (``.venv/bin/python -m bench.<name>``)
and writes ``bench/results/<name>.json``: the machine, the sizes, the raw rows, and a list of
``figures`` (measured value, target, met/missed) that ``bench.run_all`` gathers into a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from yobidashi_harness.nats_cluster import NatsCluster
from yobidashi_harness.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import Sim
from yobidashi_twilio_sim.settings import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

RESULTS = Path(__file__).parent / "results"
INGEST_TOKEN = "bench-ingest-token-0123456789"
FROM_NUMBER = "+14155550100"

# A phone that does not answer: the call ends at once and costs the stack almost nothing.
BUSY = {"answer": "busy", "answer_after": 0.1}
# An engineer who answers after 0.5 s and presses 1 0.2 s after the menu starts listening.
PRESSES_ONE = {"answer": "human", "answer_after": 0.5, "digits": [{"after": 0.2, "keys": "1"}]}


# -- figures --------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured number, with its target when the issue sets one."""

    name: str
    value: float | None
    unit: str
    target: float | None = None
    better: Literal["higher", "lower"] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or self.better is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]

    @property
    def target_text(self) -> str:
        if self.target is None or self.better is None:
            return "-"
        return f"{'>=' if self.better == 'higher' else '<='} {fmt(self.target)} {self.unit}"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["value"] = clean(self.value)
        out["met"] = self.met
        return out


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def clean(value: float | None) -> float | None:
    """JSON has no NaN: missing values are null."""
    if value is None or math.isnan(value):
        return None
    return round(value, 3)


def print_figures(figures: Sequence[Figure], title: str = "figures vs targets") -> None:
    print(f"\n{title}")
    width = max([len(f.name) for f in figures] + [20])
    print(f"  {'figure':<{width}}  {'measured':>14}  {'target':<16} ")
    for f in figures:
        measured = f"{fmt(f.value)} {f.unit}"
        print(f"  {f.name:<{width}}  {measured:>14}  {f.target_text:<16} {f.verdict}")
        if f.note:
            print(f"  {'':<{width}}    ({f.note})")


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started_at": time.time(),
    }


def save(name: str, info: dict[str, Any], figures: Sequence[Figure], **data: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "bench": name,
        "machine": info,
        "finished_at": time.time(),
        "figures": [f.as_json() for f in figures],
        **data,
    }
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return out


# -- statistics -----------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered)))
    return ordered[rank - 1]


def dist(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p99, max of millisecond values, JSON-ready."""
    return {
        "count": len(values_ms),
        "p50_ms": clean(pct(values_ms, 0.50)),
        "p99_ms": clean(pct(values_ms, 0.99)),
        "max_ms": clean(max(values_ms) if values_ms else float("nan")),
    }


def rss_mb(pid: int | None, field_name: str = "VmRSS") -> float:
    """Resident memory of one process from /proc (VmRSS now, VmHWM the peak), in MiB."""
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


# -- Prometheus ----------------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, base_url: str) -> Samples:
    """Every sample of a service's /metrics, keyed by (name, sorted labels)."""
    text = (await client.get(f"{base_url}/metrics")).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def histogram_quantile(before: Samples, after: Samples, name: str, q: float) -> float:
    """Quantile of what a histogram observed between two scrapes: the upper bound of the bucket
    the quantile falls in (Prometheus would interpolate; the bound is the honest reading)."""
    buckets: list[tuple[float, float]] = []
    for (n, labels), value in after.items():
        if n != f"{name}_bucket":
            continue
        le = dict(labels)["le"]
        bound = math.inf if le == "+Inf" else float(le)
        buckets.append((bound, value - before.get((n, labels), 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return math.inf


# -- the simulator -------------------------------------------------------------------------------


def sim_process(work: Path, *, scenario: dict[str, Any], **settings: str) -> ServiceProcess:
    """The real ``yobidashi-twilio-sim``: its own process, so its clock points are not delayed
    by the bench's event loop. ``TWILIO_SIM_CPS`` is high: the simulator's CPS models Twilio's
    dialling queue (dials, not creates), and the bench must not measure it."""
    port = free_port()
    env = {
        "TWILIO_SIM_PORT": str(port),
        "TWILIO_SIM_CPS": "1000",
        "TWILIO_SIM_LOG_LEVEL": "warning",
        "TWILIO_SIM_TIME_SCALE": "1",
        "TWILIO_SIM_DEFAULT_SCENARIO": json.dumps(scenario),
        **{f"TWILIO_SIM_{k.upper()}": v for k, v in settings.items()},
    }
    return ServiceProcess("yobidashi-twilio-sim", env, work / "sim.log", port=port)


def sim_client(base_url: str) -> Sim:
    """The simulator's journal and controls over HTTP; close it with ``sim.http.aclose()``."""
    http = httpx.AsyncClient(base_url=base_url, timeout=60)
    return Sim(base_url, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, http)


def dialer_env(nats_url: str, sim_url: str, port: int, **overrides: str) -> dict[str, str]:
    """The dialer against the simulator: one attempt per page, no caps, quiet logs."""
    env = {
        "NATS_URL": nats_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": sim_url,
        "TWILIO_FROM_NUMBERS": FROM_NUMBER,
        "TWILIO_CPS": "1000",
        "TWILIO_MAX_CONCURRENT_CALLS": "0",
        "DIAL_MAX_ATTEMPTS": "1",
        "DIAL_BUNDLE_WINDOW": "0",
        "DIAL_MAX_CALLS_PER_HOUR": "0",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE": "3",
    }
    env.update(overrides)
    return env


def ingest_env(nats_url: str, **overrides: str) -> dict[str, str]:
    return {"NATS_URL": nats_url, "INGEST_TOKEN": INGEST_TOKEN, "LOG_LEVEL": "WARNING", **overrides}


# -- running things ------------------------------------------------------------------------------


@contextmanager
def nats_server() -> Iterator[NatsServer]:
    binary = find_nats_server()
    if binary is None:
        sys.exit("nats-server not found: run `make venv`")
    with NatsServer(binary) as server:
        yield server


@contextmanager
def nats_backend(cluster: bool) -> Iterator[tuple[str, dict[str, str]]]:
    """The services' NATS: one node, or a 3-node JetStream cluster with R3 streams and KV.
    Yields the ``NATS_URL`` value and the extra environment the services need for it."""
    binary = find_nats_server()
    if binary is None:
        sys.exit("nats-server not found: run `make venv`")
    if not cluster:
        with NatsServer(binary) as server:
            yield server.url, {}
        return
    with NatsCluster(binary) as nodes:
        yield nodes.urls, {"NATS_STREAM_REPLICAS": "3"}


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, limit: float, interval: float = 0.25
) -> Any:
    """Poll ``check`` until truthy; a hang guard, never a speed verdict."""
    deadline = time.monotonic() + limit
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def parser(doc: str | None) -> argparse.ArgumentParser:
    text = (doc or "").strip()
    p = argparse.ArgumentParser(
        description=text.splitlines()[0] if text else None,
        epilog="\n".join(text.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: checks the script runs")
    size.add_argument("--full", action="store_true", help="the issue's full sizes (takes long)")
    return p


def size(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "full" if args.full else "default"


def run(main: Callable[[], Awaitable[None]]) -> None:
    """``asyncio.run(main())``, where SIGTERM cancels like Ctrl-C does, so every ``with`` and
    ``finally`` stops the processes it started."""

    async def wrapper() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await main()

    try:
        asyncio.run(wrapper())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every process this bench started was stopped", file=sys.stderr)
        sys.exit(130)


@dataclass
class Sampler:
    """Polls a coroutine every ``interval`` s in the background (e.g. a queue-depth gauge)."""

    probe: Callable[[], Awaitable[float]]
    interval: float = 0.2
    values: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.values.append(await self.probe())
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def peak(self) -> float:
        return max(self.values, default=float("nan"))
