"""The one way every petcare process connects to Temporal."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

# The temporal CLI's own default, used when neither TEMPORAL_ADDRESS nor a profile names one.
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"


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
    return await Client.connect(
        target_host,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        lazy=lazy,
        **config,  # type: ignore[arg-type]
    )
