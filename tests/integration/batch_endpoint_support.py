"""Helpers shared by the batch endpoint emulator tests: start it, call it, read and write blobs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.batch_endpoint.launcher import start_batch_endpoint
from localdev.demo.model import build
from localdev.procs import Service

TOKEN = "emulator-test-token"
TERMINAL = {"Completed", "Failed", "Canceled"}
DATASTORES = {"workspaceblobstore": "azureml-blobstore", "inputs": "incoming"}


@dataclass
class Emulator:
    service: Service
    scoring_uri: str
    azurite: Azurite

    @property
    def base(self) -> str:
        return self.scoring_uri.rsplit("/jobs", 1)[0]

    def headers(self, deployment: str | None = None, token: str | None = TOKEN) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return headers

    def invoke(self, body: Any, deployment: str | None = None, token: str | None = TOKEN) -> requests.Response:
        return requests.post(self.scoring_uri, json=body, headers=self.headers(deployment, token), timeout=30)

    def job(self, name: str) -> requests.Response:
        return requests.get(f"{self.scoring_uri}/{name}", headers=self.headers(), timeout=30)

    def wait(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(name).json()
            if job["properties"]["status"] in TERMINAL:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {name} did not finish within {timeout}s")

    def run(self, body: Any, deployment: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        response = self.invoke(body, deployment)
        assert response.status_code == 200, response.text
        return self.wait(response.json()["name"], timeout)

    def set_faults(self, spec: str) -> dict[str, Any]:
        """Replace the fault spec (and reset its counters); returns the emulator's fault snapshot."""
        response = requests.put(f"{self.base}/_emulator/faults", json={"spec": spec}, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def faults(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.base}/_emulator/faults", timeout=10).json())

    def route_stats(self) -> dict[str, dict[str, int]]:
        return dict(requests.get(f"{self.base}/_emulator/stats", timeout=10).json()["routes"])

    def reset_stats(self) -> None:
        requests.delete(f"{self.base}/_emulator/stats", timeout=10).raise_for_status()

    def health(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.base}/_emulator/health", timeout=10).json())

    def wait_warm(self, timeout: float = 120.0) -> None:
        """Wait until every scoring worker has finished its start-up warm-up (imports, MLflow models), so
        that a job's mini-batches go to idle workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.health()["workers"]
            if workers["warm"] >= workers["size"]:
                return
            time.sleep(0.1)
        raise AssertionError(f"the scoring workers did not warm up within {timeout}s")

    def mini_batches(self, name: str) -> list[dict[str, Any]]:
        """The job's mini-batch attempts in completion order: files, worker pid, started/finished stamps."""
        response = requests.get(f"{self.base}/_emulator/jobs/{name}/minibatches", timeout=10)
        assert response.status_code == 200, response.text
        return list(response.json()["value"])

    def run_events(self, job: str | None = None) -> dict[str, Any]:
        """The run events the emulator queued, published, dropped or failed to publish (for one job)."""
        params = {"job": job} if job else {}
        return dict(requests.get(f"{self.base}/_emulator/events", params=params, timeout=10).json())

    def cancel_url(self, name: str, api_version: str | None = "2024-04-01") -> str:
        url = (
            f"{self.base}/subscriptions/sub/resourceGroups/rg/providers/"
            f"Microsoft.MachineLearningServices/workspaces/ws/jobs/{name}/cancel"
        )
        return f"{url}?api-version={api_version}" if api_version else url


def blobs(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def put_blob(azurite: Azurite, container: str, path: str, data: bytes) -> None:
    client = blobs(azurite).get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    client.upload_blob(path, data, overwrite=True)


def get_blob(azurite: Azurite, container: str, path: str) -> bytes:
    return blobs(azurite).get_container_client(container).download_blob(path).readall()


def blob_exists(azurite: Azurite, container: str, path: str) -> bool:
    return blobs(azurite).get_container_client(container).get_blob_client(path).exists()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def demo_models(root: Path) -> tuple[Path, Path]:
    """The demo MLflow model and script deployment, built once per test session under `root`."""
    return build(root / "demo")


@contextlib.contextmanager
def running_emulator(
    azurite: Azurite,
    workdir: Path,
    deployments: dict[str, Path],
    *,
    job_seconds: float = 0.3,
    faults: str | None = None,
    state_dir: Path | None = None,
    workers: int | None = None,
    row_cost_us: float = 0.0,
    events_topic: str | None = None,
    events_key: str | None = None,
) -> Iterator[Emulator]:
    for container in DATASTORES.values():
        with contextlib.suppress(ResourceExistsError):
            blobs(azurite).create_container(container)
    service, uri = start_batch_endpoint(
        connection_string=azurite.connection_string,
        datastores=DATASTORES,
        deployments=deployments,
        token=TOKEN,
        log_path=workdir / f"emulator-{uuid.uuid4().hex[:6]}.log",
        state_dir=state_dir,
        job_seconds=job_seconds,
        faults=faults,
        workers=workers,
        row_cost_us=row_cost_us,
        events_topic=events_topic,
        events_key=events_key,
    )
    try:
        yield Emulator(service, uri, azurite)
    finally:
        service.stop()


def model_body(input_uri: str, output_uri: str, *, input_type: str = "UriFile") -> dict[str, Any]:
    """The documented PascalCase body (contract doc §1)."""
    return {
        "properties": {
            "InputData": {"input": {"JobInputType": input_type, "Uri": input_uri}},
            "OutputData": {"score": {"JobOutputType": "UriFile", "Uri": output_uri}},
        }
    }
