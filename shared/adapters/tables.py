"""The job ledger and the active index on Azure Table storage (azure-data-tables).

Keys are built for the one cheap read Table storage has, the PartitionKey+RowKey point read, and to spread
load over partitions (docs/architecture.md, "Storage keys"):

- `jobs`: one row per input blob version, PartitionKey = RowKey = the job key (a 40-hex hash, so rows spread
  evenly). Created insert-only, changed only by ETag-conditional REPLACE.
- `activejobs`: one row per unfinished job, PartitionKey = `active-` + the key's first hex digit (16
  partitions: intake, poll and completion never all write one), RowKey = the job key. The row carries a
  summary of the ledger row (state, Azure ML job name and status, timestamps), so a poll tick reads a ledger
  row only when Azure ML's answer is news. A tick lists the whole table: O(active), never O(history).

Rows of the previous layout are still read, nothing has to be migrated by hand: a ledger row with RowKey
"job" is read and updated where it is, creation refuses a key such a row holds (one job per blob version
across both layouts), and listing the index moves rows of the old single partition `active` into the new
partitions once. This module is the only one that imports azure-data-tables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from shared.adapters.activerows import (
    ACTIVE_PARTITION_PREFIX,
    active_partition,
    index_row,
    summary_from,
    utc,
    written_at,
)
from shared.adapters.identity import storage_client
from shared.adapters.joblist import READ_CONCURRENCY, JobList
from shared.adapters.rest import pooled_session
from shared.adapters.storage_errors import storage_errors_translated
from shared.config import Settings
from shared.core.completion import final_event_type
from shared.core.naming import HEALTH_PROBE_PREFIX
from shared.errors import BlobChanged, BlobMissing, JobExists, ResourceMissing, StaleJob
from shared.logcontext import about_job
from shared.models import REMOTE_DONE, Job, JobPage, JobState, RecentJobs, Stage
from shared.ports import ActiveEntry

#: The previous layout's constant ledger RowKey (a point read could not use the RowKey index).
LEGACY_ROW = "job"
#: The previous layout's single active-index partition (every write of every instance went to it).
LEGACY_ACTIVE_PARTITION = "active"
_TUPLE_FIELDS = {"events_pending", "events_published"}
_INT64_FIELDS = {"size", "rows_in", "rows_out", "rows_missing"}
_SKIP = {"job_id", "version", "stored_state"}
_PRECONDITION_FAILED = 412

log = logging.getLogger("dropscore")


def table_service(settings: Settings) -> TableServiceClient:
    """The Table service client of the app's storage (a connection string locally, the identity in Azure), with a
    connection for each thread that shares it: the poll tick's POLL_CONCURRENCY, a list page's ledger reads."""
    size = max(settings.poll_concurrency, READ_CONCURRENCY)

    def transport() -> RequestsTransport:
        return RequestsTransport(session=pooled_session(size), session_owner=False)

    return storage_client(
        settings.storage,
        settings.storage.table_url,
        from_connection_string=lambda text: TableServiceClient.from_connection_string(text, transport=transport()),
        from_url=lambda url, credential: TableServiceClient(url, credential=credential, transport=transport()),
        client_id=settings.client_id,
    )


class TableJobStore:
    @classmethod
    def from_settings(cls, settings: Settings) -> TableJobStore:
        return cls(
            table_service(settings),
            jobs_table=settings.jobs_table,
            active_table=settings.active_table,
            list_table=settings.job_list_table,
        )

    def __init__(
        self, service: TableServiceClient, *, jobs_table: str, active_table: str, list_table: str = "joblist"
    ) -> None:
        self._service = service
        self.jobs_table = jobs_table
        self.active_table = active_table
        self.list_table = list_table
        self._jobs = service.get_table_client(jobs_table)
        self._active = service.get_table_client(active_table)
        self._list_client = service.get_table_client(list_table)
        self._list = JobList(self._list_client)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            for table in (self._jobs, self._active, self._list_client):
                with contextlib.suppress(ResourceExistsError):
                    self._service.create_table(table.table_name)
            self._ready = True

    # ---- the ledger -------------------------------------------------------------------------------

    @storage_errors_translated
    def create(self, job: Job) -> Job:
        self._ensure_tables()
        # Insert-only across both layouts: a blob version first seen before the key change keeps its one job.
        if self._read(job.job_id, LEGACY_ROW) is not None:
            raise JobExists(f"job {job.job_id} already exists (a row of the previous key layout)")
        # Listed first: a crash leaves a list row with no ledger row (skipped by readers), never the reverse.
        self._list.announce(job)
        try:
            metadata = self._jobs.create_entity(to_entity(job))
        except ResourceExistsError:
            stored = self._read(job.job_id, job.job_id)  # a duplicate trigger's list rows go at once
            self._list.withdraw(job, stored_created=utc(stored.get("createdAt")) if stored is not None else None)
            raise JobExists(f"job {job.job_id} already exists") from None
        return _with_version(job, metadata)

    @storage_errors_translated
    def get(self, job_id: str) -> Job | None:
        self._ensure_tables()
        entity = self._read(job_id, job_id) or self._read(job_id, LEGACY_ROW)
        return None if entity is None else from_entity(entity)

    def _read(self, partition: str, row: str) -> Any:
        """A point read; None when there is no such row."""
        try:
            return self._jobs.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    @storage_errors_translated
    def update(self, job: Job) -> Job:
        if job.version is None:
            raise ValueError("update needs the version the job was read at")
        self._list.announce(job)  # first: a crash or a lost race leaves a list row too many, never one too few
        saved = self._write_at_version(job)
        self._list.settle(job, saved)
        return saved

    def _write_at_version(self, job: Job) -> Job:
        entity = to_entity(job)
        try:
            return _with_version(job, self._replace_at_version(entity, job))
        except ResourceNotFoundError:
            pass  # not in the current layout: a row of the previous one is updated where it is
        try:
            return _with_version(job, self._replace_at_version({**entity, "RowKey": LEGACY_ROW}, job))
        except ResourceNotFoundError:
            raise StaleJob(f"job {job.job_id} changed since it was read") from None

    def _replace_at_version(self, entity: dict[str, Any], job: Job) -> Any:
        """REPLACE only if the row is still at `job.version`; ResourceNotFoundError when there is no row."""
        try:
            return self._jobs.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=job.version, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            raise
        except ResourceModifiedError:
            raise StaleJob(f"job {job.job_id} changed since it was read") from None
        except HttpResponseError as exc:
            # The SDK maps a 412 to ResourceModifiedError only for error codes it knows; others arrive plain.
            if exc.status_code == _PRECONDITION_FAILED:
                raise StaleJob(f"job {job.job_id} changed since it was read") from None
            raise

    @storage_errors_translated
    def page(self, *, state: JobState | None, prefix: str, limit: int, after: str, now: datetime) -> JobPage:
        self._ensure_tables()
        return self._list.page(state=state, prefix=prefix, limit=limit, after=after, read=self.get, now=now)

    @storage_errors_translated
    def recent(self, *, since: datetime, cap: int) -> RecentJobs:
        self._ensure_tables()
        return self._list.recent(since=since, cap=cap)

    # ---- the active index -------------------------------------------------------------------------

    @storage_errors_translated
    def mark_active(self, job: Job) -> None:
        self._ensure_tables()
        self._active.upsert_entity(index_row(job), mode=UpdateMode.REPLACE)

    @storage_errors_translated
    def refresh_active(self, job: Job) -> None:
        # An unconditional update (If-Match: *) fails on a missing row: a job completion just removed stays out.
        with contextlib.suppress(ResourceNotFoundError):
            self._active.update_entity(index_row(job), mode=UpdateMode.REPLACE)

    @storage_errors_translated
    def note_checked(self, job_id: str, at: datetime) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            row = {"PartitionKey": active_partition(job_id), "RowKey": job_id, "checkedAt": at}
            self._active.update_entity(row, mode=UpdateMode.MERGE)

    @storage_errors_translated
    def find_active(self, key_prefix: str) -> list[ActiveEntry]:
        """One partition's rows whose key starts with `key_prefix` (a range of RowKeys: no scan)."""
        self._ensure_tables()
        query = "PartitionKey eq @partition and RowKey ge @low and RowKey lt @high"
        bounds = {"partition": active_partition(key_prefix), "low": key_prefix, "high": key_prefix + "~"}
        return [
            ActiveEntry(row["RowKey"], written_at(row), summary_from(row))
            for row in self._active.query_entities(query, parameters=bounds)
        ]

    @storage_errors_translated
    def unmark_active(self, job_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._active.delete_entity(active_partition(job_id), job_id)

    @storage_errors_translated
    def active(self) -> Iterator[ActiveEntry]:
        """Read the whole index before returning, so paging errors surface here as TransientError."""
        self._ensure_tables()
        entries: dict[str, ActiveEntry] = {}
        legacy: list[Any] = []
        for entity in self._active.list_entities():
            partition = entity["PartitionKey"]
            if partition == LEGACY_ACTIVE_PARTITION:
                legacy.append(entity)
            elif partition.startswith(ACTIVE_PARTITION_PREFIX):  # not a health-check probe row
                job_id = entity["RowKey"]
                entries[job_id] = ActiveEntry(job_id, written_at(entity), summary_from(entity))
        for entity in legacy:
            job_id = entity["RowKey"]
            self._move_legacy_index_row(job_id)
            entries.setdefault(job_id, ActiveEntry(job_id, written_at(entity)))
        return iter(entries.values())

    def _move_legacy_index_row(self, job_id: str) -> None:
        """Into its partition of the current layout, without a summary (the next tick reads the ledger row and
        writes one). A merge keeps a summary already there; a crash in between leaves both rows, moved again."""
        self._active.upsert_entity({"PartitionKey": active_partition(job_id), "RowKey": job_id}, mode=UpdateMode.MERGE)
        with contextlib.suppress(ResourceNotFoundError):
            self._active.delete_entity(LEGACY_ACTIVE_PARTITION, job_id)
        with about_job(job_id):
            log.info("job %s: index row moved to partition %s", job_id, active_partition(job_id))

    @storage_errors_translated
    def probe_table(self, table: str) -> None:
        client = self._service.get_table_client(table)
        probe = {"PartitionKey": HEALTH_PROBE_PREFIX, "RowKey": uuid.uuid4().hex}
        try:
            client.upsert_entity(probe)
        except ResourceNotFoundError:
            raise ResourceMissing(f"table {table} does not exist") from None
        client.delete_entity(probe["PartitionKey"], probe["RowKey"])


def to_entity(job: Job) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": job.job_id, "RowKey": job.job_id}
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
        elif isinstance(raw, datetime):
            raw = utc(raw)
        values[field.name] = raw
    values["version"] = entity.metadata.get("etag")
    values["stored_state"] = values["state"]
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
    return replace(job, version=metadata.get("etag"), stored_state=job.state)
