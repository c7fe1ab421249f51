"""Pending deliveries on disk: one JSON file per (event, subscription), replaced atomically after
every attempt and removed once delivered or dead-lettered, so a restart resumes where it stopped."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from localdev.eventgrid.eventlog import fsync_dir

log = logging.getLogger("localdev.eventgrid")


@dataclass
class PendingDelivery:
    id: str
    subscription: str
    event: dict[str, Any]
    publish_time: str
    published_at: float
    expires_at: float
    next_attempt_at: float
    attempts: int = 0
    last_outcome: str | None = None
    last_http_status: int | None = None
    last_attempt_time: str | None = None

    @property
    def event_id(self) -> str:
        return str(self.event.get("id", ""))

    @property
    def event_type(self) -> str:
        return str(self.event.get("type") or self.event.get("eventType") or "")

    def summary(self, state: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription": self.subscription,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "state": state,
            "deliveryAttempts": self.attempts,
            "lastDeliveryOutcome": self.last_outcome,
            "lastHttpStatusCode": self.last_http_status,
            "lastDeliveryAttemptTime": self.last_attempt_time,
            "publishTime": self.publish_time,
            "nextAttemptAt": self.next_attempt_at,
        }


def new_delivery_id() -> str:
    return uuid.uuid4().hex


def write_json_atomically(path: Path, payload: object) -> None:
    """Write, fsync, rename over, fsync the directory: the file is either old or new, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


class PendingStore:
    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "pending"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, delivery_id: str) -> Path:
        return self.directory / f"{delivery_id}.json"

    def save(self, delivery: PendingDelivery) -> None:
        write_json_atomically(self._path(delivery.id), asdict(delivery))

    def remove(self, delivery_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(delivery_id).unlink()
        fsync_dir(self.directory)

    def load(self) -> list[PendingDelivery]:
        """Every pending delivery left by an earlier run; leftovers of interrupted writes are removed."""
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        deliveries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                deliveries.append(PendingDelivery(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.error("unreadable pending delivery %s kept aside: %s", path.name, exc)
                path.rename(path.with_suffix(".corrupt"))
        return deliveries
