"""Typed keys of the resources the app factory puts on the aiohttp application."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from temporalio.client import Client

from petcare.config import Settings

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
