"""Completion-side transitions: Ended → Filed (predictions delivered, or the input filed) → Done (announced).

The final event is queued in the same write that records the filing, and the job is Done only once
that event is published: nothing is announced before it is true, and nothing is left half done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from shared.core.naming import unquote_etag
from shared.core.submission import ended, with_event
from shared.errors import BlobChanged, BlobMissing
from shared.models import BlobInfo, EventType, Job, JobState, Stage

#: Metadata on a moved input naming the job that moved it: another version's copy is never taken for ours.
MOVED_BY = "dropscorejob"


@dataclass(frozen=True)
class BlobVersion:
    container: str
    name: str
    etag: str | None


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """Where the joined predictions went and what the join counted."""

    container: str
    name: str
    url: str
    archive_container: str
    rows_in: int
    rows_out: int
    rows_missing: int


def final_event_type(state: JobState) -> EventType:
    """The one event a finished job publishes."""
    if state in {JobState.SCORED, JobState.COMPLETED}:
        return EventType.JOB_COMPLETED
    if state == JobState.REJECTED:
        return EventType.INPUT_REJECTED
    return EventType.JOB_FAILED


def our_input(job: Job, *, current: BlobInfo | None, archived: BlobInfo | None, archive_container: str) -> BlobVersion:
    """Our version of the input: in its container (pinned to its ETag), or already in the archive after
    an interrupted earlier run. A newer upload under the same name is never joined."""
    if current is not None and unquote_etag(current.etag) == job.blob_etag:
        return BlobVersion(job.container, job.name, job.blob_etag)
    if archived is not None and archived.metadata.get(MOVED_BY) == job.job_id:
        return BlobVersion(archive_container, job.name, archived.etag)
    if current is not None:
        raise BlobChanged(f"the input {job.container}/{job.name} was overwritten before its predictions were joined")
    raise BlobMissing(f"the input {job.container}/{job.name} is gone (not in {archive_container} either)")


def delivered(job: Job, delivery: Delivery, now: datetime) -> Job:
    """Predictions written and the input archived: Completed, with JobCompleted queued."""
    return replace(
        job,
        state=JobState.COMPLETED,
        stage=Stage.FILED,
        predictions_container=delivery.container,
        predictions_name=delivery.name,
        predictions_url=delivery.url,
        archive_container=delivery.archive_container,
        rows_in=delivery.rows_in,
        rows_out=delivery.rows_out,
        rows_missing=delivery.rows_missing,
        updated_at=now,
        events_pending=with_event(job.events_pending, EventType.JOB_COMPLETED),
    )


def undeliverable(job: Job, *, code: str, reason: str, now: datetime) -> Job:
    """Azure ML said Completed, but its output (or our input) cannot be joined: the job fails."""
    message = f"Azure ML reported Completed but its output is unusable: {reason}"
    return ended(job, JobState.FAILED, code, message, now)


def input_is_ours(job: Job) -> bool:
    """False when the job ended because its version was overwritten or deleted: the blob now at that
    name belongs to someone else and must stay where it is."""
    return job.error_code not in {BlobChanged.code, BlobMissing.code}


def filed(job: Job, *, moved_to: str, now: datetime) -> Job:
    """A job that ended without predictions has its input filed (moved to `moved_to`, or left in place
    when it is not ours): its final event is queued in the same write."""
    return replace(
        job,
        stage=Stage.FILED,
        archive_container=moved_to,
        updated_at=now,
        events_pending=with_event(job.events_pending, final_event_type(job.state)),
    )


def unpublished(job: Job) -> list[str]:
    return [name for name in job.events_pending if name not in job.events_published]


def published(job: Job, names: list[str], now: datetime) -> Job:
    """Merge names into the published list (another writer may have published some meanwhile)."""
    merged = tuple(dict.fromkeys((*job.events_published, *names)))
    return replace(job, events_published=merged, updated_at=now)


def closed(job: Job, now: datetime) -> Job | None:
    """Filed and every queued event out: Done. None while something is left."""
    if job.stage is not Stage.FILED or unpublished(job):
        return None
    return replace(job, stage=Stage.DONE, updated_at=now)
