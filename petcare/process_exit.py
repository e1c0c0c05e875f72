"""Leaving a process that used a Temporal client, without the interpreter's teardown.

The SDK's native runtime keeps threads that can call into Python while the interpreter tears
down; the process then aborts ("PyGILState_Release: thread state ... must be current when
releasing", SIGABRT or SIGSEGV; temporalio/sdk-python#300). Measured here: about one exit in
thirty of `petcare schedules list`, so a `schedules apply` that worked could report a crash.
Once a command's work is done and its output flushed, nothing in the teardown is needed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_without_teardown(code: int) -> NoReturn:
    """Flush the logs and standard streams, then end the process with `code` at once."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
