"""Monitoring tests' support: a dev server whose long polls last seconds, not a minute (a stopped
worker drops out of the live pollers within seconds) and whose runs are marked with
TemporalReportedProblems after two failed workflow tasks instead of five; and the metric names that
the alert rules and the dashboards query."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml
from temporalio.testing import WorkflowEnvironment

from devstack.temporal_server import temporal_dev_server

LONG_POLL_SECONDS = 3
# What the API's health is told: a live worker re-polls every LONG_POLL_SECONDS at most.
POLLER_MAX_AGE_SECONDS = 3 * LONG_POLL_SECONDS

QUICK_POLLS = {
    "matching.longPollExpirationInterval": f'"{LONG_POLL_SECONDS}s"',
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "2",
}


@pytest_asyncio.fixture(scope="module")
async def quick_poll_server() -> AsyncIterator[WorkflowEnvironment]:
    async with temporal_dev_server(dynamic_config=QUICK_POLLS) as env:
        yield env


def not_installed(program: str) -> str:
    """Why a test that needs Debian's Prometheus is skipped."""
    return (
        f"{program} is not installed: it comes with Debian's `prometheus` package "
        "(apt-get install prometheus; .ci/run installs it)"
    )


# --- The metric names that the rules and the dashboards query ---------------------------------

ROOT = Path(__file__).resolve().parent.parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING / "prometheus" / "rules.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "histogram_quantile", "absent",
    "vector", "scalar", "clamp_min", "clamp_max", "topk", "bottomk", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label matchers, ranges, groupings and strings apart)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if match[0] not in PROMQL_WORDS and not following.startswith("("):
            names.add(match[0])
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def dashboard_expressions() -> dict[str, list[str]]:
    """Each dashboard file's query expressions."""
    found: dict[str, list[str]] = {}
    for path in DASHBOARDS:
        panels = json.loads(path.read_text())["panels"]
        found[path.name] = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    return found


def queried_metric_names() -> dict[str, str]:
    """Every metric name a rule or a dashboard queries, and where."""
    where: dict[str, str] = {}
    for rule in rules():
        for name in promql_metric_names(rule["expr"]):
            where.setdefault(name, f"rule {rule['alert']}")
    for dashboard, expressions in dashboard_expressions().items():
        for expr in expressions:
            for name in promql_metric_names(expr):
                where.setdefault(name, f"dashboard {dashboard}")
    return where
