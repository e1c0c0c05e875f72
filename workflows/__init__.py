"""Deterministic orchestration of the jobs: every workflow class the worker registers."""

from __future__ import annotations

# Each job appends its workflow classes here.
WORKFLOWS: list[type] = []
