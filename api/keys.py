"""Typed keys of the resources the app factory puts on the aiohttp application."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from temporalio.client import Client

from api.cache import TtlCache
from api.models import HealthResponse
from petcare.config import Settings

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
# The last health answer, shared by all requests for a second or two (see api/health.py).
HEALTH_CACHE = web.AppKey[TtlCache[HealthResponse]]("health_cache")
