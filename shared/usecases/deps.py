"""What every use case is handed, and the one loop that handles a lost ledger race."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.config import Settings
from shared.core.polling import StuckPolicy
from shared.core.submission import SubmitPlan
from shared.errors import StaleJob
from shared.models import Job
from shared.ports import (
    BlobStore,
    CompletionQueue,
    DriftMetrics,
    EventPublisher,
    JobStore,
    ResourceReader,
    ScoringEndpoint,
    SlotTable,
)
from shared.routing import Route
from shared.usecases.schema import ModelColumns

T = TypeVar("T")
MAX_RACES = 5


class NoDriftMetrics:
    """DriftMetrics that sends nothing: the default of a Deps built without metrics (tests, tools)."""

    def record(self, summary: Mapping[str, Any], *, job_id: str, route: str) -> None:
        return None


NO_DRIFT_METRICS = NoDriftMetrics()


@dataclass(frozen=True)
class Deps:
    """Everything a use case touches, passed in (tests pass fakes)."""

    settings: Settings
    store: JobStore
    blobs: BlobStore
    scoring: ScoringEndpoint
    events: EventPublisher
    completions: CompletionQueue
    resources: ResourceReader
    clock: Callable[[], datetime]
    #: The columns every input must have (REQUIRED_COLUMNS, or the model's own when it is `auto`), cached.
    model_columns: ModelColumns
    #: MAX_JOBS_IN_FLIGHT's slots per endpoint.
    slots: SlotTable
    #: The scoring adapter of a ROUTES endpoint (built once, on first use); None: only `scoring` exists.
    scorers: Callable[[str], ScoringEndpoint] | None = None
    #: Where a job's drift scores go as metrics (runtime: OpenTelemetry); by default nowhere.
    metrics: DriftMetrics = NO_DRIFT_METRICS

    def scoring_for(self, endpoint: str) -> ScoringEndpoint:
        """The adapter of the endpoint a job was submitted to ("" or the default's: `scoring`)."""
        if not endpoint or self.scorers is None or endpoint == self.scoring.endpoint_uri:
            return self.scoring
        return self.scorers(endpoint)

    def route_gone(self, job: Job) -> bool:
        """The job's recorded route is no longer in ROUTES (renamed or removed since it arrived)."""
        return job.route not in {"", "default"} and self.settings.routes.by_name(job.route) is None

    def route_of(self, job: Job) -> Route:
        """The job's ROUTES route; the default for rows written before routes (or a route since removed)."""
        routes = self.settings.routes
        return routes.by_name(job.route) or routes.default

    @property
    def stuck_policy(self) -> StuckPolicy:
        return StuckPolicy(
            queued_limit=timedelta(minutes=self.settings.queued_limit_minutes),
            running_limit=timedelta(minutes=self.settings.running_limit_minutes),
        )

    @property
    def submit_plan(self) -> SubmitPlan:
        """The default route's plan."""
        return self.submit_plan_for(self.settings.routes.default)

    def submit_plan_for(self, route: Route) -> SubmitPlan:
        settings = self.settings
        return SubmitPlan(
            endpoint=self.scoring.endpoint_uri if route.prefix == "" else route.endpoint_uri,
            deployment=route.deployment or "",
            input_datastore=settings.aml_input_datastore,
            output_datastore=settings.aml_output_datastore,
            output_container=settings.aml_output_container,
            output_prefix=settings.aml_output_prefix,
            lease=self.submit_lease,
            max_posts=settings.submit_max_attempts,
        )

    @property
    def outbox_grace(self) -> timedelta:
        """How long the poller leaves a freshly written row to the trigger that wrote it."""
        return timedelta(seconds=self.settings.outbox_grace_seconds)

    @property
    def submit_lease(self) -> timedelta:
        """Also the grace a fresh row or a fresh Azure ML job gets before its absence means anything."""
        return timedelta(seconds=self.settings.submit_lease_seconds)


def retry_lost_races(deps: Deps, job: Job, step: Callable[[Job], T]) -> T:
    """Run `step`; when a conditional write loses a race (412), reload the row and decide again."""
    for _ in range(MAX_RACES):
        try:
            return step(job)
        except StaleJob:
            reloaded = deps.store.get(job.job_id)
            if reloaded is None:
                raise
            job = reloaded
    raise StaleJob(f"job {job.job_id}: lost {MAX_RACES} races in a row")
