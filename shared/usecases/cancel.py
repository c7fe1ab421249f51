"""Cancel (HTTP POST /api/jobs/{id}/cancel): an operator ends a job that has no outcome yet.

The row is written Canceled (CanceledByOperator) first, ETag-conditionally: a poller or a trigger that moved the
job meanwhile makes the write lose, and the job is decided again as it now is (a job that got its outcome in
between is refused). Then Azure ML is asked to cancel its job, and the completion is queued as for any job that
ended without predictions: the slot is given back, the input filed in the failed container, JobFailed published.
Every writer that lost the race to the cancel reloads the row and finds it Canceled, so nothing else moves it on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.core.operator import cancel_refusal, canceled, canceled_by_operator
from shared.errors import DropScoreError
from shared.logcontext import about_job, note_aml_job
from shared.models import Job, Stage
from shared.usecases.complete import request_completion
from shared.usecases.deps import Deps, retry_lost_races

log = logging.getLogger("dropscore")


@dataclass(frozen=True)
class CancelOutcome:
    """The job as stored after the call; `changed` is False when an operator had already canceled it."""

    job: Job
    changed: bool


def cancel_job(deps: Deps, job_id: str) -> CancelOutcome | None:
    """Cancel the job (None: no such job). Raises WrongState (a Conflict) when it already has its outcome."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is None:
            return None
        note_aml_job(job.aml_job_name)
        outcome = retry_lost_races(deps, job, lambda current: _cancel_once(deps, current))
        if not outcome.changed:
            log.info("job %s: already canceled by an operator (%s); nothing to do", job_id, outcome.job.stage.value)
            return outcome
        job = outcome.job
        log.warning("job %s: canceled by an operator (%s)", job_id, job.error_message)
        _refresh_index(deps, job)
        cancel_in_azure_ml(deps, job)
        # Queued as the poller queues a Canceled job's completion; a finalize that got there first leaves nothing.
        queued = retry_lost_races(deps, job, lambda current: _queue_completion(deps, current))
        return CancelOutcome(queued, changed=True)


def _cancel_once(deps: Deps, job: Job) -> CancelOutcome:
    if canceled_by_operator(job):
        return CancelOutcome(job, changed=False)
    refusal = cancel_refusal(job)
    if refusal is not None:
        log.info("job %s: cancel refused: %s", job.job_id, refusal.message)
        raise refusal
    return CancelOutcome(deps.store.update(canceled(job, deps.clock())), changed=True)


def _queue_completion(deps: Deps, job: Job) -> Job:
    if job.stage is not Stage.ENDED:
        return job  # already filed (or done) by a trigger that found the row Canceled
    return request_completion(deps, job)


def _refresh_index(deps: Deps, job: Job) -> None:
    """The active index's summary says Canceled now (a tick polls no job Azure ML no longer has for us)."""
    try:
        deps.store.refresh_active(job)
    except DropScoreError as exc:
        log.warning("job %s: index summary not updated (%s); the next tick reads the ledger", job.job_id, exc.message)


def cancel_in_azure_ml(deps: Deps, job: Job) -> None:
    """Ask Azure ML to cancel the job's run, when it has one. The job is Canceled whatever the answer: a run that
    goes on anyway writes predictions nobody joins (its output path is the job's own)."""
    if not job.aml_job_name:
        return
    try:
        asked = deps.scoring_for(job.endpoint).cancel(job.aml_job_name)
    except DropScoreError as exc:
        log.error("job %s: could not cancel Azure ML job %s: %s", job.job_id, job.aml_job_name, exc.message)
        return
    if asked:
        log.info("job %s: Azure ML job %s asked to cancel", job.job_id, job.aml_job_name)
    else:
        log.warning(
            "job %s: Azure ML job %s not canceled there (no AML_WORKSPACE_ID, or Azure ML does not know it yet)",
            job.job_id,
            job.aml_job_name,
        )
