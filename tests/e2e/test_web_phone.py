"""``make run`` as a new user meets it: the devstack, the web phone, a test alert, press 1.

The devstack runs as ``make run`` runs it (``yobidashi-devstack``, its own NATS, the services
as processes, the simulator, the Zabbix stand-in), and headless Chromium clicks through the
page. ``YOBIDASHI_UPDATE_SCREENSHOTS=1`` also writes the README's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from playwright.sync_api import Page

from yobidashi_harness.nats_server import free_port
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_harness.zabbix_scenario import acknowledges
from yobidashi_testing.browser import chromium, find_chromium

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(find_chromium() is None, reason="no chromium (make system-deps)"),
]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "images" / "web-phone.png"


class Devstack:
    def __init__(self, run_dir: Path, *args: str) -> None:
        self.run_dir = run_dir
        self.args = args
        self.output = run_dir / "devstack.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}

    def start(self) -> Devstack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "yobidashi-devstack"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [str(exe), "--run-dir", str(self.run_dir), "--port", str(free_port()), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + 180
        state = self.run_dir / "devstack.json"
        while not state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the devstack did not come up:\n{self.text()}")
            time.sleep(0.2)
        self.urls = json.loads(state.read_text())
        return self

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def interrupt(self) -> int:
        """Ctrl-C, as a person at the terminal would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def devstack(tmp_path: Path) -> Iterator[Devstack]:
    stack = Devstack(tmp_path / "run").start()
    try:
        yield stack
    finally:
        stack.kill()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2):
            return True
    except OSError:
        return False


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"POST {url}: {exc.code} {exc.read().decode()}") from None


def press_1_once_the_alert_is_read(page: Page, phone: str) -> str:
    """Once ``phone`` (its selector) is talking and has read out the alert about web01, press 1
    on its keypad; wait until the incident is acknowledged and the acker has written that to the
    (stand-in) Zabbix API, with who and how. The incident's text."""
    page.wait_for_selector(f'{phone}[data-state="talking"]', timeout=30_000)
    page.wait_for_function(
        f"document.querySelector('{phone} .spoken').textContent.includes('web01')",
        timeout=30_000,
    )
    page.click(f'{phone} .keypad button[data-key="1"]')
    page.wait_for_selector(".incident .status.acknowledged", timeout=30_000)
    page.wait_for_selector(".incident .zabbix", timeout=60_000)
    return page.inner_text(".incident")


def wait_for(probe: Callable[[], T | None], what: str, limit: float = 90) -> T:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.3)
    raise AssertionError(f"waited {limit:.0f}s for {what}")


def test_send_a_test_alert_see_the_phone_ring_press_1_see_acknowledged(
    devstack: Devstack, tmp_path: Path
) -> None:
    console = devstack.urls["console"]
    screen = devstack.text()
    assert f"{console}/phone" in screen
    assert "Ctrl-C stops everything" in screen

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(f"{console}/phone")
        page.click("#send-test-alert")
        ringing = page.wait_for_selector('.phone[data-state="ringing"]', timeout=30_000)
        assert ringing is not None
        number = ringing.get_attribute("data-number")
        phone = f'.phone[data-number="{number}"]'
        # The simulator's callee picks up after a few seconds; the keypad opens then.
        incident = press_1_once_the_alert_is_read(page, phone)
        assert "acknowledged by" in incident
        assert "via phone" in incident
        page.wait_for_selector(f'{phone}[data-state="ended"]', timeout=30_000)
        page.wait_for_selector("#toast:not(.show)", state="attached")
        shot = tmp_path / "web-phone.png"
        page.screenshot(path=str(shot))
    [ack] = get(f"{console}/api/state")["zabbix_acks"]
    assert "via Yobidashi" in ack["message"]
    if os.environ.get("YOBIDASHI_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)

    children = [devstack.urls[name] for name in ("ingest", "dialer", "acker", "sim")]
    assert all(answers(url) for url in children)
    assert devstack.interrupt() == 0
    assert "stopped." in devstack.text()
    assert not any(answers(url) for url in [*children, console])


@pytest.mark.zabbix
def test_run_with_zabbix_pages_from_a_real_problem_and_acks_it_in_zabbix(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    stack = Devstack(tmp_path / "run", "--with-zabbix").start()
    try:
        console = stack.urls["console"]
        fired = post(f"{console}/api/test-alert", {})
        assert fired["sent_to"] == "zabbix"
        eventid = fired["detail"].split("problem ")[1].split()[0]

        def talking() -> dict[str, Any] | None:
            phones = get(f"{console}/api/state")["phones"]
            return next((p for p in phones if p["call"] and p["call"]["listening"]), None)

        phone = wait_for(talking, "a phone to ring, answer and listen")
        post(f"{console}/api/phones/{quote(phone['number'])}/digits", {"digits": "1"})
        rpc = ZabbixRpc(zabbix_dev.api_url)
        rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
        [ack] = wait_for(lambda: acknowledges(rpc, eventid) or None, "the ack in Zabbix")
        assert phone["name"] in ack["message"]
        assert ack["username"] == "yobidashi-acker"
        assert stack.interrupt() == 0
    finally:
        stack.kill()


def test_two_phones_that_mask_alike_each_hear_only_their_own_problems(tmp_path: Path) -> None:
    """Issue 11 in the web phone: two Zabbix users whose numbers share the last four digits
    (both +81 90-****-5678). B is paged while A is on the phone, then A gets a second
    problem; B's phone hears only B's, and B's 1 acknowledges only B's in Zabbix."""
    a, b = "+819011115678", "+819022225678"
    zabbix_driven = tmp_path / "no-routes.yaml"
    zabbix_driven.write_text("contacts: []\n")
    stack = Devstack(
        tmp_path / "run", "--config", str(zabbix_driven), "--phone", a, "--phone", b
    ).start()
    try:
        console = stack.urls["console"]
        card_a, card_b = (f'.phone[data-number="{n}"]' for n in (a, b))

        def spoken(card: str) -> str:
            return str(page.inner_text(f"{card} .spoken"))

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(f"{console}/phone")
            page.click(f"{card_a} .page")  # A's first problem, as Zabbix would send it
            page.wait_for_selector(f'{card_a}[data-state="talking"]', timeout=60_000)

            post(f"{console}/api/test-alert", {"sendto": b, "name": "B の障害"})
            post(f"{console}/api/test-alert", {"sendto": a, "name": "A の二つ目の障害"})
            page.wait_for_function(
                f"document.querySelector('{card_b} .spoken').textContent.includes('B の障害')",
                timeout=60_000,
            )
            page.wait_for_selector(
                f'{card_b}[data-state="talking"] .keypad button:not([disabled])', timeout=60_000
            )
            assert "A の二つ目の障害" not in spoken(card_b)
            assert "HTTP サービスが応答しません" not in spoken(card_b)
            page.click(f'{card_b} .keypad button[data-key="1"]')
            page.wait_for_function(
                "[...document.querySelectorAll('.incident')].some(i => "
                "i.textContent.includes('B の障害') && i.querySelector('.status.acknowledged'))",
                timeout=60_000,
            )

            # A, still on the line about A's first problem, takes that one. (A's second waits
            # for A's bundle window, then rings A: tests/integration/test_dialer_identity.py.)
            assert "B の障害" not in spoken(card_a)
            page.click(f'{card_a} .keypad button[data-key="1"]')

        state = get(f"{console}/api/state")
        by_title = {i["title"]: i for i in state["incidents"]}
        assert by_title["B の障害"]["status"] == "acknowledged"
        assert by_title["A の二つ目の障害"]["status"] == "open"
        b_event = by_title["B の障害"]["problem"]["source_event_id"]
        a1_event = by_title["HTTP サービスが応答しません"]["problem"]["source_event_id"]
        acked = wait_for(
            lambda: (
                {x["eventid"] for x in get(f"{console}/api/state")["zabbix_acks"]}
                if len(get(f"{console}/api/state")["zabbix_acks"]) >= 2
                else None
            ),
            "B's ack and A's first ack in the Zabbix stand-in",
        )
        assert acked == {b_event, a1_event}, "B's 1 acknowledged B's problem only"
        assert stack.interrupt() == 0
    finally:
        stack.kill()


def put(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def test_a_missed_call_then_call_yobidashi_back_press_1_acknowledges(devstack: Devstack) -> None:
    console, sim = devstack.urls["console"], devstack.urls["sim"]
    phones = [p["number"] for p in get(f"{console}/api/state")["phones"]]
    for number in phones:  # everyone is busy: the page is missed
        put(f"{sim}/sim/scenarios/{quote(number)}", {"answer": "busy"})

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(f"{console}/phone")
        page.click("#send-test-alert")
        page.wait_for_selector(".incident", timeout=30_000)

        def missed() -> str | None:
            for phone in get(f"{console}/api/state")["phones"]:
                if phone["call"] and phone["call"]["status"] == "busy":
                    return str(phone["number"])
            return None

        number = wait_for(missed, "the on-call phone to be busy")
        # The person is free again and calls back from the phone that was paged.
        urllib.request.urlopen(
            urllib.request.Request(f"{sim}/sim/scenarios/{quote(number)}", method="DELETE"),
            timeout=10,
        ).close()
        phone = f'.phone[data-number="{number}"]'
        page.click(f"{phone} button.call-back")
        incident = press_1_once_the_alert_is_read(page, phone)
        assert "via phone" in incident
    [ack] = get(f"{console}/api/state")["zabbix_acks"]
    assert "via Yobidashi" in ack["message"]
    [call] = get(f"{sim}/sim/calls?from={quote(number)}")["calls"]
    assert call["direction"] == "inbound"
    assert call["digits"][0]["keys"] == "1"
    # Ctrl-C, so the devstack stops its children (the fixture's kill -9 would orphan them).
    assert devstack.interrupt() == 0
