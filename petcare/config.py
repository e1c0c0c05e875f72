"""Settings of every petcare process, read once at start from PETCARE_* variables and .env."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PETCARE_"
NESTED_DELIMITER = "__"


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: SecretStr | None = None
    # Still accepted during a rotation, until every caller has the new token (docs/production.md).
    previous_token: SecretStr | None = None
    # A backfill starting more runs than this is refused (422): one mistyped range must not queue
    # weeks of hourly jobs. At most 500: the server lists no more than 1000 matching times.
    backfill_max_runs: int = Field(default=48, ge=1, le=500)
    # Health counts a worker as polling while it polled the task queue this recently: about two
    # of the server's long polls (a minute each by default), so a worker between two polls counts
    # and one that stopped no longer does after ~2.5 minutes (the server keeps listing it longer).
    poller_max_age_seconds: float = Field(default=150.0, gt=0)

    @field_validator("token", "previous_token")
    @classmethod
    def _stripped(cls, value: SecretStr | None) -> SecretStr | None:
        # Presented tokens are stripped (api/middlewares.py), so a configured one must be too: a
        # secret file or `echo` leaves a trailing newline that would otherwise never match. A
        # blank token is no token (the API refuses to start without one: fail closed).
        if value is None:
            return None
        stripped = value.get_secret_value().strip()
        return SecretStr(stripped) if stripped else None

    def accepted_tokens(self) -> list[str]:
        return [secret.get_secret_value() for secret in (self.token, self.previous_token) if secret]


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    use_tls: bool = False
    from_address: str = "Petcare <reminders@petcare.local>"
    timeout_seconds: float = Field(default=30.0, gt=0)


class SmsSettings(BaseModel):
    provider: Literal["twilio", "log"] = "log"
    base_url: str = "https://api.twilio.com"
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    timeout_seconds: float = Field(default=15.0, gt=0)


class SftpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=2222, ge=1, le=65535)
    username: str = "petcare"
    private_key_path: Path | None = None
    password: SecretStr | None = None
    known_hosts_path: Path | None = None
    remote_dir: str = "/exports"


class ExportSettings(BaseModel):
    destination: Literal["sftp", "local"] = "sftp"
    local_dir: Path = Path(".data/exports")
    # Streaming: bytes handed to the destination per write, and how many such blocks may wait.
    block_bytes: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    queue_blocks: int = Field(default=4, ge=1, le=64)
    # At most; the COPY never runs past 90 % of its activity attempt's budget either.
    copy_timeout_seconds: float = Field(default=3600.0, gt=0)
    # Files uploaded at once per worker process: the size of the exports' own task queue worker
    # and of its database pool, so uploads held open for hours never take the connections (or
    # the activity slots) the short jobs need, and the SFTP server sees at most this many sessions.
    upload_concurrency: int = Field(default=4, ge=1, le=64)
    # No byte moved for this long fails the file's attempt (retried) instead of waiting for the
    # 2 h activity timeout; above the longest legitimate silence (PostgreSQL sorting before row one).
    stall_seconds: float = Field(default=600.0, gt=0)
    # Pending exports started by one call of the trigger route (the rest wait for the next call).
    trigger_limit: int = Field(default=500, ge=1, le=10_000)
    # Completion notices: a store's export goes to the store's email, an all-store export (or a
    # store without an email) to notify_email; notify_override sends every notice there instead.
    notify_email: str | None = None
    notify_override: bool = False
    # The monthly close (schedule `financial-export-monthly`): on this day of the month at this
    # hour (UTC), every store's previous local calendar month. From 12:00 UTC on the 1st every
    # zone (UTC-12 to UTC+14) is in the new month; earlier, stores west of UTC still are in the
    # old one, and would get the month before it. `monthly_enabled=false` removes the schedule.
    monthly_enabled: bool = True
    monthly_format: Literal["csv", "json"] = "csv"
    monthly_day: int = Field(default=1, ge=1, le=28)
    monthly_hour: int = Field(default=12, ge=0, le=23)

    @field_validator("notify_email")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class DevSettings(BaseModel):
    """Where `petcare dev` listens (always on 127.0.0.1) and keeps its state between runs."""

    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    sftp_port: int = Field(default=2222, ge=1, le=65535)
    data_dir: Path = Path(".data")


class ReminderSettings(BaseModel):
    """Appointment reminders: which appointments are due, and how hard to push the providers."""

    window_hours: float = Field(default=24.0, gt=0)
    min_lead_minutes: float = Field(default=60.0, ge=0)
    batch_size: int = Field(default=200, ge=1, le=5000)
    smtp_concurrency: int = Field(default=4, ge=1, le=100)
    sms_concurrency: int = Field(default=4, ge=1, le=100)
    sms_rate_per_second: float = Field(default=10.0, gt=0)
    preview_limit: int = Field(default=5, ge=0, le=100)
    # No SMS in these store-local hours ("HH:MM-HH:MM", may span midnight); empty: no quiet hours.
    quiet_hours: str = "21:00-08:00"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value.strip()

    def quiet_period(self) -> tuple[time, time] | None:
        """(start, end) in store-local wall-clock time, or None when there are no quiet hours."""
        return parse_quiet_hours(self.quiet_hours)


_QUIET_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """ "21:00-08:00" as (21:00, 08:00); "" as None. Raises ValueError on anything else."""
    text = value.strip()
    if not text:
        return None
    match = _QUIET_HOURS.fullmatch(text)
    if match is None:
        raise ValueError('must be "HH:MM-HH:MM" (24-hour, store-local, e.g. "21:00-08:00") or empty')
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    start, end = time(start_hour, start_minute), time(end_hour, end_minute)
    if start == end:
        raise ValueError("start and end are equal: leave it empty for no quiet hours")
    return start, end


class MetricsSettings(BaseModel):
    """Prometheus: the worker's own endpoint (Temporal SDK runtime); the API serves /metrics itself."""

    # host:port of the worker's /metrics; empty turns it off (e.g. two workers on one host).
    worker_bind_address: str = "127.0.0.1:9000"
    api_enabled: bool = True


class DatabaseSettings(BaseModel):
    # The main pool: every short statement of every job. The worker runs at most this many
    # activities at once besides the exports' uploads, which have a pool of their own
    # (PETCARE_EXPORT__UPLOAD_CONCURRENCY connections).
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    # Short statements; the long ones (stock aggregate, export COPY) get a timeout derived from
    # their activity's start-to-close budget instead (activities/heartbeat.py statement_timeout).
    command_timeout_seconds: float = Field(default=60.0, gt=0)
    # Waiting for a free connection fails the attempt (retryably, DatabaseBusy) after this long:
    # below the shortest activity budget (30 s), so the reason is reported rather than a timeout.
    acquire_timeout_seconds: float = Field(default=10.0, gt=0)


class Settings(BaseSettings):
    """Everything configurable; nested groups are set with PETCARE_<GROUP>__<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: SecretStr | None = None
    database: DatabaseSettings = DatabaseSettings()
    task_queue: str = Field(default="petcare-workers", min_length=1)
    api: ApiSettings = ApiSettings()
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()
    sftp: SftpSettings = SftpSettings()
    export: ExportSettings = ExportSettings()
    dev: DevSettings = DevSettings()
    reminders: ReminderSettings = ReminderSettings()
    metrics: MetricsSettings = MetricsSettings()
    ops_email: str | None = None
    # Failure alerts also go here as Slack-compatible JSON ({"text": ...}): a channel that does
    # not depend on SMTP. A secret (the URL is the credential), never logged.
    ops_webhook_url: SecretStr | None = None
    web_ui_url: str = "http://localhost:8233"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("ops_webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an https:// (or http://) URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise SettingsError(f"{ENV_PREFIX}DATABASE_URL is not set: it must be a postgresql:// URL")
        return self.database_url.get_secret_value()


class SettingsError(Exception):
    """Settings that cannot run, with a message naming the variable (never its secret value)."""


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable behind a validation error's location."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part) for part in location).upper()


def load_settings() -> Settings:
    """Build the settings, turning pydantic's error into one that names each bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"{env_name(detail['loc'])}: {detail['msg']}" for detail in error.errors(include_input=False)
        ]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
