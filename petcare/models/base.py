"""The camelCase base model of every JSON shape outside Python: API bodies, manifest, files column."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Snake case in Python, camelCase in JSON; both accepted on input."""

    # Every field is always sent, so the schema says so; extra fields stay allowed so that
    # adding one later does not break clients that validate answers.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, json_schema_serialization_defaults_required=True
    )
