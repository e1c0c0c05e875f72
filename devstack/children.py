"""What the dev stack's worker and API processes are started with: command, token and environment."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack.ssh_keys import SftpLayout
from petcare.config import Settings

LOOPBACK = "127.0.0.1"


def petcare_command(*args: str) -> list[str]:
    """The `petcare` console script of this very interpreter (never another one on PATH)."""
    script = Path(sys.executable).parent / "petcare"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "petcare", *args]


def api_token(settings: Settings, token_file: Path) -> tuple[str, Path | None]:
    """PETCARE_API__TOKEN if set, else a token generated once and kept in `token_file` (0600)."""
    if settings.api.token is not None:
        return settings.api.token.get_secret_value(), None
    if token_file.exists():
        return token_file.read_text(encoding="utf-8").strip(), token_file
    token = secrets.token_urlsafe(32)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token, token_file


@dataclass(frozen=True)
class DevEndpoints:
    """Where the stack's own services ended up."""

    database_url: str
    temporal_address: str
    smtp_port: int
    sftp_port: int
    sftp: SftpLayout
    sftp_username: str
    sftp_remote_dir: str
    api_token: str
    web_ui_url: str


def child_environment(endpoints: DevEndpoints) -> dict[str, str]:
    """Our environment, pointed at the stack's services (and at no other Temporal)."""
    # A developer's TEMPORAL_* variables or profile (API key, TLS, cloud address) would send the
    # children to another server: the dev stack's children only ever talk to its own.
    env = {name: value for name, value in os.environ.items() if not name.startswith("TEMPORAL_")}
    env.update(
        {
            "TEMPORAL_ADDRESS": endpoints.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_CONFIG_FILE": os.devnull,
            "PETCARE_DATABASE_URL": endpoints.database_url,
            "PETCARE_SMTP__HOST": LOOPBACK,
            "PETCARE_SMTP__PORT": str(endpoints.smtp_port),
            "PETCARE_SMTP__STARTTLS": "false",
            "PETCARE_SMTP__USE_TLS": "false",
            "PETCARE_SFTP__HOST": LOOPBACK,
            "PETCARE_SFTP__PORT": str(endpoints.sftp_port),
            "PETCARE_SFTP__USERNAME": endpoints.sftp_username,
            "PETCARE_SFTP__PRIVATE_KEY_PATH": str(endpoints.sftp.client_key_path),
            "PETCARE_SFTP__KNOWN_HOSTS_PATH": str(endpoints.sftp.known_hosts_path),
            "PETCARE_SFTP__REMOTE_DIR": endpoints.sftp_remote_dir,
            "PETCARE_EXPORT__DESTINATION": "sftp",
            "PETCARE_API__TOKEN": endpoints.api_token,
            "PETCARE_WEB_UI_URL": endpoints.web_ui_url,
        }
    )
    return env
