"""Pure decisions: no I/O, no Azure imports. Everything here is a function of its arguments."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.models import REMOTE_ACTIVE, EventType, Job, JobState, RemoteJob, RemoteStatus

_NAMESPACE = uuid.UUID("6f1d2a52-8d3c-4f0e-9a57-3c1b0d9e5a41")


def unquote_etag(etag: str) -> str:
    """ETags arrive quoted (SDKs) and unquoted (some events); compare them unquoted."""
    return etag.strip().strip('"')


def job_key(account: str, container: str, name: str, etag: str) -> str:
    """The ledger key of one blob version: a hash, since Table keys forbid '/' and other path characters."""
    text = f"{account}/{container}/{name}\n{unquote_etag(etag)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def aml_job_name(job_id: str, attempt: int) -> str:
    """Deterministic Azure ML job name: a repeated POST for the same attempt names the same job."""
    return f"dropscore-{job_id[:32]}-{attempt}"


def repeatability_id(job_id: str, attempt: int) -> str:
    """The same `repeatability_request-id` for every POST of one attempt, as the SDK does on resend."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}/{attempt}"))


def aml_output_path(prefix: str, job_id: str, attempt: int) -> str:
    """Where Azure ML writes this attempt's predictions; unique per attempt since AML never overwrites."""
    return f"{prefix}/{job_id}/{attempt}/predictions.csv"


def datastore_uri(datastore: str, path: str) -> str:
    return f"azureml://datastores/{datastore}/paths/{path}"


def predictions_name(input_name: str) -> str:
    """The predictions file sits next to the input's path in the output container."""
    return f"{input_name}.predictions.csv"


def reason_name(input_name: str) -> str:
    return f"{input_name}.reason.json"


def event_id(job_id: str, event_type: EventType | str, attempt: int) -> str:
    """Deterministic per job, attempt and type, so subscribers can drop duplicates."""
    suffix = str(event_type).rsplit(".", 1)[-1]
    return f"{job_id}-{attempt}-{suffix}"


def blob_subject(container: str, name: str) -> str:
    """Azure's own BlobCreated subject convention, so subscribers filter the same way."""
    return f"/blobServices/default/containers/{container}/blobs/{name}"


class Phase(StrEnum):
    """How one Azure ML status is treated."""

    WAITING = "waiting"  # accepted, not yet running: counts against the queued limit
    RUNNING = "running"  # running: counts against the running limit
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNCERTAIN = "uncertain"  # may recover or end: keep polling under the current limit


STATUS_PHASE: dict[RemoteStatus, Phase] = {
    RemoteStatus.NOT_STARTED: Phase.WAITING,
    RemoteStatus.STARTING: Phase.WAITING,
    RemoteStatus.PROVISIONING: Phase.WAITING,
    RemoteStatus.PREPARING: Phase.WAITING,
    RemoteStatus.QUEUED: Phase.WAITING,
    RemoteStatus.RUNNING: Phase.RUNNING,
    RemoteStatus.FINALIZING: Phase.RUNNING,
    RemoteStatus.CANCEL_REQUESTED: Phase.UNCERTAIN,
    RemoteStatus.COMPLETED: Phase.SUCCEEDED,
    RemoteStatus.FAILED: Phase.FAILED,
    RemoteStatus.CANCELED: Phase.CANCELED,
    RemoteStatus.NOT_RESPONDING: Phase.UNCERTAIN,
    RemoteStatus.PAUSED: Phase.UNCERTAIN,
    RemoteStatus.UNKNOWN: Phase.UNCERTAIN,
}


@dataclass(frozen=True)
class StuckPolicy:
    """Separate limits: hours in a capacity queue are normal, a run that never ends is not."""

    queued_limit: timedelta
    running_limit: timedelta

    def overdue(self, job: Job, now: datetime) -> str | None:
        """The reason the job is stuck, or None while it is within its limit."""
        if job.state == JobState.RUNNING and job.started_at is not None:
            if now - job.started_at > self.running_limit:
                return f"running for more than {_minutes(self.running_limit)} minutes"
            return None
        if job.submitted_at is not None and now - job.submitted_at > self.queued_limit:
            return f"not running after {_minutes(self.queued_limit)} minutes in the queue"
        return None


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


class Action(StrEnum):
    WAIT = "wait"  # nothing to do until the next tick
    FINISH = "finish"  # remote work is over: hand over to completion
    CANCEL = "cancel"  # over its limit: cancel the AML job, then finish as TimedOut


@dataclass(frozen=True)
class Decision:
    action: Action
    job: Job


def decide(job: Job, remote: RemoteJob, now: datetime, policy: StuckPolicy) -> Decision:
    """What one poll result means for a Submitted/Running job.

    Never moves a job backwards: a stale or out-of-order status for a job already done is ignored.
    """
    if job.state not in REMOTE_ACTIVE:
        return Decision(Action.WAIT, job)
    seen = replace(
        job,
        aml_status=remote.status.value,
        studio_url=remote.studio_url or job.studio_url,
        last_polled_at=now,
        updated_at=now,
    )
    phase = STATUS_PHASE[remote.status]
    if phase == Phase.SUCCEEDED:
        return Decision(Action.FINISH, replace(seen, state=JobState.SCORED, scored_at=now, finished_at=now))
    if phase == Phase.FAILED:
        failed = replace(
            seen,
            state=JobState.FAILED,
            finished_at=now,
            error_code=remote.error_code or "AzureMLJobFailed",
            error_message=remote.error_message or "The Azure ML job failed without an error message.",
        )
        return Decision(Action.FINISH, failed)
    if phase == Phase.CANCELED:
        canceled = replace(
            seen,
            state=JobState.CANCELED,
            finished_at=now,
            error_code="AzureMLJobCanceled",
            error_message="The Azure ML job was canceled.",
        )
        return Decision(Action.FINISH, canceled)
    if phase == Phase.RUNNING and seen.state == JobState.SUBMITTED:
        seen = replace(seen, state=JobState.RUNNING, started_at=seen.started_at or now)
    reason = policy.overdue(seen, now)
    if reason is not None:
        return Decision(Action.CANCEL, timed_out(seen, now, reason))
    return Decision(Action.WAIT, seen)


def timed_out(job: Job, now: datetime, reason: str) -> Job:
    message = f"Azure ML job {job.aml_job_name or '(none)'} was {reason}; it was canceled."
    return end_job(job, JobState.TIMED_OUT, "JobTimedOut", message, now)


def end_job(job: Job, state: JobState, code: str, message: str, now: datetime) -> Job:
    """A job that ends without predictions, with its error. Its final event is queued by finalize,
    once the input is filed, so no path can announce the end before it is done."""
    return replace(
        job,
        state=state,
        error_code=code,
        error_message=message,
        finished_at=now,
        updated_at=now,
        submit_lease_until=None,
    )


def final_event_type(state: JobState) -> EventType:
    """The one event a finished job publishes."""
    if state in {JobState.SCORED, JobState.COMPLETED}:
        return EventType.JOB_COMPLETED
    if state == JobState.REJECTED:
        return EventType.INPUT_REJECTED
    return EventType.JOB_FAILED


def submit_lease_expired(job: Job, now: datetime) -> bool:
    return job.submit_lease_until is None or now >= job.submit_lease_until


def completion_message(job_id: str) -> str:
    return json.dumps({"jobId": job_id})


def parse_completion_message(body: str) -> str:
    """The job id in a completion message; ValueError for anything else."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("jobId"), str) or not message["jobId"]:
        raise ValueError('a completion message is {"jobId": "<id>"}')
    return str(message["jobId"])
