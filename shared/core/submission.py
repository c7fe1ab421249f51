"""Submit-side transitions: a blob version becomes a job, is validated, and is sent to Azure ML exactly once.

Invoke is not idempotent, so the intent (deterministic job name, output path, lease) is written
before the POST; an unanswered POST is reconciled by name before anything is sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.core.decision import Action, Decision
from shared.core.naming import aml_job_name, aml_output_path, datastore_uri, job_key
from shared.models import BlobRef, EventType, Job, JobState, RemoteJob, Stage


@dataclass(frozen=True, kw_only=True)
class SubmitPlan:
    """Everything a submission intent is made of besides the job itself (from the settings)."""

    endpoint: str
    deployment: str
    input_datastore: str | None
    output_datastore: str
    output_container: str
    output_prefix: str
    lease: timedelta
    max_posts: int


class IntakeStep(StrEnum):
    """What the submit side does next with a job it was handed (a trigger, or the poller resuming it)."""

    VALIDATE = "validate"  # Received: check the input, then submit it
    ADMIT = "admit"  # Waiting: submit it once a slot under MAX_JOBS_IN_FLIGHT is free
    RECONCILE = "reconcile"  # Submitting, lease expired: find what a lost POST created before sending again
    WAIT_FOR_LEASE = "wait-for-lease"  # Submitting under a live lease: someone else is posting
    FINISH = "finish"  # ended without predictions (or delivered) and not done: file, announce, close
    PUBLISH = "publish"  # nothing to move: only the outbox may hold an event to send


def received(ref: BlobRef, now: datetime, *, route: str = "") -> Job:
    """The ledger row for a blob version nobody has seen yet, on the ROUTES route its path chose."""
    return Job(
        route=route,
        job_id=job_key(ref.account, ref.container, ref.name, ref.etag),
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


def intake_step(job: Job, now: datetime) -> IntakeStep:
    if job.state == JobState.RECEIVED:
        return IntakeStep.VALIDATE
    if job.state == JobState.WAITING:
        return IntakeStep.ADMIT
    if job.state == JobState.SUBMITTING:
        return IntakeStep.RECONCILE if submit_lease_expired(job, now) else IntakeStep.WAIT_FOR_LEASE
    # A Scored job's predictions are joined by the completion queue, never inline by a trigger.
    if job.stage in {Stage.ENDED, Stage.FILED} and job.state != JobState.SCORED:
        return IntakeStep.FINISH
    return IntakeStep.PUBLISH


def submit_lease_expired(job: Job, now: datetime) -> bool:
    return job.submit_lease_until is None or now >= job.submit_lease_until


@dataclass(frozen=True)
class Parts:
    """A sharded input's parts: how many, and the folder (in the Azure ML output container) that holds them."""

    count: int
    folder: str


def waiting(job: Job, now: datetime) -> Job:
    """Validated, but every slot under MAX_JOBS_IN_FLIGHT is taken: the poller submits it when one frees up."""
    return replace(job, state=JobState.WAITING, updated_at=now)


def submit_intent(
    job: Job, plan: SubmitPlan, now: datetime, *, new_attempt: bool, parts: Parts | None = None
) -> Decision:
    """The intent to POST (written before the POST), or a Failed job once the POST budget is spent.

    A new attempt gets a new job name and output path; a re-send of the same attempt keeps both, so
    the service's repeatability id and our name make it land on the same job. A sharded input is sent as
    the folder of its parts.
    """
    if job.posts >= plan.max_posts:
        message = f"gave up after {job.posts} invoke attempts: {job.error_message}"
        return Decision(Action.FINISH, ended(job, JobState.FAILED, "SubmitGaveUp", message, now))
    attempt = job.attempt + 1 if new_attempt else job.attempt
    output_path = aml_output_path(plan.output_prefix, job.job_id, attempt)
    if parts is not None:
        input_uri = datastore_uri(plan.output_datastore, parts.folder)
    elif plan.input_datastore:
        input_uri = datastore_uri(plan.input_datastore, job.name)
    else:
        input_uri = job.input_url
    intent = replace(
        job,
        state=JobState.SUBMITTING,
        attempt=attempt,
        posts=job.posts + 1,
        endpoint=plan.endpoint,
        deployment=plan.deployment,
        input_uri=input_uri,
        parts=parts.count if parts is not None else 0,
        parts_folder=parts.folder if parts is not None else "",
        output_uri=datastore_uri(plan.output_datastore, output_path),
        output_container=plan.output_container,
        output_path=output_path,
        aml_job_name=aml_job_name(job.job_id, attempt),
        submit_lease_until=now + plan.lease,
        submit_ambiguous=False,
        updated_at=now,
    )
    return Decision(Action.POST, intent)


def submitted(job: Job, remote: RemoteJob, now: datetime) -> Job:
    """Azure ML accepted the job (or we found it by name): queue JobSubmitted in the same write."""
    return replace(
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
        events_pending=with_event(job.events_pending, EventType.JOB_SUBMITTED),
    )


def post_unanswered(job: Job, *, ambiguous: bool, code: str, message: str, now: datetime) -> Job:
    """Keep the row Submitting for the poller. A clear refusal (429/5xx) may be re-sent at the next tick;
    an ambiguous failure keeps its lease so that a job the POST did create has time to show up first."""
    return replace(
        job,
        submit_ambiguous=ambiguous,
        submit_lease_until=job.submit_lease_until if ambiguous else now,
        error_code=code,
        error_message=message,
        updated_at=now,
    )


def still_waiting_on(stored: Job | None, sent: Job) -> bool:
    """True while the stored row still waits on the POST `sent` describes (same attempt, same post count).
    A late answer to an older POST must never overwrite a newer intent."""
    return (
        stored is not None
        and stored.state == JobState.SUBMITTING
        and (stored.attempt, stored.posts) == (sent.attempt, sent.posts)
    )


def needs_new_attempt(job: Job) -> bool:
    """After an ambiguous failure a job may exist that we cannot find (the service may ignore our name):
    a new attempt gets a new output path, so such a duplicate can never fail ours on "output exists"."""
    return job.attempt == 0 or job.submit_ambiguous


def scored_by_earlier_post(job: Job, now: datetime) -> Job:
    """The predictions of a POST whose answer we lost are already written: the job is scored."""
    return replace(job, state=JobState.SCORED, stage=Stage.ENDED, scored_at=now, finished_at=now, updated_at=now)


def ended(job: Job, state: JobState, code: str, message: str, now: datetime) -> Job:
    """A job that ends without predictions, with its error. Its final event is queued only when its
    input is filed, so no path can announce the end before it is done."""
    return replace(
        job,
        state=state,
        stage=Stage.ENDED,
        error_code=code,
        error_message=message,
        finished_at=now,
        updated_at=now,
        submit_lease_until=None,
    )


def with_event(pending: tuple[str, ...], event: EventType) -> tuple[str, ...]:
    return pending if event.value in pending else (*pending, event.value)
