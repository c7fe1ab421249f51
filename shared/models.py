"""The app's data: frozen dataclasses and string enums, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life. The ledger stores these names."""

    RECEIVED = "Received"
    #: Validated, waiting for a free slot under MAX_JOBS_IN_FLIGHT (shared/usecases/admission.py).
    WAITING = "Waiting"
    SUBMITTING = "Submitting"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SCORED = "Scored"
    COMPLETED = "Completed"
    REJECTED = "Rejected"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TIMED_OUT = "TimedOut"


#: States from which nothing more is asked of Azure ML.
REMOTE_DONE = frozenset(
    {
        JobState.SCORED,
        JobState.COMPLETED,
        JobState.REJECTED,
        JobState.FAILED,
        JobState.CANCELED,
        JobState.TIMED_OUT,
    }
)
#: Terminal states a subscriber sees as the end of a job.
TERMINAL = frozenset({JobState.COMPLETED, JobState.REJECTED, JobState.FAILED, JobState.CANCELED, JobState.TIMED_OUT})
#: States where an Azure ML job exists and is polled.
REMOTE_ACTIVE = frozenset({JobState.SUBMITTED, JobState.RUNNING})
#: States that hold a slot under MAX_JOBS_IN_FLIGHT: a POST may be out, or Azure ML has the job.
IN_FLIGHT = frozenset({JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING})


class Stage(StrEnum):
    """What is left to do for a job, one explicit step at a time: Working → Ended → Filed → Done.

    The state says what happened (Scored, Failed, ...); the stage says how far the work that follows
    has got, so no reader has to infer it from which fields happen to be set.
    """

    WORKING = "Working"  # no outcome yet: Received, Waiting, Submitting, Submitted, Running
    ENDED = "Ended"  # outcome known; predictions not joined and input not moved yet
    FILED = "Filed"  # predictions written and input moved, or input filed (left alone if not ours); event queued
    DONE = "Done"  # final event published: nothing is left, the job leaves the active index


class RemoteStatus(StrEnum):
    """Every status an Azure ML job reports (the REST enum)."""

    NOT_STARTED = "NotStarted"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    PREPARING = "Preparing"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str | None) -> RemoteStatus:
        """Map the service's text to a status; anything unrecognised is Unknown (keep polling)."""
        for status in cls:
            if text is not None and status.value.lower() == text.strip().lower():
                return status
        return cls.UNKNOWN


class EventType(StrEnum):
    JOB_SUBMITTED = "DropScore.JobSubmitted"
    JOB_COMPLETED = "DropScore.JobCompleted"
    JOB_FAILED = "DropScore.JobFailed"
    INPUT_REJECTED = "DropScore.InputRejected"
    #: Queued with JobCompleted (before it) when the scored file drifted from its route's reference profile.
    DRIFT_DETECTED = "DropScore.DriftDetected"


@dataclass(frozen=True)
class BlobRef:
    """One version of one input blob."""

    account: str
    container: str
    name: str
    etag: str
    size: int
    url: str


@dataclass(frozen=True)
class BlobInfo:
    etag: str
    size: int
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteJob:
    """What the batch endpoint says about a job."""

    name: str
    status: RemoteStatus
    studio_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class InvokeRequest:
    """One batch endpoint invocation: one input file, one explicit output file."""

    job_name: str
    input_uri: str
    output_uri: str
    repeatability_id: str
    deployment: str | None = None
    #: "UriFile" (one input file) or "UriFolder" (a sharded input: a folder of parts).
    input_type: str = "UriFile"
    #: Files per mini-batch, overriding the deployment's (1 for a sharded input: one part per worker).
    mini_batch_size: int | None = None


@dataclass(frozen=True)
class Job:
    """One row of the ledger: one input blob version and everything done with it."""

    job_id: str
    state: JobState
    account: str
    container: str
    name: str
    blob_etag: str
    size: int
    input_url: str
    created_at: datetime
    updated_at: datetime
    attempt: int = 0
    posts: int = 0
    endpoint: str = ""
    deployment: str = ""
    input_uri: str = ""
    output_uri: str = ""
    output_container: str = ""
    output_path: str = ""
    aml_job_name: str = ""
    aml_status: str = ""
    studio_url: str = ""
    submit_lease_until: datetime | None = None
    submit_ambiguous: bool = False
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    scored_at: datetime | None = None
    finished_at: datetime | None = None
    last_polled_at: datetime | None = None
    completion_enqueued_at: datetime | None = None
    #: Completion messages queued so far; past COMPLETION_MAX_ATTEMPTS the job ends CompletionGaveUp.
    completion_attempts: int = 0
    #: The last error a completion run raised (kept for CompletionGaveUp's message).
    completion_error: str = ""
    predictions_container: str = ""
    predictions_name: str = ""
    predictions_url: str = ""
    archive_container: str = ""
    #: Why the input was not moved when it was not (a MoveOutcome value); empty when it was moved.
    input_not_moved: str = ""
    #: Parts of a sharded input (0: not sharded) and the folder that holds them in the Azure ML output container.
    parts: int = 0
    parts_folder: str = ""
    rows_in: int | None = None
    rows_out: int | None = None
    rows_missing: int | None = None
    error_code: str = ""
    error_message: str = ""
    events_pending: tuple[str, ...] = ()
    events_published: tuple[str, ...] = ()
    stage: Stage = Stage.WORKING
    #: The ROUTES route the input's path chose ("" for rows written before routes: the default).
    route: str = ""
    #: Which run of this input the job is: 1, or n+1 for a job an operator redrove from run n (`core.operator`).
    run: int = 1
    #: The job this run redrives ("" for a first run): its input was copied back from that job's filed input.
    previous_job_id: str = ""
    #: The run that redrove this job ("" until an operator redrives it): set once, never changed after.
    redriven_to: str = ""
    #: The drift summary (`data.drift` of JobCompleted and DriftDetected) as compact JSON; "" when the job's route
    #: has no drift reference (or the job has not completed).
    drift: str = ""
    #: The ledger row's ETag when it was read; None for a row not yet stored.
    version: str | None = field(default=None, compare=False)
    #: The state the stored row has (None: not stored yet): a write that changes it moves the job's list rows.
    stored_state: JobState | None = field(default=None, compare=False)

    @property
    def finalized(self) -> bool:
        """Nothing is left to do: the job is out of the active index for good."""
        return self.stage is Stage.DONE

    @property
    def blob(self) -> BlobRef:
        return BlobRef(self.account, self.container, self.name, self.blob_etag, self.size, self.input_url)


@dataclass(frozen=True)
class JobSummary:
    """What the active index keeps of an unfinished job's ledger row (`core.polling.summary_of`): enough for a
    poll tick to see that Azure ML's answer changes nothing, without reading the row. A hint, never the truth:
    when it disagrees with Azure ML, the tick reads the row and decides from that."""

    state: JobState
    aml_job_name: str = ""
    aml_status: str = ""
    studio_url: str = ""
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    #: The ledger row's updated_at: pending events are the poller's to publish only once the row has settled.
    updated_at: datetime | None = None
    #: Some event of the row is queued but not yet published.
    events_pending: bool = False
    #: When the job was received: waiting jobs are admitted oldest first.
    created_at: datetime | None = None
    #: When the poller last asked Azure ML about the job while run events cover it (the backstop's clock).
    checked_at: datetime | None = None
    #: The scoring URI the job was submitted to (its route's): where its status is asked.
    endpoint: str = ""
    #: The job's ROUTES route: waiting jobs are admitted oldest first per route.
    route: str = ""


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a check outcome, not a password
    FAIL = "fail"
    SKIP = "skip"  # not applicable here, or not configured: never a failure


@dataclass(frozen=True)
class Check:
    """One health check's outcome; `fix` says what to do when it failed."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(check.status is not CheckStatus.FAIL for check in self.checks)


@dataclass(frozen=True)
class ModelInputs:
    """The input columns a deployed model requires, and which model says so (`name:version`)."""

    model: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Slot:
    """One of an endpoint's MAX_JOBS_IN_FLIGHT slots, as stored: the job holding it ("" when free)."""

    number: int
    holder: str = ""
    taken_at: datetime | None = None
    #: The stored row's ETag; None when no row was ever written for this slot.
    version: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ListedJob:
    """What the job list's index row says of a job (enough for the 24-hour summary, never the truth)."""

    job_id: str
    state: JobState
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class JobPage:
    """One page of the job list, newest first: the jobs (as their ledger rows say), where the next page starts
    (None: this was the last), and how many index rows were read for it."""

    jobs: tuple[Job, ...]
    continuation: str | None
    scanned: int


@dataclass(frozen=True)
class RecentJobs:
    """The index rows of the jobs received since a moment; `truncated` when the read stopped at its cap."""

    jobs: tuple[ListedJob, ...]
    scanned: int
    truncated: bool
