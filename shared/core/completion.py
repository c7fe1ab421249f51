"""Completion-side transitions: Ended → Filed (predictions delivered, or the input filed) → Done (announced).

The final event is queued in the same write that records the filing, and the job is Done only once
that event is published: nothing is announced before it is true, and nothing is left half done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.core.naming import BAD_NAME, unquote_etag
from shared.core.submission import ended, with_event
from shared.errors import BlobChanged, BlobMissing
from shared.models import BlobInfo, EventType, Job, JobState, Stage

#: Metadata on a moved input naming the job that moved it: another version's copy is never taken for ours.
MOVED_BY = "dropscorejob"
#: The most characters of drift summary the ledger keeps (a Table storage string holds 32K): past it, the
#: names in `driftedFeatures` are cut from the end and `driftedFeaturesOmitted` says how many (the report
#: blob keeps them all).
DRIFT_MAX_CHARS = 16_000


class MoveOutcome(StrEnum):
    """What happened to a job's input when it was to be moved; the ledger and the final event say it."""

    MOVED = "moved"
    ALREADY_MOVED = "already-moved"  # an earlier run of this job moved it (our tag is on the copy)
    GONE = "gone"  # our version is neither in its container nor at the target: deleted by someone
    OVERWRITTEN = "overwritten"  # a newer upload holds the name: not ours to move
    CHANGED_WHILE_MOVING = "changed-while-moving"  # overwritten or deleted between the check and the copy
    NAME_UNUSABLE = "name-unusable"  # a name refused as BadName is never used to build another blob name
    GAVE_UP = "completion-gave-up"  # completion kept failing: the job was closed where its input was

    @property
    def moved(self) -> bool:
        return self in {MoveOutcome.MOVED, MoveOutcome.ALREADY_MOVED}


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
    archived: MoveOutcome
    rows_in: int
    rows_out: int
    rows_missing: int
    #: The drift summary (`data.drift` of the events); None when the job's route has no drift reference.
    drift: dict[str, Any] | None = None


def moved_by(job: Job, copy: BlobInfo | None) -> bool:
    """The blob is a copy this job made (it carries the job's id): another version's copy never counts."""
    return copy is not None and copy.metadata.get(MOVED_BY) == job.job_id


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
    if archived is not None and moved_by(job, archived):
        return BlobVersion(archive_container, job.name, archived.etag)
    if current is not None:
        raise BlobChanged(f"the input {job.container}/{job.name} was overwritten before its predictions were joined")
    raise BlobMissing(f"the input {job.container}/{job.name} is gone (not in {archive_container} either)")


def delivered(job: Job, delivery: Delivery, now: datetime) -> Job:
    """Predictions written and the input archived: Completed, with JobCompleted queued (and, when the file
    drifted from its reference, DriftDetected before it, in the same write)."""
    pending = job.events_pending
    if drift_detected(delivery.drift):
        pending = with_event(pending, EventType.DRIFT_DETECTED)
    return replace(
        job,
        state=JobState.COMPLETED,
        stage=Stage.FILED,
        predictions_container=delivery.container,
        predictions_name=delivery.name,
        predictions_url=delivery.url,
        archive_container=delivery.archive_container if delivery.archived.moved else "",
        input_not_moved="" if delivery.archived.moved else delivery.archived.value,
        rows_in=delivery.rows_in,
        rows_out=delivery.rows_out,
        rows_missing=delivery.rows_missing,
        drift=drift_column(delivery.drift),
        updated_at=now,
        events_pending=with_event(pending, EventType.JOB_COMPLETED),
    )


def drift_detected(drift: dict[str, Any] | None) -> bool:
    """The summary's verdict is drift: a DriftDetected event is due."""
    return drift is not None and drift.get("verdict") == "drift"


def drift_column(drift: dict[str, Any] | None) -> str:
    """The summary as the ledger keeps it: compact JSON, keys sorted ("" for no summary), at most
    DRIFT_MAX_CHARS: past it, `driftedFeatures` keeps the names that fit (in order) and
    `driftedFeaturesOmitted` counts the rest; should even that not fit, `top` is emptied too."""
    if drift is None:
        return ""
    text = _compact(drift)
    names = drift.get("driftedFeatures")
    if len(text) <= DRIFT_MAX_CHARS or not isinstance(names, list):
        return text
    trimmed = {**drift, "driftedFeatures": [], "driftedFeaturesOmitted": len(names)}
    if len(_compact(trimmed)) > DRIFT_MAX_CHARS:
        trimmed["top"] = []
    room = DRIFT_MAX_CHARS - len(_compact(trimmed))
    kept: list[Any] = []
    for name in names:
        room -= len(_compact(name)) + (1 if kept else 0)  # the name and its comma
        if room < 0:
            break
        kept.append(name)
    return _compact({**trimmed, "driftedFeatures": kept, "driftedFeaturesOmitted": len(names) - len(kept)})


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def undeliverable(job: Job, *, code: str, reason: str, now: datetime) -> Job:
    """Azure ML said Completed, but its output (or our input) cannot be joined: the job fails."""
    message = f"Azure ML reported Completed but its output is unusable: {reason}"
    return ended(job, JobState.FAILED, code, message, now)


def move_not_needed(job: Job) -> MoveOutcome | None:
    """Why the input of an ended job is not even tried (None: try): its version is known to be gone or
    replaced (the blob now at that name belongs to someone else), or its name is unusable."""
    return {
        BlobChanged.code: MoveOutcome.OVERWRITTEN,
        BlobMissing.code: MoveOutcome.GONE,
        BAD_NAME: MoveOutcome.NAME_UNUSABLE,
    }.get(job.error_code)


def before_move(job: Job, *, source: BlobInfo | None, at_target: BlobInfo | None) -> MoveOutcome | None:
    """What is already true before copying our version (None: copy it now). A copy at the target counts as
    ours only when it carries our job id: an earlier run of this job made it."""
    if source is not None and unquote_etag(source.etag) == job.blob_etag:
        return None
    if moved_by(job, at_target):
        return MoveOutcome.ALREADY_MOVED
    return MoveOutcome.GONE if source is None else MoveOutcome.OVERWRITTEN


def filed(job: Job, *, target: str, outcome: MoveOutcome, now: datetime) -> Job:
    """A job that ended without predictions has its input filed: moved to `target`, or left where it is
    with the reason. Its final event is queued in the same write."""
    return replace(
        job,
        stage=Stage.FILED,
        archive_container=target if outcome.moved else "",
        input_not_moved="" if outcome.moved else outcome.value,
        updated_at=now,
        events_pending=with_event(job.events_pending, final_event_type(job.state)),
    )


def completion_failed(job: Job, *, error: str, now: datetime) -> Job:
    """Remember why a completion run failed, for the message of a later CompletionGaveUp."""
    return replace(job, completion_error=error[:1000], updated_at=now)


def completion_given_up(job: Job, *, why: str, now: datetime) -> Job:
    """Completion failed past its bound: the job ends Failed (CompletionGaveUp) with the last error, and is
    filed like any failure. A job that had already failed keeps its own error and is only filed."""
    if job.state != JobState.SCORED:
        return job
    last = job.completion_error or "no error was recorded"
    return ended(job, JobState.FAILED, "CompletionGaveUp", f"{why}; last error: {last}", now)


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
