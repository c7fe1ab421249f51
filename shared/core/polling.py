"""Poll-side transitions: what an active-index row needs, and what one Azure ML status means for a job."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.core.completion import unpublished
from shared.core.decision import Action, Decision
from shared.core.submission import ended, submit_lease_expired
from shared.models import REMOTE_ACTIVE, REMOTE_DONE, Job, JobState, JobSummary, RemoteJob, RemoteStatus, Stage


class PollStep(StrEnum):
    """What one tick does for one active-index row. Steps that finish at once (being-created, index-healed,
    submitting, ...) name the outcome in the tick's summary; the others report what they found."""

    BEING_CREATED = "being-created"  # no ledger row yet: the trigger writes the index row first
    REMOVE_ORPHAN = "orphan-removed"  # no ledger row, long past creation: drop the index row
    HEAL_INDEX = "index-healed"  # done, but a crash left its index row: drop it
    CHECK_REMOTE = "check-remote"  # Submitted/Running: ask Azure ML
    ENSURE_COMPLETION = "ensure-completion"  # has its outcome: make sure a completion is on its way
    SUBMITTING = "submitting"  # a POST is in flight under a live lease
    RECEIVING = "receiving"  # a trigger is validating it right now
    RESUME = "resumed"  # stalled on the submit side: carry on where it stopped
    WAITING_FOR_SLOT = "waiting-for-slot"  # Waiting: the tick's admission submits it, oldest first


def poll_step(job: Job | None, *, indexed_at: datetime | None, now: datetime, grace: timedelta) -> PollStep:
    if job is None:
        if indexed_at is not None and now - indexed_at < grace:
            return PollStep.BEING_CREATED
        return PollStep.REMOVE_ORPHAN
    if job.finalized:
        return PollStep.HEAL_INDEX
    if job.state in REMOTE_ACTIVE:
        return PollStep.CHECK_REMOTE
    if job.state in REMOTE_DONE:
        return PollStep.ENSURE_COMPLETION
    if job.state == JobState.WAITING:
        return PollStep.WAITING_FOR_SLOT
    if job.state == JobState.SUBMITTING and not submit_lease_expired(job, now):
        return PollStep.SUBMITTING
    if job.state == JobState.RECEIVED and now - job.updated_at < grace:
        return PollStep.RECEIVING
    return PollStep.RESUME


def completion_overdue(job: Job, now: datetime, redelivery: timedelta) -> bool:
    """A finished job whose completion message may be lost: none was queued, or it was queued long ago."""
    return job.completion_enqueued_at is None or now - job.completion_enqueued_at >= redelivery


def completion_queued(job: Job, now: datetime) -> Job:
    return replace(job, completion_enqueued_at=now, completion_attempts=job.completion_attempts + 1, updated_at=now)


def completion_exhausted(job: Job, max_attempts: int) -> bool:
    """Every completion message this job was allowed has been queued and none finished it."""
    return job.completion_attempts >= max_attempts


def settled(job: Job, now: datetime, grace: timedelta) -> bool:
    """Nobody has written the row for `grace`: whoever wrote it last is done or dead, so the poller may
    publish its pending events or queue its completion without racing a live trigger doing the same."""
    return now - job.updated_at >= grace


def remote_missing(job: Job, now: datetime, grace: timedelta) -> Job | None:
    """Azure ML does not know the job: give a fresh one time to become visible, then fail it."""
    if job.submitted_at is not None and now - job.submitted_at < grace:
        return None
    return ended(job, JobState.FAILED, "RemoteJobNotFound", f"Azure ML has no job named {job.aml_job_name}", now)


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

    def overdue(self, job: Job | JobSummary, now: datetime) -> str | None:
        """The reason the job is stuck, or None while it is within its limit (the same from its index summary)."""
        if job.state == JobState.RUNNING and job.started_at is not None:
            if now - job.started_at > self.running_limit:
                return f"running for more than {_minutes(self.running_limit)} minutes"
            return None
        if job.submitted_at is not None and now - job.submitted_at > self.queued_limit:
            return f"not running after {_minutes(self.queued_limit)} minutes in the queue"
        return None


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


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
        scored = replace(seen, state=JobState.SCORED, stage=Stage.ENDED, scored_at=now, finished_at=now)
        return Decision(Action.FINISH, scored)
    if phase == Phase.FAILED:
        code = remote.error_code or "AzureMLJobFailed"
        message = remote.error_message or "The Azure ML job failed without an error message."
        return Decision(Action.FINISH, ended(seen, JobState.FAILED, code, message, now))
    if phase == Phase.CANCELED:
        message = "The Azure ML job was canceled."
        return Decision(Action.FINISH, ended(seen, JobState.CANCELED, "AzureMLJobCanceled", message, now))
    if phase == Phase.RUNNING and seen.state == JobState.SUBMITTED:
        seen = replace(seen, state=JobState.RUNNING, started_at=seen.started_at or now)
    reason = policy.overdue(seen, now)
    if reason is not None:
        return Decision(Action.CANCEL, timed_out(seen, now, reason))
    return Decision(Action.WAIT, seen)


def timed_out(job: Job, now: datetime, reason: str) -> Job:
    message = f"Azure ML job {job.aml_job_name or '(none)'} was {reason}; it was canceled."
    return ended(job, JobState.TIMED_OUT, "JobTimedOut", message, now)


def worth_writing(before: Job, after: Job) -> bool:
    """A quiet tick costs reads, not writes: a waiting job is written only when what Azure ML says changed."""
    return before.state != after.state or (before.aml_status, before.studio_url) != (after.aml_status, after.studio_url)


def summary_of(job: Job) -> JobSummary:
    """What the active index keeps of `job` for the next tick (`nothing_new`)."""
    return JobSummary(
        state=job.state,
        aml_job_name=job.aml_job_name,
        aml_status=job.aml_status,
        studio_url=job.studio_url,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        updated_at=job.updated_at,
        events_pending=bool(unpublished(job)),
        created_at=job.created_at,
        checked_at=job.last_polled_at,
        endpoint=job.endpoint,
        route=job.route,
    )


def waits_on_azure_ml(summary: JobSummary | None) -> bool:
    """The index says Azure ML has the job: the tick asks for its status before reading anything else."""
    return summary is not None and summary.state in REMOTE_ACTIVE and bool(summary.aml_job_name)


def nothing_new(
    summary: JobSummary, remote: RemoteJob, now: datetime, *, policy: StuckPolicy, outbox_grace: timedelta
) -> bool:
    """Azure ML's answer changes nothing the ledger row holds, so the tick may skip the row.

    True exactly when reading the row would end as a quiet wait: the same status and studio link (`decide`
    would neither move the job nor find it worth writing), no limit passed, and no pending event the poller
    should publish now. A summary is only a hint: any difference sends the tick to the row, which decides.
    """
    if not waits_on_azure_ml(summary) or remote.status.value != summary.aml_status:
        return False
    if remote.studio_url and remote.studio_url != summary.studio_url:
        return False
    phase = STATUS_PHASE[remote.status]
    if phase not in {Phase.WAITING, Phase.RUNNING, Phase.UNCERTAIN}:
        return False
    if phase == Phase.RUNNING and summary.state == JobState.SUBMITTED:
        return False  # Submitted -> Running is a move
    if summary.events_pending and (summary.updated_at is None or now - summary.updated_at >= outbox_grace):
        return False  # settled with events left: the tick publishes them (see `settled`)
    return policy.overdue(summary, now) is None


def ended_remotely(aml_status: str) -> bool:
    """The Azure ML status text is an end (Completed, Failed, Canceled): nothing will announce it again."""
    return STATUS_PHASE[RemoteStatus.parse(aml_status)] in {Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELED}


def backstop_due(summary: JobSummary, now: datetime, backstop: timedelta) -> bool:
    """With Azure ML's run events on, the tick asks about a job only every `backstop`: events bring its end, the
    tick only catches an event that was lost (and the Running move, which the subscription leaves out)."""
    seen = [moment for moment in (summary.checked_at, summary.submitted_at, summary.started_at) if moment]
    return not seen or now - max(seen) >= backstop
