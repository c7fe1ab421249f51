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

from shared.core.operator import cancel_refusal, cancel_requested, canceled, canceled_by_operator
from shared.errors import DropScoreError, TransientError
from shared.logcontext import about_job, note_aml_job
from shared.models import Job, Stage
from shared.usecases.complete import cancel_in_azure_ml, request_completion
from shared.usecases.deps import Deps, retry_lost_races

log = logging.getLogger("dropscore")


@dataclass(frozen=True)
class CancelOutcome:
    """The job as stored after the call; `changed` is False when an operator had already canceled it."""

    job: Job
    changed: bool


def cancel_job(deps: Deps, job_id: str) -> CancelOutcome | None:
    """Cancel the job (None: no such job). Raises WrongState (a Conflict) when it already has its outcome, and
    TransientError when Azure ML could not be asked now (the job is Canceled: calling again asks again)."""
    with about_job(job_id):
        job = deps.store.get(job_id)
        if job is None:
            return None
        note_aml_job(job.aml_job_name)
        outcome = retry_lost_races(deps, job, lambda current: _cancel_once(deps, current))
        job = outcome.job
        if outcome.changed:
            log.warning("job %s: canceled by an operator (%s)", job_id, job.error_message)
        elif job.stage is not Stage.ENDED:
            log.info("job %s: already canceled by an operator (%s); nothing to do", job_id, job.stage.value)
            return outcome
        else:
            log.info(
                "job %s: already canceled by an operator; asking Azure ML and queueing the completion again", job_id
            )
        # Until the job is filed, a repeated call does both again: a crash or an outage in between loses nothing.
        unanswered: TransientError | None = None
        asked = False
        try:
            asked = cancel_in_azure_ml(deps, job)
        except TransientError as exc:
            unanswered = exc
        except DropScoreError as exc:
            log.error("job %s: Azure ML refused to cancel %s: %s", job_id, job.aml_job_name, exc.message)
        # Queued as the poller queues a Canceled job's completion; a finalize that got there first leaves nothing.
        queued = retry_lost_races(deps, job, lambda current: _queue_completion(deps, current, asked=asked))
        if unanswered is not None:
            raise TransientError(
                f"job {job_id} is canceled, but Azure ML could not be asked to cancel its job now "
                f"({unanswered.message}); call again, or the completion asks once more"
            )
        return CancelOutcome(queued, changed=outcome.changed)


def _cancel_once(deps: Deps, job: Job) -> CancelOutcome:
    if canceled_by_operator(job):
        return CancelOutcome(job, changed=False)
    refusal = cancel_refusal(job)
    if refusal is not None:
        log.info("job %s: cancel refused: %s", job.job_id, refusal.message)
        raise refusal
    ended = canceled(job, deps.clock())
    # The index's summary first: any summary that does not wait on Azure ML sends the tick to the ledger row, so
    # a crash right after the ledger write still has the poller queue the completion (and if this write loses,
    # the tick finds the row as it is and rewrites the summary).
    _refresh_index(deps, ended)
    return CancelOutcome(deps.store.update(ended), changed=True)


def _queue_completion(deps: Deps, job: Job, *, asked: bool) -> Job:
    if job.stage is not Stage.ENDED:
        return job  # already filed (or done) by a trigger that found the row Canceled
    return request_completion(deps, cancel_requested(job) if asked else job)


def _refresh_index(deps: Deps, job: Job) -> None:
    """The active index's summary says Canceled (a tick then reads the ledger row instead of asking Azure ML)."""
    try:
        deps.store.refresh_active(job)
    except DropScoreError as exc:
        log.warning("job %s: index summary not updated (%s)", job.job_id, exc.message)
