"""Container health check of the petcare image: the API answers, or this container's worker polls Temporal."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from petcare.config import load_settings
from petcare.process import exit_without_teardown
from petcare.task_queue_pollers import task_queue_pollers
from petcare.temporal_client import connect_temporal

API_HEALTH_PATH = "/api/v1/workers/health"
# A poller older than this is a worker that stopped polling (Temporal keeps it listed a while).
POLLER_FRESHNESS = timedelta(minutes=2)
TIMEOUT = timedelta(seconds=8)


def role_of_pid1(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """`api`, `worker` or `other`, from the command the container runs (ENTRYPOINT petcare + CMD)."""
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return "other"
    for word in words:
        if word in (b"api", b"worker"):
            return word.decode()
    return "other"


def check_api(port: int, path: str) -> str | None:
    """None when the route answers 2xx, else what went wrong."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT.total_seconds())
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except OSError as error:
        return f"API on port {port} unreachable: {error}"
    finally:
        connection.close()
    return None if 200 <= status < 300 else f"API {path} answered {status}"


async def check_worker(task_queue: str, hostname: str) -> str | None:
    """None when a worker on this host polled the task queue recently, else what went wrong."""
    client = await connect_temporal()
    cutoff = datetime.now(UTC) - POLLER_FRESHNESS
    seen: list[str] = []
    for poller in await task_queue_pollers(client, task_queue, timeout=TIMEOUT):
        seen.append(poller.identity)
        # The SDK's default identity is "<pid>@<hostname>"; the container's hostname is its own.
        fresh = poller.last_access_time.ToDatetime(tzinfo=UTC) >= cutoff
        if poller.identity.endswith(f"@{hostname}") and fresh:
            return None
    pollers = ", ".join(sorted(set(seen))) or "none"
    return f"no worker on {hostname} polls task queue {task_queue} (pollers: {pollers})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", nargs="?", choices=["api", "worker", "auto"], default="auto")
    parser.add_argument("--path", default=API_HEALTH_PATH, help="API route to GET (api role)")
    args = parser.parse_args(argv)
    role = role_of_pid1() if args.role == "auto" else args.role
    if role == "other":
        return 0  # one-shot commands such as `petcare migrate` have nothing to probe
    settings = load_settings()
    try:
        if role == "api":
            problem = check_api(settings.api.port, args.path)
        else:
            problem = asyncio.run(check_worker(settings.task_queue, socket.gethostname()))
    except Exception as error:
        # Any failure to check is an unhealthy answer; the message goes to `docker inspect`.
        problem = f"{role} check failed: {error!r}"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # The answer is decided: leave without interpreter teardown, which can abort after the
    # Temporal client (it once turned "unhealthy", 1, into a crash, -11, in CI).
    exit_without_teardown(main())
