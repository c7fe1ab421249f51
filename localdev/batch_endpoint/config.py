"""Emulator settings shared by the CLI, the app and the job runner."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from localdev.batch_endpoint.deployments import Deployment
from localdev.batch_endpoint.faults import FaultSpec

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "local-rg"
WORKSPACE = "local-ws"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
JOB_TYPE = "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs"
DEFAULT_DATASTORE = "workspaceblobstore"


@dataclass
class EmulatorConfig:
    connection_string: str
    datastores: dict[str, str]
    deployments: dict[str, Deployment]
    token: str
    state_dir: Path | None = None
    job_seconds: float = 2.0
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    faults: FaultSpec = field(default_factory=FaultSpec)
    endpoint_name: str = "local-endpoint"
    # Benchmarks: each worker sleeps this many microseconds per scored row (after scoring a mini-batch).
    row_cost_us: float = 0.0
    # Jobs active at once (not in a terminal state); one more invoke is answered 429. 0 = no limit.
    max_active_jobs: int = 0
    # Azure ML run events go to this Event Grid topic (Event Grid schema), with this key (aeg-sas-key).
    events_topic: str | None = None
    events_key: str | None = field(default=None, repr=False)

    @property
    def default_deployment(self) -> str | None:
        return next(iter(self.deployments), None)

    @property
    def default_datastore(self) -> str:
        if DEFAULT_DATASTORE in self.datastores:
            return DEFAULT_DATASTORE
        return next(iter(self.datastores))
