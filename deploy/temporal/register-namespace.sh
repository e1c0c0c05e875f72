#!/bin/sh
# Creates the Temporal namespace if it is missing and registers the custom search attributes the
# jobs set (Job, StoreId, ExportId; see petcare/jobs.py). Idempotent: creating an attribute that
# exists with the same type succeeds. Needs only the `temporal` CLI and TEMPORAL_ADDRESS (plus
# TEMPORAL_TLS_* / TEMPORAL_API_KEY for a secured cluster). Temporal Cloud: see docs/production.md.
set -eu

: "${TEMPORAL_ADDRESS:?host:port of the Temporal frontend}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_RETENTION:-30d}"
ATTEMPTS="${SETUP_ATTEMPTS:-60}"

retry() {
    attempt=1
    until "$@"; do
        if [ "$attempt" -ge "$ATTEMPTS" ]; then
            echo "giving up after $attempt attempts: $*" >&2
            return 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
}

retry temporal operator cluster health
if ! temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
fi
# A new namespace reaches the frontend's cache a moment after it is created: retry until then.
# One attribute per call: the CLI (1.9.1) registers only the first of several --name flags.
for attribute in Job StoreId ExportId; do
    retry temporal operator search-attribute create --namespace "$NAMESPACE" \
        --name "$attribute" --type Keyword
done
echo "namespace $NAMESPACE: search attributes Job, StoreId, ExportId registered"
