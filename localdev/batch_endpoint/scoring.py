"""Scoring one job's files: mini-batches over the shared worker pool, retries, timeouts, the error
threshold, and the `append_row` merge in mini-batch completion order (as Azure's append_row)."""

from __future__ import annotations

import shutil
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.batch_endpoint.deployments import MLFLOW, Deployment
from localdev.batch_endpoint.errors import JobCanceledError, JobFailedError
from localdev.batch_endpoint.pool import WorkerPool
from localdev.batch_endpoint.store import JobRecord
from localdev.batch_endpoint.worker import MLFLOW_FILE_TYPES, MiniBatchResult, MiniBatchTask, last_line, run_mini_batch

_POLL_SECONDS = 0.05
_TRACED_JOBS = 500


@dataclass
class _Batch:
    index: int
    files: list[str]
    attempt: int = 0
    started: float = 0.0


def concurrency(settings: dict[str, Any], pool_size: int) -> int:
    """Mini-batches of one job in flight at once: the pool is the emulator's whole cluster."""
    wanted = int(settings["max_concurrency_per_instance"]) * int(settings["instance_count"])
    return max(1, min(pool_size, wanted))


class MiniBatchTrace:
    """Each job's mini-batch attempts in completion order, in memory for the last jobs (not persisted):
    which worker process ran which files, when, and how it ended. `GET /_emulator/jobs/{name}/minibatches`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def start(self, job: str) -> None:
        with self._lock:
            self._jobs[job] = []
            self._jobs.move_to_end(job)
            while len(self._jobs) > _TRACED_JOBS:
                self._jobs.popitem(last=False)

    def add(self, job: str, batch: _Batch, result: MiniBatchResult) -> None:
        entry = {
            "index": batch.index,
            "attempt": batch.attempt,
            "files": [Path(file).name for file in batch.files],
            "pid": result.pid or None,
            "started": result.started or None,
            "finished": result.finished or None,
            "cpu": round(result.cpu, 3),
            "rows": result.rows,
            "ok": result.ok,
            "error": result.error,
        }
        with self._lock:
            self._jobs.setdefault(job, []).append(entry)

    def get(self, job: str) -> list[dict[str, Any]] | None:
        with self._lock:
            entries = self._jobs.get(job)
            return None if entries is None else [dict(entry) for entry in entries]


class Scorer:
    def __init__(self, pool: WorkerPool, *, row_cost_us: float = 0.0) -> None:
        self.pool = pool
        self.row_cost_us = row_cost_us
        self.trace = MiniBatchTrace()

    def score(
        self, record: JobRecord, deployment: Deployment, files: list[str], workdir: Path, cancel: threading.Event
    ) -> Path | None:
        """Score `files`; the merged output file for append_row, None for summary_only."""
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
        self.trace.start(record.name)
        parts = self._run_batches(record, deployment, batches, workdir / "parts", env=env, cancel=cancel)
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
            part_path=str(_part_path(parts, batch)),
            output_action=str(record.settings["output_action"]),
            env=env,
            row_cost_us=self.row_cost_us,
        )

    def _run_batches(
        self,
        record: JobRecord,
        deployment: Deployment,
        batches: list[_Batch],
        parts: Path,
        *,
        env: dict[str, str],
        cancel: threading.Event,
    ) -> list[Path]:
        """Run every mini-batch; the parts of the successful ones in the order they completed."""
        settings = record.settings
        limit = concurrency(settings, self.pool.size)
        threshold, max_retries = int(settings["error_threshold"]), int(settings["max_retries"])
        timeout = float(settings["timeout"])
        pending = deque(batches)
        in_flight: dict[Future[MiniBatchResult], _Batch] = {}
        done_parts: list[Path] = []
        failed_items, failed_batches, last_error = 0, 0, ""
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                batch = pending.popleft()
                batch.started = time.monotonic()
                future = self.pool.submit(run_mini_batch, self._task(record, deployment, batch, parts, env))
                in_flight[future] = batch
            finished, _ = wait(list(in_flight), timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            if cancel.is_set():
                for future in in_flight:
                    future.cancel()
                raise JobCanceledError
            # Several can finish within one poll: take them in the order their workers finished.
            outcomes = sorted(((in_flight.pop(f), self._outcome(f)) for f in finished), key=lambda o: o[1].finished)
            for future, batch in list(in_flight.items()):
                if time.monotonic() - batch.started > timeout:
                    # A worker cannot be interrupted; its late result is ignored (parts are per attempt).
                    del in_flight[future]
                    message = f"No progress update in {timeout:g} seconds for mini-batch {batch.index}."
                    outcomes.append((batch, MiniBatchResult(ok=False, error=message)))
            for batch, result in outcomes:
                self.trace.add(record.name, batch, result)
                if result.init_error:
                    raise JobFailedError(result.error)
                if result.ok:
                    done_parts.append(_part_path(parts, batch))
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
        return done_parts

    def _outcome(self, future: Future[MiniBatchResult]) -> MiniBatchResult:
        try:
            return future.result()
        except Exception as exc:
            # A worker process died (e.g. the script called os._exit): rebuild the pool, retry the batch.
            self.pool.note_broken()
            return MiniBatchResult(ok=False, error=f"A scoring worker process died: {last_line(exc)}")


def _part_path(parts: Path, batch: _Batch) -> Path:
    return parts / f"{batch.index:06d}-{batch.attempt}.part"
