"""Keys and trust files of the local SFTP server: generated once, kept, and verifiable by clients."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

KEY_ALGORITHM = "ssh-ed25519"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def ensure_private_key(path: Path, *, comment: str) -> asyncssh.SSHKey:
    """The key stored at `path`, generated (with `path.pub` beside it) the first time."""
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key(KEY_ALGORITHM, comment=comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: a private key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key


def known_hosts_line(hosts: list[str], port: int, host_key: asyncssh.SSHKey) -> str:
    """An OpenSSH known_hosts line (`[host]:port` form off port 22) trusting `host_key`."""
    patterns = [host if port == 22 else f"[{host}]:{port}" for host in hosts]
    public = host_key.export_public_key().decode().split()
    return f"{','.join(patterns)} {public[0]} {public[1]}\n"


def write_known_hosts(path: Path, host: str, port: int, host_key: asyncssh.SSHKey) -> None:
    # Clients may say "localhost" or "127.0.0.1" for the same loopback server.
    hosts = list(LOOPBACK_NAMES) if host in LOOPBACK_NAMES else [host]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(known_hosts_line(hosts, port, host_key), encoding="utf-8")


@dataclass(frozen=True)
class SftpLayout:
    """Files of one SFTP server under `base`: its root, host key, client key and trust files."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def host_key_path(self) -> Path:
        return self.base / "ssh_host_ed25519_key"

    @property
    def client_key_path(self) -> Path:
        return self.base / "client_ed25519_key"

    @property
    def authorized_keys_path(self) -> Path:
        return self.base / "authorized_keys"

    @property
    def known_hosts_path(self) -> Path:
        return self.base / "known_hosts"

    def prepare(self, host: str, port: int, *, remote_dirs: tuple[str, ...] = ()) -> None:
        """Create what is missing, keep the keys that exist, and rewrite the trust files.

        known_hosts is rewritten because the port may differ from the previous run; the keys
        themselves never change, so a client that trusted the server once keeps trusting it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for remote_dir in remote_dirs:
            (self.root / remote_dir.strip("/")).mkdir(parents=True, exist_ok=True)
        host_key = ensure_private_key(self.host_key_path, comment="petcare-sftp-host")
        client_key = ensure_private_key(self.client_key_path, comment="petcare-sftp-client")
        self.authorized_keys_path.write_bytes(client_key.export_public_key())
        write_known_hosts(self.known_hosts_path, host, port, host_key)
