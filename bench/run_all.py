"""Run every benchmark in sequence, then print one summary table (every figure beside its
target) and write bench/results/summary.json. This is ``make bench``.

Each bench runs as its own process (``python -m bench.<name>``), starts and stops its own
nats-server, services and simulator, and writes bench/results/<name>.json. Nothing here passes
or fails on a figure; the exit status is non-zero only when a bench could not run.

    .venv/bin/python -m bench.run_all [--quick|--full] [--only ingest,memory] [--no-zabbix]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import RESULTS, fmt, machine, parser, size

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["ingest", "alert_to_dial", "keypress_to_ack", "cps_fidelity", "memory", "zabbix_webhook"]
NEEDS_ZABBIX_ONLY = {"zabbix_webhook"}


def run_one(name: str, flags: list[str]) -> tuple[int, float]:
    command = [sys.executable, "-m", f"bench.{name}", *flags]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    began = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT)

    def forward(signum: int, _frame: FrameType | None) -> None:
        # the bench stops what it started, then exits; we wait for it below
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                # Ctrl-C reached the child too (same process group): let it clean up
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, time.monotonic() - began


def load(name: str, since: float) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data if data.get("finished_at", 0) >= since else None


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    p.add_argument("--no-zabbix", action="store_true", help="skip what needs a real Zabbix")
    args = p.parse_args()
    chosen = [b for b in BENCHES if not args.only or b in args.only.split(",")]
    flags = ["--quick"] if args.quick else ["--full"] if args.full else []
    info = machine()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    interrupted = False
    for name in chosen:
        if args.no_zabbix and name in NEEDS_ZABBIX_ONLY:
            continue
        extra = ["--no-zabbix"] if args.no_zabbix and name == "keypress_to_ack" else []
        started_at = time.time()
        code, seconds = run_one(name, flags + extra)
        result = load(name, started_at)
        runs.append(
            {
                "bench": name,
                "exit_code": code,
                "seconds": round(seconds, 1),
                "ok": code == 0 and result is not None,
                "figures": result["figures"] if result else [],
                "skipped": result.get("skipped") if result else None,
            }
        )
        if code in (130, -signal.SIGINT, -signal.SIGTERM, 143):
            interrupted = True
            break
    total = time.monotonic() - began
    print(f"\n=== summary ({size(args)} sizes; {info['cores']} cores, load at start "
          f"{info['load_average_at_start']}; {total:.0f} s in all)")  # fmt: skip
    rows = [(r["bench"], f) for r in runs for f in r["figures"]]
    width = max([len(f["name"]) for _, f in rows] + [30])
    print(f"{'bench':<16}{'figure':<{width}}  {'measured':>14}  {'target':<16}")
    for bench, f in rows:
        measured = f"{fmt(f['value'])} {f['unit']}"
        target = "-"
        if f["target"] is not None and f["better"]:
            target = f"{'>=' if f['better'] == 'higher' else '<='} {fmt(f['target'])} {f['unit']}"
        verdict = {True: "met", False: "MISSED", None: ""}[f["met"]]
        print(f"{bench:<16}{f['name']:<{width}}  {measured:>14}  {target:<16} {verdict}")
    print()
    for r in runs:
        state = "ok" if r["ok"] else f"FAILED (exit {r['exit_code']})"
        skipped = f"; skipped: {r['skipped']}" if r.get("skipped") else ""
        print(f"{r['bench']:<16}{r['seconds']:>7.0f} s  {state}{skipped}")
    print(f"{'total':<16}{total:>7.0f} s")
    targets = [f for _, f in rows if f["met"] is not None]
    print(
        f"{sum(1 for f in targets if f['met'])} of {len(targets)} targets met"
        + (" (interrupted)" if interrupted else "")
    )
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "machine": info,
        "size": size(args),
        "seconds": round(total, 1),
        "interrupted": interrupted,
        "runs": runs,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {(RESULTS / 'summary.json').relative_to(ROOT)}")
    if interrupted:
        sys.exit(130)
    if not all(r["ok"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
