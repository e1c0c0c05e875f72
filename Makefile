# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest clean bench-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "petcare-workers needs Python >= 3.11 (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(BIN)/petcare dev

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/pytest -q

# Optional Debian tools for the benchmarks only (not needed by `make test` or `make run`):
# OpenSSH's sshd, the SFTP server of bench/exports.py (in C, as a remote server would be; without
# it the bench falls back to the asyncssh server), and wrk, the load generator of bench/api.py.
# Idempotent: nothing is fetched when both programs are there already. Needs root (sudo otherwise).
# The bench starts its own sshd (own config, loopback, a free port) and stops it; the system `ssh`
# service is not needed (container images' policy-rc.d keeps apt from starting it).
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
bench-deps:
	@test -x /usr/sbin/sshd && command -v wrk >/dev/null && echo "sshd and wrk already installed" || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends openssh-server wrk; }

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
