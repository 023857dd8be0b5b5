"""Prometheus config, rules and their unit tests (promtool), and the Grafana dashboard's structure.

Grafana cannot be installed on these machines, so the dashboard is checked as JSON: the shape
Grafana's provisioning needs, the provisioned data source on every panel and query, PromQL that
parses (through promtool), and only metric names that the services really define. Whether each
query returns data from the real services is tests/integration/test_dashboard_queries.py.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "rules_test.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "yobidashi.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "yobidashi.yaml"

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool is installed by `make system-deps`"
)

# The modules whose import registers every metric the services export.
METRIC_MODULES = [
    "yobidashi_common.bus",
    "yobidashi_ingest.metrics",
    "yobidashi_dialer.metrics",
    "yobidashi_acker.metrics",
]
HEARTBEAT_MODULE = "yobidashi_cli.heartbeat"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}
PANEL_TYPES = {"row", "stat", "timeseries", "bargauge"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, cwd=REPO, timeout=120
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "record" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded into (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def provisioned_uid() -> str:
    [source] = load_yaml(DATASOURCES)["datasources"]
    uid: str = source["uid"]
    return uid


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def defined_metric_names() -> set[str]:
    """Every series name the services' code can export, from prometheus_client's registry."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    heartbeat = importlib.import_module(HEARTBEAT_MODULE)
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
    }
    # The canary keeps its metrics in a registry of its own.
    for family in [*REGISTRY.collect(), *heartbeat.REGISTRY.collect()]:
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def yobidashi_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (recorded series, ``yobidashi:...``, excluded)."""
    return set(re.findall(r"(?<![\w:])yobidashi_[a-z0-9_]+", expr))


# -- Prometheus ------------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_accepts_the_config_and_it_loads_the_rules() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


@needs_promtool
def test_the_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts without a series that trips them"
    assert names - quiet == set(), "alerts without a series that must leave them quiet"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_tested_or_used_by_a_tested_alert() -> None:
    tested = {
        check["expr"]
        for case in load_yaml(RULE_TESTS)["tests"]
        for check in case.get("promql_expr_test", [])
    }
    used = " ".join(rule["expr"] for rule in alert_rules()) + " ".join(tested)
    for rule in recording_rules():
        assert rule["record"] in used, f"{rule['record']} is neither tested nor used"


def test_every_alert_tells_an_sre_how_bad_it_is_and_what_to_do() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alert_rules():
        assert rule["alert"].startswith("Yobidashi"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert len(annotations["description"]) > 150, f"{rule['alert']}: say what to do"


def test_the_paging_path_failures_are_covered() -> None:
    """The failures that matter most each have an alert on the metric that shows them."""
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    expected = {
        "YobidashiTwilioUnreachable": 'result=~"unreachable|http_5..',
        "YobidashiAckLagHigh": "yobidashi:acker_ack_lag_seconds:p95_rate15m",
        "YobidashiDeadLetters": "yobidashi_bus_dead_letters_total",
        "YobidashiNoAlertsFromZabbix": "yobidashi:ingest_zabbix_problems:increase6h",
        "YobidashiEscalationExhausted": "yobidashi_escalation_policies_exhausted_total",
        "YobidashiCallbackSignatureRejects": "yobidashi_dialer_callbacks_rejected_total",
        "YobidashiNatsDisconnected": "yobidashi_bus_connected",
        "YobidashiAckerZabbixDown": "yobidashi_acker_zabbix_up",
        "YobidashiHeartbeatMissing": "yobidashi_heartbeat_last_success_timestamp_seconds",
        "YobidashiRunningOnFallbackAccount": "yobidashi_dialer_account_in_use",
    }
    for alert, needle in expected.items():
        assert needle in exprs[alert], alert
    assert {r["labels"]["severity"] for r in alert_rules() if r["alert"] in expected} == {
        "critical",
        "warning",
    }


def test_the_runbook_lists_every_alert_and_the_second_channel() -> None:
    readme = " ".join((PROMETHEUS_DIR / "README.md").read_text().split())
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in readme, rule["alert"]
    assert "second channel" in readme
    assert "Alertmanager" in readme


def test_the_scrape_jobs_are_the_compose_services_under_the_names_the_rules_use() -> None:
    config = load_yaml(CONFIG)
    assert config["rule_files"] == ["rules.yml"]
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["yobidashi-ingest"] == ["ingest:8000"]
    assert targets["yobidashi-dialer"] == ["dialer:8001"]
    assert targets["yobidashi-acker"] == ["acker:8002"]
    assert targets["yobidashi-heartbeat"] == ["heartbeat:9102"]
    jobs_in_rules = set(re.findall(r'job="(yobidashi-[a-z]+)"', RULES.read_text()))
    assert jobs_in_rules <= set(targets)


def test_rules_use_only_metrics_the_services_define() -> None:
    defined = defined_metric_names()
    used = {name for rule in load_yaml(RULES)["groups"] for r in rule["rules"] for name in
            yobidashi_names(r["expr"])}  # fmt: skip
    assert used - defined == set()


# -- Grafana ---------------------------------------------------------------------------------------


def test_the_datasource_and_dashboard_provider_are_provisionable() -> None:
    datasources = load_yaml(DATASOURCES)
    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "yobidashi-prometheus"
    assert source["url"].startswith("http")
    providers = load_yaml(PROVIDERS)
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_dashboard_has_the_shape_grafana_provisions() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36  # Grafana 9 and later
    assert board["uid"]
    assert len(board["uid"]) <= 40
    assert board["title"]
    assert "__inputs" not in board, "export without 'for sharing externally'"
    assert board.get("id") is None, "provisioned dashboards get their id from Grafana"
    assert board["templating"]["list"] == []


def test_panel_ids_are_unique_and_types_known() -> None:
    panels = list(all_panels(dashboard()["panels"]))
    ids = Counter(panel["id"] for panel in panels)
    assert all(isinstance(i, int) for i in ids)
    assert [i for i, n in ids.items() if n > 1] == []
    assert {panel["type"] for panel in panels} <= PANEL_TYPES
    assert all(panel["title"] for panel in panels)


def test_grid_positions_fit_24_columns_and_do_not_overlap() -> None:
    occupied: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert all(isinstance(v, int) for v in (x, y, w, h)), panel["title"]
        assert min(x, y) >= 0, panel["title"]
        assert min(w, h) >= 1, panel["title"]
        assert x + w <= 24, f"{panel['title']} is wider than the grid"
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in occupied, f"{panel['title']} overlaps {occupied[cell]}"
            occupied[cell] = panel["title"]


def test_every_query_names_the_provisioned_datasource_and_has_an_expr() -> None:
    uid = provisioned_uid()
    for panel in all_panels(dashboard()["panels"]):
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
    for annotation in dashboard()["annotations"]["list"]:
        if annotation["datasource"].get("type") == "prometheus":
            assert annotation["datasource"]["uid"] == uid
            assert annotation["expr"].strip()


def test_counters_are_read_with_rate_or_increase_and_histograms_by_le() -> None:
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in yobidashi_names(expr):
                if name.endswith("_total"):
                    assert re.search(rf"(rate|increase)\({name}", expr), f"{panel['title']}"
            for bucket in re.findall(r"[a-z_]+_bucket", expr):
                assert re.search(
                    rf"histogram_quantile\([0-9.]+, sum by \(le[^)]*\) \(rate\({bucket}\[", expr
                ), panel["title"]


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule, with Grafana's variables filled in."""
    rules = []
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            record = f"dashboard:panel_{panel['id']}_{target['refId']}"
            rules.append({"record": record, "expr": grafana_to_promql(target["expr"])})
    assert rules
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_uses_only_metrics_the_services_define() -> None:
    defined = defined_metric_names()
    used: set[str] = set()
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            used |= yobidashi_names(target["expr"])
    assert used - defined == set()
    for needed in [
        "yobidashi_ingest_alerts_total",
        "yobidashi_dialer_calls_total",
        "yobidashi_dialer_time_to_answer_seconds_bucket",
        "yobidashi_escalation_time_to_acknowledge_seconds_bucket",
        "yobidashi_acker_ack_lag_seconds_bucket",
        "yobidashi_dialer_twilio_requests_total",
        "yobidashi_dialer_cps_queue_depth",
        "yobidashi_dialer_concurrent_calls",
        "yobidashi_bus_dead_letters_total",
        "yobidashi_dialer_callbacks_rejected_total",
        "yobidashi_bus_consumer_pending_messages",
        "yobidashi_bus_consumer_ack_pending_messages",
        "yobidashi_escalation_steps_total",
        "yobidashi_escalation_policies_exhausted_total",
        "yobidashi_escalation_bundled_calls_total",
        "yobidashi_heartbeat_round_trip_seconds_bucket",
        "yobidashi_heartbeat_last_success_timestamp_seconds",
    ]:
        assert needed in used, f"the dashboard shows no {needed}"
