"""The accepted-events log: one JSON line per event, `{"receivedAt": ..., "event": {...}}`.

Lines are flushed and fsynced before the publisher gets its 200, so an accepted event is on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


def utc_now() -> str:
    """ISO 8601 UTC with microseconds and a `Z`, the way Event Grid writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fsync_dir(path: Path) -> None:
    """Make a new or renamed entry in `path` durable (POSIX needs the directory synced too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(path: Path) -> None:
    """A crash mid-append can leave a partial last line; it was never acknowledged, so cut it off
    rather than glue the next event onto it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


class EventLog:
    """Append-only JSONL of accepted events, safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(path)
        self._handle = path.open("ab")
        fsync_dir(path.parent)
        self._lock = threading.Lock()

    def append(self, events: list[dict[str, Any]]) -> str:
        """Write all `events` in one append and fsync; returns the receive time they were stamped with."""
        received_at = utc_now()
        lines = b"".join(
            json.dumps({"receivedAt": received_at, "event": event}, ensure_ascii=False).encode("utf-8") + b"\n"
            for event in events
        )
        with self._lock:
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return received_at

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the log (a torn last line is skipped)."""
    if not path.exists():
        return []
    records = []
    # Split on "\n" only: the log is written with ensure_ascii=False, so an event may hold U+2028 or U+0085,
    # which splitlines() would take for line ends.
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def follow_lines(path: Path, *, follow: bool, poll: float = 0.2) -> Iterator[str]:
    """Yield complete lines from the start of `path`; with `follow`, keep waiting for new ones
    (also for a log that does not exist yet)."""
    handle: TextIO | None = None
    pending = ""
    try:
        while True:
            if handle is None and path.exists():
                handle = path.open(encoding="utf-8")
            chunk = handle.read() if handle else ""
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                yield from (line for line in complete if line.strip())
                continue
            if not follow:
                return
            time.sleep(poll)
    finally:
        if handle:
            handle.close()
