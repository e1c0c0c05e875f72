"""The commands that hold a Temporal client end without interpreter teardown (petcare/process_exit.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from petcare import cli
from petcare.config import Settings


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
    monkeypatch.setattr(cli, "exit_without_teardown", _record_exit)
    with pytest.raises(Exited) as exited:
        cli.main(argv)
    assert exited.value.code == code


def test_other_commands_exit_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run", lambda command, settings: None)
    monkeypatch.setattr(cli, "exit_without_teardown", _record_exit)
    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate"])
    assert exited.value.code == 0


def test_leaving_without_teardown_keeps_the_output_and_the_code() -> None:
    script = (
        "import logging, sys\n"
        "from petcare.process_exit import exit_without_teardown\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "print('printed', end='')\n"
        "logging.getLogger('x').warning('logged')\n"
        "exit_without_teardown(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "printed")
    assert "logged" in done.stderr
