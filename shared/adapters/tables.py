"""The job ledger on Azure Table storage (azure-data-tables).

`jobs`: one row per input blob version (PartitionKey = job key, RowKey = "job"), created
insert-only and changed only by ETag-conditional REPLACE. `activejobs`: one row per
unfinished job in a single partition, so a poll tick reads O(active), never O(history).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from shared.adapters.storage_errors import transient_on_outage
from shared.errors import JobExists, StaleJob
from shared.models import Job, JobState
from shared.ports import ActiveEntry

ROW = "job"
ACTIVE_PARTITION = "active"
_TUPLE_FIELDS = {"events_pending", "events_published"}
_INT64_FIELDS = {"size", "rows_in", "rows_out", "rows_missing"}
_SKIP = {"job_id", "version"}


class TableJobStore:
    def __init__(self, service: TableServiceClient, jobs_table: str, active_table: str) -> None:
        self._service = service
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

    @transient_on_outage
    def create(self, job: Job) -> Job:
        self._ensure_tables()
        try:
            metadata = self._jobs.create_entity(to_entity(job))
        except ResourceExistsError:
            raise JobExists(f"job {job.job_id} already exists") from None
        return _with_version(job, metadata)

    @transient_on_outage
    def get(self, job_id: str) -> Job | None:
        self._ensure_tables()
        try:
            entity = self._jobs.get_entity(job_id, ROW)
        except ResourceNotFoundError:
            return None
        return from_entity(entity)

    @transient_on_outage
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
        except Exception as exc:
            if getattr(exc, "status_code", None) == 412:
                raise StaleJob(f"job {job.job_id} changed since it was read") from None
            raise
        return _with_version(job, metadata)

    @transient_on_outage
    def mark_active(self, job: Job) -> None:
        self._ensure_tables()
        entity = {"PartitionKey": ACTIVE_PARTITION, "RowKey": job.job_id, "state": job.state.value}
        self._active.upsert_entity(entity, mode=UpdateMode.REPLACE)

    @transient_on_outage
    def unmark_active(self, job_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._active.delete_entity(ACTIVE_PARTITION, job_id)

    @transient_on_outage
    def active(self) -> Iterator[ActiveEntry]:
        """Read the whole index before returning, so paging errors surface here as TransientError."""
        self._ensure_tables()
        query = self._active.query_entities(
            "PartitionKey eq @pk", parameters={"pk": ACTIVE_PARTITION}, select=["RowKey", "state"]
        )
        entries = [
            ActiveEntry(
                entity["RowKey"], str(entity.get("state", "")), entity.metadata.get("timestamp") or datetime.now(UTC)
            )
            for entity in query
        ]
        return iter(entries)

    @transient_on_outage
    def query(self, state: JobState | None, limit: int) -> list[Job]:
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
        elif isinstance(value, JobState):
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
        elif isinstance(raw, datetime) and raw.tzinfo is None:
            raw = raw.replace(tzinfo=UTC)
        values[field.name] = raw
    values["version"] = entity.metadata.get("etag")
    return Job(**values)


def _column(name: str) -> str:
    """snake_case field -> camelCase column (readable in Storage Explorer)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _with_version(job: Job, metadata: Any) -> Job:
    return replace(job, version=metadata.get("etag"))
