"""The one way every petcare process connects to Temporal, and checks the namespace fits the jobs.

Failures an operator fixes (the CLI prints them in one line, the API answers 503):

    TemporalUnreachable         no answer from the frontend (down, wrong address, TLS mismatch)
    TemporalConfigurationError  Temporal answered, but the namespace does not fit
      SearchAttributesMissing   the jobs' search attributes are missing and could not be added

An `RPCError` of a refusal kind (`is_configuration_refusal`) is the same fault met mid-call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pydantic
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.plugin import SimplePlugin
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from petcare import visibility
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES
from petcare.metrics import BusinessMetricsInterceptor
from workflows.alerts import OpsAlertInterceptor

log = logging.getLogger(__name__)

# The temporal CLI's own default, used when neither TEMPORAL_ADDRESS nor a profile names one.
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
# The operator calls at start: a healthy server answers in milliseconds.
OPERATOR_CALL_TIMEOUT = timedelta(seconds=10)

# The type names `temporal operator search-attribute create --type` and `--search-attribute` accept.
CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}

_UNREACHABLE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)
# What Temporal answers when the deployment does not fit the namespace: an unregistered search
# attribute (INVALID_ARGUMENT), an inactive namespace (FAILED_PRECONDITION), a key or certificate
# without the rights (PERMISSION_DENIED, UNAUTHENTICATED). NOT_FOUND only for the namespace itself.
_REFUSAL_CODES = frozenset(
    {
        RPCStatusCode.INVALID_ARGUMENT,
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.PERMISSION_DENIED,
        RPCStatusCode.UNAUTHENTICATED,
    }
)


class TemporalUnreachable(Exception):
    """No answer from Temporal at the configured address."""


class TemporalConfigurationError(Exception):
    """Temporal answered, but the namespace does not fit the jobs; the message says what to do."""


class SearchAttributesMissing(TemporalConfigurationError):
    """The jobs' custom search attributes are missing and the server refused to add them."""

    def __init__(self, namespace: str, missing: Sequence[SearchAttributeKey[Any]], refusal: str) -> None:
        names = ", ".join(key.name for key in missing)
        commands = "; ".join(create_command(namespace, key) for key in missing)
        super().__init__(
            f"Temporal namespace {namespace!r} lacks the search attributes {names} and refused to "
            f"register them ({refusal}); create them with: {commands} "
            "(on Temporal Cloud: the namespace's settings or tcld namespace search-attributes add)"
        )
        self.missing = [key.name for key in missing]


def create_command(namespace: str, key: SearchAttributeKey[Any]) -> str:
    # One --name per command: CLI 1.9.1 registers only the first of several (docs/production.md).
    return (
        f"temporal operator search-attribute create --namespace {namespace} "
        f"--name {key.name} --type {CLI_TYPE_NAMES[key.indexed_value_type]}"
    )


def is_unreachable(error: BaseException) -> bool:
    """True for errors that mean "cannot talk to Temporal" rather than "Temporal said no"."""
    if isinstance(error, TimeoutError | ConnectionError | TemporalUnreachable):
        return True
    if isinstance(error, RPCError):
        return error.status in _UNREACHABLE_CODES
    # A lazy client that cannot connect raises this from its first call.
    return isinstance(error, RuntimeError) and "client connect" in str(error)


def is_namespace_not_found(error: BaseException) -> bool:
    if not isinstance(error, RPCError) or error.status != RPCStatusCode.NOT_FOUND:
        return False
    details = error.grpc_status.details
    return any(detail.type_url.endswith("NamespaceNotFoundFailure") for detail in details)


def is_configuration_refusal(error: BaseException) -> bool:
    """True when Temporal refused the call because of how the deployment is set up, not the input."""
    if isinstance(error, TemporalConfigurationError):
        return True
    if not isinstance(error, RPCError):
        return False
    return error.status in _REFUSAL_CODES or is_namespace_not_found(error)


class PetcarePlugin(SimplePlugin):
    """How every Temporal client, worker and replayer of the project is configured, in one place
    (the SDK's plugin mechanism): the pydantic data converter; on workers and replayers, one
    alert email per failed job run and the business counters from activity results; and bad
    input (a pydantic ValidationError) failing the run with a clear error instead of retrying
    its workflow task forever. A replay of recorded histories therefore runs exactly what a
    worker runs."""

    def __init__(self) -> None:
        super().__init__(
            "petcare",
            data_converter=pydantic_data_converter,
            interceptors=[OpsAlertInterceptor(), BusinessMetricsInterceptor()],
            workflow_failure_exception_types=[pydantic.ValidationError],
        )


def plugins_for_worker(client: Client) -> list[PetcarePlugin]:
    """What a worker on `client` adds: the plugin, unless the client carries it already (those
    from connect_temporal do, and a worker takes its client's plugins itself)."""
    carried = any(isinstance(plugin, PetcarePlugin) for plugin in client.config()["plugins"])
    return [] if carried else [PetcarePlugin()]


async def connect_temporal(
    *, env: Mapping[str, str] | None = None, runtime: Runtime | None = None, lazy: bool = False
) -> Client:
    """Connect with the temporal CLI's configuration (TEMPORAL_* variables, TOML profiles).

    `env` replaces the process environment (tests point at their own server this way); `lazy`
    defers the connection to the first call, so the API can start (and report 503) while
    Temporal is down.
    """
    config = dict(ClientConfig.load_client_connect_config(override_env_vars=env))
    target_host = str(config.pop("target_host", DEFAULT_TEMPORAL_ADDRESS))
    try:
        return await Client.connect(
            target_host,
            plugins=[PetcarePlugin()],
            runtime=runtime,
            lazy=lazy,
            **config,  # type: ignore[arg-type]
        )
    except RuntimeError as error:  # the SDK's "Failed client connect: ..."
        raise TemporalUnreachable(
            f"cannot connect to Temporal at {target_host} (TEMPORAL_ADDRESS, TEMPORAL_TLS_*): {error}"
        ) from error


async def ensure_search_attributes(
    client: Client, keys: Sequence[SearchAttributeKey[Any]] = CUSTOM_SEARCH_ATTRIBUTES
) -> list[str]:
    """Register the attributes the namespace lacks (a self-hosted or dev server allows it); the
    names added. Raises SearchAttributesMissing where the server refuses (e.g. Temporal Cloud),
    TemporalConfigurationError when the namespace does not exist or holds a name with another type.
    """
    namespace = client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace), timeout=OPERATOR_CALL_TIMEOUT
        )
    except RPCError as error:
        if is_namespace_not_found(error):
            raise TemporalConfigurationError(
                f"Temporal namespace {namespace!r} does not exist: create it "
                f"(temporal operator namespace create --namespace {namespace}) or set TEMPORAL_NAMESPACE"
            ) from error
        if is_unreachable(error):
            raise
        # Some servers refuse even the listing to a client without admin rights: nothing can be
        # checked, and a missing attribute fails the first start that sets it, naming it.
        log.warning("cannot check the search attributes of namespace %s: %s", namespace, error.message)
        return []
    registered = listed.custom_attributes
    mistyped = [
        f"{key.name} is {_type_name(registered[key.name])}, not {CLI_TYPE_NAMES[key.indexed_value_type]}"
        for key in keys
        if key.name in registered and registered[key.name] != int(key.indexed_value_type)
    ]
    if mistyped:
        raise TemporalConfigurationError(
            f"Temporal namespace {namespace!r} has search attributes of the wrong type: {'; '.join(mistyped)}"
        )
    missing = [key for key in keys if key.name not in registered]
    if not missing:
        return []
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={
            key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in missing
        },
    )
    try:
        await client.operator_service.add_search_attributes(request, timeout=OPERATOR_CALL_TIMEOUT)
    except RPCError as error:
        if is_unreachable(error):
            raise
        raise SearchAttributesMissing(namespace, missing, error.message) from error
    added = [key.name for key in missing]
    log.info("registered the search attributes %s in namespace %s", ", ".join(added), namespace)
    await _until_usable(client, added)
    return added


async def _until_usable(client: Client, names: Sequence[str], timeout: float = 90.0) -> None:
    """Until the frontend accepts the new names. The dev server uses them at once; a cluster's
    other frontends learn them on their cache refresh (up to a minute), and a schedule applied
    before then would be refused. A count query is the cheapest call that checks the names."""
    query = visibility.all_of(*(visibility.equals(name, "petcare-registration-check") for name in names))
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.count_workflows(query, rpc_timeout=OPERATOR_CALL_TIMEOUT)
            return
        except RPCError as error:
            if error.status != RPCStatusCode.INVALID_ARGUMENT or time.monotonic() > deadline:
                raise
        log.info("waiting for Temporal to use the new search attributes")
        await asyncio.sleep(1.0)


def _type_name(value: int) -> str:
    try:
        return CLI_TYPE_NAMES[SearchAttributeIndexedValueType(value)]
    except (ValueError, KeyError):
        return f"type {value}"
