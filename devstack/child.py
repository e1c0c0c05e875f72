"""A child process of `petcare dev`: started in its own process group, stopped SIGTERM-then-SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ChildProcess:
    """One program the dev stack owns; output goes to `log_file` or, if None, to our own."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_file = log_file
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def start(self) -> None:
        output = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        try:
            # A process group of its own: Ctrl-C in the terminal reaches `petcare dev` only, which
            # then stops the children in order (API and worker before the servers they use).
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT if output is not None else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()  # the child has its own descriptor now
        log.debug("started %s (pid %s)", self.name, self._process.pid if self._process else None)

    async def wait(self) -> int:
        assert self._process is not None, "start() first"
        return await self._process.wait()

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole group after `timeout`; returns the exit code."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout)
            except TimeoutError:
                log.warning("%s did not stop within %.0f s after SIGTERM: killing it", self.name, timeout)
                self._signal_group(signal.SIGKILL)
                await self._process.wait()
        # Anything the child itself started and left behind goes with it.
        self._signal_group(signal.SIGKILL)
        return self._process.returncode

    def _signal_group(self, signum: signal.Signals) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)
