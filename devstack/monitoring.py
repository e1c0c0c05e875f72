"""Monitoring as code: the Grafana dashboards (Grafana's grafana-foundation-sdk) and the Kubernetes
PrometheusRule, generated from the Python below and deploy/monitoring/prometheus/rules.yml.

`python -m devstack.monitoring` writes them under deploy/ (committed; tests/test_monitoring.py
fails when they differ from what this module generates). Dev tooling: the image never needs it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from petcare.jobs import JOBS

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING / "prometheus" / "rules.yml"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"
PROMETHEUS_RULE_FILE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheus-rule.yaml"

# Every panel asks the Prometheus picked in the dashboard's `datasource` variable, so the JSON
# imports into any Grafana; the compose profile provisions one named Prometheus.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# A counter's increase over the panel's step, whatever the zoom.
STEP = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def increase(metric: str, by: str = "") -> str:
    """A counter's increase over the panel's step, summed (by `by`)."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(increase({metric}[{STEP}]))"


def quantile(q: float, metric: str, by: str) -> str:
    """The `q` quantile of a histogram over the panel's step, by `by`."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}[{STEP}])))"


def _panel(kind: str, title: str, unit: str, queries: list[Query], *, width: int) -> Any:
    builder: Any = stat.Panel() if kind == "stat" else timeseries.Panel()
    builder = builder.title(title).unit(unit).datasource(DATASOURCE).span(width).height(8)
    for index, query in enumerate(queries):
        target = Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        builder = builder.with_target(target.datasource(DATASOURCE))
    return builder


def graph(title: str, unit: str, *queries: Query, width: int = 12) -> Any:
    return _panel("timeseries", title, unit, list(queries), width=width)


def number(title: str, unit: str, *queries: Query, width: int = 6) -> Any:
    return _panel("stat", title, unit, list(queries), width=width)


def _dashboard(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["petcare-workers"])
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )


def jobs_dashboard() -> Dashboard:
    types = "|".join(job.workflow_type for job in JOBS)  # a new job shows up without an edit here

    def runs(outcome: str) -> Query:
        metric = f'temporal_workflow_{outcome}_total{{workflow_type=~"{types}"}}'
        return Query(increase(metric, "workflow_type"), f"{{{{workflow_type}}}} {outcome}")

    return (
        _dashboard("petcare-jobs", "petcare: jobs", "Runs, reminders, exports, stock and failure alerts")
        .with_row(Row("Runs"))
        .with_panel(
            graph(
                "Runs by job and outcome",
                "short",
                runs("completed"),
                runs("failed"),
                runs("canceled"),
            )
        )
        .with_panel(
            graph(
                "Run duration (p95, end to end)",
                "s",
                Query(
                    quantile(
                        0.95,
                        f'temporal_workflow_endtoend_latency_bucket{{workflow_type=~"{types}"}}',
                        "workflow_type",
                    ),
                    "{{workflow_type}}",
                ),
            )
        )
        .with_row(Row("Reminders"))
        .with_panel(
            graph(
                "Reminders by channel and outcome",
                "short",
                Query(increase("petcare_reminders_sent_total", "channel"), "sent {{channel}}"),
                Query(increase("petcare_reminders_failed_total"), "failed"),
                Query(increase("petcare_reminders_deferred_total"), "deferred"),
                Query(
                    increase("petcare_reminders_skipped_total", "reason"),
                    "skipped {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Due appointments found vs reminders sent",
                "short",
                Query(increase("petcare_reminders_due_total"), "due"),
                Query(increase("petcare_reminders_sent_total"), "sent"),
            )
        )
        .with_row(Row("Financial exports"))
        .with_panel(
            graph(
                "Export rows by file kind",
                "short",
                Query(increase("petcare_export_rows_total", "kind"), "{{kind}}"),
                width=8,
            )
        )
        .with_panel(
            graph(
                "Export bytes by file kind",
                "bytes",
                Query(increase("petcare_export_bytes_total", "kind"), "{{kind}}"),
                width=8,
            )
        )
        .with_panel(
            graph(
                "Export file upload duration (p95)",
                "s",
                Query(
                    quantile(
                        0.95,
                        'temporal_activity_execution_latency_bucket{activity_type=~"financial_export.write_file"}',
                        "activity_type",
                    ),
                    "{{activity_type}}",
                ),
                width=8,
            )
        )
        .with_row(Row("Stock reconciliation"))
        .with_panel(
            graph(
                "Products checked, discrepancies, low stock",
                "short",
                Query(increase("petcare_stock_products_checked_total"), "checked"),
                Query(increase("petcare_stock_discrepancies_total"), "discrepancies"),
                Query(increase("petcare_stock_low_stock_total"), "low stock"),
            )
        )
        .with_panel(
            graph(
                "Stock alerts opened and stores failed",
                "short",
                Query(increase("petcare_stock_alerts_opened_total"), "alerts opened"),
                Query(increase("petcare_stock_stores_failed_total"), "stores failed"),
            )
        )
        .with_row(Row("Operations"))
        .with_panel(
            graph(
                "Failure alerts sent by channel",
                "short",
                Query(increase("petcare_ops_alerts_sent_total", "channel"), "{{channel}}"),
            )
        )
        .with_panel(
            number(
                "Workers polling the task queue",
                "short",
                Query("max by (task_queue) (petcare_task_queue_pollers)", "{{task_queue}}"),
            )
        )
    )


def temporal_sdk_dashboard() -> Dashboard:
    by = "task_queue"
    return (
        _dashboard(
            "petcare-temporal-sdk",
            "petcare: Temporal SDK",
            "The workers' Temporal SDK metrics: task latencies, slots, failures, polls",
        )
        .with_row(Row("Latencies"))
        .with_panel(
            graph(
                "Schedule-to-start latency (p95)",
                "s",
                Query(
                    quantile(0.95, "temporal_activity_schedule_to_start_latency_bucket", by),
                    "activities {{task_queue}}",
                ),
                Query(
                    quantile(0.95, "temporal_workflow_task_schedule_to_start_latency_bucket", by),
                    "workflow tasks {{task_queue}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Execution latency (p95)",
                "s",
                Query(
                    quantile(0.95, "temporal_activity_execution_latency_bucket", "activity_type"),
                    "{{activity_type}}",
                ),
                Query(
                    quantile(0.95, "temporal_workflow_task_execution_latency_bucket", "workflow_type"),
                    "workflow task {{workflow_type}}",
                ),
            )
        )
        .with_row(Row("Slots and polls"))
        .with_panel(
            graph(
                "Task slots available / used",
                "short",
                Query(
                    f"sum by ({by}, worker_type) (temporal_worker_task_slots_available)",
                    "available {{worker_type}}",
                ),
                Query(
                    f"sum by ({by}, worker_type) (temporal_worker_task_slots_used)", "used {{worker_type}}"
                ),
            )
        )
        .with_panel(
            graph(
                "Pollers and successful polls",
                "short",
                Query(f"sum by ({by}, poller_type) (temporal_num_pollers)", "pollers {{poller_type}}"),
                Query(
                    f"sum by ({by}) (rate(temporal_workflow_task_queue_poll_succeed_total[{STEP}]))",
                    "workflow task polls/s",
                ),
                Query(
                    f"sum by ({by}) (rate(temporal_activity_poll_no_task_total[{STEP}]))",
                    "empty activity polls/s",
                ),
            )
        )
        .with_row(Row("Failures"))
        .with_panel(
            graph(
                "Workflow task failures by reason",
                "short",
                Query(
                    increase(
                        "temporal_workflow_task_execution_failed_total", "workflow_type, failure_reason"
                    ),
                    "{{workflow_type}} {{failure_reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Activity failures",
                "short",
                Query(
                    increase("temporal_activity_execution_failed_total", "activity_type"),
                    "{{activity_type}}",
                ),
            )
        )
    )


def api_dashboard() -> Dashboard:
    return (
        _dashboard("petcare-api", "petcare: API", "The HTTP API: requests, latency, errors")
        .with_row(Row("Traffic"))
        .with_panel(
            graph(
                "Requests by route and status",
                "reqps",
                Query(
                    f"sum by (route, status) (rate(petcare_api_requests_total[{STEP}]))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Latency by route (p50, p99)",
                "s",
                Query(
                    quantile(0.5, "petcare_api_request_duration_seconds_bucket", "route"),
                    "p50 {{route}}",
                ),
                Query(
                    quantile(0.99, "petcare_api_request_duration_seconds_bucket", "route"),
                    "p99 {{route}}",
                ),
            )
        )
        .with_row(Row("Errors"))
        .with_panel(
            graph(
                "5xx share",
                "percentunit",
                Query(
                    f'sum(rate(petcare_api_requests_total{{status=~"5.."}}[{STEP}])) '
                    f"/ sum(rate(petcare_api_requests_total[{STEP}]))",
                    "5xx",
                ),
            )
        )
        .with_panel(
            number(
                "Temporal reachable from the API",
                "bool_yes_no",
                Query("min(petcare_temporal_up)", "temporal"),
            )
        )
    )


DASHBOARDS = {
    "petcare-jobs.json": jobs_dashboard,
    "petcare-temporal-sdk.json": temporal_sdk_dashboard,
    "petcare-api.json": api_dashboard,
}


def dashboard_json(dashboard: Dashboard) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(dashboard.build()) + "\n"


def prometheus_rule(rules_text: str) -> str:
    """rules.yml as a Prometheus Operator PrometheusRule (the same groups, verbatim)."""
    rules = yaml.safe_load(rules_text)
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "petcare-workers",
            "namespace": "petcare",
            "labels": {"app.kubernetes.io/part-of": "petcare-workers", "release": "prometheus"},
        },
        "spec": {"groups": rules["groups"]},
    }
    header = (
        "# Generated from deploy/monitoring/prometheus/rules.yml by `python -m devstack.monitoring`:\n"
        "# edit the rules there. The `release` label is what kube-prometheus-stack selects by default.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=200)


def generated() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {DASHBOARDS_DIR / name: dashboard_json(build()) for name, build in DASHBOARDS.items()}
    files[PROMETHEUS_RULE_FILE] = prometheus_rule(RULES_FILE.read_text())
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    for path, content in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
