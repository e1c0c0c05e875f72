"""The manifest: a JSON document listing each data file's rows, bytes and sha256, uploaded last.

Its presence says the export is complete; a consumer checks each file against it. A re-export
removes it before replacing the first data file (activities.py, `_before_replace`), so it never
stands beside files it does not describe. Shape:
  {"exportId", "storeId" (null: all stores), "periodStart", "periodEnd" (inclusive local days),
   "format", "generatedAt", "timezoneRule": "store-local calendar days",
   "files": [{"name", "kind", "rows", "bytes", "sha256"}]}
"""

from __future__ import annotations

import json

from petcare.models.exports import ManifestRequest

TIMEZONE_RULE = "store-local calendar days"


def manifest_bytes(request: ManifestRequest) -> bytes:
    plan = request.plan
    document = {
        "exportId": str(plan.export_id),
        "storeId": None if plan.store_id is None else str(plan.store_id),
        "periodStart": plan.period_start.isoformat(),
        "periodEnd": plan.period_end.isoformat(),
        "format": plan.format,
        "generatedAt": request.generated_at.isoformat(),
        "timezoneRule": TIMEZONE_RULE,
        "files": [
            {
                "name": file.name,
                "kind": file.kind,
                "rows": file.rows,
                "bytes": file.bytes,
                "sha256": file.sha256,
            }
            for file in request.files
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode()
