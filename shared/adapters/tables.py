"""The job ledger on Azure Table storage (azure-data-tables).

`jobs`: one row per input blob version (PartitionKey = job key, RowKey = "job"), created
insert-only and changed only by ETag-conditional REPLACE. `activejobs`: one row per
unfinished job in a single partition, so a poll tick reads O(active), never O(history).
This module is the only one that imports azure-data-tables.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from shared.adapters.identity import storage_client
from shared.adapters.storage_errors import storage_errors_translated
from shared.config import Settings
from shared.core.completion import final_event_type
from shared.core.naming import HEALTH_PROBE_PREFIX
from shared.errors import BlobChanged, BlobMissing, JobExists, ResourceMissing, StaleJob
from shared.models import REMOTE_DONE, Job, JobState, Stage
from shared.ports import ActiveEntry

ROW = "job"
ACTIVE_PARTITION = "active"
_TUPLE_FIELDS = {"events_pending", "events_published"}
_INT64_FIELDS = {"size", "rows_in", "rows_out", "rows_missing"}
_SKIP = {"job_id", "version"}
_PRECONDITION_FAILED = 412


class TableJobStore:
    @classmethod
    def from_settings(cls, settings: Settings) -> TableJobStore:
        service = storage_client(
            settings.storage,
            settings.storage.table_url,
            from_connection_string=TableServiceClient.from_connection_string,
            from_url=lambda url, credential: TableServiceClient(url, credential=credential),
            client_id=settings.client_id,
        )
        return cls(service, jobs_table=settings.jobs_table, active_table=settings.active_table)

    def __init__(self, service: TableServiceClient, *, jobs_table: str, active_table: str) -> None:
        self._service = service
        self.jobs_table = jobs_table
        self._jobs = service.get_table_client(jobs_table)
        self._active = service.get_table_client(active_table)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            for table in (self._jobs, self._active):
                with contextlib.suppress(ResourceExistsError):
                    self._service.create_table(table.table_name)
            self._ready = True

    @storage_errors_translated
    def create(self, job: Job) -> Job:
        self._ensure_tables()
        try:
            metadata = self._jobs.create_entity(to_entity(job))
        except ResourceExistsError:
            raise JobExists(f"job {job.job_id} already exists") from None
        return _with_version(job, metadata)

    @storage_errors_translated
    def get(self, job_id: str) -> Job | None:
        self._ensure_tables()
        try:
            entity = self._jobs.get_entity(job_id, ROW)
        except ResourceNotFoundError:
            return None
        return from_entity(entity)

    @storage_errors_translated
    def update(self, job: Job) -> Job:
        if job.version is None:
            raise ValueError("update needs the version the job was read at")
        try:
            metadata = self._jobs.update_entity(
                to_entity(job),
                mode=UpdateMode.REPLACE,
                etag=job.version,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise StaleJob(f"job {job.job_id} changed since it was read") from None
        except HttpResponseError as exc:
            # The SDK maps a 412 to ResourceModifiedError only for error codes it knows; others arrive plain.
            if exc.status_code == _PRECONDITION_FAILED:
                raise StaleJob(f"job {job.job_id} changed since it was read") from None
            raise
        return _with_version(job, metadata)

    @storage_errors_translated
    def mark_active(self, job: Job) -> None:
        self._ensure_tables()
        entity = {"PartitionKey": ACTIVE_PARTITION, "RowKey": job.job_id}
        self._active.upsert_entity(entity, mode=UpdateMode.REPLACE)

    @storage_errors_translated
    def unmark_active(self, job_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._active.delete_entity(ACTIVE_PARTITION, job_id)

    @storage_errors_translated
    def active(self) -> Iterator[ActiveEntry]:
        """Read the whole index before returning, so paging errors surface here as TransientError."""
        self._ensure_tables()
        # Timestamp must be selected by name: without it the poller could not tell a row still being
        # created from an orphan, and would keep orphans forever.
        query = self._active.query_entities(
            "PartitionKey eq @pk", parameters={"pk": ACTIVE_PARTITION}, select=["RowKey", "Timestamp"]
        )
        entries = [
            ActiveEntry(entity["RowKey"], entity.metadata.get("timestamp") or datetime.now(UTC)) for entity in query
        ]
        return iter(entries)

    @storage_errors_translated
    def probe_table(self, table: str) -> None:
        client = self._service.get_table_client(table)
        probe = {"PartitionKey": HEALTH_PROBE_PREFIX, "RowKey": uuid.uuid4().hex}
        try:
            client.upsert_entity(probe)
        except ResourceNotFoundError:
            raise ResourceMissing(f"table {table} does not exist") from None
        client.delete_entity(probe["PartitionKey"], probe["RowKey"])

    @storage_errors_translated
    def query(self, *, state: JobState | None, limit: int) -> list[Job]:
        self._ensure_tables()
        if state is None:
            pager = self._jobs.query_entities("RowKey eq @rk", parameters={"rk": ROW}, results_per_page=limit)
        else:
            pager = self._jobs.query_entities(
                "RowKey eq @rk and state eq @state",
                parameters={"rk": ROW, "state": state.value},
                results_per_page=limit,
            )
        jobs: list[Job] = []
        for entity in pager:
            jobs.append(from_entity(entity))
            if len(jobs) >= limit:
                break
        return jobs


def to_entity(job: Job) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": job.job_id, "RowKey": ROW}
    for field in fields(job):
        if field.name in _SKIP:
            continue
        value = getattr(job, field.name)
        if value is None:
            continue
        name = _column(field.name)
        if field.name in _TUPLE_FIELDS:
            entity[name] = json.dumps(list(value))
        elif field.name in _INT64_FIELDS:
            entity[name] = EntityProperty(int(value), EdmType.INT64)
        elif isinstance(value, JobState | Stage):
            entity[name] = value.value
        else:
            entity[name] = value
    return entity


def from_entity(entity: Any) -> Job:
    values: dict[str, Any] = {"job_id": entity["PartitionKey"]}
    for field in fields(Job):
        if field.name in _SKIP:
            continue
        name = _column(field.name)
        if name not in entity:
            continue
        raw = entity[name]
        if isinstance(raw, EntityProperty):
            raw = raw.value
        if field.name in _TUPLE_FIELDS:
            raw = tuple(json.loads(raw))
        elif field.name == "state":
            raw = JobState(raw)
        elif field.name == "stage":
            raw = Stage(raw)
        elif isinstance(raw, datetime) and raw.tzinfo is None:
            raw = raw.replace(tzinfo=UTC)
        values[field.name] = raw
    values["version"] = entity.metadata.get("etag")
    if "stage" not in values:
        values["stage"] = _stage_of_older_row(entity, values)
    return Job(**values)


def _stage_of_older_row(entity: Any, values: dict[str, Any]) -> Stage:
    """Rows written before the stage column existed said the same thing with flags. Some older versions
    queued the final event before filing, so a queued event alone never means Filed: only a Completed
    state, a recorded move, or an input that was not ours to move (nothing to file) does."""
    state: JobState = values["state"]
    if entity.get("finalized"):
        return Stage.DONE
    if state not in REMOTE_DONE:
        return Stage.WORKING
    final_queued = final_event_type(state).value in values.get("events_pending", ())
    nothing_to_move = final_queued and values.get("error_code") in {BlobChanged.code, BlobMissing.code}
    if state == JobState.COMPLETED or values.get("archive_container") or nothing_to_move:
        return Stage.FILED
    return Stage.ENDED


def _column(name: str) -> str:
    """snake_case field -> camelCase column (readable in Storage Explorer)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _with_version(job: Job, metadata: Any) -> Job:
    return replace(job, version=metadata.get("etag"))
