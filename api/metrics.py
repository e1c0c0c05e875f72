"""GET /metrics: the API's Prometheus metrics (requests by route and status, latency by route, and
the workers polling the task queue, from the health check)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from api.backends import SETTINGS
from api.openapi import documented
from api.workers import current_health

# Fast enough that health's target (p99 < 50 ms) sits between buckets that tell it apart.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Anything that matched no route shares one label value, so random URLs cannot grow the series.
UNMATCHED = "unmatched"


class ApiMetrics:
    """One registry per app (tests build many apps in one process; the global one would clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "petcare_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "petcare_api_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # The API can see what no worker can report about itself: that none is polling.
        self.pollers = Gauge(
            "petcare_task_queue_pollers",
            "Workers polling the task queue (seen on any partition within the poller max age)",
            ["task_queue"],
            registry=self.registry,
        )
        self.temporal_up = Gauge(
            "petcare_temporal_up",
            "1 when the health check reached Temporal, else 0 (the pollers are then unknown)",
            registry=self.registry,
        )


API_METRICS = web.AppKey("api_metrics", ApiMetrics)


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so it counts the status the client received (errors included)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's code for it)
        raise
    finally:
        metrics = request.app[API_METRICS]
        route = route_label(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)


@documented("Prometheus metrics of this API process (text exposition format)", errors=(404,), tags=("meta",))
async def metrics(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].metrics.api_enabled:
        raise web.HTTPNotFound()
    metrics = request.app[API_METRICS]
    # The health answer shared with GET /api/v1/workers/health (cached 1.5 s): a scrape costs no
    # more Temporal calls than a health probe.
    queue = (await current_health(request.app)).task_queue
    metrics.temporal_up.set(0 if queue.pollers is None else 1)
    if queue.pollers is None:
        # Unknown is no sample, not 0: "no worker" alerts only on what was really seen.
        metrics.pollers.clear()
    else:
        metrics.pollers.labels(queue.name).set(queue.pollers)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
