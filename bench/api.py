"""API under load: health and a trigger route, side by side with a bare aiohttp JSON handler.

    .venv/bin/python bench/api.py [--clients 100] [--duration 5]

Starts the real stack in this process (Temporal dev server from the wheel, embedded PostgreSQL
unless PETCARE_DATABASE_URL is set, the API from the real app factory) plus a bare aiohttp app,
then loads each URL in turn from a second process (Debian's `wrk` when installed, else this file
with `--load`: aiohttp, N concurrent clients) and
prints requests/s, p50 and p99 for each, and each route's rate as a ratio of the bare handler's.
Targets: health >= 0.5 x bare, health p99 < 50 ms at 100 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import SecretStr

# Run as `python bench/api.py`, this file's folder leads sys.path and its name hides the `api` package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from api.app import create_app  # noqa: E402
from devstack.postgres import embedded_postgres  # noqa: E402
from devstack.temporal_server import temporal_dev_server  # noqa: E402
from petcare.config import Settings  # noqa: E402
from petcare.migrate import migrate_database  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a throwaway local API


async def load(url: str, clients: int, duration: float, method: str, token: str | None) -> dict[str, float]:
    """The load generator (second process): `clients` loops hitting `url` for `duration` s."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(until: float) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                async with session.request(method, url, headers=headers) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(time.perf_counter() + 1.0) for _ in range(clients)))  # warm-up
        latencies.clear()
        began = time.perf_counter()
        await asyncio.gather(*(client(began + duration) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
    }


async def measure(
    url: str, args: argparse.Namespace, method: str = "GET", token: str | None = None
) -> dict[str, float]:
    """Load `url` from a second process with the chosen generator (`args.generator`)."""
    if args.generator == "wrk":
        return await measure_wrk(url, args, method, token)
    return await measure_python(url, args, method, token)


async def measure_python(
    url: str, args: argparse.Namespace, method: str, token: str | None
) -> dict[str, float]:
    command = [sys.executable, __file__, "--load", url, "--method", method,
               "--clients", str(args.clients), "--duration", str(args.duration)]  # fmt: skip
    if token:
        command += ["--token", token]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed for {url}")
    result: dict[str, float] = json.loads(output)
    return result


async def measure_wrk(url: str, args: argparse.Namespace, method: str, token: str | None) -> dict[str, float]:
    """Debian's wrk (C, event loop): the load costs far less CPU than the Python generator."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "{method}"\n')
        if token:
            script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    threads = str(min(args.clients, 2))
    common = ["wrk", "-t", threads, "-c", str(args.clients), "-s", script.name, "--latency", url]
    try:
        await (
            await asyncio.create_subprocess_exec(
                *common[:5], "-d", "1s", *common[5:], stdout=asyncio.subprocess.DEVNULL
            )
        ).wait()
        process = await asyncio.create_subprocess_exec(
            *common[:5], "-d", f"{args.duration:g}s", *common[5:], stdout=asyncio.subprocess.PIPE
        )
        output = (await process.communicate())[0].decode()
    finally:
        os.unlink(script.name)
    return {
        "requests": float(_after(output, r"(\d+) requests in")),
        "rps": _after(output, r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": _ms(output, "50%"),
        "p99_ms": _ms(output, "99%"),
        "errors": _after(output, r"Non-2xx or 3xx responses: (\d+)", default=0.0),
    }


def _after(output: str, pattern: str, default: float | None = None) -> float:
    found = re.search(pattern, output)
    if found is None:
        if default is None:
            raise RuntimeError(f"unexpected wrk output:\n{output}")
        return default
    return float(found.group(1))


def _ms(output: str, percentile: str) -> float:
    found = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)\b", output)
    if found is None:
        raise RuntimeError(f"no {percentile} latency in wrk output:\n{output}")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


async def bare_json(request: web.Request) -> web.Response:
    return web.json_response({"workers": [{"name": "AppointmentReminderWorker", "isRunning": False}]})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="petcare-bench-") as scratch:
        async with AsyncExitStack() as stack:
            database_url = os.environ.get("PETCARE_DATABASE_URL")
            if not database_url:
                database_url = (
                    await stack.enter_async_context(embedded_postgres(Path(scratch) / "pg"))
                ).url()
            env = await stack.enter_async_context(temporal_dev_server())
            await migrate_database(database_url)
            # No worker polls this queue: the first trigger starts a run, later ones find it running.
            settings = Settings(_env_file=None, database_url=SecretStr(database_url), task_queue="bench-idle")
            settings = settings.model_copy(
                update={"api": settings.api.model_copy(update={"token": SecretStr(TOKEN)})}
            )
            async with asyncpg.create_pool(database_url, min_size=2, max_size=10) as pool:
                api_runner, api_url = await serve(create_app(settings, temporal=env.client, pool=pool))
                bare = web.Application()
                bare.router.add_get("/", bare_json)
                bare_runner, bare_url = await serve(bare)
                try:
                    results = {
                        "bare aiohttp JSON": await measure(bare_url + "/", args),
                        "GET health": await measure(api_url + "/api/v1/workers/health", args),
                        "POST reminder trigger": await measure(
                            api_url + "/api/v1/workers/appointment-reminder/trigger", args, "POST", TOKEN
                        ),
                    }
                finally:
                    await api_runner.cleanup()
                    await bare_runner.cleanup()
    report(results, args)


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    baseline = results["bare aiohttp JSON"]["rps"]
    print(
        f"{args.clients} concurrent clients, {args.duration:g} s per route, "
        f"load from a second process ({args.generator})"
    )
    print(f"{'route':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>7}{'x bare':>9}")
    for name, figures in results.items():
        print(
            f"{name:<24}{figures['rps']:>10.0f}{figures['p50_ms']:>10.1f}{figures['p99_ms']:>10.1f}"
            f"{figures['errors']:>7.0f}{figures['rps'] / baseline:>9.2f}"
        )
    health = results["GET health"]
    print(
        f"health: {health['rps'] / baseline:.2f} x bare (target >= 0.5), "
        f"p99 {health['p99_ms']:.1f} ms (target < 50 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (apt-get install wrk) or the Python/aiohttp one; auto = wrk if installed",
    )
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="GET", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "python"
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.clients, args.duration, args.method, args.token))))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
