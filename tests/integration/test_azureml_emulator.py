"""The app's own Azure ML adapter against the batch endpoint emulator: invoke, poll, read the output."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from localdev.azurite import Azurite
from localdev.demo.data import scoring_frame
from shared.adapters.azureml import AzureMLBatchEndpoint
from shared.adapters.rest import RestClient, retrying_session
from shared.errors import JobNameTaken, ScoringAuthError
from shared.models import InvokeRequest, RemoteJob, RemoteStatus
from tests.integration.batch_endpoint_support import (
    TOKEN,
    Emulator,
    demo_models,
    get_blob,
    put_blob,
    running_emulator,
    unique,
)

pytestmark = pytest.mark.integration
ROWS = 40


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    root = tmp_path_factory.mktemp("aml-adapter")
    mlflow_model, _ = demo_models(root)
    with running_emulator(azurite, root, {"diamonds-mlflow": mlflow_model}, faults="fail_match=poison") as running:
        yield running


def adapter(emulator: Emulator, token: str = TOKEN) -> AzureMLBatchEndpoint:
    return AzureMLBatchEndpoint(
        emulator.scoring_uri, lambda: token, client=RestClient(retrying_session(3, 0.05), timeout=10)
    )


def upload_input(emulator: Emulator, name: str) -> str:
    data = scoring_frame(ROWS, seed=3).to_csv(index=False).encode()
    put_blob(emulator.azurite, "incoming", name, data)
    return f"{emulator.azurite.blob_endpoint}/incoming/{name}"


def request_for(input_uri: str, job_name: str, output_path: str) -> InvokeRequest:
    return InvokeRequest(
        job_name=job_name,
        input_uri=input_uri,
        output_uri=f"azureml://datastores/workspaceblobstore/paths/{output_path}",
        repeatability_id="6c1f3f0e-1b7a-5f59-9a1e-6f5d0d1c2b3a",
        deployment="diamonds-mlflow",
    )


def wait_done(scoring: AzureMLBatchEndpoint, name: str) -> tuple[RemoteJob, list[RemoteStatus]]:
    seen: list[RemoteStatus] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = scoring.get_job(name)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.status in {RemoteStatus.COMPLETED, RemoteStatus.FAILED, RemoteStatus.CANCELED}:
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish: {seen}")


def test_invoke_poll_to_completed_and_read_the_output(emulator: Emulator) -> None:
    scoring = adapter(emulator)
    name = unique("adapter")
    output_path = f"dropscore/{name}/1/predictions.csv"
    submitted = scoring.invoke(request_for(upload_input(emulator, f"{name}.csv"), name, output_path))
    assert submitted.name == name
    assert submitted.studio_url
    job, seen = wait_done(scoring, name)
    assert job.status is RemoteStatus.COMPLETED
    assert seen[-1] is RemoteStatus.COMPLETED
    assert len(seen) >= 2  # the status moved over time
    lines = get_blob(emulator.azurite, "azureml-blobstore", output_path).decode().splitlines()
    assert len(lines) == ROWS
    row, prediction, file_name = lines[0].split(",")
    assert (row, file_name) == ("0", f"{name}.csv")
    assert float(prediction) > 0  # a diamond price
    with pytest.raises(JobNameTaken):  # our deterministic name cannot create a second job
        scoring.invoke(request_for(upload_input(emulator, f"{name}-2.csv"), name, output_path + ".2"))


def test_a_failing_job_reports_its_error(emulator: Emulator) -> None:
    scoring = adapter(emulator)
    name = unique("poison")
    scoring.invoke(request_for(upload_input(emulator, f"{name}.csv"), name, f"dropscore/{name}/1/predictions.csv"))
    job, _ = wait_done(scoring, name)
    assert job.status is RemoteStatus.FAILED
    assert job.error_message


def test_throttling_is_retried_after_retry_after(emulator: Emulator) -> None:
    requests.put(
        f"{emulator.base}/_emulator/faults", json={"spec": "invoke_429_first=1,retry_after=1"}, timeout=5
    ).raise_for_status()
    try:
        scoring = adapter(emulator)
        name = unique("throttled")
        started = time.monotonic()
        job = scoring.invoke(request_for(upload_input(emulator, f"{name}.csv"), name, f"t/{name}/predictions.csv"))
        assert job.name == name
        assert time.monotonic() - started >= 0.95
    finally:
        requests.put(f"{emulator.base}/_emulator/faults", json={"spec": "fail_match=poison"}, timeout=5)


def test_a_wrong_token_is_an_authorization_error_naming_the_role(emulator: Emulator) -> None:
    with pytest.raises(ScoringAuthError) as caught:
        adapter(emulator, token="wrong").get_job("anything")
    assert "AzureML Data Scientist" in caught.value.message
    assert "wrong" not in caught.value.message
