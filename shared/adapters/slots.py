"""The slots of MAX_JOBS_IN_FLIGHT on Azure Table storage (azure-data-tables), in the active-index table.

One partition per endpoint (`inflight-<pool>`), one row per slot (`slot-0000`, ...): `holder` (a job key, or
empty) and `takenAt`. Rows are inserted insert-only and changed only ETag-conditionally, so of two instances
taking the same slot one wins and the other looks for another. The index listing reads `active-*` partitions
only, so these rows never look like jobs. (`tables.py` owns the ledger and the index; this module owns this
port, on the same SDK.)
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode

from shared.adapters.storage_errors import storage_errors_translated
from shared.adapters.tables import table_service
from shared.config import Settings
from shared.models import Slot

SLOT_PARTITION_PREFIX = "inflight-"
_ROW_PREFIX = "slot-"
_PRECONDITION_FAILED = 412


class TableSlots:
    @classmethod
    def from_settings(cls, settings: Settings) -> TableSlots:
        return cls(table_service(settings), table=settings.active_table)

    def __init__(self, service: TableServiceClient, *, table: str) -> None:
        self._service = service
        self._table = service.get_table_client(table)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._lock, contextlib.suppress(ResourceExistsError):
            self._service.create_table(self._table.table_name)
        self._ready = True

    @storage_errors_translated
    def slots(self, pool: str) -> list[Slot]:
        self._ensure_table()
        rows = self._table.query_entities("PartitionKey eq @pool", parameters={"pool": SLOT_PARTITION_PREFIX + pool})
        found = [_slot(row) for row in rows if str(row["RowKey"]).startswith(_ROW_PREFIX)]
        return sorted(found, key=lambda slot: slot.number)

    @storage_errors_translated
    def take(self, pool: str, slot: Slot, *, job_id: str, at: datetime) -> bool:
        self._ensure_table()
        return self._write(_row(pool, slot.number, holder=job_id, taken_at=at), slot.version)

    @storage_errors_translated
    def free(self, pool: str, slot: Slot) -> bool:
        if slot.version is None:
            return False
        return self._write(_row(pool, slot.number, holder="", taken_at=None), slot.version)

    def _write(self, row: dict[str, Any], version: str | None) -> bool:
        """Insert (no version) or replace at `version`; False when the row is not as it was read."""
        try:
            if version is None:
                self._table.create_entity(row)
            else:
                self._table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=version, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code == _PRECONDITION_FAILED:  # a 412 the SDK did not map
                return False
            raise
        return True


def _row(pool: str, number: int, *, holder: str, taken_at: datetime | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": SLOT_PARTITION_PREFIX + pool,
        "RowKey": f"{_ROW_PREFIX}{number:04d}",
        "holder": holder,
    }
    if taken_at is not None:
        row["takenAt"] = taken_at
    return row


def _slot(row: Any) -> Slot:
    taken_at = row.get("takenAt")
    if isinstance(taken_at, datetime) and taken_at.tzinfo is None:
        taken_at = taken_at.replace(tzinfo=UTC)
    return Slot(
        number=int(str(row["RowKey"]).removeprefix(_ROW_PREFIX)),
        holder=str(row.get("holder") or ""),
        taken_at=taken_at if isinstance(taken_at, datetime) else None,
        version=row.metadata.get("etag"),
    )
