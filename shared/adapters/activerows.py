"""The active index's rows (no SDK): a job's summary as columns, and back (`tables.py` reads and writes them).

An index row carries what a poll tick needs to decide without the ledger row (`models.JobSummary`); a row
written by an older version may lack columns, and reads as if they were empty.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.core.polling import summary_of
from shared.models import Job, JobState, JobSummary

ACTIVE_PARTITION_PREFIX = "active-"


def active_partition(job_id: str) -> str:
    """The index partition of a job: its key's first hex digit, so the 16 partitions share the load evenly."""
    return ACTIVE_PARTITION_PREFIX + job_id[:1]


def index_row(job: Job) -> dict[str, Any]:
    summary = summary_of(job)
    row: dict[str, Any] = {
        "PartitionKey": active_partition(job.job_id),
        "RowKey": job.job_id,
        "state": summary.state.value,
        "amlJobName": summary.aml_job_name,
        "amlStatus": summary.aml_status,
        "studioUrl": summary.studio_url,
        "hasPendingEvents": summary.events_pending,
        "endpoint": summary.endpoint,
        "route": summary.route,
    }
    for column, value in (
        ("submittedAt", summary.submitted_at),
        ("startedAt", summary.started_at),
        ("updatedAt", summary.updated_at),
        ("createdAt", summary.created_at),
        ("checkedAt", summary.checked_at),
    ):
        if value is not None:
            row[column] = value
    return row


def summary_from(entity: Any) -> JobSummary | None:
    """The summary an index row carries; None for a row without one (or with a state this version cannot read)."""
    try:
        state = JobState(entity.get("state"))
    except ValueError:
        return None
    return JobSummary(
        state=state,
        aml_job_name=str(entity.get("amlJobName") or ""),
        aml_status=str(entity.get("amlStatus") or ""),
        studio_url=str(entity.get("studioUrl") or ""),
        submitted_at=utc(entity.get("submittedAt")),
        started_at=utc(entity.get("startedAt")),
        updated_at=utc(entity.get("updatedAt")),
        events_pending=bool(entity.get("hasPendingEvents")),
        created_at=utc(entity.get("createdAt")),
        checked_at=utc(entity.get("checkedAt")),
        endpoint=str(entity.get("endpoint") or ""),
        route=str(entity.get("route") or ""),
    )


def written_at(entity: Any) -> datetime:
    """The row's own Timestamp: the poller's grace for a job whose ledger row is still being created."""
    return utc(entity.metadata.get("timestamp")) or datetime.now(UTC)


def utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
