"""docker/prometheus/alerts.yml and docker/grafana/dashboards/garage.json: well formed,
and using only the metric families the broker exports. With promtool installed, the
rules and the dashboard's queries parse as PromQL and the alerts pass alerts_test.yml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from garage.broker.metrics import FAMILIES as BROKER_FAMILIES

from .compose_files import DOCKER

ALERTS = DOCKER / "prometheus" / "alerts.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "garage.json"
SEVERITIES = {"info", "warning", "critical"}

# What broker/metrics.py exports, as Prometheus names them (counters with `_total`).
_KINDS = {name: kind for name, (kind, _, _) in BROKER_FAMILIES.items()}
COUNTERS = {f"{name}_total" for name, kind in _KINDS.items() if kind == "counter"}
GAUGES = {name for name, kind in _KINDS.items() if kind == "gauge"}
HISTOGRAMS = {name for name, kind in _KINDS.items() if kind == "histogram"}
FAMILIES = COUNTERS | GAUGES | HISTOGRAMS
METRIC = re.compile(r"garage_[a-z_]+")
HISTOGRAM_SERIES = re.compile(r"(.+)_(bucket|sum|count)$")


def family(name: str) -> str:
    """`garage_job_queue_wait_seconds_bucket` -> `garage_job_queue_wait_seconds`."""
    series = HISTOGRAM_SERIES.match(name)
    return series.group(1) if series and series.group(1) in HISTOGRAMS else name


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_alert_has_an_expression_a_duration_a_severity_and_a_text() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), names
    for rule in rules():
        assert rule["expr"].strip() and re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alerts_cover_gpus_queues_and_workers() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in rules()}
    wanted = {
        "GarageGpuHot": "garage_gpu_temperature_celsius >= 85",
        "GarageGpuMemoryFull": "garage_gpu_memory_used_bytes",
        "GarageQueueStale": "garage_queue_oldest_age_seconds > 300",
        "GarageModelUnserved": "unless",
        "GarageWorkerFlapping": "changes(garage_worker_health[15m])",
        "GarageWorkerCritical": 'garage_worker_health{state="critical"}',
    }
    for alert, fragment in wanted.items():
        assert fragment in expressions[alert], alert


def test_the_alerts_and_the_dashboard_use_only_exported_metrics() -> None:
    used = {family(m) for m in METRIC.findall(ALERTS.read_text())}
    used |= {family(m) for m in METRIC.findall(DASHBOARD.read_text())}
    assert used - FAMILIES == set(), "not exported by the broker"


def test_counters_and_histograms_are_read_as_rates() -> None:
    expressions = [rule["expr"] for rule in rules()]
    expressions += [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    for expr in expressions:
        for name in METRIC.findall(expr):
            if name in COUNTERS or family(name) != name:
                assert re.search(rf"(rate|increase)\([^()]*\b{name}\b", expr), expr


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    board = dashboard()
    assert board["uid"] and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("jobs", "queue", "first token", "tokens", "workers", "slots", "gpu"):
        assert topic in titles, topic


# promtool: the Prometheus package's checker


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt install prometheus)"
)


@needs_promtool
def test_promtool_accepts_the_rules_and_the_alerts_fire_as_specified() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(ALERTS)]  # the container's paths, made local
    key = tmp_path / "admin_key"
    key.write_text("not-a-real-key")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(key)
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    checked = _promtool("check", "config", str(local))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    # Each query becomes a recording rule, which `check rules` parses; Grafana's
    # variables are replaced by what they expand to.
    expressions = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    recorded = [
        {"record": f"garage:panel_query_{i}", "expr": e}
        for i, e in enumerate(
            e.replace("$__rate_interval", "1m").replace("$model", ".*") for e in expressions
        )
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = _promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
