"""Loopback ports: the dev stack checks, before anything starts, that every port it needs is free;
tests and benchmarks take free ones for their own servers."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from petcare.config import SettingsError


@dataclass(frozen=True)
class PortNeed:
    host: str
    port: int
    purpose: str  # "Temporal Web UI"
    setting: str  # the variable that moves it: "PETCARE_DEV__TEMPORAL_UI_PORT"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on (bound together by us, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_port() -> int:
    """A loopback port nobody listens on, for a server to take (or a client to find closed)."""
    return free_ports(1)[0]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same option the servers use, so a port in TIME_WAIT from our last run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_ports_free(needs: list[PortNeed]) -> None:
    """Raise a SettingsError naming each taken port and the variable that moves it."""
    problems: list[str] = []
    seen: dict[int, PortNeed] = {}
    for need in needs:
        if need.port in seen:
            problems.append(
                f"port {need.port} is configured twice: {need.purpose} ({need.setting}) "
                f"and {seen[need.port].purpose} ({seen[need.port].setting})"
            )
        elif not port_is_free(need.host, need.port):
            problems.append(
                f"port {need.port} on {need.host} ({need.purpose}) is already in use: "
                f"stop what uses it or set {need.setting} to another port"
            )
        seen[need.port] = need
    if problems:
        raise SettingsError("cannot start the dev stack:\n  " + "\n  ".join(problems))
