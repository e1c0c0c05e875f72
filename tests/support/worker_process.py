"""Real petcare processes for end-to-end tests: `worker_main.py` on the test's servers, CLI commands."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from petcare.task_queue_pollers import task_queue_pollers
from tests.support.polling import poll

ROOT = Path(__file__).resolve().parent.parent.parent

Completed = subprocess.CompletedProcess[str]


def worker_env(
    dev_server: WorkflowEnvironment,
    *,
    database_url: str,
    task_queue: str,
    smtp_port: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker process: this test's servers only, nothing from the developer's."""
    env = command_env()
    env |= {
        "PETCARE_DATABASE_URL": database_url,
        "PETCARE_TASK_QUEUE": task_queue,
        "PETCARE_SMTP__PORT": str(smtp_port),
        "PETCARE_SMTP__TIMEOUT_SECONDS": "5",
        "PETCARE_REMINDERS__QUIET_HOURS": "",  # as in the settings fixture: any hour sends texts
        "PETCARE_LOG_LEVEL": "WARNING",
        # Several workers on one host: no metrics endpoint, so none fights over the port.
        "PETCARE_METRICS__WORKER_BIND_ADDRESS": "",
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_server.client.namespace,
    }
    return env | dict(extra or {})


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a petcare process without any PETCARE_/TEMPORAL_ setting of the
    developer's (no Temporal profile either), importing this checkout's code."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PETCARE_", "TEMPORAL_"))}
    env["TEMPORAL_CONFIG_FILE"] = os.devnull
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env | dict(extra or {})


def run_petcare(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120.0) -> Completed:
    """`petcare ARGV` to its end, in `cwd` (no .env there), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "petcare", *argv],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(stderr: str) -> str:
    """The single line a failing command printed on stderr (asserting it printed only that)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("petcare: "), stderr
    return lines[0]


async def start_worker_process(
    env: Mapping[str, str], log_file: Path, *, apply_schedules: bool = False
) -> asyncio.subprocess.Process:
    """A worker process (no schedules applied unless asked) whose output is appended to `log_file`."""
    with log_file.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "worker_main.py",
            *([] if apply_schedules else ["--no-schedules"]),
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=log,
        )


def worker_identity(process: asyncio.subprocess.Process) -> str:
    """The identity Temporal records for the process's worker: the SDK's default `pid@host`."""
    return f"{process.pid}@{socket.gethostname()}"


async def wait_until_polling(
    client: Client, task_queue: str, processes: Iterable[asyncio.subprocess.Process], timeout: float = 60.0
) -> None:
    """Until every process polls the task queue for activities, so work spreads over all of them."""
    processes = list(processes)
    wanted = {worker_identity(process) for process in processes}

    async def all_polling() -> bool:
        exited = [process.pid for process in processes if process.returncode is not None]
        if exited:
            raise AssertionError(f"worker processes {exited} exited before polling {task_queue}")
        return wanted <= await _activity_pollers(client, task_queue)

    await poll(all_polling, timeout=timeout, every=0.1, what=f"workers {sorted(wanted)} polling {task_queue}")


async def _activity_pollers(client: Client, task_queue: str) -> set[str]:
    pollers = await task_queue_pollers(client, task_queue, [TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY])
    return {poller.identity for poller in pollers}


async def stop_worker_processes(*processes: asyncio.subprocess.Process | None, timeout: float = 40.0) -> None:
    """SIGTERM each process still running and wait for it (cleanup after a test, pass or fail)."""
    for process in processes:
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
