"""Completion (queue trigger): deliver the predictions or file the input, announce the end, close the job.

Every step is idempotent (deterministic names, copy-then-conditional-delete moves, an outbox for
events), so a message delivered twice, or a retry after a crash at any point, converges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from shared.core import completion as transitions
from shared.core.naming import predictions_name, reason_name, unquote_etag
from shared.core.polling import completion_queued
from shared.core.submission import ended
from shared.csvfiles import (
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
)
from shared.errors import BlobChanged, BlobMissing, InputInvalid
from shared.events import iso
from shared.logcontext import about_job
from shared.models import REMOTE_DONE, Job, JobState, Stage
from shared.usecases.deps import Deps, retry_lost_races
from shared.usecases.outbox import flush_events

log = logging.getLogger("dropscore")


def complete(deps: Deps, job_id: str) -> Job | None:
    """A completion message: finish the job it names (a no-op for duplicates and unknown ids)."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is None:
            log.warning("completion for unknown job %s ignored", job_id)
            return None
        return retry_lost_races(deps, job, lambda current: _complete_once(deps, current))


def _complete_once(deps: Deps, job: Job) -> Job:
    if job.finalized:
        log.info("job %s: already finalized; duplicate completion ignored", job.job_id)
        deps.store.unmark_active(job.job_id)
        return job
    if job.state not in REMOTE_DONE:
        log.warning("job %s: completion requested in state %s; ignored", job.job_id, job.state.value)
        return job
    return finalize(deps, job)


def request_completion(deps: Deps, job: Job) -> Job:
    """Record the outcome, then queue the completion work (the poller re-queues it if the message is lost)."""
    saved = deps.store.update(completion_queued(job, deps.clock()))
    deps.completions.enqueue(job.job_id)
    log.info("job %s: %s; completion queued", job.job_id, job.state.value)
    return saved


def end(deps: Deps, job: Job, *, state: JobState, code: str, message: str) -> Job:
    """End a job without predictions (rejected, failed, canceled) and finish it right away."""
    return finalize(deps, deps.store.update(ended(job, state, code, message, deps.clock())))


def finalize(deps: Deps, job: Job) -> Job:
    """Ended → Filed → Done, each step written before the next, so a rerun picks up where it stopped."""
    if job.stage is Stage.ENDED and job.state == JobState.SCORED:
        job = _deliver_or_fail(deps, job)
    if job.stage is Stage.ENDED:
        job = _file_input(deps, job)
    job = flush_events(deps, job)
    done = transitions.closed(job, deps.clock())
    if done is None:
        return job  # an event is still pending: a later tick publishes it; the next completion closes the job
    saved = deps.store.update(done)
    deps.store.unmark_active(job.job_id)
    log.info("job %s: %s and finalized", job.job_id, job.state.value)
    return saved


def _deliver_or_fail(deps: Deps, job: Job) -> Job:
    try:
        return _deliver_predictions(deps, job)
    except (InputInvalid, BlobMissing, BlobChanged) as exc:
        log.error("job %s: Azure ML completed but its output is unusable: %s", job.job_id, exc.message)
        return deps.store.update(transitions.undeliverable(job, code=exc.code, reason=exc.message, now=deps.clock()))


def _deliver_predictions(deps: Deps, job: Job) -> Job:
    settings = deps.settings
    target = predictions_name(job.name)
    stats = _write_joined(deps, job, target=target)
    _move_input(deps, job, target=settings.archive_container)
    delivery = transitions.Delivery(
        container=settings.output_container,
        name=target,
        url=deps.blobs.url(settings.output_container, target),
        archive_container=settings.archive_container,
        rows_in=stats.rows_in,
        rows_out=stats.rows_out,
        rows_missing=stats.rows_missing,
    )
    log.info(
        "job %s: %d rows scored (%d without a prediction) -> %s/%s",
        job.job_id,
        stats.rows_out,
        stats.rows_missing,
        settings.output_container,
        target,
    )
    return deps.store.update(transitions.delivered(job, delivery, deps.clock()))


def _write_joined(deps: Deps, job: Job, *, target: str) -> JoinStats:
    """Join by streaming merge; predictions out of row order fall back to an on-disk index."""
    blobs, settings = deps.blobs, deps.settings
    source = transitions.our_input(
        job,
        current=blobs.properties(job.container, job.name),
        archived=blobs.properties(settings.archive_container, job.name),
        archive_container=settings.archive_container,
    )
    if blobs.properties(job.output_container, job.output_path) is None:
        raise BlobMissing(f"no predictions file at {job.output_container}/{job.output_path}")

    def join_into_target(predictions: Iterable[Prediction] | PredictionIndex) -> JoinStats:
        stats = JoinStats()
        inputs = blobs.chunks(source.container, source.name, etag=source.etag)
        joined = join_predictions(inputs, predictions, stats, delimiter=settings.csv_delimiter)
        blobs.write(settings.output_container, target, joined, content_type="text/csv")
        return stats

    try:
        return join_into_target(parse_predictions(blobs.chunks(job.output_container, job.output_path)))
    except PredictionsOutOfOrder:
        log.info("job %s: predictions are not in row order; joining through an index", job.job_id)
    index = PredictionIndex(parse_predictions(blobs.chunks(job.output_container, job.output_path)))
    try:
        return join_into_target(index)
    finally:
        index.close()


def _file_input(deps: Deps, job: Job) -> Job:
    """File the input of a job that ended without predictions (a rejected input gets its reason beside
    it), and queue the job's final event in the same write."""
    settings = deps.settings
    if job.state == JobState.REJECTED:
        target = settings.rejected_container
        deps.blobs.write(target, reason_name(job.name), _reason_json(job), content_type="application/json")
    else:
        target = settings.failed_container
    ours = transitions.input_is_ours(job)
    if ours:
        _move_input(deps, job, target=target)
    return deps.store.update(transitions.filed(job, moved_to=target if ours else "", now=deps.clock()))


def _reason_json(job: Job) -> bytes:
    reason = {
        "jobId": job.job_id,
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag, "size": job.size},
        "error": {"code": job.error_code, "message": job.error_message},
        "rejectedAt": iso(job.finished_at or job.updated_at),
    }
    return (json.dumps(reason, indent=2) + "\n").encode("utf-8")


def _move_input(deps: Deps, job: Job, *, target: str) -> None:
    """Server-side copy of our version, then delete only that version; a rerun finds it already moved."""
    blobs = deps.blobs
    info = blobs.properties(job.container, job.name)
    if info is None:
        if blobs.properties(target, job.name) is None:
            log.warning("job %s: input %s/%s is gone; nothing to move", job.job_id, job.container, job.name)
        return
    if unquote_etag(info.etag) != job.blob_etag:
        log.info(
            "job %s: %s/%s was overwritten; the new version is not ours to move",
            job.job_id,
            job.container,
            job.name,
        )
        return
    try:
        blobs.copy(
            job.container,
            job.name,
            target,
            job.name,
            source_etag=job.blob_etag,
            metadata={transitions.MOVED_BY: job.job_id},
        )
    except (BlobChanged, BlobMissing):
        log.info("job %s: %s/%s changed while it was moved; left in place", job.job_id, job.container, job.name)
        return
    blobs.delete(job.container, job.name, etag=job.blob_etag)
