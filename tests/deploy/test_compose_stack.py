"""docker-compose.yml's stack, run for real from the built images (``make compose-test``).

nats, ingest, dialer, acker, the Twilio simulator, the Zabbix stand-in and the heartbeat canary
come up in dependency order, each waited on until its own healthcheck passes. Prometheus and
Grafana are left out where their images cannot be had (no registry here serves them). Against the
running stack:

- the containers run as the images' non-root user, on a read-only root, without capabilities,
  and their images hold neither test tooling nor the host's CA bundle;
- an alert posted to ingest rings the simulator's phone, and the key 1 pressed there becomes an
  acknowledgement in Zabbix, read back through Zabbix's API;
- alerts accepted while the dialer is down still lead to calls after ``down`` and ``up`` with
  the NATS volume kept;
- whatever the stack made (containers, network, volumes) is gone afterwards, pass or fail.

Ports are free ones picked here; tokens are fresh per run.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from yobidashi_harness import payloads
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.waiting import wait_until
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_testing.images.compose import (
    COMPOSE_FILE,
    ComposeStack,
    compose_command,
    read_env_file,
    startup_order,
)
from yobidashi_testing.images.engine import REPO, Engine, find_engine

pytestmark = pytest.mark.containers
T = TypeVar("T")

SERVICES = ["nats", "ingest", "dialer", "acker", "twilio-sim", "zabbix-standin", "heartbeat"]
OURS = [s for s in SERVICES if s != "nats"]
HEALTHY_WITHIN = 180.0
CALL_WITHIN = 120.0
# Every simulated call: answered by a person after 2 s, who presses 1 a second later.
PRESSES_ONE = {"answer": "human", "answer_after": 2, "digits": [{"after": 1, "keys": "1"}]}


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = find_engine()
    if found is None:
        pytest.skip(
            "no Docker engine answers and podman is missing: `make compose-test` installs "
            "podman with apt, which needs root"
        )
    return found


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    names = ["INGEST", "DIALER", "NATS", "NATS_MONITOR", "TWILIO_SIM", "ZABBIX_STANDIN"]
    return {name: free_port() for name in names}


@pytest.fixture(scope="module")
def stack(
    engine: Engine, ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    command = compose_command(engine)
    if command is None:
        pytest.fail("podman-compose is missing: `make venv` installs it (dev dependencies)")
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    missing = [
        services[name]["image"]
        for name in SERVICES
        if not engine.image_exists(services[name]["image"])
    ]
    if missing:
        pytest.fail(f"images missing: {missing}; `make images` builds them")
    values = read_env_file(REPO / ".env.example")
    values.update({f"HOST_PORT_{name}": str(port) for name, port in ports.items()})
    values.update(
        INGEST_TOKEN=secrets.token_hex(24),
        NATS_TOKEN=secrets.token_hex(24),
        ZABBIX_API_TOKEN=secrets.token_hex(32),
        TWILIO_SIM_TIME_SCALE="0.2",
        TWILIO_SIM_DEFAULT_SCENARIO=json.dumps(PRESSES_ONE),
        COMPOSE_PROFILES="sim",
    )
    workdir = tmp_path_factory.mktemp("compose")
    running = ComposeStack(engine, command, workdir, values, profiles=["sim"])
    try:
        bring_up(running)
        yield running
    finally:
        running.remove_everything()
    left = running.leftovers()
    assert not any(left.values()), f"the stack left {left}"


def bring_up(stack: ComposeStack) -> None:
    for group in startup_order(SERVICES):
        stack.up(*group)
        stack.wait_healthy(group, timeout=HEALTHY_WITHIN)


def url(ports: dict[str, int], name: str, path: str) -> str:
    return f"http://127.0.0.1:{ports[name]}{path}"


def exec_in(stack: ComposeStack, service: str, *command: str) -> str:
    result = stack.engine.run("exec", stack.container(service), *command, check=False)
    return (result.stdout + result.stderr).strip() + f"\n[exit {result.returncode}]"


# --- security -------------------------------------------------------------------------------


@pytest.mark.parametrize("service", OURS)
def test_containers_run_unprivileged_on_a_read_only_root(stack: ComposeStack, service: str) -> None:
    details = stack.inspect(service)
    config, host = details["Config"], details["HostConfig"]
    assert config["User"] == "10001:10001", "the image's non-root user"
    assert host["ReadonlyRootfs"] is True
    assert any("no-new-privileges" in option for option in host.get("SecurityOpt") or [])
    if "EffectiveCaps" in details:  # podman lists what the process keeps
        assert not details["EffectiveCaps"], details["EffectiveCaps"]
    else:
        assert host["CapDrop"] == ["ALL"]
    # ... and inside, as the process sees it.
    assert exec_in(stack, service, "id", "-u").startswith("10001\n")
    written = exec_in(stack, service, "touch", "/app/probe")
    assert "Read-only file system" in written, written
    status = exec_in(stack, service, "cat", "/proc/1/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status


@pytest.mark.parametrize("service", OURS)
def test_images_hold_no_test_tooling(stack: ComposeStack, service: str) -> None:
    tooling = ("yobidashi_testing", "pytest", "podman_compose")
    probe = f"import importlib.util as u; print([m for m in {tooling!r} if u.find_spec(m)])"
    assert exec_in(stack, service, "python", "-c", probe) == "[]\n[exit 0]"


@pytest.mark.parametrize("service", OURS)
def test_no_image_holds_the_hosts_extra_ca_certificates(stack: ComposeStack, service: str) -> None:
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    if not extra:
        pytest.skip("this host trusts no CA of its own")
    bundle = exec_in(stack, service, "cat", "/etc/ssl/certs/ca-certificates.crt")
    assert bundle.endswith("[exit 0]")
    assert "BEGIN CERTIFICATE" in bundle
    for certificate in extra:
        body = "".join(certificate.read_text().split("-----")[2].split())
        assert body[:200] not in "".join(bundle.split()), f"{certificate.name} is in the image"


# --- the paging path ----------------------------------------------------------------------------


def new_alert() -> tuple[int, str]:
    """A fresh event id and phone number, so that nothing else in the stack matches them."""
    # 050 numbers go on with 1-9: 050-0... is no number, and the dialer rightly never rings it.
    number = f"+8150{10**7 + secrets.randbelow(9 * 10**7)}"
    return 700_000_000 + secrets.randbelow(99_999_999), number


def post_alert(stack: ComposeStack, ports: dict[str, int], event_id: int, number: str) -> None:
    response = httpx.post(
        url(ports, "INGEST", "/v1/zabbix"),
        json=payloads.problem(event_id, sendto=number),
        headers={"Authorization": f"Bearer {stack.values['INGEST_TOKEN']}"},
        timeout=15,
    )
    assert response.status_code == 202, response.text


def calls_to(ports: dict[str, int], number: str) -> list[dict[str, Any]]:
    response = httpx.get(url(ports, "TWILIO_SIM", "/sim/calls"), params={"to": number}, timeout=10)
    response.raise_for_status()
    calls: list[dict[str, Any]] = response.json()["calls"]
    return calls


def zabbix(stack: ComposeStack, ports: dict[str, int]) -> ZabbixRpc:
    api = url(ports, "ZABBIX_STANDIN", "/zabbix/api_jsonrpc.php")
    return ZabbixRpc(api, auth=stack.values["ZABBIX_API_TOKEN"], timeout=10)


def yobidashi_acks(rpc: ZabbixRpc, event_id: int) -> list[dict[str, Any]]:
    """The acknowledgements Yobidashi wrote on the event, as Zabbix's API reports them."""
    events = rpc.call("event.get", {"eventids": [str(event_id)], "select_acknowledges": "extend"})
    return [
        ack
        for event in events
        for ack in event.get("acknowledges", [])
        if int(ack["action"]) & 2 and "via Yobidashi" in ack["message"]
    ]


def waited(stack: ComposeStack, description: str, probe: Callable[[], T | None]) -> T:
    """``wait_until``, and on a timeout the logs of the services the paging path crosses."""
    try:
        return wait_until(description, probe, timeout=CALL_WITHIN)
    except TimeoutError as exc:
        logs = {s: stack.logs(s)[-2500:] for s in ("ingest", "dialer", "acker", "twilio-sim")}
        details = "\n".join(f"--- {s}\n{t}" for s, t in logs.items())
        raise AssertionError(f"{exc}\n{details}") from exc


def test_an_alert_rings_the_phone_and_key_1_acknowledges_it_in_zabbix(
    stack: ComposeStack, ports: dict[str, int]
) -> None:
    event_id, number = new_alert()
    post_alert(stack, ports, event_id, number)
    calls = waited(stack, f"a call to {number}", partial(calls_to, ports, number))
    rpc = zabbix(stack, ports)
    acks = waited(
        stack, f"the ack of event {event_id} in Zabbix", partial(yobidashi_acks, rpc, event_id)
    )
    assert calls[0]["to"] == number
    assert len(acks) == 1, acks
    assert calls[0]["sid"] in acks[0]["message"], "the ack names the call that made it"


def test_accepted_alerts_survive_down_and_up(stack: ComposeStack, ports: dict[str, int]) -> None:
    stack.compose("stop", "--timeout", "10", "dialer")
    alerts = [new_alert() for _ in range(3)]
    for event_id, number in alerts:
        post_alert(stack, ports, event_id, number)
    assert not any(calls_to(ports, number) for _, number in alerts), "the dialer was stopped"
    volumes = stack.volumes()
    assert any(volume.endswith("nats-data") for volume in volumes), volumes

    stack.compose("down", "--timeout", "10")
    left = stack.leftovers()
    assert left["containers"] == [], "down removes the containers"
    assert left["volumes"] == volumes, "down keeps the volumes"

    bring_up(stack)
    for _, number in alerts:
        waited(stack, f"a call to {number}", partial(calls_to, ports, number))
    rpc = zabbix(stack, ports)
    for event_id, _ in alerts:
        waited(stack, f"the ack of event {event_id}", partial(yobidashi_acks, rpc, event_id))
