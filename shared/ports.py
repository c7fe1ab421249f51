"""The outside world as the use cases see it: one Protocol per service.

Adapters in shared/adapters implement these against Azure; tests/fakes.py implements them in memory.
Every failure crossing this boundary is one of shared.errors' types, never an SDK exception.
Options are keyword-only, so a call says what each one is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.events import OutEvent
from shared.models import (
    BlobInfo,
    InvokeRequest,
    Job,
    JobPage,
    JobState,
    JobSummary,
    ModelInputs,
    RecentJobs,
    RemoteJob,
    Slot,
)


class ScoringEndpoint(Protocol):
    """An Azure ML batch endpoint (scoring URI)."""

    @property
    def endpoint_uri(self) -> str: ...

    def invoke(self, request: InvokeRequest) -> RemoteJob:
        """POST {scoring_uri}: raises ScoringUnavailable, ScoringAuthError, ScoringRequestError, JobNameTaken."""

    def get_job(self, name: str) -> RemoteJob:
        """GET {scoring_uri}/{name}: raises RemoteJobNotFound, ScoringUnavailable, ScoringAuthError."""

    def cancel(self, name: str) -> bool:
        """Ask Azure ML to cancel; False when cancel is not configured (no workspace id)."""

    def probe_token(self) -> None:
        """Get the tokens invoke, poll and cancel need; raises ScoringUnavailable when none can be had."""

    def probe_endpoint(self) -> None:
        """Ask the scoring URI about a job that does not exist: ScoringAuthError when it refuses us."""

    def probe_deployment(self, *, endpoint_name: str, deployment: str) -> None:
        """Read the deployment through ARM (needs a workspace id); ResourceMissing when it does not exist."""

    def probe_datastore(self, datastore: str) -> None:
        """Read the datastore through ARM (needs a workspace id); ResourceMissing when it does not exist."""


@dataclass(frozen=True)
class ActiveEntry:
    """One row of the active index: a job that is not done yet, when the row was written, and what the row
    says of the job (None for rows written before the index carried a summary)."""

    job_id: str
    updated_at: datetime
    summary: JobSummary | None = None


class JobStore(Protocol):
    """The ledger: insert-only creation, ETag-conditional updates, an index of unfinished jobs."""

    def create(self, job: Job) -> Job:
        """Insert; raises JobExists when the key is taken. Returns the job with its version."""

    def get(self, job_id: str) -> Job | None: ...

    def update(self, job: Job) -> Job:
        """Write `job` only if the stored row is still at `job.version`; raises StaleJob otherwise."""

    def mark_active(self, job: Job) -> None:
        """Upsert the job's row in the active index, with the summary of `job`."""

    def refresh_active(self, job: Job) -> None:
        """Rewrite the summary in the job's index row from `job`; never adds a row `unmark_active` removed."""

    def unmark_active(self, job_id: str) -> None:
        """Remove the job's row from the active index (no error when it is gone)."""

    def note_checked(self, job_id: str, at: datetime) -> None:
        """Record in the job's index row that Azure ML was asked about it at `at` (the events backstop's clock)."""

    def find_active(self, key_prefix: str) -> list[ActiveEntry]:
        """The index rows of jobs whose key starts with `key_prefix` (at least one hex digit): a range read."""

    def active(self) -> Iterator[ActiveEntry]:
        """Every unfinished job, with its summary: a poll tick costs O(active), never O(history)."""

    def page(self, *, state: JobState | None, prefix: str, limit: int, after: str, now: datetime) -> JobPage:
        """Up to `limit` jobs, newest first, after the list row key `after` ("" for the newest): only those in
        `state` when given, whose input names start with `prefix`. A bounded read however long the ledger:
        the page may be short while `continuation` is set."""

    def recent(self, *, since: datetime, cap: int) -> RecentJobs:
        """What the job list says of the jobs received after `since` (at most `cap` rows read)."""

    def probe_table(self, table: str) -> None:
        """Write and delete a probe row; ResourceMissing when the table does not exist."""


class SlotTable(Protocol):
    """The slots of MAX_JOBS_IN_FLIGHT, per endpoint (`pool`): each row is written only if it is still as read,
    so two instances never take one slot, and never more jobs are in flight than there are slots."""

    def slots(self, pool: str) -> list[Slot]:
        """Every stored slot of the pool (one partition query: at most the capacity's rows)."""

    def take(self, pool: str, slot: Slot, *, job_id: str, at: datetime) -> bool:
        """Put `job_id` in the slot if its row is still at `slot.version` (inserted when it had none);
        False when another writer got there first."""

    def free(self, pool: str, slot: Slot) -> bool:
        """Empty the slot if its row is still at `slot.version`; False when it changed (or is gone)."""


class BlobStore(Protocol):
    @property
    def account_name(self) -> str: ...

    def url(self, container: str, name: str) -> str: ...

    def properties(self, container: str, name: str) -> BlobInfo | None: ...

    def read_range(self, container: str, name: str, *, offset: int, length: int, etag: str | None) -> bytes:
        """Bytes [offset, offset+length) of the version `etag`; raises BlobChanged or BlobMissing."""

    def chunks(self, container: str, name: str, *, etag: str | None = None) -> Iterator[bytes]:
        """The blob's bytes in chunks, read ahead while the caller works, all of one version (`etag` when given,
        else the one found first); raises BlobChanged or BlobMissing."""

    def write(self, container: str, name: str, data: Iterable[bytes] | bytes, *, content_type: str) -> None:
        """Create or replace the blob with `data`, all at once: when making `data` fails midway, the blob is
        left as it was (a stream is staged in blocks and committed by one block list)."""

    def copy(
        self,
        source_container: str,
        name: str,
        target_container: str,
        target_name: str,
        *,
        source_etag: str | None = None,
        metadata: dict[str, str] | None = None,
        if_absent: bool = False,
    ) -> str:
        """Server-side copy of the version `source_etag` (waits for it to finish); returns the copy's ETag (unquoted).
        Raises BlobChanged/BlobMissing for the source; with `if_absent`, BlobExists when any blob is at the target
        (If-None-Match: *): of two such copies at once, exactly one lands."""

    def delete(self, container: str, name: str, *, etag: str | None = None) -> bool:
        """Delete (only the version `etag` when given); False when there was nothing to delete."""

    def probe_container(self, container: str) -> None:
        """Write and delete a probe blob; ResourceMissing when the container does not exist."""


class EventPublisher(Protocol):
    def publish(self, events: Sequence[OutEvent]) -> None:
        """Raises TransientError when the topic cannot take them now."""

    def probe(self) -> None:
        """Show the topic our identity without emitting an event; TopicAuthError when it is refused."""


class CompletionQueue(Protocol):
    def enqueue(self, job_id: str) -> None: ...

    def probe(self) -> None:
        """Send an invisible probe message and delete it; ResourceMissing when the queue does not exist."""


class ResourceReader(Protocol):
    """Azure Resource Manager reads the health check needs beyond Azure ML's."""

    def probe_resource(self, resource_id: str, *, api_version: str) -> None:
        """GET the resource; ResourceMissing when it does not exist, AccessDenied when we may not read it."""


class ModelCatalog(Protocol):
    """What the batch deployment's model expects (Azure ML's ARM API and the model's files)."""

    def input_columns(self, *, endpoint_name: str, deployment: str | None) -> ModelInputs:
        """The required input columns of the deployment's MLflow model (`deployment` None: the endpoint's default).

        Raises ModelSchemaUnavailable when they cannot be known (no column signature, not an MLflow model,
        a registry model), ResourceMissing, ScoringAuthError / StorageAuthError when we may not read it,
        ScoringUnavailable / TransientError when Azure cannot answer now.
        """


class DriftMetrics(Protocol):
    """A job's drift scores as metrics (OpenTelemetry: Application Insights' customMetrics when it is configured)."""

    def record(self, summary: Mapping[str, Any], *, job_id: str, route: str) -> None:
        """Send the scores of one drift summary (`data.drift`'s shape). Never raises: metrics are best effort,
        a job never fails for them."""
