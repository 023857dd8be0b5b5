"""Run every benchmark in sequence, then print one summary table (every figure beside its
target) and write bench/results/summary.json. This is ``make bench``.

Each bench runs as its own process (``python -m bench.<name>``), starts and stops its own
nats-server, services and simulator, and writes bench/results/<name>.json. Nothing here passes
or fails on a figure; the exit status is non-zero only when a bench could not run.

    .venv/bin/python -m bench.run_all [--quick|--full] [--only ingest,memory] [--no-zabbix]
    .venv/bin/python -m bench.run_all --save-baseline   # then commit bench/baseline.json

Each figure is printed beside its value in ``bench/baseline.json``, the committed reference,
which changes only when someone refreshes it on purpose (``--save-baseline``). A figure more
than 20% worse than its baseline is flagged REGRESSED; that is a reading, not a failure.
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
BENCHES = [
    "ingest",
    "alert_to_dial",
    "alert_to_dial_cluster",
    "round_trips",
    "keypress_to_ack",
    "cps_fidelity",
    "memory",
    "zabbix_webhook",
    "failover_time",
]
# A bench that is another's module with a flag: name -> (module, flags).
VARIANTS = {"alert_to_dial_cluster": ("alert_to_dial", ["--cluster"])}
NEEDS_ZABBIX_ONLY = {"zabbix_webhook"}
BASELINE = Path(__file__).parent / "baseline.json"
REGRESSION = 0.20


def load_baseline() -> dict[str, float]:
    """figure name -> its committed value (figures without a value are left out)."""
    if not BASELINE.exists():
        return {}
    figures: dict[str, float] = json.loads(BASELINE.read_text())["figures"]
    return figures


def regressed(figure: dict[str, Any], baseline: float | None) -> bool:
    """More than 20% worse than the baseline, in the direction the figure should go."""
    value, better = figure["value"], figure["better"]
    if baseline is None or value is None or better is None or baseline == 0:
        return False
    change = (float(value) - baseline) / abs(baseline)
    return change < -REGRESSION if better == "higher" else change > REGRESSION


def save_baseline(rows: list[tuple[str, dict[str, Any]]], info: dict[str, Any]) -> None:
    figures = {f["name"]: f["value"] for _, f in rows if f["value"] is not None}
    payload = {"machine": info, "figures": dict(sorted(figures.items()))}
    BASELINE.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {BASELINE.relative_to(ROOT)}: commit it to make these figures the reference")


def run_one(name: str, flags: list[str]) -> tuple[int, float]:
    module, own_flags = VARIANTS.get(name, (name, []))
    command = [sys.executable, "-m", f"bench.{module}", *own_flags, *flags]
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


def print_cluster_beside_single(runs: list[dict[str, Any]]) -> None:
    """alert -> dial p99 on one node and on the 3-node cluster, row by row, beside the target."""
    by_bench = {r["bench"]: {f["name"]: f for f in r["figures"]} for r in runs}
    single = by_bench.get("alert_to_dial", {})
    cluster = by_bench.get("alert_to_dial_cluster", {})
    pairs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name, f in single.items():
        c = cluster.get(f"cluster: {name}")
        if c is not None and f["target"] is not None:
            pairs.append((name, f, c))
    if not pairs:
        return
    print("\nalert -> dial, one nats-server beside a 3-node cluster (R3), same run:")
    print(f"{'figure':<40}{'single':>12}{'cluster':>12}  target")
    for name, f, c in pairs:
        print(
            f"{name:<40}{fmt(f['value']) + ' ' + f['unit']:>12}"
            f"{fmt(c['value']) + ' ' + c['unit']:>12}  <= {fmt(f['target'])} {f['unit']}"
        )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    p.add_argument("--no-zabbix", action="store_true", help="skip what needs a real Zabbix")
    p.add_argument(
        "--save-baseline",
        action="store_true",
        help="write this run's figures to bench/baseline.json, the reference for later runs",
    )
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
    baseline = load_baseline()
    width = max([len(f["name"]) for _, f in rows] + [30])
    print(f"{'bench':<24}{'figure':<{width}}  {'measured':>14}  {'baseline':>14}  {'target':<16}")
    flagged = 0
    for bench, f in rows:
        measured = f"{fmt(f['value'])} {f['unit']}"
        before = baseline.get(f["name"])
        was = f"{fmt(before)} {f['unit']}" if before is not None else "-"
        target = "-"
        if f["target"] is not None and f["better"]:
            target = f"{'>=' if f['better'] == 'higher' else '<='} {fmt(f['target'])} {f['unit']}"
        verdict = {True: "met", False: "MISSED", None: ""}[f["met"]]
        if regressed(f, before):
            flagged += 1
            verdict += " REGRESSED (>20% worse than baseline)"
        print(f"{bench:<24}{f['name']:<{width}}  {measured:>14}  {was:>14}  {target:<16} {verdict}")
    print_cluster_beside_single(runs)
    print()
    for r in runs:
        state = "ok" if r["ok"] else f"FAILED (exit {r['exit_code']})"
        skipped = f"; skipped: {r['skipped']}" if r.get("skipped") else ""
        print(f"{r['bench']:<24}{r['seconds']:>7.0f} s  {state}{skipped}")
    print(f"{'total':<24}{total:>7.0f} s")
    targets = [f for _, f in rows if f["met"] is not None]
    print(
        f"{sum(1 for f in targets if f['met'])} of {len(targets)} targets met"
        + (f"; {flagged} figures regressed against bench/baseline.json" if flagged else "")
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
    if args.save_baseline and not interrupted:
        save_baseline(rows, info)
    if interrupted:
        sys.exit(130)
    if not all(r["ok"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
