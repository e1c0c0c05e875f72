"""Recorded workflow histories (JSON) and their index: which workflow id and scenario each file is.

`history.to_json()` keeps the events only; the replayer also needs the run's workflow id (a
parent's child ids are built from it), so `index.json` keeps it next to the file name.
Re-record with `.venv/bin/pytest tests/histories/record.py` (see docs/versioning.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from temporalio.client import WorkflowHistory

HISTORIES = Path(__file__).resolve().parent
INDEX = HISTORIES / "index.json"


@dataclass(frozen=True)
class RecordedHistory:
    file: str  # <workflow type>-<scenario>.json in this directory
    workflow_type: str
    workflow_id: str
    scenario: str  # what the run did, in a few words
    outcome: str  # how the recorded run ended: completed, continued-as-new, failed

    def history(self) -> WorkflowHistory:
        return WorkflowHistory.from_json(self.workflow_id, (HISTORIES / self.file).read_text())


def recorded_histories() -> list[RecordedHistory]:
    entries = json.loads(INDEX.read_text()) if INDEX.exists() else []
    return [RecordedHistory(**entry) for entry in entries]


def save_history(entry: RecordedHistory, history: WorkflowHistory) -> None:
    """Write one history file and its index entry (replacing any earlier recording of it)."""
    (HISTORIES / entry.file).write_text(history.to_json() + "\n")
    entries = {known.file: known for known in recorded_histories()} | {entry.file: entry}
    text = json.dumps([asdict(entries[name]) for name in sorted(entries)], indent=2)
    INDEX.write_text(text + "\n")
