"""deploy/: the Prometheus config and alert rules pass promtool (and fire when they should), and the
Grafana dashboard is valid JSON that queries only metrics and labels /metrics really serves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from rpa_monitor.tests.prom import OUR_NAMES, SAMPLE_LABELS, promtool, scrape

DEPLOY = Path(settings.BASE_DIR) / "deploy"
ALERTS = DEPLOY / "alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERT_NAMES = {
    "RPAChainFailing",
    "RPAErrorRateHigh",
    "RPASchedulerNotTicking",
    "RPASchedulerMetricAbsent",
    "RPARunsStuck",
}


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_alert_rules() -> None:
    checked = run_promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in checked.stdout


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    checked = run_promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


# --- The rules fire when they should (promtool's rule unit tests) ------------------------------

FRESH_TICKS = {"series": "rpa_scheduler_last_tick_timestamp_seconds", "values": "0+60x60"}


def firing(at: str, *alerts: dict[str, str]) -> dict[str, Any]:
    """A promql_expr_test: exactly `alerts` (label sets) are firing at time `at`."""
    return {
        "expr": 'ALERTS{alertstate="firing"}',
        "eval_time": at,
        "exp_samples": [
            {
                "labels": "ALERTS{"
                + ", ".join(f'{k}="{v}"' for k, v in sorted({**labels, "alertstate": "firing"}.items()))
                + "}",
                "value": 1,
            }
            for labels in alerts
        ],
    }


RULE_TESTS: list[dict[str, Any]] = [
    {  # A chain fails at 3m: alert while the failure is inside the 15-minute window; cancelled never alerts.
        "interval": "1m",
        "input_series": [
            {"series": 'chain_executions_total{chain_id="nightly", status="success"}', "values": "0+1x60"},
            {
                "series": 'chain_executions_total{chain_id="nightly", status="failure"}',
                "values": "0 0 0 1x57",
            },
            {
                "series": 'chain_executions_total{chain_id="nightly", status="cancelled"}',
                "values": "0 0 0 1x57",
            },
            FRESH_TICKS,
        ],
        "promql_expr_test": [
            firing("2m"),
            firing(
                "5m",
                {
                    "alertname": "RPAChainFailing",
                    "chain_id": "nightly",
                    "status": "failure",
                    "severity": "warning",
                },
            ),
            firing("30m"),
        ],
    },
    {  # error_rate 50% from 11m: pending for 15 minutes, then firing.
        "interval": "1m",
        "input_series": [{"series": "error_rate", "values": "10x10 50x50"}, FRESH_TICKS],
        "promql_expr_test": [
            firing("10m"),
            firing("20m"),
            firing("30m", {"alertname": "RPAErrorRateHigh", "severity": "warning"}),
        ],
    },
    {  # The last tick is at 10m: over 180 s old from 14m, firing 2 minutes later.
        "interval": "1m",
        "input_series": [{"series": FRESH_TICKS["series"], "values": "0+60x10 600x50"}],
        "promql_expr_test": [
            firing("13m"),
            firing("17m", {"alertname": "RPASchedulerNotTicking", "severity": "critical"}),
        ],
    },
    {  # No scheduler metric at all (nothing scraped).
        "interval": "1m",
        "input_series": [{"series": "error_rate", "values": "0x30"}],
        "promql_expr_test": [
            firing("2m"),
            firing("10m", {"alertname": "RPASchedulerMetricAbsent", "severity": "critical"}),
        ],
    },
    {  # Two runs stuck from 6m to 25m.
        "interval": "1m",
        "input_series": [{"series": "rpa_stale_runs", "values": "0x5 2x19 0x35"}, FRESH_TICKS],
        "promql_expr_test": [
            firing("8m"),
            firing("15m", {"alertname": "RPARunsStuck", "severity": "warning"}),
            firing("40m"),
        ],
    },
]


def test_the_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    # YAML is a superset of JSON: the test file needs no YAML library.
    spec = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": RULE_TESTS}
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(json.dumps(spec, indent=2))
    checked = run_promtool("test", "rules", str(tests))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


# --- Every metric and label the rules and the dashboard use exists ----------------------------

PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "Inf",
    "NaN",
}
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses; a small PromQL reader, enough for our files."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables ($__rate_interval, ${datasource})
    label_names: set[str] = set()
    for block in re.findall(r"\{([^}]*)\}", expr):
        label_names.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", block))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    for group in GROUPING_RE.findall(expr):
        label_names.update(name.strip() for name in group.split(",") if name.strip())
    expr = GROUPING_RE.sub(" ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", expr)  # function and aggregation names
    metrics = {
        name for name in re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if name not in PROMQL_WORDS
    }
    return metrics, label_names


@pytest.fixture
def served() -> dict[str, frozenset[str]]:
    """{sample name: label names} of everything /metrics serves: our families from the contract,
    django-prometheus's from a live scrape (after a request, so its HTTP series exist)."""
    client = Client()
    client.get("/health")
    result = scrape(client)
    names = dict(SAMPLE_LABELS)
    for family in result.families.values():
        for sample in family.samples:
            names[sample.name] = names.get(sample.name, frozenset()) | frozenset(sample.labels)
    assert set(names) >= OUR_NAMES
    return names


def assert_uses_only_served(expr: str, served: dict[str, frozenset[str]]) -> None:
    metrics, label_names = promql_names(expr)
    assert metrics, f"no metric in {expr!r}"
    unknown = metrics - set(served)
    assert not unknown, f"{expr!r} uses metrics /metrics does not serve: {unknown}"
    available = set().union(*(served[name] for name in metrics))
    assert label_names <= available, f"{expr!r} uses labels its metrics lack: {label_names - available}"


def alert_exprs() -> list[str]:
    # One expression per line in alerts.yml (kept so on purpose: readable and easy to check here).
    return re.findall(r"^\s+expr:\s*(.+?)\s*$", ALERTS.read_text(), flags=re.MULTILINE)


@pytest.mark.django_db
def test_the_alert_rules_use_only_served_metrics(served: dict[str, frozenset[str]]) -> None:
    exprs = alert_exprs()
    assert len(exprs) == len(ALERT_NAMES)
    for expr in exprs:
        assert_uses_only_served(expr, served)
    assert set(re.findall(r"^\s+- alert:\s*(\w+)", ALERTS.read_text(), flags=re.MULTILINE)) == ALERT_NAMES


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    data = dashboard()
    assert data["title"] == "RPA Monitor"
    assert data["uid"]
    assert 36 <= data["schemaVersion"] <= 41
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = data["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.django_db
def test_the_dashboard_queries_only_served_metrics_and_labels(served: dict[str, frozenset[str]]) -> None:
    data = dashboard()
    exprs = [t["expr"] for p in data["panels"] if p["type"] != "row" for t in p["targets"]]
    for expr in exprs:
        assert_uses_only_served(expr, served)
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()  # type: ignore[union-attr]
            assert label in served[metric]
    # The panels the dashboard promises.
    used = set().union(*(promql_names(expr)[0] for expr in exprs))
    assert {name.removesuffix("_bucket") for name in used} >= {
        "workflow_executions_total",
        "workflow_duration_seconds",
        "log_entries_total",
        "chain_executions_total",
        "trigger_fires_total",
        "active_workflows",
        "error_rate",
    }
    assert any("histogram_quantile(0.99" in expr for expr in exprs)


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    metrics, label_names = promql_names(
        "histogram_quantile(0.95, sum by (workflow_id, le) (rate(workflow_duration_seconds_bucket"
        '{workflow_id=~"$workflow", x="a{b}"}[$__rate_interval]))) / on (le) time() - max(error_rate) > 2'
    )
    assert metrics == {"workflow_duration_seconds_bucket", "error_rate"}
    assert label_names == {"workflow_id", "le", "x"}
