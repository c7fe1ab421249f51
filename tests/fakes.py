"""In-memory stand-ins for the ports, checked by their end state (never mocks of SDK classes).

Each fake keeps the behaviour the use cases rely on: the job store's insert-only creation and
ETag-conditional updates (412), blob ETags that change on every write, a scoring endpoint
that records every POST and answers from a script.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import Settings
from shared.core import listing
from shared.core.polling import summary_of
from shared.errors import (
    AccessDenied,
    BlobChanged,
    BlobExists,
    BlobMissing,
    JobExists,
    JobNameTaken,
    RemoteJobNotFound,
    ResourceMissing,
    StaleJob,
    TransientError,
)
from shared.events import OutEvent
from shared.models import (
    BlobInfo,
    InvokeRequest,
    Job,
    JobPage,
    JobState,
    JobSummary,
    ListedJob,
    ModelInputs,
    RecentJobs,
    RemoteJob,
    RemoteStatus,
    Slot,
)
from shared.ports import ActiveEntry
from shared.usecases.deps import Deps
from shared.usecases.schema import ModelColumns

_versions = itertools.count(1)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeJobStore:
    """Rows with versions; `update` succeeds only at the stored version, like Table storage's If-Match."""

    def __init__(self) -> None:
        self.rows: dict[str, Job] = {}
        self.active_rows: set[str] = set()
        #: What each index row says of its job (a row added straight to `active_rows` has none, like an old row).
        self.summaries: dict[str, JobSummary] = {}
        #: Job ids in the order `get` read them (a poll tick's ledger reads).
        self.reads: list[str] = []
        self.writes = 0
        self.crash_on_update: Callable[[Job], bool] | None = None
        self.before_update: Callable[[Job], None] | None = None
        self.probe_errors: dict[str, Exception] = {}

    def _stamp(self, job: Job) -> Job:
        stored = replace(job, version=f'W/"{next(_versions)}"', stored_state=job.state)
        self.rows[job.job_id] = stored
        self.writes += 1
        return stored

    def create(self, job: Job) -> Job:
        if job.job_id in self.rows:
            raise JobExists(job.job_id)
        return self._stamp(job)

    def get(self, job_id: str) -> Job | None:
        self.reads.append(job_id)
        return self.rows.get(job_id)

    def update(self, job: Job) -> Job:
        if self.before_update is not None:
            hook, self.before_update = self.before_update, None
            hook(job)
        if self.crash_on_update is not None and self.crash_on_update(job):
            raise SimulatedCrash(f"crash before writing {job.state}")
        stored = self.rows.get(job.job_id)
        if stored is None or stored.version != job.version:
            raise StaleJob(job.job_id)
        return self._stamp(job)

    def mark_active(self, job: Job) -> None:
        self.active_rows.add(job.job_id)
        self.summaries[job.job_id] = summary_of(job)

    def refresh_active(self, job: Job) -> None:
        if job.job_id in self.active_rows:
            self.summaries[job.job_id] = summary_of(job)

    def unmark_active(self, job_id: str) -> None:
        self.active_rows.discard(job_id)
        self.summaries.pop(job_id, None)

    def note_checked(self, job_id: str, at: datetime) -> None:
        if job_id in self.summaries:
            self.summaries[job_id] = replace(self.summaries[job_id], checked_at=at)

    def find_active(self, key_prefix: str) -> list[ActiveEntry]:
        return [entry for entry in self.active() if entry.job_id.startswith(key_prefix)]

    def active(self) -> Iterator[ActiveEntry]:
        for job_id in sorted(self.active_rows):
            yield ActiveEntry(job_id, datetime.now(UTC), self.summaries.get(job_id))

    def page(self, *, state: JobState | None, prefix: str, limit: int, after: str, now: datetime) -> JobPage:
        """The list as the index orders it (newest first by row key), with no stale rows to skip."""
        keyed = sorted((listing.row_key(job.created_at, job.job_id), job) for job in self.rows.values())
        matching = [
            (key, job)
            for key, job in keyed
            if key > after and (state is None or job.state == state) and job.name.startswith(prefix)
        ]
        picked = matching[:limit]
        continuation = picked[-1][0] if len(matching) > limit else None
        return JobPage(tuple(job for _, job in picked), continuation, len(picked))

    def recent(self, *, since: datetime, cap: int) -> RecentJobs:
        newest_first = sorted(self.rows.values(), key=lambda job: listing.row_key(job.created_at, job.job_id))
        listed = [
            ListedJob(job.job_id, job.state, job.created_at, job.finished_at)
            for job in newest_first
            if job.created_at > since
        ]
        return RecentJobs(tuple(listed[:cap]), min(len(listed), cap), truncated=len(listed) > cap)

    def probe_table(self, table: str) -> None:
        if table in self.probe_errors:
            raise self.probe_errors[table]

    def touch_elsewhere(self, job_id: str, **changes: object) -> None:
        """Another instance writes the row (bumps its version)."""
        self._stamp(replace(self.rows[job_id], **changes))  # type: ignore[arg-type]


class FakeSlots:
    """MAX_JOBS_IN_FLIGHT's slot rows: a write succeeds only at the version read, like Table storage's If-Match."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], Slot] = {}
        #: Called before each `take` lands: a test makes another instance write first.
        self.before_take: Callable[[str, Slot], None] | None = None

    def slots(self, pool: str) -> list[Slot]:
        return sorted((slot for (p, _), slot in self.rows.items() if p == pool), key=lambda slot: slot.number)

    def take(self, pool: str, slot: Slot, *, job_id: str, at: datetime) -> bool:
        if self.before_take is not None:
            hook, self.before_take = self.before_take, None
            hook(pool, slot)
        return self._write(pool, slot, replace(slot, holder=job_id, taken_at=at))

    def free(self, pool: str, slot: Slot) -> bool:
        return slot.version is not None and self._write(pool, slot, replace(slot, holder="", taken_at=None))

    def _write(self, pool: str, read: Slot, new: Slot) -> bool:
        stored = self.rows.get((pool, read.number))
        if (stored.version if stored else None) != read.version:
            return False
        self.rows[(pool, read.number)] = replace(new, version=f'W/"slot{next(_versions)}"')
        return True

    def holders(self) -> list[str]:
        return sorted(slot.holder for slot in self.rows.values() if slot.holder)


class SimulatedCrash(BaseException):
    """The process died mid-step (BaseException so no `except Exception` swallows it)."""


class FakeBlobStore:
    def __init__(self, account: str = "devstoreaccount1") -> None:
        self.account = account
        self.blobs: dict[tuple[str, str], tuple[bytes, str, str]] = {}
        self.metadata: dict[tuple[str, str], dict[str, str]] = {}
        self.ranged_reads: list[tuple[str, str, int, int]] = []
        self.full_reads: list[tuple[str, str]] = []
        self.probe_errors: dict[str, Exception] = {}
        #: Called once before the next `copy` lands: a test makes another caller copy (or upload) first.
        self.before_copy: Callable[[str, str], None] | None = None

    @property
    def account_name(self) -> str:
        return self.account

    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        content_type: str = "text/csv",
        metadata: dict[str, str] | None = None,
    ) -> str:
        etag = f"0x8DE{next(_versions):012X}"
        self.blobs[(container, name)] = (data, etag, content_type)
        self.metadata[(container, name)] = dict(metadata or {})
        return etag

    def data(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)][0]

    def names(self, container: str) -> list[str]:
        return sorted(name for (c, name) in self.blobs if c == container)

    def url(self, container: str, name: str) -> str:
        return f"https://{self.account}.blob.core.windows.net/{container}/{name}"

    def properties(self, container: str, name: str) -> BlobInfo | None:
        found = self.blobs.get((container, name))
        if found is None:
            return None
        return BlobInfo(found[1], len(found[0]), found[2], dict(self.metadata.get((container, name), {})))

    def _get(self, container: str, name: str, etag: str | None) -> bytes:
        found = self.blobs.get((container, name))
        if found is None:
            raise BlobMissing(f"{container}/{name}")
        if etag is not None and found[1] != etag.strip('"'):
            raise BlobChanged(f"{container}/{name}")
        return found[0]

    def read_range(self, container: str, name: str, *, offset: int, length: int, etag: str | None) -> bytes:
        self.ranged_reads.append((container, name, offset, length))
        return self._get(container, name, etag)[offset : offset + length]

    def chunks(self, container: str, name: str, *, etag: str | None = None) -> Iterator[bytes]:
        data = self._get(container, name, etag)
        self.full_reads.append((container, name))
        for start in range(0, len(data), 7):  # small odd chunks: joins must not depend on line alignment
            yield data[start : start + 7]

    def write(self, container: str, name: str, data: Iterable[bytes] | bytes, *, content_type: str) -> None:
        body = data if isinstance(data, bytes) else b"".join(data)
        self.put(container, name, body, content_type)

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
        if self.before_copy is not None:
            hook, self.before_copy = self.before_copy, None
            hook(target_container, target_name)
        data = self._get(source_container, name, source_etag)
        if if_absent and (target_container, target_name) in self.blobs:
            raise BlobExists(f"{target_container}/{target_name}")
        content_type = self.blobs[(source_container, name)][2]
        return self.put(target_container, target_name, data, content_type, metadata)

    def probe_container(self, container: str) -> None:
        if container in self.probe_errors:
            raise self.probe_errors[container]

    def delete(self, container: str, name: str, *, etag: str | None = None) -> bool:
        found = self.blobs.get((container, name))
        if found is None or (etag is not None and found[1] != etag.strip('"')):
            return False
        del self.blobs[(container, name)]
        return True


@dataclass
class FakeScoringEndpoint:
    """Records every POST; jobs follow a scripted list of statuses, one per poll."""

    endpoint_uri: str = "https://dropscore-ep.westeurope.inference.ml.azure.com/jobs"
    posts: list[InvokeRequest] = field(default_factory=list)
    jobs: dict[str, list[RemoteJob]] = field(default_factory=dict)
    script: list[RemoteStatus] = field(default_factory=lambda: [RemoteStatus.QUEUED])
    invoke_errors: list[Exception] = field(default_factory=list)
    create_despite_error: bool = False
    honour_names: bool = True
    canceled: list[str] = field(default_factory=list)
    can_cancel: bool = True
    on_complete: Callable[[InvokeRequest], None] | None = None
    failure: tuple[str, str] | None = None
    #: probe name ("token", "endpoint", "deployment", "datastore") -> the error that probe raises
    probe_errors: dict[str, Exception] = field(default_factory=dict)
    probed: list[str] = field(default_factory=list)
    #: Every status call, by job name (what the run events save is counted here).
    status_calls: list[str] = field(default_factory=list)

    def invoke(self, request: InvokeRequest) -> RemoteJob:
        self.posts.append(request)
        if self.honour_names and request.job_name in self.jobs:
            raise JobNameTaken(request.job_name)
        if self.invoke_errors:
            error = self.invoke_errors.pop(0)
            if self.create_despite_error:
                self._create(request)
            raise error
        return self._create(request)

    def _create(self, request: InvokeRequest) -> RemoteJob:
        name = request.job_name if self.honour_names else f"aml-{len(self.posts)}"
        statuses = [self._remote(name, status) for status in self.script]
        self.jobs[name] = statuses
        self._requests = {**getattr(self, "_requests", {}), name: request}
        return statuses[0]

    def _remote(self, name: str, status: RemoteStatus) -> RemoteJob:
        error = self.failure if status == RemoteStatus.FAILED else None
        return RemoteJob(
            name=name,
            status=status,
            studio_url=f"https://ml.azure.com/runs/{name}",
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
        )

    def get_job(self, name: str) -> RemoteJob:
        self.status_calls.append(name)
        if name not in self.jobs:
            raise RemoteJobNotFound(name)
        statuses = self.jobs[name]
        current = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if current.status == RemoteStatus.COMPLETED and self.on_complete is not None:
            self.on_complete(self._requests[name])
        return current

    def cancel(self, name: str) -> bool:
        if not self.can_cancel or name not in self.jobs:  # no workspace id, or a 404 (as the adapter answers)
            return False
        self.canceled.append(name)
        return True

    def _probe(self, what: str) -> None:
        self.probed.append(what)
        if what in self.probe_errors:
            raise self.probe_errors[what]

    def probe_token(self) -> None:
        self._probe("token")

    def probe_endpoint(self) -> None:
        self._probe("endpoint")

    def probe_deployment(self, *, endpoint_name: str, deployment: str) -> None:
        self._probe(f"deployment {endpoint_name}/{deployment}")

    def probe_datastore(self, datastore: str) -> None:
        self._probe(f"datastore {datastore}")


class FakeEventPublisher:
    def __init__(self) -> None:
        self.published: list[OutEvent] = []
        self.fail_next = 0
        self.probe_error: Exception | None = None

    def publish(self, events: Sequence[OutEvent]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("topic unavailable")
        self.published.extend(events)

    def types(self) -> list[str]:
        return [event.type for event in self.published]

    def probe(self) -> None:
        if self.probe_error is not None:
            raise self.probe_error


class FakeCompletionQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.probe_error: Exception | None = None

    def probe(self) -> None:
        if self.probe_error is not None:
            raise self.probe_error

    def enqueue(self, job_id: str) -> None:
        self.messages.append(job_id)

    def drain(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


class FakeDriftMetrics:
    """DriftMetrics: each call recorded as (summary, job_id, route)."""

    def __init__(self) -> None:
        self.recorded: list[tuple[dict[str, Any], str, str]] = []

    def record(self, summary: Mapping[str, Any], *, job_id: str, route: str) -> None:
        self.recorded.append((dict(summary), job_id, route))


class FakeResources:
    """ARM: the resource ids that exist; any other id is missing."""

    def __init__(self) -> None:
        self.existing: set[str] = set()
        self.denied = False
        #: Ids we may not read (403), when not all are (`denied`).
        self.denied_ids: set[str] = set()

    def probe_resource(self, resource_id: str, *, api_version: str) -> None:
        if self.denied or resource_id in self.denied_ids:
            raise AccessDenied(f"HTTP 403 reading {resource_id}")
        if resource_id not in self.existing:
            raise ResourceMissing(f"{resource_id} does not exist")


class FakeModelCatalog:
    """Azure ML's model catalog: the deployment's model and its columns, or the error to raise; counts lookups."""

    def __init__(self) -> None:
        self.inputs = ModelInputs("diamonds:1", ("carat", "cut"))
        self.error: Exception | None = None
        self.lookups: list[tuple[str, str | None]] = []

    def input_columns(self, *, endpoint_name: str, deployment: str | None) -> ModelInputs:
        self.lookups.append((endpoint_name, deployment))
        if self.error is not None:
            raise self.error
        return self.inputs


BASE_SETTINGS = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "BATCH_ENDPOINT_URI": "https://dropscore-ep.westeurope.inference.ml.azure.com/jobs",
    "EVENTGRID_TOPIC_ENDPOINT": "https://dropscore-topic.westeurope-1.eventgrid.azure.net/api/events",
}


@dataclass
class World:
    """One set of fakes wired into Deps."""

    settings: Settings
    clock: FakeClock = field(default_factory=FakeClock)
    store: FakeJobStore = field(default_factory=FakeJobStore)
    blobs: FakeBlobStore = field(default_factory=FakeBlobStore)
    scoring: FakeScoringEndpoint = field(default_factory=FakeScoringEndpoint)
    events: FakeEventPublisher = field(default_factory=FakeEventPublisher)
    queue: FakeCompletionQueue = field(default_factory=FakeCompletionQueue)
    resources: FakeResources = field(default_factory=FakeResources)
    catalog: FakeModelCatalog = field(default_factory=FakeModelCatalog)
    slots: FakeSlots = field(default_factory=FakeSlots)
    metrics: FakeDriftMetrics = field(default_factory=FakeDriftMetrics)
    #: Fakes of other ROUTES endpoints, by scoring URI (`scoring` is the default route's).
    endpoints: dict[str, FakeScoringEndpoint] = field(default_factory=dict)
    #: One per world, as one per worker process in the app: it caches what the catalog said.
    model_columns: ModelColumns = field(init=False)

    def __post_init__(self) -> None:
        self.model_columns = ModelColumns(self.settings, lambda: self.catalog, self.clock)

    @property
    def deps(self) -> Deps:
        return Deps(
            settings=self.settings,
            store=self.store,
            blobs=self.blobs,
            scoring=self.scoring,
            events=self.events,
            completions=self.queue,
            resources=self.resources,
            clock=self.clock,
            model_columns=self.model_columns,
            slots=self.slots,
            scorers=self._scorer,
            metrics=self.metrics,
        )

    def _scorer(self, endpoint: str) -> FakeScoringEndpoint:
        if endpoint not in self.endpoints:
            self.endpoints[endpoint] = FakeScoringEndpoint(endpoint_uri=endpoint, on_complete=self.scoring.on_complete)
        return self.endpoints[endpoint]


def make_world(**overrides: str) -> World:
    return World(Settings.from_env({**BASE_SETTINGS, **overrides}))


def write_predictions(world: World, rows: Sequence[str]) -> Callable[[InvokeRequest], None]:
    """An `on_complete` hook: Azure ML writes predictions.csv (no header) at the job's output path."""

    def hook(request: InvokeRequest) -> None:
        path = request.output_uri.split("/paths/", 1)[1]
        container = world.settings.aml_output_container
        if world.blobs.properties(container, path) is None:
            lines = "".join(f"{index},{value},input.csv\n" for index, value in enumerate(rows))
            world.blobs.put(container, path, lines.encode())

    return hook
