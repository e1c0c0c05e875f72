"""Settings: names the bad variable, never echoes a secret, and the CLI fails fast with it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import time

import pytest

from petcare.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    for name in list(os.environ):
        if name.startswith("PETCARE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer .env is read


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings()
    assert settings.task_queue == "petcare-workers"
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8080)
    assert settings.sms.provider == "log"
    assert settings.export.destination == "sftp"


def test_nested_variables_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETCARE_API__PORT", "9090")
    monkeypatch.setenv("PETCARE_SMTP__PASSWORD", "hunter2")
    monkeypatch.setenv("PETCARE_SMS__PROVIDER", "twilio")
    settings = load_settings()
    assert settings.api.port == 9090
    assert settings.sms.provider == "twilio"
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_dotenv_file_is_read(tmp_path: os.PathLike[str]) -> None:
    with open(os.path.join(tmp_path, ".env"), "w") as env_file:
        env_file.write("PETCARE_TASK_QUEUE=from-dotenv\n")
    assert Settings().task_queue == "from-dotenv"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PETCARE_API__PORT", "not-a-port"),
        ("PETCARE_API__PORT", "70000"),
        ("PETCARE_SMS__PROVIDER", "pigeon"),
        ("PETCARE_EXPORT__DESTINATION", "ftp"),
        ("PETCARE_SMTP__STARTTLS", "maybe"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_configured_tokens_are_stripped_like_presented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # A token from a secret file or `echo` ends with a newline; the API strips presented tokens.
    monkeypatch.setenv("PETCARE_API__TOKEN", "tok-3f9a\n")
    monkeypatch.setenv("PETCARE_API__PREVIOUS_TOKEN", "  tok-old\r\n")
    assert load_settings().api.accepted_tokens() == ["tok-3f9a", "tok-old"]
    monkeypatch.setenv("PETCARE_API__PREVIOUS_TOKEN", " \n")
    api = load_settings().api
    assert api.previous_token is None
    assert api.accepted_tokens() == ["tok-3f9a"]


def test_bad_database_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETCARE_DATABASE_URL", "mysql://app:s3cret-pw@db/app")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "PETCARE_DATABASE_URL" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_missing_database_url_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="PETCARE_DATABASE_URL is not set"):
        load_settings().require_database_url()


def test_cli_fails_fast_naming_the_variable(tmp_path: os.PathLike[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETCARE_")}
    env["PETCARE_API__PORT"] = "eighty"
    finished = subprocess.run(
        [sys.executable, "-m", "petcare", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "PETCARE_API__PORT" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_quiet_hours_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().reminders.quiet_period() == (time(21, 0), time(8, 0))
    monkeypatch.setenv("PETCARE_REMINDERS__QUIET_HOURS", " 22:30-07:15 ")
    assert load_settings().reminders.quiet_period() == (time(22, 30), time(7, 15))
    monkeypatch.setenv("PETCARE_REMINDERS__QUIET_HOURS", "")
    assert load_settings().reminders.quiet_period() is None
    for bad in ("21h-8h", "24:00-08:00", "21:00", "08:00-08:00"):
        monkeypatch.setenv("PETCARE_REMINDERS__QUIET_HOURS", bad)
        with pytest.raises(SettingsError, match="PETCARE_REMINDERS__QUIET_HOURS"):
            load_settings()
