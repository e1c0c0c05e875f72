"""Temporal visibility queries (the SQL-like filter of list and count calls), values quoted in one place.

The query language takes no parameters: every value is written into the text as a string literal.
The server reads it with a MySQL-style parser, where a backslash escapes the next character inside
a literal; escaping backslashes and double quotes therefore makes any value, quotes and backslashes
included, exactly one literal that means exactly that value (tests/test_visibility.py checks it
against the dev server). I/O-free: the API's run lists and health, and the failure alerts' sweep
(activities/alerts.py), build their queries here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

# Temporal's own attributes (the custom ones are in petcare.jobs).
WORKFLOW_TYPE = "WorkflowType"
EXECUTION_STATUS = "ExecutionStatus"
TASK_QUEUE = "TaskQueue"
CLOSE_TIME = "CloseTime"
SCHEDULED_BY_ID = "TemporalScheduledById"
# Set by the server (1.30+) on a run whose workflow tasks keep failing or timing out (5 in a row by
# default: system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute), cleared once one
# succeeds; values such as "category=WorkflowTaskFailed",
# "cause=WorkflowTaskFailedCauseNonDeterministicError".
REPORTED_PROBLEMS = "TemporalReportedProblems"
WORKFLOW_TASK_PROBLEMS = ("category=WorkflowTaskFailed", "category=WorkflowTaskTimedOut")


def literal(value: str) -> str:
    """`value` as a visibility string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def equals(name: str, value: str) -> str:
    return f"{name}={literal(value)}"


def one_of(name: str, values: Iterable[str]) -> str:
    return f"{name} IN ({', '.join(literal(value) for value in values)})"


def after(name: str, moment: datetime) -> str:
    return f"{name} > {literal(moment.isoformat())}"


def all_of(*clauses: str) -> str:
    """The clauses joined with AND; empty ones are left out (no clause at all lists everything)."""
    return " AND ".join(clause for clause in clauses if clause)


def any_of(*clauses: str) -> str:
    return "(" + " OR ".join(clauses) + ")"
