"""How `petcare` commands end: without interpreter teardown when they hold a Temporal client
(petcare/process.py), and with one line, no traceback, when a server or a setting is wrong."""

from __future__ import annotations

import argparse
import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.ports import free_port
from petcare import cli, process
from petcare.config import Settings
from tests.support.postgres import TestPostgres
from tests.support.worker_process import command_env, one_line, run_petcare


class Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _record_exit(code: int) -> None:
    raise Exited(code)


@pytest.mark.parametrize(
    ("argv", "fails", "code"),
    [(["schedules", "list"], False, 0), (["worker"], True, 1), (["api"], False, 0)],
)
def test_temporal_client_commands_leave_without_teardown(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], fails: bool, code: int
) -> None:
    def run(command: argparse.Namespace, settings: Settings) -> None:
        if fails:
            raise RuntimeError("the command failed")

    monkeypatch.setattr(cli, "run", run)
    monkeypatch.setattr(process, "exit_without_teardown", _record_exit)
    with pytest.raises(Exited) as exited:
        cli.main(argv)
    assert exited.value.code == code


def test_other_commands_exit_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run", lambda command, settings: None)
    monkeypatch.setattr(process, "exit_without_teardown", _record_exit)
    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate"])
    assert exited.value.code == 0


def test_leaving_without_teardown_keeps_the_output_and_the_code() -> None:
    script = (
        "import logging, sys\n"
        "from petcare.process import exit_without_teardown\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "print('printed', end='')\n"
        "logging.getLogger('x').warning('logged')\n"
        "exit_without_teardown(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "printed")
    assert "logged" in done.stderr


def test_temporal_unreachable_is_one_line(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = run_petcare(["schedules", "list"], command_env({"TEMPORAL_ADDRESS": address}), tmp_path)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(f"petcare: cannot connect to Temporal at {address}")


def test_postgresql_unreachable_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://petcare:s3cret-pw@127.0.0.1:{free_port()}/petcare"
    env = command_env({"PETCARE_DATABASE_URL": url})
    done = run_petcare(["migrate"], env, tmp_path)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("petcare: PostgreSQL is unreachable (PETCARE_DATABASE_URL):")
    assert "s3cret-pw" not in done.stderr

    # At DEBUG the traceback comes first, then the same line.
    debug = run_petcare(["migrate"], env | {"PETCARE_LOG_LEVEL": "DEBUG"}, tmp_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == done.stderr.strip()
    assert "s3cret-pw" not in debug.stderr


def test_a_database_the_server_refuses_is_one_line(postgres: TestPostgres, tmp_path: Path) -> None:
    env = command_env({"PETCARE_DATABASE_URL": postgres.url_for("petcare_no_such_database")})
    for command in (["migrate"], ["demo-data"]):
        done = run_petcare(command, env, tmp_path)
        assert done.returncode == 1, command
        line = one_line(done.stderr)
        assert line.startswith("petcare: PostgreSQL refused the connection (PETCARE_DATABASE_URL):"), command
        assert 'database "petcare_no_such_database" does not exist' in line


def test_a_taken_worker_metrics_port_names_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = command_env({"PETCARE_METRICS__WORKER_BIND_ADDRESS": address})
        done = run_petcare(["worker"], env, tmp_path)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"cannot serve the worker's metrics on {address}" in line
    assert "PETCARE_METRICS__WORKER_BIND_ADDRESS" in line


def test_the_worker_script_and_the_cli_do_not_import_each_other() -> None:
    """`python worker_main.py` is `petcare worker`, without an import circle: both run their
    command through petcare.process, and only the CLI imports worker_main (for `worker`)."""
    root = Path(__file__).resolve().parent.parent

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return names | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert "petcare.cli" not in imported(root / "worker_main.py")
    assert "worker_main" in imported(root / "petcare" / "cli.py")
    for argv in (
        [sys.executable, "worker_main.py", "--help"],
        [sys.executable, "-m", "petcare", "worker", "--help"],
    ):
        shown = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=True, timeout=60)
        assert "--no-schedules" in shown.stdout
