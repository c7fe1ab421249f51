"""Job records in memory, mirrored to `<state-dir>/jobs/<name>.json` so jobs survive a restart."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"Completed", "Failed", "Canceled"})


@dataclass
class JobRecord:
    name: str
    seq: int
    resource: dict[str, Any]
    deployment: str
    input_type: str
    input_uri: str
    input_container: str
    input_path: str
    output_container: str
    output_path: str
    output_uri: str
    settings: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    uploaded: bool = False

    @property
    def status(self) -> str:
        return str(self.resource["properties"]["status"])


class JobStore:
    def __init__(self, state_dir: Path | None) -> None:
        self._dir = state_dir / "jobs" if state_dir else None
        self._jobs: dict[str, JobRecord] = {}
        self.lock = threading.RLock()
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> list[JobRecord]:
        """Read the persisted jobs (skipping unreadable files) into memory."""
        if not self._dir:
            return []
        for path in sorted(self._dir.glob("*.json")):
            try:
                record = JobRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            self._jobs[record.name] = record
        return list(self._jobs.values())

    def next_seq(self) -> int:
        with self.lock:
            return max((job.seq for job in self._jobs.values()), default=0) + 1

    def add(self, record: JobRecord) -> bool:
        """False when the name is taken (the caller answers 409)."""
        with self.lock:
            if record.name in self._jobs:
                return False
            self._jobs[record.name] = record
            self.save(record)
            return True

    def get(self, name: str) -> JobRecord | None:
        with self.lock:
            return self._jobs.get(name)

    def all(self) -> list[JobRecord]:
        with self.lock:
            return sorted(self._jobs.values(), key=lambda job: job.seq, reverse=True)

    def save(self, record: JobRecord) -> None:
        if not self._dir:
            return
        with self.lock:
            text = json.dumps(asdict(record), indent=1)
            tmp = self._dir / f".{record.name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self._dir / f"{record.name}.json")
