"""Job lifecycle: create, status walk, download, score in worker processes, upload, cancel, resume."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from localdev.batch_endpoint.config import JOB_TYPE, WORKSPACE, WORKSPACE_ID, EmulatorConfig
from localdev.batch_endpoint.deployments import MLFLOW, Deployment
from localdev.batch_endpoint.errors import ApiError
from localdev.batch_endpoint.faults import Faults
from localdev.batch_endpoint.pool import WorkerPool
from localdev.batch_endpoint.request import JobRequest
from localdev.batch_endpoint.store import TERMINAL, JobRecord, JobStore
from localdev.batch_endpoint.worker import (
    MLFLOW_FILE_TYPES,
    MiniBatchResult,
    MiniBatchTask,
    last_line,
    run_mini_batch,
)

log = logging.getLogger("batch_endpoint")
_POLL_SECONDS = 0.05
_DOWNLOAD_THREADS = 4


class JobCanceledError(Exception):
    """The job saw its cancel event."""


class JobFailedError(Exception):
    """The job ends Failed with this message in properties.error."""


@dataclass
class _Batch:
    index: int
    files: list[str]
    attempt: int = 0
    started: float = 0.0


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
        self._blobs = BlobServiceClient.from_connection_string(config.connection_string)
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.pool.warm_up([str(d.path) for d in self.config.deployments.values() if d.kind == MLFLOW])
        for record in self.store.load():
            self._resume(record)

    def stop(self) -> None:
        # Jobs interrupted by a shutdown keep their persisted status, so a restart resumes them.
        self._stopping = True
        for event in self._cancel.values():
            event.set()
        self.pool.shutdown()

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
        name = request.name or str(uuid4())
        if self.store.get(name) is not None:
            raise ApiError(409, "Conflict", f"A job with this name already exists: '{name}'.")
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
        self._launch(record)
        return self.view(record)

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
            record.resource["properties"].update(changes)
            record.resource["systemData"]["lastModifiedAt"] = _now()
            self.store.save(record)

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
            files = self._download_inputs(record, workdir / "inputs")
            self._check_output_free(record, deployment)
            self._pause_until(start + 0.35 * total, record)
            self._advance(record, "Running")
            self._apply_fault(record)
            merged = self._score(record, deployment, files, workdir)
            self._pause_until(start + 0.85 * total, record)
            self._advance(record, "Finalizing")
            self._upload_outputs(record, merged, workdir / "outputs")
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

    # ---- storage ---------------------------------------------------------------------------------

    def _container(self, name: str) -> ContainerClient:
        return self._blobs.get_container_client(name)

    def _download_inputs(self, record: JobRecord, folder: Path) -> list[str]:
        folder.mkdir(parents=True)
        container = self._container(record.input_container)
        not_found = JobFailedError(
            f"The input path '{record.input_uri}' does not exist or is not accessible "
            "(ScriptExecution.StreamAccess.NotFound)."
        )
        if record.input_type == "UriFile":
            names = [record.input_path]
        else:
            prefix = record.input_path.rstrip("/") + "/" if record.input_path.strip("/") else ""
            try:
                # Batch endpoints do not explore nested folders, so list one level only.
                names = [
                    item.name
                    for item in container.walk_blobs(name_starts_with=prefix, delimiter="/")
                    if not item.name.endswith("/")
                ]
            except ResourceNotFoundError:
                raise not_found from None
            if not names:
                raise JobFailedError(f"The input folder '{record.input_uri}' contains no files.")
        targets = [folder / name.rsplit("/", 1)[-1] for name in names]

        def fetch(pair: tuple[str, Path]) -> None:
            with pair[1].open("wb") as out:
                container.download_blob(pair[0], max_concurrency=2).readinto(out)

        try:
            with ThreadPoolExecutor(_DOWNLOAD_THREADS) as threads:
                list(threads.map(fetch, zip(names, targets, strict=True)))
        except ResourceNotFoundError:
            raise not_found from None
        return [str(path) for path in targets]

    def _check_output_free(self, record: JobRecord, deployment: Deployment) -> None:
        if record.settings["output_action"] != "append_row":
            return
        blob = self._container(record.output_container).get_blob_client(record.output_path)
        if blob.exists():
            raise JobFailedError(
                f"The output file '{record.output_uri}' already exists (the path already exists); "
                "a batch scoring job cannot overwrite an existing output file."
            )

    def _upload_outputs(self, record: JobRecord, merged: Path | None, extra: Path) -> None:
        container = self._container(record.output_container)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        folder = record.output_path.rsplit("/", 1)[0] if "/" in record.output_path else ""
        # Files a scoring script wrote to AZUREML_BI_OUTPUT_PATH land next to the output file.
        for path in sorted(p for p in extra.rglob("*") if p.is_file()):
            name = "/".join(filter(None, [folder, path.relative_to(extra).as_posix()]))
            with path.open("rb") as data:
                container.upload_blob(name, data, overwrite=True)
        if merged is None:
            return
        try:
            with merged.open("rb") as data:
                container.upload_blob(record.output_path, data, overwrite=False, max_concurrency=4)
        except ResourceExistsError:
            raise JobFailedError(
                f"The output file '{record.output_uri}' already exists (the path already exists)."
            ) from None
        with self.store.lock:
            record.uploaded = True
            self.store.save(record)

    # ---- scoring ---------------------------------------------------------------------------------

    def _score(self, record: JobRecord, deployment: Deployment, files: list[str], workdir: Path) -> Path | None:
        settings = record.settings
        if deployment.kind == MLFLOW:
            for file in files:
                suffix = Path(file).suffix.lower()
                if suffix not in MLFLOW_FILE_TYPES:
                    raise JobFailedError(f"File type '{suffix.lstrip('.')}' is not supported.")
        size = int(settings["mini_batch_size"])
        batches = [_Batch(i, files[start : start + size]) for i, start in enumerate(range(0, len(files), size))]
        (workdir / "parts").mkdir()
        (workdir / "outputs").mkdir()
        env = {"AZUREML_MODEL_DIR": str(deployment.path), "AZUREML_BI_OUTPUT_PATH": str(workdir / "outputs")}
        parts = self._run_batches(record, deployment, batches, workdir / "parts", env)
        if settings["output_action"] != "append_row":
            return None
        merged = workdir / "merged.csv"
        with merged.open("wb") as out:
            for part in parts:
                if part.exists():
                    with part.open("rb") as chunk:
                        shutil.copyfileobj(chunk, out, 1 << 20)
        return merged

    def _task(
        self, record: JobRecord, deployment: Deployment, batch: _Batch, parts: Path, env: dict[str, str]
    ) -> MiniBatchTask:
        return MiniBatchTask(
            job_name=record.name,
            kind=deployment.kind,
            deployment_path=str(deployment.path),
            files=batch.files,
            part_path=str(parts / f"{batch.index:06d}-{batch.attempt}.part"),
            output_action=str(record.settings["output_action"]),
            env=env,
        )

    def _run_batches(
        self,
        record: JobRecord,
        deployment: Deployment,
        batches: list[_Batch],
        parts: Path,
        env: dict[str, str],
    ) -> list[Path]:
        settings = record.settings
        concurrency = max(1, min(self.pool.size, settings["max_concurrency_per_instance"] * settings["instance_count"]))
        threshold, max_retries = int(settings["error_threshold"]), int(settings["max_retries"])
        timeout = float(settings["timeout"])
        pending = deque(batches)
        in_flight: dict[Future[MiniBatchResult], _Batch] = {}
        done_parts: dict[int, Path] = {}
        failed_items, failed_batches, last_error = 0, 0, ""
        cancel = self._cancel[record.name]
        while pending or in_flight:
            while pending and len(in_flight) < concurrency:
                batch = pending.popleft()
                batch.started = time.monotonic()
                future = self.pool.submit(run_mini_batch, self._task(record, deployment, batch, parts, env))
                in_flight[future] = batch
            finished, _ = wait(list(in_flight), timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            if cancel.is_set():
                for future in in_flight:
                    future.cancel()
                raise JobCanceledError
            outcomes = [(in_flight.pop(f), self._outcome(f)) for f in finished]
            for future, batch in list(in_flight.items()):
                if time.monotonic() - batch.started > timeout:
                    # A worker cannot be interrupted; its late result is ignored (parts are per attempt).
                    del in_flight[future]
                    message = f"No progress update in {timeout:g} seconds for mini-batch {batch.index}."
                    outcomes.append((batch, MiniBatchResult(ok=False, error=message)))
            for batch, result in outcomes:
                if result.init_error:
                    raise JobFailedError(result.error)
                if result.ok:
                    done_parts[batch.index] = parts / f"{batch.index:06d}-{batch.attempt}.part"
                    failed_items += len(batch.files) - result.succeeded_items
                elif batch.attempt < max_retries:
                    batch.attempt += 1
                    pending.appendleft(batch)
                else:
                    failed_items += len(batch.files)
                    failed_batches += 1
                    last_error = result.error or "mini-batch failed"
            if threshold != -1 and failed_items > threshold:
                for future in in_flight:
                    future.cancel()
                raise JobFailedError(
                    f"The number of failed items ({failed_items}) exceeded the error threshold "
                    f"({threshold}). "
                    f"Last error: {last_error}"
                )
        if batches and failed_batches == len(batches):
            raise JobFailedError(f"All {len(batches)} mini-batches failed. Last error: {last_error}")
        return [done_parts[i] for i in sorted(done_parts)]

    def _outcome(self, future: Future[MiniBatchResult]) -> MiniBatchResult:
        try:
            return future.result()
        except Exception as exc:
            # A worker process died (e.g. the script called os._exit): rebuild the pool, retry the batch.
            self.pool.note_broken()
            return MiniBatchResult(ok=False, error=f"A scoring worker process died: {last_line(exc)}")


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
