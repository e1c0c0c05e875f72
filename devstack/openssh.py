"""A real OpenSSH `sshd` serving SFTP on loopback for the benchmarks: own config, keys and port."""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from devstack.child import ChildProcess
from devstack.ssh_keys import SftpLayout

SSHD = Path("/usr/sbin/sshd")  # Debian's openssh-server (`make bench-deps`); sshd wants an absolute path
READY_SECONDS = 10.0


def sshd_config(layout: SftpLayout, port: int) -> str:
    # Only this file counts (not /etc/ssh): loopback, our keys, in-process SFTP (no shell, no
    # sftp-server binary). StrictModes off because the files live in a temporary directory whose
    # parents we do not control; clients still verify the host key through known_hosts.
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {layout.host_key_path}",
            f"AuthorizedKeysFile {layout.authorized_keys_path}",
            "AuthenticationMethods publickey",
            "PermitRootLogin prohibit-password",  # root by key only: the benchmarks run as root here
            "StrictModes no",
            "UsePAM no",
            "PidFile none",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def write_config(layout: SftpLayout, port: int) -> Path:
    config = layout.base / "sshd_config"
    config.write_text(sshd_config(layout, port), encoding="utf-8")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory, needed as root
    return config


def log_text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


@asynccontextmanager
async def openssh_sftp(layout: SftpLayout, port: int) -> AsyncIterator[str]:
    """Run sshd over `layout` (keys and trust files already prepared); yields the login name.

    No chroot (OpenSSH refuses one under a world-writable /tmp): remote paths are this machine's,
    so clients reach `layout.root` by its absolute path.
    """
    config, log = write_config(layout, port), layout.base / "sshd.log"
    # -D: stays our child in the foreground; -e: its log to stderr, which goes to `log`.
    sshd = ChildProcess("sshd", [str(SSHD), "-D", "-e", "-f", str(config)], log_file=log)
    await sshd.start()
    try:
        await wait_listening(sshd, port, log)
        yield getpass.getuser()  # a root sshd logs in anyone; one run as a user only that user
    finally:
        await sshd.stop()  # its whole process group: the per-connection sshd children too


async def wait_listening(sshd: ChildProcess, port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if sshd.returncode is not None:
            raise RuntimeError(f"sshd exited ({sshd.returncode}): {log_text(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"sshd not listening on port {port} after {READY_SECONDS:.0f} s: {log_text(log)}")
