"""Intake (blob trigger): record a blob version once, validate it, submit it to Azure ML once.

Safe to run twice with the same input: the ledger key is the blob version, creation is insert-only,
and the submit intent is written before the POST (see shared/core/submission.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.core.decision import Action
from shared.core.naming import BAD_NAME, is_health_probe, name_problem, repeatability_id, unquote_etag
from shared.core.operator import as_run_of, canceled_by_operator, redrive_origin
from shared.core.submission import (
    IntakeStep,
    Parts,
    intake_step,
    needs_new_attempt,
    post_unanswered,
    received,
    scored_by_earlier_post,
    still_waiting_on,
    submit_intent,
    submitted,
    waiting,
)
from shared.csvfiles import HEAD_BYTES, validate_head, validate_name_and_size
from shared.errors import (
    BlobChanged,
    BlobMissing,
    InputInvalid,
    JobExists,
    JobNameTaken,
    RemoteJobNotFound,
    ScoringAuthError,
    ScoringRequestError,
    ScoringUnavailable,
    StaleJob,
)
from shared.logcontext import about_job, note_aml_job
from shared.models import BlobRef, InvokeRequest, Job, JobState, RemoteJob
from shared.usecases.admission import admit, renew_slot
from shared.usecases.complete import end, finalize, request_completion, try_cancel_in_azure_ml
from shared.usecases.deps import Deps, retry_lost_races
from shared.usecases.outbox import flush_events
from shared.usecases.redrive import link_previous_run
from shared.usecases.shard import parts_for

log = logging.getLogger("dropscore")


def accept_blob(
    deps: Deps,
    *,
    container: str,
    name: str,
    size: int,
    etag: str | None,
    url: str,
    metadata: dict[str, str] | None = None,
) -> Job | None:
    """A blob appeared: record it once, validate it, submit it. Returns the job (None when ignored).

    Without `etag`, the version's ETag, size and metadata are read in one properties call; a redriven input's
    metadata makes the job the next run of the job it names (`core.operator.redrive_origin`)."""
    if is_health_probe(name):
        log.info("ignored %s/%s: a health-check probe (written and deleted by the health check)", container, name)
        return None
    # A 0-byte blob is committed (the BlobCreated filter leaves out ADLS CreateFile, the only call that
    # announces a file before its data): it is validated, and rejected as Empty, like any other input.
    if not etag:
        info = deps.blobs.properties(container, name)
        if info is None:
            log.info("ignored %s/%s: deleted before it could be read", container, name)
            return None
        etag, size, metadata = info.etag, info.size, info.metadata
    ref = BlobRef(deps.blobs.account_name, container, name, unquote_etag(etag), size, url)
    fresh = received(ref, deps.clock(), route=deps.settings.routes.for_input(name).name)
    fresh = as_run_of(fresh, redrive_origin(metadata or {}))
    with about_job(fresh.job_id):
        job = _create_or_load(deps, fresh)
        if job.previous_job_id:
            link_previous_run(deps, job)
        return advance(deps, job)


def _create_or_load(deps: Deps, fresh: Job) -> Job:
    job_id = fresh.job_id
    deps.store.mark_active(fresh)  # first: a crash after it leaves a row the poller heals, never a lost job
    try:
        job = deps.store.create(fresh)
        log.info("job %s received for %s/%s (etag %s)", job_id, fresh.container, fresh.name, fresh.blob_etag)
    except JobExists:
        existing = deps.store.get(job_id)
        if existing is None:  # created and removed in between: treat as new next time
            raise StaleJob(f"job {job_id} vanished while it was being read") from None
        log.info("job %s: duplicate trigger for %s/%s, state %s", job_id, fresh.container, fresh.name, existing.state)
        job = existing
    if job.finalized:
        deps.store.unmark_active(job_id)
    return job


def advance(deps: Deps, job: Job) -> Job:
    """Move a job forward on the submit side as far as it can go now; a no-op for duplicates."""
    return retry_lost_races(deps, job, lambda current: _advance_once(deps, current))


def _advance_once(deps: Deps, job: Job) -> Job:
    note_aml_job(job.aml_job_name)  # a job submitted before: its lines name its Azure ML job too
    step = intake_step(job, deps.clock())
    if step in {IntakeStep.VALIDATE, IntakeStep.ADMIT} and deps.route_gone(job):
        message = f"its route {job.route!r} is no longer in ROUTES, so it has no endpoint to go to; drop it again"
        log.error("job %s: failed: %s", job.job_id, message)
        return end(deps, job, state=JobState.FAILED, code="RouteGone", message=message)
    if step is IntakeStep.VALIDATE:
        return _validate_and_submit(deps, job)
    if step is IntakeStep.ADMIT:
        return _admit_and_submit(deps, job)
    if step is IntakeStep.RECONCILE:
        return reconcile_submission(deps, job)
    if step is IntakeStep.WAIT_FOR_LEASE:
        log.info("job %s: submission in progress elsewhere (lease until %s)", job.job_id, job.submit_lease_until)
        return job
    if step is IntakeStep.FINISH:
        return finalize(deps, job)
    return flush_events(deps, job)


def _validate_and_submit(deps: Deps, job: Job) -> Job:
    try:
        _validate(deps, job)
    except InputInvalid as exc:
        log.warning("job %s: input %s/%s rejected: %s", job.job_id, job.container, job.name, exc.message)
        return end(deps, job, state=JobState.REJECTED, code=exc.code, message=exc.message)
    except (BlobChanged, BlobMissing) as exc:  # the version we were told about is gone: nothing to score
        log.warning("job %s: %s", job.job_id, exc.message)
        return end(deps, job, state=JobState.CANCELED, code=exc.code, message=exc.message)
    return _admit_and_submit(deps, job)


def _admit_and_submit(deps: Deps, job: Job) -> Job:
    """Take a slot under MAX_JOBS_IN_FLIGHT (or wait for one), split a big input into parts, then submit."""
    if not admit(deps, job):
        if job.state == JobState.WAITING:
            return job
        log.info("job %s: every slot under MAX_JOBS_IN_FLIGHT is taken; waiting", job.job_id)
        saved = deps.store.update(waiting(job, deps.clock()))
        deps.store.refresh_active(saved)  # the tick finds waiting jobs, oldest first, from the index alone
        return saved
    lease = _SplitLease(deps, job)
    try:
        if job.state == JobState.WAITING:  # it may have waited long: is its version still the one we validated?
            _still_there(deps, job)
        parts = parts_for(deps, job, on_part=lease.renew)
    except InputInvalid as exc:
        job = lease.job  # the row as the split last renewed it
        log.warning("job %s: input %s/%s rejected: %s", job.job_id, job.container, job.name, exc.message)
        return end(deps, job, state=JobState.REJECTED, code=exc.code, message=exc.message)
    except (BlobChanged, BlobMissing) as exc:
        job = lease.job
        log.warning("job %s: %s", job.job_id, exc.message)
        return end(deps, job, state=JobState.CANCELED, code=exc.code, message=exc.message)
    return _submit(deps, lease.job, new_attempt=True, parts=parts)


def _validate(deps: Deps, job: Job) -> None:
    settings = deps.settings
    problem = name_problem(job.name)
    if problem is not None:
        raise InputInvalid(f"the blob name cannot be used: {problem}", code=BAD_NAME)
    if job.size == 0:
        raise InputInvalid("the file is empty (0 bytes)", code="Empty")
    validate_name_and_size(job.name, job.size, settings.max_input_bytes)
    length = min(HEAD_BYTES, job.size)
    head = deps.blobs.read_range(job.container, job.name, offset=0, length=length, etag=job.blob_etag)
    required = deps.model_columns.current(deps.route_of(job))
    validate_head(
        head,
        truncated=job.size > length,
        delimiter=settings.csv_delimiter,
        required_columns=required.names,
        columns_source=required.source,
    )


def _submit(deps: Deps, job: Job, *, new_attempt: bool, parts: Parts | None) -> Job:
    """Write the intent (Submitting, deterministic output and name) BEFORE the POST, then POST."""
    plan = deps.submit_plan_for(deps.route_of(job))
    decision = submit_intent(job, plan, deps.clock(), new_attempt=new_attempt, parts=parts)
    if decision.action is Action.FINISH:
        log.error("job %s: failed: %s", job.job_id, decision.job.error_message)
        return finalize(deps, deps.store.update(decision.job))
    if job.state == JobState.WAITING:
        # The index must stop saying Waiting before the intent exists: a tick never polls a Waiting row, so a
        # crash after the intent (or the POST) would otherwise hide an in-flight job behind it.
        deps.store.refresh_active(decision.job)
    intent = deps.store.update(decision.job)
    note_aml_job(intent.aml_job_name)  # the intent names the Azure ML job: the job's lines name it from here on
    return _post(deps, intent)


def _still_there(deps: Deps, job: Job) -> None:
    info = deps.blobs.properties(job.container, job.name)
    if info is None:
        raise BlobMissing(f"the input {job.container}/{job.name} was deleted while it waited for a slot")
    if unquote_etag(info.etag) != job.blob_etag:
        raise BlobChanged(f"the input {job.container}/{job.name} was overwritten while it waited for a slot")


class _SplitLease:
    """Keeps a long split's claim alive: the job's row (so the poller does not resume it) and its slot (so no
    one takes it back), rewritten every third of SUBMIT_LEASE_SECONDS while parts are written."""

    def __init__(self, deps: Deps, job: Job) -> None:
        self.deps, self.job = deps, job
        self._renewed = deps.clock()

    def renew(self) -> None:
        now = self.deps.clock()
        if now - self._renewed < self.deps.submit_lease / 3:
            return
        self.job = self.deps.store.update(replace(self.job, updated_at=now))  # StaleJob: moved on elsewhere
        renew_slot(self.deps, self.job)
        self._renewed = now


def _post(deps: Deps, job: Job) -> Job:
    request = InvokeRequest(
        job_name=job.aml_job_name,
        input_uri=job.input_uri,
        output_uri=job.output_uri,
        repeatability_id=repeatability_id(job.job_id, job.attempt),
        deployment=job.deployment or None,
        input_type="UriFolder" if job.parts else "UriFile",
        mini_batch_size=1 if job.parts else None,  # one part per mini-batch: the parts spread over every worker
    )
    try:
        remote = deps.scoring_for(job.endpoint).invoke(request)
    except JobNameTaken:
        log.info("job %s: Azure ML job %s already exists; adopting it", job.job_id, job.aml_job_name)
        remote = deps.scoring_for(job.endpoint).get_job(job.aml_job_name)
    except ScoringUnavailable as exc:
        log.warning(
            "job %s: invoke failed (%s); left Submitting for the poller to %s",
            job.job_id,
            exc.message,
            "reconcile" if exc.ambiguous else "retry",
        )
        unanswered = post_unanswered(job, ambiguous=exc.ambiguous, code=exc.code, message=exc.message, now=deps.clock())
        return _save_post_outcome(deps, unanswered)
    except (ScoringAuthError, ScoringRequestError) as exc:
        log.error("job %s: failed: %s: %s", job.job_id, exc.code, exc.message)
        return end(deps, job, state=JobState.FAILED, code=exc.code, message=exc.message)
    return _record_submitted(deps, job, remote)


def _record_submitted(deps: Deps, job: Job, remote: RemoteJob) -> Job:
    note_aml_job(remote.name)
    log.info("job %s: submitted as Azure ML job %s (%s)", job.job_id, remote.name, remote.status)
    saved = _save_post_outcome(deps, submitted(job, remote, deps.clock()))
    return flush_events(deps, saved)


def _save_post_outcome(deps: Deps, job: Job) -> Job:
    """Record what our POST returned. After a lost race, only if the row still waits on that same POST."""
    try:
        return deps.store.update(job)
    except StaleJob:
        stored = deps.store.get(job.job_id)
        if stored is None or not still_waiting_on(stored, job):
            log.info("job %s: moved on elsewhere; keeping the stored transition", job.job_id)
            if stored is not None and job.state == JobState.SUBMITTED and canceled_by_operator(stored):
                try_cancel_in_azure_ml(deps, job)  # canceled while our POST was out: its Azure ML job exists only now
            return stored or job
        return deps.store.update(replace(job, version=stored.version))


def reconcile_submission(deps: Deps, job: Job) -> Job:
    """A Submitting row whose lease expired: find the job a lost response may have created before any re-POST."""
    if job.posts > 0:
        try:
            remote: RemoteJob | None = deps.scoring_for(job.endpoint).get_job(job.aml_job_name)
        except RemoteJobNotFound:
            remote = None
        if remote is not None:
            log.info("job %s: found Azure ML job %s from an earlier POST", job.job_id, remote.name)
            return _record_submitted(deps, job, remote)
        if job.output_path and deps.blobs.properties(job.output_container, job.output_path) is not None:
            log.info("job %s: predictions already written by an earlier POST", job.job_id)
            return request_completion(deps, scored_by_earlier_post(job, deps.clock()))
    parts = Parts(job.parts, job.parts_folder) if job.parts else None
    return _submit(deps, job, new_attempt=needs_new_attempt(job), parts=parts)
