"""How long a real Zabbix takes to call the webhook: 7.0 against 6.0.

Clock points: just before the trapper value that raises the problem is sent, and when the
problem webhook's POST reaches a local HTTP listener (the listener notes the time on arrival,
before it answers). The same for the recovery: value 0 sent, recovery webhook received. Our
media type (deploy/zabbix/yobidashi/media_yobidashi.yaml) makes the POST, as in production.

Zabbix decides most of this itself: the escalator runs every 3 s on 6.0 (hard-coded), so
6.0's problem webhook comes 2-4 s after the value. Each sample raises and resolves one
problem on the dev instance of each version (deploy/zabbix/dev/zabbix-dev), one after another.
Sizes: --quick 3, default 10, --full 30 samples per version.

    .venv/bin/python -m bench.zabbix_webhook [--quick|--full] [--versions 6.0,7.0]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import Figure, dist, machine, parser, pct, print_figures, save, size
from yobidashi_harness import zabbix_dev
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_testing.media_type import MEDIA_TYPE_YAML

PREFIX = "bench-webhook"
SAMPLES = {"quick": 3, "default": 10, "full": 30}
WAIT = 60.0  # far above any delay seen; a timeout is reported, not hidden


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the POST arrived
    body: dict[str, Any]


class Listener:
    """Records every webhook POST with its arrival time and answers 200."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with outer._changed:
                    outer.arrivals.append(Arrival(at, body))
                    outer._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/zabbix"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def wait(self, event_value: str, after: float) -> Arrival:
        """The first problem ("1") or recovery ("0") webhook that arrived after ``after``."""

        def found() -> Arrival | None:
            return next(
                (
                    a
                    for a in self.arrivals
                    if a.at >= after
                    and a.body.get("event_value") == event_value
                    and a.body.get("event_update_status") == "0"
                ),
                None,
            )

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout=WAIT):
                raise TimeoutError(f"no webhook with event_value {event_value} in {WAIT:.0f} s")
            arrival = found()
        assert arrival is not None
        return arrival

    @contextmanager
    def running(self) -> Iterator[Listener]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


def measure(version: str, samples: int, listener: Listener) -> dict[str, Any]:
    instance = zabbix_dev.up(zabbix_dev.DevConfig.from_env(version=version))
    rpc = ZabbixRpc(instance.api_url, api_version=instance.zabbix_version)
    rpc.login(instance.admin_username, instance.admin_password)
    scenario = zs.provision(
        rpc,
        zs.ScenarioNames.for_prefix(PREFIX),
        media_type_yaml=MEDIA_TYPE_YAML,
        media_parameters={"URL": listener.url, "token": "bench-webhook-token"},
    )
    host, key, port = scenario.names.host, scenario.names.item_key, instance.server_port
    zs.wait_for_config_sync(host, key, server_port=port, changed_at=scenario.changed_at)
    problem_ms: list[float] = []
    recovery_ms: list[float] = []
    for number in range(1, samples + 1):
        sent = time.monotonic()
        zs.send(host, key, 10, server_port=port)
        problem_ms.append((listener.wait("1", sent).at - sent) * 1000)
        sent = time.monotonic()
        zs.send(host, key, 0, server_port=port)
        recovery_ms.append((listener.wait("0", sent).at - sent) * 1000)
        print(
            f"  Zabbix {instance.zabbix_version} sample {number}/{samples}: problem "
            f"{problem_ms[-1]:.0f} ms, recovery {recovery_ms[-1]:.0f} ms",
            flush=True,
        )
    return {
        "zabbix_version": instance.zabbix_version,
        "package_version": instance.package_version,
        "problem": dist(problem_ms),
        "recovery": dist(recovery_ms),
        "problem_ms": [round(v) for v in problem_ms],
        "recovery_ms": [round(v) for v in recovery_ms],
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--versions",
        default=",".join(zabbix_dev.TESTED_VERSIONS),
        help="comma-separated Zabbix versions (default: %(default)s)",
    )
    args = p.parse_args()
    samples = SAMPLES[size(args)]
    info = machine()
    results: dict[str, Any] = {}
    with Listener().running() as listener:
        for version in args.versions.split(","):
            print(f"Zabbix {version}: {samples} samples", flush=True)
            results[version] = measure(version, samples, listener)
    figures = []
    for version, result in results.items():
        for kind in ("problem", "recovery"):
            values = result[f"{kind}_ms"]
            note = f"Zabbix {result['zabbix_version']}; {len(values)} samples"
            for label, value in (("p50", pct(values, 0.5)), ("max", max(values))):
                figures.append(
                    Figure(f"{kind} webhook {label}, {version}", value / 1000, "s", note=note)
                )
    print_figures(figures, "value sent -> webhook received")
    save("zabbix_webhook", info, figures, size=size(args), samples=samples, results=results)


if __name__ == "__main__":
    main()
