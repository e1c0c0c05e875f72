"""Monitoring files: the alert rules (promtool's checks and unit tests, a summary and a runbook
section each), the generated dashboards and PrometheusRule up to date, the compose `monitoring`
profile and the Prometheus Operator manifests. (Live endpoints: tests/test_monitoring_live.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devstack import monitoring
from tests.support.monitoring import (
    DASHBOARDS,
    MONITORING,
    RULES_FILE,
    dashboard_expressions,
    not_installed,
    rules,
)

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
RULE_TESTS = MONITORING / "prometheus" / "rules.test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
K8S_MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
OPERATOR_SCHEMA = Path(__file__).parent / "data" / "prometheus-operator.schema.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(not_installed("promtool"))
    return subprocess.run([found, *args], capture_output=True, text=True, check=False, timeout=120)


def test_promtool_checks_the_rules_and_the_prometheus_config() -> None:
    rules_check = promtool("check", "rules", str(RULES_FILE))
    assert rules_check.returncode == 0, rules_check.stdout + rules_check.stderr
    config_check = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert config_check.returncode == 0, config_check.stdout + config_check.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_rule_has_a_summary_a_runbook_section_and_a_unit_test() -> None:
    anchors = _github_anchors(OPERATIONS.read_text())
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules():
        name = rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/operations.md", name
        assert anchor in anchors, f"{name}: no section #{anchor} in docs/operations.md"
        assert name in fired, f"{name}: no promtool test where it fires"
        assert name in quiet, f"{name}: no promtool test where it stays quiet"
    # The list of alerts, by name.
    assert {
        "PetcareNoWorkerPolling",
        "PetcareWorkflowTaskFailures",
        "PetcareNonDeterminism",
        "PetcareActivityFailureRate",
        "PetcareScheduleToStartLatency",
        "PetcareJobRunFailed",
        "PetcareRemindersNotSent",
        "PetcareStockStoresFailed",
        "PetcareExportFailed",
        "PetcareApiErrors",
        "PetcareApiLatency",
    } <= set(names)
    nde = next(rule for rule in rules() if rule["alert"] == "PetcareNonDeterminism")
    assert nde["labels"]["severity"] == "critical"
    assert 'failure_reason="NonDeterminismError"' in nde["expr"]


def test_generated_dashboards_and_prometheus_rule_are_up_to_date() -> None:
    for path, content in monitoring.generated().items():
        assert path.exists(), f"{path} missing: run python -m devstack.monitoring"
        assert path.read_text() == content, f"{path} is stale: run python -m devstack.monitoring"
    assert {path.name for path in DASHBOARDS} == set(monitoring.DASHBOARDS)


def test_dashboards_query_the_picked_prometheus_and_cover_jobs_sdk_and_api() -> None:
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
    assert uids == {"petcare-jobs", "petcare-temporal-sdk", "petcare-api"}
    expressions = dashboard_expressions()
    jobs = " ".join(expressions["petcare-jobs.json"])
    for name in (
        "temporal_workflow_failed_total",
        "petcare_reminders_sent_total",
        "petcare_export_rows_total",
        "petcare_export_bytes_total",
        "petcare_stock_discrepancies_total",
        "petcare_stock_low_stock_total",
        "petcare_ops_alerts_sent_total",
    ):
        assert name in jobs, name
    sdk = " ".join(expressions["petcare-temporal-sdk.json"])
    for name in ("schedule_to_start_latency", "task_slots", "execution_failed", "poll"):
        assert name in sdk, name
    assert "petcare_api_request" in " ".join(expressions["petcare-api.json"])


# --- compose and Kubernetes ---------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    return loaded


def test_compose_monitoring_profile_runs_prometheus_and_grafana_with_the_repositorys_files() -> None:
    services = _compose()["services"]
    deploy = ROOT / "deploy"
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], "off unless asked for"
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), "loopback only"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (deploy / source).exists(), f"{name} mounts a missing {source}"
    assert "profiles" not in services["worker"], "the jobs run without the profile"
    prometheus = services["prometheus"]
    assert "./monitoring/prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    environment = services["worker"]["environment"]
    worker_port = int(environment["PETCARE_METRICS__WORKER_BIND_ADDRESS"].rsplit(":", 1)[1])
    assert jobs["petcare-worker"]["dns_sd_configs"][0] == {
        "names": ["worker"],
        "type": "A",
        "port": worker_port,
        "refresh_interval": "30s",
    }
    assert jobs["petcare-api"]["static_configs"][0]["targets"] == [f"api:{environment['PETCARE_API__PORT']}"]
    provisioning = MONITORING / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "petcare.yml").read_text())
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in services["grafana"]["volumes"]
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _k8s(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_prometheus_operator_manifests_validate_and_select_the_pods() -> None:
    schema = json.loads(OPERATOR_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    resources = _k8s(K8S_MONITORING / "kustomization.yaml")["resources"]
    documents = {name: _k8s(K8S_MONITORING / name) for name in resources}
    assert {document["kind"] for document in documents.values()} == {
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for name, document in documents.items():
        errors = [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(document)]
        assert not errors, f"{name}: {errors}"
    broken = dict(documents["pod-monitor.yaml"], spec={"selector": {}, "podMetricsEndpoint": []})
    assert list(validator.iter_errors(broken)), "the schema refuses a misspelt field"

    worker = _k8s(ROOT / "deploy" / "k8s" / "worker-deployment.yaml")["spec"]["template"]
    pod_monitor = documents["pod-monitor.yaml"]["spec"]
    assert pod_monitor["selector"]["matchLabels"].items() <= worker["metadata"]["labels"].items()
    worker_ports = {port["name"] for port in worker["spec"]["containers"][0]["ports"]}
    assert {endpoint["port"] for endpoint in pod_monitor["podMetricsEndpoints"]} <= worker_ports

    service = _k8s(ROOT / "deploy" / "k8s" / "api-service.yaml")
    service_monitor = documents["service-monitor.yaml"]["spec"]
    assert service_monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {endpoint["port"] for endpoint in service_monitor["endpoints"]} <= {
        port["name"] for port in service["spec"]["ports"]
    }
    # The same rules as the compose Prometheus loads (generated from rules.yml).
    rule = documents["prometheus-rule.yaml"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
