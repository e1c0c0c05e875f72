"""Typed keys of the resources the app factory puts on the aiohttp application."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from temporalio.client import Client

from api.cache import TtlCache
from api.models import HealthResponse
from api.starts import RunningRun
from petcare.config import Settings

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
# The last health answer, shared by all requests for a second or two (see api/health.py).
HEALTH_CACHE = web.AppKey[TtlCache[HealthResponse]]("health_cache")
# The running reminder run, if any, for a second: a trigger while a run is going returns it
# (a run started within that second under the manual id is still found by the server's id check).
RUNNING_REMINDER_CACHE = web.AppKey[TtlCache[RunningRun]]("running_reminder_cache")
