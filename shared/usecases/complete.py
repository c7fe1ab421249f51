"""Completion (queue trigger): deliver the predictions or file the input, announce the end, close the job.

Every step is idempotent (deterministic names, copy-then-conditional-delete moves, an outbox for
events), so a message delivered twice, or a retry after a crash at any point, converges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from shared.core import completion as transitions
from shared.core.completion import MoveOutcome
from shared.core.naming import BAD_NAME, predictions_name, reason_name
from shared.core.operator import CANCEL_REQUESTED, canceled_by_operator
from shared.core.polling import completion_exhausted, completion_queued
from shared.core.submission import ended
from shared.csvjoin import (
    JoinObserver,
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    PredictionStream,
    join_predictions,
    parse_part_predictions,
    parse_predictions,
)
from shared.errors import BlobChanged, BlobMissing, DropScoreError, InputInvalid
from shared.events import iso
from shared.logcontext import about_job, note_aml_job
from shared.models import REMOTE_DONE, Job, JobState, Stage
from shared.usecases.admission import release
from shared.usecases.deps import Deps, retry_lost_races
from shared.usecases.drift import DriftWatch, watch
from shared.usecases.drift import report as drift_report
from shared.usecases.outbox import flush_events
from shared.usecases.shard import part_rows, remove_parts

log = logging.getLogger("dropscore")
#: Where the reasons of inputs refused as BadName go (in the rejected container): their own names are unusable.
BAD_NAMES_DIR = "bad-names"


def complete(deps: Deps, job_id: str) -> Job | None:
    """A completion message: finish the job it names (a no-op for duplicates and unknown ids)."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is None:
            log.warning("completion for unknown job %s ignored", job_id)
            return None
        note_aml_job(job.aml_job_name)
        try:
            return retry_lost_races(deps, job, lambda current: _complete_once(deps, current))
        except Exception as exc:
            _remember_failure(deps, job_id, exc)
            raise  # the queue redelivers; past the bound the job ends CompletionGaveUp (see give_up)


def poisoned(deps: Deps, job_id: str) -> Job | None:
    """A completion message failed every delivery (the host moved it to the poison queue). Quick
    redeliveries can all fall inside one outage, so this counts as one spent attempt: while attempts
    remain, the poller queues a new message after COMPLETION_REDELIVERY_SECONDS; past the bound, give up."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is None or job.finalized:
            return job
        note_aml_job(job.aml_job_name)
        if not job.completion_error:  # the failing runs could not record why: say at least where it ended
            error = "its completion message failed every delivery (poison queue)"
            job = deps.store.update(transitions.completion_failed(job, error=error, now=deps.clock()))
        if completion_exhausted(job, deps.settings.completion_max_attempts):
            why = f"the completion message reached the poison queue after {job.completion_attempts} attempts"
            return give_up(deps, job_id, why=why)
        log.warning(
            "job %s: completion message poisoned (attempt %d of %d); the poller queues another later",
            job_id,
            job.completion_attempts,
            deps.settings.completion_max_attempts,
        )
        return job


def give_up(deps: Deps, job_id: str, *, why: str) -> Job | None:
    """Completion kept failing (the poller counted its messages, or one reached the poison queue): the job
    ends Failed with CompletionGaveUp and the last error, its input is filed and JobFailed published. If
    even filing fails, the job is closed where its input is, and the event says so."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is not None:
            note_aml_job(job.aml_job_name)
        if job is None or job.finalized or job.state not in REMOTE_DONE:
            log.info("job %s: nothing to give up on (%s)", job_id, "unknown" if job is None else job.state.value)
            return job
        given_up = transitions.completion_given_up(job, why=why, now=deps.clock())
        if given_up is not job:
            job = deps.store.update(given_up)
        log.error("job %s: completion gave up: %s", job_id, job.error_message)
        try:
            return finalize(deps, job)
        except DropScoreError as exc:
            log.error("job %s: the input cannot be filed either (%s); closing the job where it is", job_id, exc.message)
        current = deps.store.get(job_id) or job
        if current.stage is Stage.ENDED:
            closing = transitions.filed(current, target="", outcome=MoveOutcome.GAVE_UP, now=deps.clock())
            current = deps.store.update(closing)
        return finalize(deps, current)


def _remember_failure(deps: Deps, job_id: str, exc: Exception) -> None:
    """Best effort: keep the error for CompletionGaveUp's message; the redelivery happens either way."""
    # Untyped errors keep only their type: their text is not vetted for what it may carry (URLs, keys).
    error = exc.message if isinstance(exc, DropScoreError) else f"{type(exc).__name__} (see the function log)"
    try:
        current = deps.store.get(job_id)
        if current is not None and not current.finalized:
            deps.store.update(transitions.completion_failed(current, error=error, now=deps.clock()))
    except DropScoreError as failure:
        log.warning("job %s: could not record the completion error: %s", job_id, failure.message)


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
    release(deps, saved)  # Azure ML is done with it: a waiting job may take its slot
    deps.completions.enqueue(job.job_id)
    log.info("job %s: %s; completion queued", job.job_id, job.state.value)
    return saved


def end(deps: Deps, job: Job, *, state: JobState, code: str, message: str) -> Job:
    """End a job without predictions (rejected, failed, canceled) and finish it right away."""
    return finalize(deps, deps.store.update(ended(job, state, code, message, deps.clock())))


def finalize(deps: Deps, job: Job) -> Job:
    """Ended → Filed → Done, each step written before the next, so a rerun picks up where it stopped."""
    if job.stage is Stage.ENDED and job.state != JobState.SCORED:  # a Scored job gave its slot back already
        release(deps, job)
    if job.stage is Stage.ENDED and job.state == JobState.SCORED:
        job = _deliver_or_fail(deps, job)
    if job.stage is Stage.ENDED and canceled_by_operator(job) and job.aml_status != CANCEL_REQUESTED:
        try_cancel_in_azure_ml(deps, job)  # the HTTP call crashed or met an outage before Azure ML took it
    if job.stage is Stage.ENDED:
        job = _file_input(deps, job)
    job = flush_events(deps, job)
    done = transitions.closed(job, deps.clock())
    if done is None:
        return job  # an event is still pending: a later tick publishes it; the next completion closes the job
    remove_parts(deps, job)  # last, so a rerun after a crash anywhere before still finds them
    saved = deps.store.update(done)
    deps.store.unmark_active(job.job_id)
    log.info("job %s: %s and finalized", job.job_id, job.state.value)
    return saved


def cancel_in_azure_ml(deps: Deps, job: Job) -> bool:
    """Ask Azure ML to cancel the job's run, when it has one (idempotent there); True when Azure ML took the
    request. The job is Canceled whatever the answer: a run that goes on anyway writes predictions nobody joins
    (its output path is the job's own)."""
    if not job.aml_job_name:
        return False
    if deps.scoring_for(job.endpoint).cancel(job.aml_job_name):
        log.info("job %s: Azure ML job %s asked to cancel", job.job_id, job.aml_job_name)
        return True
    log.warning(
        "job %s: Azure ML job %s not canceled there (no AML_WORKSPACE_ID, or Azure ML does not know it yet)",
        job.job_id,
        job.aml_job_name,
    )
    return False


def try_cancel_in_azure_ml(deps: Deps, job: Job) -> None:
    """An operator's cancel is asked again before the input is filed: the HTTP call may have crashed or met an
    outage after writing Canceled. Best effort: filing goes on whatever Azure ML answers."""
    try:
        cancel_in_azure_ml(deps, job)
    except DropScoreError as exc:
        log.error("job %s: could not cancel Azure ML job %s: %s", job.job_id, job.aml_job_name, exc.message)


def _deliver_or_fail(deps: Deps, job: Job) -> Job:
    try:
        return _deliver_predictions(deps, job)
    except (InputInvalid, BlobMissing, BlobChanged) as exc:
        log.error("job %s: Azure ML completed but its output is unusable: %s", job.job_id, exc.message)
        return deps.store.update(transitions.undeliverable(job, code=exc.code, reason=exc.message, now=deps.clock()))


def _deliver_predictions(deps: Deps, job: Job) -> Job:
    settings = deps.settings
    target = predictions_name(job.name)
    drift = watch(deps, job)
    stats = _write_joined(deps, job, target=target, drift=drift)
    summary = None if drift is None else drift_report(deps, job, drift, rows_in=stats.rows_in)
    archived = _move_input(deps, job, target=settings.archive_container)
    delivery = transitions.Delivery(
        container=settings.output_container,
        name=target,
        url=deps.blobs.url(settings.output_container, target),
        archive_container=settings.archive_container,
        archived=archived,
        rows_in=stats.rows_in,
        rows_out=stats.rows_out,
        rows_missing=stats.rows_missing,
        drift=summary,
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


def _write_joined(deps: Deps, job: Job, *, target: str, drift: DriftWatch | None) -> JoinStats:
    """Join by streaming merge; predictions out of row order fall back to an on-disk index. With a drift
    reference, each join (the second one too) profiles the rows it reads, afresh."""
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
        observer: JoinObserver | None = None
        if drift is not None:
            observer = drift.fresh(size=job.size, sample_mb=settings.drift_sample_mb)
        joined = join_predictions(inputs, predictions, stats, delimiter=settings.csv_delimiter, observer=observer)
        blobs.write(settings.output_container, target, joined, content_type="text/csv")
        return stats

    # A sharded input's predictions name their part and count rows within it: mapped back to the input's rows.
    parts = part_rows(deps, job) if job.parts else None

    def predictions() -> PredictionStream:
        chunks = blobs.chunks(job.output_container, job.output_path)
        return parse_predictions(chunks) if parts is None else parse_part_predictions(chunks, parts=parts)

    try:
        return join_into_target(predictions())
    except PredictionsOutOfOrder:
        log.info("job %s: predictions are not in row order; joining through an index", job.job_id)
    index = PredictionIndex(predictions())
    try:
        return join_into_target(index)
    finally:
        index.close()


def _file_input(deps: Deps, job: Job) -> Job:
    """File the input of a job that ended without predictions (a rejected input gets its reason beside
    it), and queue the job's final event in the same write, saying whether and where the input went."""
    settings = deps.settings
    if job.state == JobState.REJECTED:
        target = settings.rejected_container
        deps.blobs.write(target, _reason_name(job), _reason_json(job), content_type="application/json")
    else:
        target = settings.failed_container
    outcome = transitions.move_not_needed(job) or _move_input(deps, job, target=target)
    if not outcome.moved and _archived_by_us(deps, job):  # delivered once, then failed: it is in the archive
        target, outcome = settings.archive_container, transitions.MoveOutcome.ALREADY_MOVED
    return deps.store.update(transitions.filed(job, target=target, outcome=outcome, now=deps.clock()))


def _archived_by_us(deps: Deps, job: Job) -> bool:
    return transitions.moved_by(job, deps.blobs.properties(deps.settings.archive_container, job.name))


def _reason_name(job: Job) -> str:
    """Beside the input; a name refused as BadName is not used to build another: one per job instead."""
    return f"{BAD_NAMES_DIR}/{job.job_id}.reason.json" if job.error_code == BAD_NAME else reason_name(job.name)


def _reason_json(job: Job) -> bytes:
    reason = {
        "jobId": job.job_id,
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag, "size": job.size},
        "error": {"code": job.error_code, "message": job.error_message},
        "rejectedAt": iso(job.finished_at or job.updated_at),
    }
    return (json.dumps(reason, indent=2) + "\n").encode("utf-8")


def _move_input(deps: Deps, job: Job, *, target: str) -> transitions.MoveOutcome:
    """Server-side copy of our version, then delete only that version; a rerun finds it already moved.
    Returns what really happened, so the ledger and the event never claim a move that did not happen."""
    blobs = deps.blobs
    known = transitions.before_move(
        job, source=blobs.properties(job.container, job.name), at_target=blobs.properties(target, job.name)
    )
    if known is not None:
        log.info("job %s: input %s/%s not moved to %s: %s", job.job_id, job.container, job.name, target, known.value)
        return known
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
        return transitions.MoveOutcome.CHANGED_WHILE_MOVING
    blobs.delete(job.container, job.name, etag=job.blob_etag)
    return transitions.MoveOutcome.MOVED
