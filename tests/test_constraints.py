"""constraints.txt: every dependency pinned, the pins true to what is installed, and used everywhere."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = "petcare-workers"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        assert separator, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = version
    return pins


def _declared() -> set[str]:
    """Every requirement of the project: runtime, dev and test extras (the self-reference excluded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    names: set[str] = {canonicalize_name(Requirement(line).name) for line in lines}
    return names - {canonicalize_name(PROJECT)}


def test_every_declared_dependency_is_pinned() -> None:
    missing = _declared() - _pins().keys()
    assert not missing, f"not in constraints.txt (run `make constraints`): {sorted(missing)}"


def test_pins_match_what_is_installed_and_cover_transitive_dependencies() -> None:
    pins = _pins()
    wrong = {
        name: (version, installed)
        for name, version in pins.items()
        if (installed := metadata.version(name)) != version
    }
    assert not wrong, f"constraints.txt disagrees with the venv (pinned, installed): {wrong}"
    # Everything the project pulls in, directly or not, is pinned too: walk the installed tree,
    # following only the extras that are asked for (the project's own dev and test, and any a
    # requirement names).
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(PROJECT, frozenset({"dev", "test"}))]
    while todo:
        name, extras = todo.pop()
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in {"", *extras}):
                required = canonicalize_name(requirement.name)
                if required not in seen:
                    seen.add(required)
                    todo.append((required, frozenset(requirement.extras)))
    unpinned = seen - pins.keys() - {canonicalize_name(PROJECT)}
    assert not unpinned, f"installed but not pinned (run `make constraints`): {sorted(unpinned)}"


def test_makefile_ci_and_dockerfile_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install[^\n]*", makefile)
    assert installs, "the Makefile installs nothing?"
    assert all("-c constraints.txt" in line for line in installs), installs
    assert "-m pip install" not in makefile.replace("PIP := $(BIN)/python -m pip install", "")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"pip install -c constraints.txt -r requirements.txt", dockerfile)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
