"""An operator's actions on a job (POST /api/jobs/{id}/redrive and /cancel): what each may do, and the moves.

Redrive runs a finished job again as a NEW job linked to the old one: its filed input is copied back to the
name it was uploaded under, with metadata naming the old job and the run number (`redrive_metadata`), and the
blob trigger makes the new job as for any upload (`redrive_origin` reads the link back). The old row records
the new job's id once (`redrive_recorded`). Cancel ends a job that has no outcome yet as Canceled with the
operator as the reason; its completion then files the input like any failure's.

Refusals are returned, never raised: the use case raises them (409 with the job's state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shared.core.completion import moved_by
from shared.core.naming import is_job_key
from shared.core.submission import ended
from shared.errors import Conflict, InputGone, JobActive, WrongState
from shared.models import BlobInfo, Job, JobState, RemoteStatus, Stage

#: The error code of a job an operator canceled.
CANCELED_BY_OPERATOR = "CanceledByOperator"
#: Metadata on a redriven input: the job it redrives, and which run of the input it is.
REDRIVE_OF = "dropscore_redrive_of"
REDRIVE_RUN = "dropscore_run"
#: The ends a redrive may start again from (a Completed job has its predictions).
REDRIVABLE = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED})


@dataclass(frozen=True)
class RedriveOrigin:
    """What a redriven input's metadata says: the job it redrives and its run number."""

    previous_job_id: str
    run: int


# ---- redrive ---------------------------------------------------------------------------------------------


def redrive_refusal(job: Job) -> Conflict | None:
    """Why `job` cannot be redriven from its row alone (None: it can, if its filed input is still there).
    A job already redriven is not refused: the use case answers the run it started."""
    state = job.state.value
    if job.stage is Stage.WORKING or job.state == JobState.SCORED:
        return JobActive(f"the job is still {state}: cancel it first, or wait for it to end", state=state)
    if job.state not in REDRIVABLE:
        return WrongState(f"a {state} job has its predictions; upload the input again to score it again", state=state)
    if job.stage is Stage.ENDED:
        return JobActive(f"the job ended {state} and its input is being filed: try again in a moment", state=state)
    if job.input_not_moved or not job.archive_container:
        why = job.input_not_moved or "it was never filed"
        return InputGone(f"the job's input was not filed ({why}): there is nothing to run again", state=state)
    return None


def may_redrive(job: Job) -> bool:
    """The operator page's Redrive button: an ended, filed job not redriven yet."""
    return not job.redriven_to and redrive_refusal(job) is None


def filed_input_refusal(job: Job, filed: BlobInfo | None) -> InputGone | None:
    """The filed input must still be the copy this job made (it carries the job's id): None when it is."""
    if moved_by(job, filed):
        return None
    where = f"{job.archive_container}/{job.name}"
    why = "was deleted" if filed is None else "was replaced by another job's copy or an upload"
    return InputGone(f"the job's filed input {where} {why}", state=job.state.value)


def redrive_metadata(job: Job) -> dict[str, str]:
    """What the copy back to the input's name carries: the new run reads it at intake."""
    return {REDRIVE_OF: job.job_id, REDRIVE_RUN: str(job.run + 1)}


def is_redrive_of(job: Job, blob: BlobInfo | None) -> bool:
    """The blob at the input's name is a redrive copy of `job` (a racing or retried call made it)."""
    return blob is not None and _lowered(blob.metadata).get(REDRIVE_OF) == job.job_id


def redrive_origin(metadata: Mapping[str, str]) -> RedriveOrigin | None:
    """The link a redriven input carries; None for any other blob, or metadata that is not ours to trust
    (a job id that is not a job key, a run that is not a positive integer)."""
    values = _lowered(metadata)
    previous, run = values.get(REDRIVE_OF, ""), values.get(REDRIVE_RUN, "")
    if not is_job_key(previous) or not run.isascii() or not run.isdigit() or int(run) < 1:
        return None
    return RedriveOrigin(previous, int(run))


def as_run_of(job: Job, origin: RedriveOrigin | None) -> Job:
    """A fresh job (`submission.received`) as the run its input's metadata says it is."""
    if origin is None or origin.previous_job_id == job.job_id:
        return job
    return replace(job, run=origin.run, previous_job_id=origin.previous_job_id)


def redrive_recorded(old: Job, new_job_id: str, now: datetime) -> Job | None:
    """The old row linked to the run that redrove it; None when a link is already there (it is set once)."""
    if old.redriven_to:
        return None
    return replace(old, redriven_to=new_job_id, updated_at=now)


# ---- cancel ----------------------------------------------------------------------------------------------


def canceled_by_operator(job: Job) -> bool:
    return job.state == JobState.CANCELED and job.error_code == CANCELED_BY_OPERATOR


def cancel_refusal(job: Job) -> Conflict | None:
    """Why `job` cannot be canceled (None: it can, or an operator already did: `canceled_by_operator`)."""
    if job.stage is Stage.WORKING or canceled_by_operator(job):
        return None
    state = job.state.value
    return WrongState(f"the job already has its outcome ({state}): there is nothing to cancel", state=state)


def may_cancel(job: Job) -> bool:
    """The operator page's Cancel button: a job with no outcome yet."""
    return job.stage is Stage.WORKING


#: The Azure ML status a canceled job's row records once Azure ML took the cancel request.
CANCEL_REQUESTED = RemoteStatus.CANCEL_REQUESTED.value


def cancel_requested(job: Job) -> Job:
    """Azure ML took the cancel request: the row says so (and the completion need not ask again)."""
    return replace(job, aml_status=CANCEL_REQUESTED)


def canceled(job: Job, now: datetime) -> Job:
    """The job ends Canceled, the operator as its reason; completion files its input and publishes JobFailed."""
    message = f"an operator canceled the job while it was {job.state.value}"
    return ended(job, JobState.CANCELED, CANCELED_BY_OPERATOR, message, now)


def _lowered(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata names are case-insensitive in Blob storage."""
    return {key.lower(): value for key, value in metadata.items()}
