"""The SFTP destination against the real SFTP server: auth modes, permanent faults, atomic overwrite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.exports.destinations import SftpDestination, Writer
from petcare.config import SftpSettings
from tests.support.sftp import SftpFixture


async def upload(settings: SftpSettings, data: bytes, *, attempt: int = 1) -> str:
    async with SftpDestination(settings).session() as session:
        async with session.upload(
            "2025-10-01_2025-10-31/x", "invoices.csv", Writer("run-1", attempt)
        ) as target:
            await target.write(data[:5])
            await target.write(data[5:])
        return session.final_path("2025-10-01_2025-10-31/x", "invoices.csv")


def local_copy(sftp: SftpFixture, remote_path: str) -> Path:
    return sftp.root / remote_path.lstrip("/")


async def test_key_upload_then_password_overwrite_is_atomic(sftp_server: SftpFixture) -> None:
    path = await upload(sftp_server.settings(), b"id,total\n1,12.00\n")
    assert path == "/exports/2025-10-01_2025-10-31/x/invoices.csv"
    by_password = sftp_server.settings().model_copy(
        update={"private_key_path": None, "password": SecretStr(sftp_server.password)}
    )
    # A second attempt's upload replaces the file and clears the first attempt's leftovers.
    leftover = local_copy(sftp_server, path).with_name(".invoices.csv.run-1.1.part")
    await asyncio.to_thread(leftover.write_bytes, b"partial")
    await upload(by_password, b"id,total\n2,13.00\n", attempt=2)
    folder = local_copy(sftp_server, path).parent
    assert await asyncio.to_thread(local_copy(sftp_server, path).read_bytes) == b"id,total\n2,13.00\n"
    assert sorted(entry.name for entry in await asyncio.to_thread(lambda: list(folder.iterdir()))) == [
        "invoices.csv"
    ]


async def test_failed_upload_leaves_no_file_under_the_final_name(sftp_server: SftpFixture) -> None:
    destination = SftpDestination(sftp_server.settings())

    async def fail_halfway() -> None:
        async with (
            destination.session() as session,
            session.upload("p", "invoices.csv", Writer("run-1", 1)) as target,
        ):
            await target.write(b"half a file")
            raise RuntimeError("query failed")

    with pytest.raises(RuntimeError, match="query failed"):
        await fail_halfway()
    folder = sftp_server.root / "exports" / "p"
    assert await asyncio.to_thread(lambda: list(folder.iterdir())) == []


@pytest.mark.parametrize(
    ("change", "error_type", "fragment"),
    [
        ({"private_key_path": None, "password": SecretStr("wrong")}, "SftpAuthenticationFailed", "refused"),
        ({"username": "intruder"}, "SftpAuthenticationFailed", "'intruder'"),
        ({"known_hosts_path": None}, "SftpConfigurationError", "KNOWN_HOSTS_PATH is not set"),
        (
            {"known_hosts_path": Path("/nonexistent/known_hosts")},
            "SftpConfigurationError",
            "no readable file",
        ),
        ({"private_key_path": Path("/nonexistent/key")}, "SftpConfigurationError", "PRIVATE_KEY_PATH"),
    ],
)
async def test_permanent_faults_are_non_retryable(
    sftp_server: SftpFixture, change: dict[str, object], error_type: str, fragment: str
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await upload(sftp_server.settings().model_copy(update=change), b"data")
    assert raised.value.type == error_type
    assert raised.value.non_retryable
    assert fragment in raised.value.message
    assert "wrong" not in raised.value.message  # never the password


async def test_permission_denied_is_non_retryable(sftp_server: SftpFixture, tmp_path: Path) -> None:
    # The server refuses paths that lead out of its root (root ignores file modes, a jail does not).
    await asyncio.to_thread((sftp_server.root / "exports" / "outside").symlink_to, tmp_path)
    outside = sftp_server.settings().model_copy(update={"remote_dir": "/exports/outside"})
    with pytest.raises(ApplicationError) as raised:
        await upload(outside, b"data")
    assert raised.value.type == "SftpPermissionDenied"
    assert raised.value.non_retryable
    assert "/exports/outside/2025-10-01_2025-10-31/x" in raised.value.message


async def test_refused_connection_stays_retryable(sftp_server: SftpFixture) -> None:
    await sftp_server.server.stop()
    with pytest.raises(OSError, match=r"Connect call failed|refused"):
        await upload(sftp_server.settings(), b"data")
