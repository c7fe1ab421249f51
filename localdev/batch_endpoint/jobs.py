"""Job lifecycle: create, status walk, cancel, resume; the files (transfers.py), the scoring (scoring.py)
and the run events (runevents.py) are done by the modules it calls."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from localdev.batch_endpoint.config import JOB_TYPE, WORKSPACE, WORKSPACE_ID, EmulatorConfig
from localdev.batch_endpoint.deployments import MLFLOW, Deployment
from localdev.batch_endpoint.errors import ApiError, JobCanceledError, JobFailedError
from localdev.batch_endpoint.faults import Faults
from localdev.batch_endpoint.pool import WorkerPool
from localdev.batch_endpoint.request import JobRequest
from localdev.batch_endpoint.runevents import RunEventPublisher
from localdev.batch_endpoint.scoring import Scorer
from localdev.batch_endpoint.stats import JobCounters
from localdev.batch_endpoint.store import TERMINAL, JobRecord, JobStore
from localdev.batch_endpoint.transfers import JobFiles
from localdev.batch_endpoint.worker import last_line

log = logging.getLogger("batch_endpoint")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_seconds(seconds: float) -> str:
    return f"PT{seconds:g}S"


def _effective_settings(deployment: Deployment, overrides: dict[str, Any]) -> dict[str, Any]:
    settings = dict(deployment.settings)
    settings.update(overrides)
    return settings


class JobManager:
    def __init__(self, config: EmulatorConfig, faults: Faults) -> None:
        self.config = config
        self.faults = faults
        self.store = JobStore(config.state_dir)
        self.pool = WorkerPool(config.workers)
        self.scorer = Scorer(self.pool, row_cost_us=config.row_cost_us)
        self.counters = JobCounters(config.max_active_jobs)
        self.events = RunEventPublisher(
            config.events_topic, config.events_key, faults, experiment_name=config.endpoint_name
        )
        self._files = JobFiles(config.connection_string)
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.events.start()
        self.pool.warm_up([str(d.path) for d in self.config.deployments.values() if d.kind == MLFLOW])
        records = self.store.load()
        self.counters.loaded(record.status for record in records)
        for record in records:
            self._resume(record)

    def stop(self) -> None:
        # Jobs interrupted by a shutdown keep their persisted status, so a restart resumes them.
        self._stopping = True
        for event in self._cancel.values():
            event.set()
        self.pool.shutdown()
        self.events.stop()

    def _resume(self, record: JobRecord) -> None:
        """A job that was in flight when the emulator died is finished, canceled or rerun."""
        if record.status in TERMINAL:
            return
        if record.status == "CancelRequested":
            self._finish(record, "Canceled")
        elif record.uploaded:
            self._finish(record, "Completed")
        else:
            log.info("rerunning job %s after a restart", record.name)
            self._set(record, status="NotStarted")
            self._launch(record)

    # ---- API operations --------------------------------------------------------------------------

    def create(self, request: JobRequest, deployment: Deployment) -> dict[str, Any]:
        # Under the store lock, which status changes also take: the check and the add are one step.
        with self.store.lock:
            record = self._new_record(request, deployment)
            self.counters.job_added()
        self._launch(record)
        return self.view(record)

    def _new_record(self, request: JobRequest, deployment: Deployment) -> JobRecord:
        name = request.name or str(uuid4())
        if self.store.get(name) is not None:
            raise ApiError(409, "Conflict", f"A job with this name already exists: '{name}'.")
        if self.counters.full():
            raise capacity_refusal(self.counters.limit, self.faults.spec.retry_after)
        settings = _effective_settings(deployment, request.overrides)
        output = request.output_location
        if output is None:
            file_name = request.output_file_name or settings["output_file_name"]
            datastore = self.config.default_datastore
            output_container = self.config.datastores[datastore]
            output_path = f"azureml/{name}/score/{file_name}"
            output_uri = f"azureml://datastores/{datastore}/paths/{output_path}"
            output_echo = {"score": {"jobOutputType": "UriFile", "uri": output_uri}}
        else:
            output_container, output_path, output_uri = output.container, output.path, output.as_uri()
            output_echo = request.output_echo
        record = JobRecord(
            name=name,
            seq=self.store.next_seq(),
            resource=self._resource(
                name=name,
                request=request,
                settings=settings,
                output_echo=output_echo,
                output_uri=output_uri,
                output_path=output_path,
            ),
            deployment=deployment.name,
            input_type=request.input_type,
            input_uri=request.input_uri,
            input_container=request.input_location.container,
            input_path=request.input_location.path,
            output_container=output_container,
            output_path=output_path,
            output_uri=output_uri,
            settings=settings,
            fault=self.faults.job_fault(request.input_uri),
        )
        if not self.store.add(record):
            raise ApiError(409, "Conflict", f"A job with this name already exists: '{name}'.")
        return record

    def view(self, record: JobRecord) -> dict[str, Any]:
        with self.store.lock:
            copy: dict[str, Any] = _deep_copy(record.resource)
            return copy

    def get(self, name: str) -> dict[str, Any] | None:
        record = self.store.get(name)
        return None if record is None else self.view(record)

    def list_jobs(self) -> list[dict[str, Any]]:
        return [self.view(record) for record in self.store.all()]

    def cancel(self, name: str) -> bool:
        record = self.store.get(name)
        if record is None:
            return False
        with self.store.lock:
            if record.status in TERMINAL:
                return True
            # Set the event under the lock so the job thread cannot overwrite CancelRequested.
            self._cancel.setdefault(name, threading.Event()).set()
            self._set(record, status="CancelRequested")
        return True

    # ---- the job thread --------------------------------------------------------------------------

    def _resource(
        self,
        *,
        name: str,
        request: JobRequest,
        settings: dict[str, Any],
        output_echo: dict[str, Any],
        output_uri: str,
        output_path: str,
    ) -> dict[str, Any]:
        created = _now()
        datastore = output_uri.split("/datastores/", 1)[-1].split("/", 1)[0]
        return {
            "id": f"{WORKSPACE_ID}/batchEndpoints/{self.config.endpoint_name}/jobs/{name}",
            "name": name,
            "type": JOB_TYPE,
            "properties": {
                "name": name,
                "status": "NotStarted",
                "provisioningState": "InProgress",
                "inputData": request.input_echo,
                "outputData": output_echo,
                "output": {"datastoreId": f"{WORKSPACE_ID}/datastores/{datastore}", "path": output_path},
                "outputFileName": output_path.rsplit("/", 1)[-1],
                "miniBatchSize": settings["mini_batch_size"],
                "maxConcurrencyPerInstance": settings["max_concurrency_per_instance"],
                "errorThreshold": settings["error_threshold"],
                "retrySettings": {
                    "maxRetries": settings["max_retries"],
                    "timeout": _iso_seconds(float(settings["timeout"])),
                },
                "compute": {"instanceCount": settings["instance_count"]},
                "interactionEndpoints": {
                    "Studio": {
                        "endpoint": f"https://ml.azure.com/runs/{name}?wsid={WORKSPACE_ID}",
                        "jobEndpointType": "Studio",
                    }
                },
                "properties": dict(request.user_properties),
                "tags": dict(request.tags),
            },
            "systemData": {
                "createdAt": created,
                "createdBy": f"{WORKSPACE}-emulator-user",
                "createdByType": "Application",
                "lastModifiedAt": created,
            },
        }

    def _launch(self, record: JobRecord) -> None:
        self._cancel.setdefault(record.name, threading.Event())
        thread = threading.Thread(target=self._execute, args=(record,), name=f"job-{record.name}", daemon=True)
        self._threads[record.name] = thread
        thread.start()

    def _set(self, record: JobRecord, **changes: Any) -> None:
        with self.store.lock:
            properties = record.resource["properties"]
            previous = properties["status"]
            properties.update(changes)
            changed_at = record.resource["systemData"]["lastModifiedAt"] = _now()
            self.store.save(record)
            if properties["status"] != previous:
                self.counters.status_changed(previous, properties["status"])
                # Queued under the lock, so the events of one job are queued in the order of its statuses.
                self.events.status_changed(
                    record.name,
                    properties["status"],
                    changed_at,
                    properties.get("tags") or {},
                    properties.get("properties") or {},
                )

    def _advance(self, record: JobRecord, status: str) -> None:
        with self.store.lock:
            if self._cancel[record.name].is_set():
                raise JobCanceledError
            self._set(record, status=status)

    def _finish(self, record: JobRecord, status: str, error: str | None = None) -> None:
        if self._stopping:
            return
        provisioning = {"Completed": "Succeeded", "Failed": "Failed", "Canceled": "Canceled"}[status]
        changes: dict[str, Any] = {"status": status, "provisioningState": provisioning}
        if error is not None:
            changes["error"] = {"code": "UserError", "message": error}
        self._set(record, **changes)

    def _pause_until(self, deadline: float, record: JobRecord) -> None:
        if self._cancel[record.name].wait(max(0.0, deadline - time.monotonic())):
            raise JobCanceledError

    def _execute(self, record: JobRecord) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"batchjob-{record.name[:40]}-"))
        start, total = time.monotonic(), self.config.job_seconds
        try:
            self._advance(record, "Queued")
            self._pause_until(start + 0.1 * total, record)
            self._advance(record, "Preparing")
            deployment = self.config.deployments.get(record.deployment)
            if deployment is None:
                raise JobFailedError(f"Deployment '{record.deployment}' no longer exists on this endpoint.")
            files = self._files.download_inputs(record, workdir / "inputs")
            self._files.check_output_free(record)
            self._pause_until(start + 0.35 * total, record)
            self._advance(record, "Running")
            self._apply_fault(record)
            merged = self.scorer.score(record, deployment, files, workdir, self._cancel[record.name])
            self._pause_until(start + 0.85 * total, record)
            self._advance(record, "Finalizing")
            self._files.upload_outputs(record, merged, workdir / "outputs", lambda: self._mark_uploaded(record))
            self._pause_until(start + total, record)
            self._finish(record, "Completed")
        except JobCanceledError:
            self._finish(record, "Canceled")
        except JobFailedError as failure:
            self._finish(record, "Failed", str(failure))
        except Exception as exc:
            log.exception("job %s failed inside the emulator", record.name)
            self._finish(record, "Failed", f"SystemError: {last_line(exc)}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _apply_fault(self, record: JobRecord) -> None:
        if record.fault == "fail":
            raise JobFailedError(self.faults.spec.fail_message)
        if record.fault == "stuck":
            self._cancel[record.name].wait()
            raise JobCanceledError

    def _mark_uploaded(self, record: JobRecord) -> None:
        with self.store.lock:
            record.uploaded = True
            self.store.save(record)


def capacity_refusal(limit: int, retry_after: int) -> ApiError:
    """The invoke that would make one job too many in flight (`--max-active-jobs`): throttled, as Azure
    throttles a client that submits too many jobs at once (the wording is the emulator's own)."""
    return ApiError(
        429,
        "TooManyRequests",
        f"The endpoint already has {limit} active jobs, its limit; no job was created. Retry later.",
        {"Retry-After": str(retry_after)},
    )


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
