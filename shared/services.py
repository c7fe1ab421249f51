"""Use cases: what each trigger asks for. They take ports, never construct adapters.

Every function here is safe to run twice with the same input: triggers are at-least-once,
so duplicates are normal input. The ledger (JobStore) is the record of truth; each state
change is an ETag-conditional write, and a lost race (StaleJob) means reload and decide again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared import core
from shared.config import Settings
from shared.csvfiles import (
    HEAD_BYTES,
    JoinStats,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
    validate_head,
    validate_name_and_size,
)
from shared.errors import (
    BlobChanged,
    BlobMissing,
    DropScoreError,
    InputInvalid,
    JobExists,
    JobNameTaken,
    PermanentError,
    RemoteJobNotFound,
    ScoringAuthError,
    ScoringRequestError,
    ScoringUnavailable,
    StaleJob,
    TransientError,
)
from shared.events import build_event, iso
from shared.models import (
    REMOTE_ACTIVE,
    REMOTE_DONE,
    BlobRef,
    EventType,
    InvokeRequest,
    Job,
    JobState,
    RemoteJob,
)
from shared.ports import ActiveEntry, BlobStore, CompletionQueue, EventPublisher, JobStore, ScoringEndpoint

log = logging.getLogger("dropscore")

_MAX_RACES = 5
#: Metadata on a moved input naming the job that moved it: another version's copy is never taken for ours.
_JOB_TAG = "dropscorejob"


@dataclass(frozen=True)
class Deps:
    """Everything a use case touches, passed in (tests pass fakes)."""

    settings: Settings
    store: JobStore
    blobs: BlobStore
    scoring: ScoringEndpoint
    events: EventPublisher
    completions: CompletionQueue
    clock: Callable[[], datetime]

    @property
    def stuck_policy(self) -> core.StuckPolicy:
        return core.StuckPolicy(
            queued_limit=timedelta(minutes=self.settings.queued_limit_minutes),
            running_limit=timedelta(minutes=self.settings.running_limit_minutes),
        )


# ---------------------------------------------------------------- blob trigger


def accept_blob(deps: Deps, *, container: str, name: str, size: int, etag: str | None, url: str) -> Job | None:
    """A blob appeared: record it once, validate it, submit it. Returns the job (None when ignored)."""
    if size == 0:
        log.info("ignored zero-byte blob %s/%s (an upload that has not committed data yet)", container, name)
        return None
    if not etag:
        info = deps.blobs.properties(container, name)
        if info is None:
            log.info("ignored %s/%s: deleted before it could be read", container, name)
            return None
        etag, size = info.etag, info.size
    ref = BlobRef(deps.blobs.account_name, container, name, core.unquote_etag(etag), size, url)
    job = _create_or_load(deps, ref)
    return advance(deps, job)


def _create_or_load(deps: Deps, ref: BlobRef) -> Job:
    now = deps.clock()
    job_id = core.job_key(ref.account, ref.container, ref.name, ref.etag)
    fresh = Job(
        job_id=job_id,
        state=JobState.RECEIVED,
        account=ref.account,
        container=ref.container,
        name=ref.name,
        blob_etag=ref.etag,
        size=ref.size,
        input_url=ref.url,
        created_at=now,
        updated_at=now,
    )
    deps.store.mark_active(fresh)  # first: a crash after it leaves a row the poller heals, never a lost job
    try:
        job = deps.store.create(fresh)
        log.info("job %s received for %s/%s (etag %s)", job_id, ref.container, ref.name, ref.etag)
    except JobExists:
        existing = deps.store.get(job_id)
        if existing is None:  # created and removed in between: treat as new next time
            raise StaleJob(f"job {job_id} vanished while it was being read") from None
        log.info("job %s: duplicate trigger for %s/%s, state %s", job_id, ref.container, ref.name, existing.state)
        job = existing
    if job.finalized:
        deps.store.unmark_active(job_id)
    return job


def advance(deps: Deps, job: Job) -> Job:
    """Move a job forward on the submit side as far as it can go now; a no-op for duplicates."""
    return _on_fresh_row(deps, job, lambda current: _advance_once(deps, current))


def _on_fresh_row(deps: Deps, job: Job, step: Callable[[Job], Job]) -> Job:
    """Run `step`; when a conditional write loses a race (412), reload the row and decide again."""
    for _ in range(_MAX_RACES):
        try:
            return step(job)
        except StaleJob:
            reloaded = deps.store.get(job.job_id)
            if reloaded is None:
                raise
            job = reloaded
    raise StaleJob(f"job {job.job_id}: lost {_MAX_RACES} races in a row")


def _advance_once(deps: Deps, job: Job) -> Job:
    if job.state == JobState.RECEIVED:
        return _validate_and_submit(deps, job)
    if job.state == JobState.SUBMITTING:
        if core.submit_lease_expired(job, deps.clock()):
            return reconcile_submission(deps, job)
        log.info("job %s: submission in progress elsewhere (lease until %s)", job.job_id, job.submit_lease_until)
        return job
    if job.state in REMOTE_DONE and not job.finalized and job.state != JobState.SCORED:
        return finalize(deps, job)
    return flush_events(deps, job)


def _validate_and_submit(deps: Deps, job: Job) -> Job:
    try:
        _validate(deps, job)
    except InputInvalid as exc:
        return _reject(deps, job, exc)
    except (BlobChanged, BlobMissing) as exc:
        return _abandon(deps, job, exc)
    return _submit_attempt(deps, job, new_attempt=True)


def _validate(deps: Deps, job: Job) -> None:
    settings = deps.settings
    validate_name_and_size(job.name, job.size, settings.max_input_bytes)
    length = min(HEAD_BYTES, job.size)
    head = deps.blobs.read_range(job.container, job.name, 0, length, job.blob_etag)
    validate_head(
        head,
        truncated=job.size > length,
        delimiter=settings.csv_delimiter,
        required_columns=settings.required_columns,
    )


def _reject(deps: Deps, job: Job, exc: InputInvalid) -> Job:
    log.warning("job %s: input %s/%s rejected: %s", job.job_id, job.container, job.name, exc.message)
    return _end(deps, job, JobState.REJECTED, exc.code, exc.message)


def _abandon(deps: Deps, job: Job, exc: PermanentError) -> Job:
    """The blob version we were told about is gone (overwritten or deleted): nothing to score."""
    log.warning("job %s: %s", job.job_id, exc.message)
    return _end(deps, job, JobState.CANCELED, exc.code, exc.message)


def _fail(deps: Deps, job: Job, code: str, message: str) -> Job:
    log.error("job %s: failed: %s: %s", job.job_id, code, message)
    return _end(deps, job, JobState.FAILED, code, message)


def _end(deps: Deps, job: Job, state: JobState, code: str, message: str) -> Job:
    ended = core.end_job(job, state, code, message, deps.clock())
    return finalize(deps, deps.store.update(ended))


def _submit_attempt(deps: Deps, job: Job, *, new_attempt: bool) -> Job:
    """Write the intent (Submitting, deterministic output and name) BEFORE the POST, then POST."""
    settings = deps.settings
    now = deps.clock()
    if job.posts >= settings.submit_max_attempts:
        return _fail(deps, job, "SubmitGaveUp", f"gave up after {job.posts} invoke attempts: {job.error_message}")
    attempt = job.attempt + 1 if new_attempt else job.attempt
    output_path = core.aml_output_path(settings.aml_output_prefix, job.job_id, attempt)
    intent = replace(
        job,
        state=JobState.SUBMITTING,
        attempt=attempt,
        posts=job.posts + 1,
        endpoint=deps.scoring.endpoint_uri,
        deployment=settings.batch_deployment or "",
        input_uri=_input_uri(settings, job),
        output_uri=core.datastore_uri(settings.aml_output_datastore, output_path),
        output_container=settings.aml_output_container,
        output_path=output_path,
        aml_job_name=core.aml_job_name(job.job_id, attempt),
        submit_lease_until=now + timedelta(seconds=settings.submit_lease_seconds),
        submit_ambiguous=False,
        updated_at=now,
    )
    return _post(deps, deps.store.update(intent))


def _input_uri(settings: Settings, job: Job) -> str:
    if settings.aml_input_datastore:
        return core.datastore_uri(settings.aml_input_datastore, job.name)
    return job.input_url


def _post(deps: Deps, job: Job) -> Job:
    request = InvokeRequest(
        job_name=job.aml_job_name,
        input_uri=job.input_uri,
        output_uri=job.output_uri,
        repeatability_id=core.repeatability_id(job.job_id, job.attempt),
        deployment=job.deployment or None,
    )
    try:
        remote = deps.scoring.invoke(request)
    except JobNameTaken:
        log.info("job %s: Azure ML job %s already exists; adopting it", job.job_id, job.aml_job_name)
        remote = deps.scoring.get_job(job.aml_job_name)
    except ScoringUnavailable as exc:
        return _leave_for_reconciliation(deps, job, exc)
    except (ScoringAuthError, ScoringRequestError) as exc:
        return _fail(deps, job, exc.code, exc.message)
    return _record_submitted(deps, job, remote)


def _leave_for_reconciliation(deps: Deps, job: Job, exc: ScoringUnavailable) -> Job:
    """Keep the row Submitting. A clear refusal (429/5xx) may be re-sent at the next tick; an
    ambiguous failure keeps its lease so a job that did get created can show up first."""
    now = deps.clock()
    log.warning(
        "job %s: invoke failed (%s); left Submitting for the poller to %s",
        job.job_id,
        exc.message,
        "reconcile" if exc.ambiguous else "retry",
    )
    waiting = replace(
        job,
        submit_ambiguous=exc.ambiguous,
        submit_lease_until=job.submit_lease_until if exc.ambiguous else now,
        error_code=exc.code,
        error_message=exc.message,
        updated_at=now,
    )
    return _save_post_outcome(deps, waiting)


def _record_submitted(deps: Deps, job: Job, remote: RemoteJob) -> Job:
    now = deps.clock()
    log.info("job %s: submitted as Azure ML job %s (%s)", job.job_id, remote.name, remote.status)
    submitted = replace(
        job,
        state=JobState.SUBMITTED,
        aml_job_name=remote.name,
        aml_status=remote.status.value,
        studio_url=remote.studio_url or "",
        submitted_at=now,
        submit_lease_until=None,
        submit_ambiguous=False,
        error_code="",
        error_message="",
        updated_at=now,
        events_pending=(*job.events_pending, EventType.JOB_SUBMITTED.value),
    )
    saved = _save_post_outcome(deps, submitted)
    return flush_events(deps, saved)


def _save_post_outcome(deps: Deps, job: Job) -> Job:
    """Record what our POST returned. After a lost race, only if the row still waits on that same POST
    (same attempt, same post count): a newer intent written meanwhile is never overwritten."""
    try:
        return deps.store.update(job)
    except StaleJob:
        stored = deps.store.get(job.job_id)
        same_post = (
            stored is not None
            and stored.state == JobState.SUBMITTING
            and (stored.attempt, stored.posts) == (job.attempt, job.posts)
        )
        if stored is None or not same_post:
            log.info("job %s: moved on elsewhere; keeping the stored transition", job.job_id)
            return stored or job
        return deps.store.update(replace(job, version=stored.version))


def reconcile_submission(deps: Deps, job: Job) -> Job:
    """A Submitting row whose lease expired: find the job a lost response may have created before any re-POST."""
    if job.posts > 0:
        try:
            remote = deps.scoring.get_job(job.aml_job_name)
        except RemoteJobNotFound:
            remote = None
        if remote is not None:
            log.info("job %s: found Azure ML job %s from an earlier POST", job.job_id, remote.name)
            return _record_submitted(deps, job, remote)
        if job.output_path and deps.blobs.properties(job.output_container, job.output_path) is not None:
            log.info("job %s: predictions already written by an earlier POST", job.job_id)
            now = deps.clock()
            return _hand_over(deps, replace(job, state=JobState.SCORED, scored_at=now, finished_at=now))
    # After an ambiguous failure a job may exist that we cannot find (the service may ignore our name):
    # a new attempt gets a new output path, so a duplicate can never make ours fail on "output exists".
    return _submit_attempt(deps, job, new_attempt=job.attempt == 0 or job.submit_ambiguous)


# ---------------------------------------------------------------- timer


@dataclass(frozen=True)
class PollReport:
    active: int
    outcomes: dict[str, int]


def poll(deps: Deps) -> PollReport:
    """One tick: look at every unfinished job (and only those), in parallel, bounded."""
    entries = list(deps.store.active())
    if not entries:
        return PollReport(0, {})
    with ThreadPoolExecutor(max_workers=min(deps.settings.poll_concurrency, len(entries))) as pool:
        outcomes = Counter(pool.map(lambda entry: _poll_safely(deps, entry), entries))
    report = PollReport(len(entries), dict(outcomes))
    log.info("poll: %d active jobs: %s", report.active, ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    return report


def _poll_safely(deps: Deps, entry: ActiveEntry) -> str:
    job_id = entry.job_id
    try:
        return poll_job(deps, job_id, entry.updated_at)
    except TransientError as exc:
        log.warning("poll: job %s: %s (will retry next tick)", job_id, exc.message)
        return "retry-later"
    except PermanentError as exc:
        log.error("poll: job %s: %s (will retry next tick)", job_id, exc.message)
        return "error"
    except Exception:
        log.exception("poll: job %s failed unexpectedly (will retry next tick)", job_id)
        return "error"


def poll_job(deps: Deps, job_id: str, indexed_at: datetime | None = None) -> str:
    """Advance one active job by one step; returns a short outcome name for the tick's summary."""
    job = deps.store.get(job_id)
    if job is None:
        grace = timedelta(seconds=deps.settings.submit_lease_seconds)
        if indexed_at is not None and deps.clock() - indexed_at < grace:
            return "being-created"  # the trigger writes the index row before the ledger row
        deps.store.unmark_active(job_id)
        return "orphan-removed"
    if job.finalized:
        deps.store.unmark_active(job_id)
        return "index-healed"
    job = flush_events(deps, job)
    if job.state in REMOTE_ACTIVE:
        return _check_remote(deps, job)
    if job.state in REMOTE_DONE:
        return _ensure_completion(deps, job)
    if job.state == JobState.SUBMITTING and not core.submit_lease_expired(job, deps.clock()):
        return "submitting"
    if job.state == JobState.RECEIVED and deps.clock() - job.updated_at < timedelta(
        seconds=deps.settings.submit_lease_seconds
    ):
        return "receiving"
    advance(deps, job)
    return "resumed"


def _check_remote(deps: Deps, job: Job) -> str:
    try:
        remote = deps.scoring.get_job(job.aml_job_name)
    except RemoteJobNotFound:
        grace = timedelta(seconds=deps.settings.submit_lease_seconds)
        if job.submitted_at is not None and deps.clock() - job.submitted_at < grace:
            return "waiting:not-visible-yet"  # a job can take a moment to show up after invoke
        _fail(deps, job, "RemoteJobNotFound", f"Azure ML has no job named {job.aml_job_name}")
        return "failed"
    for _ in range(_MAX_RACES):
        decision = core.decide(job, remote, deps.clock(), deps.stuck_policy)
        if decision.action == core.Action.WAIT and decision.job.state == job.state and job.state in REMOTE_ACTIVE:
            _touch(deps, job, decision.job)
            return f"waiting:{remote.status.value}"
        try:
            return _apply(deps, decision)
        except StaleJob:
            reloaded = deps.store.get(job.job_id)
            if reloaded is None or reloaded.state not in REMOTE_ACTIVE:
                return "moved-elsewhere"
            job = reloaded
    return "lost-races"


def _touch(deps: Deps, before: Job, after: Job) -> None:
    """Write only when the remote status changed: a quiet tick costs reads, not writes."""
    if before.aml_status == after.aml_status and before.studio_url == after.studio_url:
        return
    try:
        deps.store.update(after)
    except StaleJob:
        log.info("job %s: changed while polled; the next tick decides again", after.job_id)


def _apply(deps: Deps, decision: core.Decision) -> str:
    job = decision.job
    if decision.action == core.Action.CANCEL:
        _cancel_quietly(deps, job)
        _hand_over(deps, job)
        return "timed-out"
    if decision.action == core.Action.FINISH:
        _hand_over(deps, job)
        return f"finished:{job.state.value}"
    deps.store.update(job)
    return f"moved:{job.state.value}"


def _cancel_quietly(deps: Deps, job: Job) -> None:
    """Ask Azure ML to cancel a job past its limit; the job is reported TimedOut whatever the answer."""
    try:
        canceled = deps.scoring.cancel(job.aml_job_name)
    except DropScoreError as exc:
        log.error("job %s: could not cancel Azure ML job %s: %s", job.job_id, job.aml_job_name, exc.message)
        return
    if not canceled:
        log.warning("job %s: over its limit; set AML_WORKSPACE_ID so the Azure ML job is canceled too", job.job_id)


def _hand_over(deps: Deps, job: Job) -> Job:
    """Record the terminal remote state, then queue the completion work (the poller re-queues if lost).

    The final event is not queued here: finalize adds it once the predictions and the input are in place.
    """
    now = deps.clock()
    saved = deps.store.update(replace(job, completion_enqueued_at=now, updated_at=now))
    deps.completions.enqueue(job.job_id)
    log.info("job %s: %s; completion queued", job.job_id, job.state.value)
    return saved


def _ensure_completion(deps: Deps, job: Job) -> str:
    """A finished job not yet finalized: re-queue its completion if the last message seems lost."""
    now = deps.clock()
    redelivery = timedelta(seconds=deps.settings.completion_redelivery_seconds)
    if job.completion_enqueued_at is not None and now - job.completion_enqueued_at < redelivery:
        return "completing"
    _hand_over(deps, job)
    return "completion-requeued"


# ---------------------------------------------------------------- queue


def complete(deps: Deps, job_id: str) -> Job | None:
    """Completion message: deliver predictions (or file the failure), publish, leave the active index."""
    job = deps.store.get(job_id)
    if job is None:
        log.warning("completion for unknown job %s ignored", job_id)
        return None
    return _on_fresh_row(deps, job, lambda current: _complete_once(deps, current))


def _complete_once(deps: Deps, job: Job) -> Job:
    if job.finalized:
        log.info("job %s: already finalized; duplicate completion ignored", job.job_id)
        deps.store.unmark_active(job.job_id)
        return job
    if job.state not in REMOTE_DONE:
        log.warning("job %s: completion requested in state %s; ignored", job.job_id, job.state.value)
        return job
    return finalize(deps, job)


def finalize(deps: Deps, job: Job) -> Job:
    """Each step is idempotent, so a retry after a crash at any point converges."""
    if job.state == JobState.SCORED:
        try:
            job = _deliver_predictions(deps, job)
        except (InputInvalid, BlobMissing, BlobChanged) as exc:
            job = deps.store.update(_failed_delivery(deps, job, exc))
    if job.state in {JobState.REJECTED, JobState.FAILED, JobState.CANCELED, JobState.TIMED_OUT}:
        job = _file_input(deps, job)
    job = flush_events(deps, job)
    if job.events_pending and set(job.events_pending) - set(job.events_published):
        return job
    done = deps.store.update(replace(job, finalized=True, updated_at=deps.clock()))
    deps.store.unmark_active(job.job_id)
    log.info("job %s: %s and finalized", job.job_id, job.state.value)
    return done


def _failed_delivery(deps: Deps, job: Job, exc: PermanentError) -> Job:
    log.error("job %s: Azure ML completed but its output is unusable: %s", job.job_id, exc.message)
    message = f"Azure ML reported Completed but its output is unusable: {exc.message}"
    return core.end_job(job, JobState.FAILED, exc.code, message, deps.clock())


def _deliver_predictions(deps: Deps, job: Job) -> Job:
    settings = deps.settings
    target = core.predictions_name(job.name)
    stats = _write_joined(deps, job, settings.output_container, target)
    _move(deps, job, settings.archive_container)
    now = deps.clock()
    completed = replace(
        job,
        state=JobState.COMPLETED,
        predictions_container=settings.output_container,
        predictions_name=target,
        predictions_url=deps.blobs.url(settings.output_container, target),
        archive_container=settings.archive_container,
        rows_in=stats.rows_in,
        rows_out=stats.rows_out,
        rows_missing=stats.rows_missing,
        updated_at=now,
        events_pending=_with_event(job.events_pending, EventType.JOB_COMPLETED),
    )
    log.info(
        "job %s: %d rows scored (%d without a prediction) -> %s/%s",
        job.job_id,
        stats.rows_out,
        stats.rows_missing,
        settings.output_container,
        target,
    )
    return deps.store.update(completed)


def _write_joined(deps: Deps, job: Job, container: str, target: str) -> JoinStats:
    """Join by streaming merge; predictions out of row order fall back to an on-disk index."""
    source_container, source_name, source_etag = _input_location(deps, job)
    if deps.blobs.properties(job.output_container, job.output_path) is None:
        raise BlobMissing(f"no predictions file at {job.output_container}/{job.output_path}")
    delimiter = deps.settings.csv_delimiter
    stats = JoinStats()
    try:
        merged = join_predictions(
            deps.blobs.chunks(source_container, source_name, source_etag),
            parse_predictions(deps.blobs.chunks(job.output_container, job.output_path)),
            stats,
            delimiter=delimiter,
        )
        deps.blobs.write(container, target, merged, "text/csv")
        return stats
    except PredictionsOutOfOrder:
        log.info("job %s: predictions are not in row order; joining through an index", job.job_id)
    index = PredictionIndex(parse_predictions(deps.blobs.chunks(job.output_container, job.output_path)))
    try:
        stats = JoinStats()
        joined = join_predictions(
            deps.blobs.chunks(source_container, source_name, source_etag), index, stats, delimiter=delimiter
        )
        deps.blobs.write(container, target, joined, "text/csv")
    finally:
        index.close()
    return stats


def _input_location(deps: Deps, job: Job) -> tuple[str, str, str | None]:
    """Our version of the input: in its container (pinned to its ETag), or already in the archive
    after an interrupted earlier run. A newer upload under the same name is never joined."""
    current = deps.blobs.properties(job.container, job.name)
    if current is not None and core.unquote_etag(current.etag) == job.blob_etag:
        return job.container, job.name, job.blob_etag
    archive = deps.settings.archive_container
    archived = deps.blobs.properties(archive, job.name)
    if archived is not None and archived.metadata.get(_JOB_TAG) == job.job_id:
        return archive, job.name, archived.etag
    if current is not None:
        raise BlobChanged(f"the input {job.container}/{job.name} was overwritten before its predictions were joined")
    raise BlobMissing(f"the input {job.container}/{job.name} is gone (not in {archive} either)")


def _file_input(deps: Deps, job: Job) -> Job:
    """Move the input of a job that ended without predictions (rejected inputs get their reason beside
    them), then queue the job's final event in the same write."""
    if job.archive_container:
        return job  # filed by an earlier run, together with its event
    settings = deps.settings
    if job.state == JobState.REJECTED:
        target = settings.rejected_container
        deps.blobs.write(target, core.reason_name(job.name), _reason_json(job), "application/json")
    else:
        target = settings.failed_container
    ours = job.error_code not in {BlobChanged.code, BlobMissing.code}  # else the input at that name is not ours
    if ours:
        _move(deps, job, target)
    final = core.final_event_type(job.state)
    filed = replace(
        job,
        archive_container=target if ours else "",
        updated_at=deps.clock(),
        events_pending=_with_event(job.events_pending, final),
    )
    return deps.store.update(filed)


def _with_event(pending: tuple[str, ...], event: EventType) -> tuple[str, ...]:
    return pending if event.value in pending else (*pending, event.value)


def _reason_json(job: Job) -> bytes:
    reason = {
        "jobId": job.job_id,
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag, "size": job.size},
        "error": {"code": job.error_code, "message": job.error_message},
        "rejectedAt": iso(job.finished_at or job.updated_at),
    }
    return (json.dumps(reason, indent=2) + "\n").encode("utf-8")


def _move(deps: Deps, job: Job, target: str) -> None:
    """Server-side copy of our version, then delete only that version; a rerun finds it already moved."""
    blobs = deps.blobs
    info = blobs.properties(job.container, job.name)
    if info is None:
        if blobs.properties(target, job.name) is None:
            log.warning("job %s: input %s/%s is gone; nothing to move", job.job_id, job.container, job.name)
        return
    if core.unquote_etag(info.etag) != job.blob_etag:
        log.info(
            "job %s: %s/%s was overwritten; the new version is not ours to move",
            job.job_id,
            job.container,
            job.name,
        )
        return
    try:
        blobs.copy(
            job.container, job.name, target, job.name, source_etag=job.blob_etag, metadata={_JOB_TAG: job.job_id}
        )
    except (BlobChanged, BlobMissing):
        log.info("job %s: %s/%s changed while it was moved; left in place", job.job_id, job.container, job.name)
        return
    blobs.delete(job.container, job.name, etag=job.blob_etag)


# ---------------------------------------------------------------- events


def flush_events(deps: Deps, job: Job) -> Job:
    """Publish the job's pending events (outbox), then record them as published."""
    unpublished = [e for e in job.events_pending if e not in job.events_published]
    if not unpublished:
        return job
    now = deps.clock()
    events = [build_event(job, EventType(name), deps.settings.event_source, now) for name in unpublished]
    try:
        deps.events.publish(events)
    except TransientError as exc:
        log.warning("job %s: events %s not published yet: %s", job.job_id, unpublished, exc.message)
        return job
    log.info("job %s: published %s", job.job_id, ", ".join(unpublished))
    return _record_published(deps, job, unpublished)


def _record_published(deps: Deps, job: Job, names: list[str]) -> Job:
    """Merge the published names into the row, even if someone else wrote it meanwhile."""

    def record(current: Job) -> Job:
        merged = tuple(dict.fromkeys((*current.events_published, *names)))
        return deps.store.update(replace(current, events_published=merged, updated_at=deps.clock()))

    return _on_fresh_row(deps, job, record)


# ---------------------------------------------------------------- http


def job_view(job: Job) -> dict[str, Any]:
    """The public JSON view of a job (the HTTP API): no keys, tokens or query strings."""
    view: dict[str, Any] = {
        "jobId": job.job_id,
        "state": job.state.value,
        "finalized": job.finalized,
        "attempt": job.attempt,
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag, "size": job.size},
        "aml": {
            "jobName": job.aml_job_name or None,
            "status": job.aml_status or None,
            "deployment": job.deployment or None,
            "studioUrl": job.studio_url or None,
        },
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
    }
    if job.predictions_name:
        view["output"] = {
            "container": job.predictions_container,
            "name": job.predictions_name,
            "rows": job.rows_out,
            "rowsMissing": job.rows_missing,
        }
    if job.error_code:
        view["error"] = {"code": job.error_code, "message": job.error_message}
    return view


def get_job(deps: Deps, job_id: str) -> dict[str, Any] | None:
    job = deps.store.get(job_id)
    return None if job is None else job_view(job)


def list_jobs(deps: Deps, state: JobState | None, limit: int) -> list[dict[str, Any]]:
    return [job_view(job) for job in deps.store.query(state, limit)]
