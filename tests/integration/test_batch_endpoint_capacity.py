"""The emulator's capacity limit (`--max-active-jobs`: an invoke past it is answered 429 with Retry-After)
and the counters benchmarks read from `GET /_emulator/stats` (invokes, 429s, status calls per job, jobs
active now and at most, jobs completed)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.batch_endpoint.__main__ import main
from localdev.batch_endpoint.launcher import start_batch_endpoint
from localdev.batch_endpoint.stats import JobCounters
from localdev.batch_endpoint.transfers import same_content
from tests.integration.batch_endpoint_support import (
    DATASTORES,
    TOKEN,
    Emulator,
    blobs,
    demo_models,
    model_body,
    put_blob,
    unique,
)

pytestmark = pytest.mark.integration

LIMIT = 3
DEMO_CSV = Path(__file__).resolve().parents[2] / "localdev" / "demo" / "diamonds.csv"
INPUT = "capacity/diamonds.csv"
STUCK_INPUT = "capacity/stuck.csv"  # the fault spec `stuck_match=stuck.csv` holds its jobs Running


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    model, _ = demo_models(tmp_path_factory.getbasetemp())
    for container in DATASTORES.values():
        with contextlib.suppress(Exception):
            blobs(azurite).create_container(container)
    service, uri = start_batch_endpoint(
        connection_string=azurite.connection_string,
        datastores=DATASTORES,
        deployments={"diamonds": model},
        token=TOKEN,
        log_path=tmp_path_factory.mktemp("capacity") / "emulator.log",
        job_seconds=1.0,
        max_active_jobs=LIMIT,
    )
    try:
        data = DEMO_CSV.read_bytes()
        put_blob(azurite, "incoming", INPUT, data)
        put_blob(azurite, "incoming", STUCK_INPUT, data)
        yield Emulator(service, uri, azurite)
    finally:
        service.stop()


@pytest.fixture(autouse=True)
def fresh_counters(emulator: Emulator) -> Iterator[None]:
    """Each test starts with no job active, no fault and counters at zero."""
    emulator.set_faults("stuck_match=stuck.csv")
    wait_until(lambda: stats(emulator)["activeJobs"] == 0)
    emulator.reset_stats()
    yield
    for job in requests.get(emulator.scoring_uri, headers=emulator.headers(), timeout=10).json()["value"]:
        if job["properties"]["status"] not in {"Completed", "Failed", "Canceled"}:
            requests.post(emulator.cancel_url(job["name"]), headers=emulator.headers(), timeout=10)
    emulator.set_faults("")


def stats(emulator: Emulator) -> dict[str, Any]:
    return dict(requests.get(f"{emulator.base}/_emulator/stats", timeout=10).json())


def wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def body(path: str = INPUT) -> dict[str, Any]:
    output = f"azureml://datastores/workspaceblobstore/paths/{unique('capacity')}/predictions.csv"
    return model_body(f"azureml://datastores/inputs/paths/{path}", output)


def test_an_invoke_past_the_limit_is_throttled_until_a_job_ends(emulator: Emulator) -> None:
    held = [emulator.invoke(body(STUCK_INPUT)) for _ in range(LIMIT)]
    assert [response.status_code for response in held] == [200] * LIMIT

    refused = emulator.invoke(body())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert f"{LIMIT} active jobs" in error["message"]
    counted = stats(emulator)
    assert counted["invokes"] == LIMIT  # the refused invoke created no job
    assert (counted["throttled"], counted["capacityRefusals"]) == (1, 1)
    assert (counted["activeJobs"], counted["maxActiveJobs"], counted["activeJobsLimit"]) == (LIMIT, LIMIT, LIMIT)
    assert counted["routes"]["POST /jobs"]["429"] == 1

    # A job that ends frees its place: the next invoke is accepted.
    name = held[0].json()["name"]
    assert requests.post(emulator.cancel_url(name), headers=emulator.headers(), timeout=10).status_code == 202
    assert emulator.wait(name)["properties"]["status"] == "Canceled"
    assert stats(emulator)["activeJobs"] == LIMIT - 1
    assert emulator.invoke(body()).status_code == 200
    counted = stats(emulator)
    assert (counted["invokes"], counted["activeJobs"], counted["maxActiveJobs"]) == (LIMIT + 1, LIMIT, LIMIT)


def test_a_burst_never_has_more_jobs_in_flight_than_the_limit(emulator: Emulator) -> None:
    """Twelve invokes at once: LIMIT accepted, the rest throttled; resubmitted after Retry-After, all run,
    and the emulator's own count of jobs in flight never went past the limit."""
    with ThreadPoolExecutor(12) as threads:
        first = list(threads.map(lambda _: emulator.invoke(body()), range(12)))
    accepted = [response.json()["name"] for response in first if response.status_code == 200]
    throttled = [response for response in first if response.status_code != 200]
    assert {response.status_code for response in throttled} == {429}
    assert len(accepted) >= LIMIT
    assert stats(emulator)["throttled"] == len(throttled)

    for _ in throttled:  # a client that honours Retry-After
        while (response := emulator.invoke(body())).status_code == 429:
            time.sleep(float(response.headers["Retry-After"]))
        assert response.status_code == 200, response.text
        accepted.append(response.json()["name"])
    for name in accepted:
        assert emulator.wait(name)["properties"]["status"] == "Completed"

    counted = stats(emulator)
    assert counted["maxActiveJobs"] == LIMIT
    assert (counted["invokes"], counted["completedJobs"], counted["activeJobs"]) == (12, 12, 0)
    assert counted["throttled"] == counted["capacityRefusals"] >= len(throttled)


def test_status_calls_are_counted_per_job_with_throttled_ones(emulator: Emulator) -> None:
    name = emulator.invoke(body()).json()["name"]
    other = f"never-created-{uuid.uuid4().hex[:8]}"
    emulator.set_faults("stuck_match=stuck.csv,status_429_first=1")
    assert emulator.job(name).status_code == 429  # injected: counted as a status call and as throttled
    assert emulator.job(name).status_code == 200
    assert emulator.job(other).status_code == 404
    # The ARM jobs API is not the poller's route: not a status call.
    arm = emulator.cancel_url(name).replace("/cancel", "")
    assert requests.get(arm, headers=emulator.headers(), timeout=10).status_code == 200
    assert requests.get(f"{emulator.scoring_uri}/{name}", timeout=10).status_code == 401  # no token: not counted
    counted = stats(emulator)
    assert counted["statusCalls"] == 3
    assert counted["statusCallsByJob"] == {name: 2, other: 1}
    assert (counted["throttled"], counted["capacityRefusals"]) == (1, 0)

    emulator.wait(name)
    assert stats(emulator)["completedJobs"] == 1
    emulator.reset_stats()
    counted = stats(emulator)
    assert (counted["statusCalls"], counted["statusCallsByJob"], counted["completedJobs"]) == (0, {}, 0)


def test_no_limit_unless_asked_and_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_ENDPOINT_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    argv = ["serve", "--port", "1", "--token", "t", "--datastore", "a=b", "--max-active-jobs", "-1"]
    assert main(argv) == 2
    counters = JobCounters()
    for _ in range(5):
        assert not counters.full()
        counters.job_added()
    assert counters.snapshot()["activeJobs"] == 5


def test_counters_follow_every_status_change() -> None:
    counters = JobCounters(2)
    counters.loaded(["Running", "Completed", "CancelRequested"])  # read back after a restart
    assert (counters.snapshot()["activeJobs"], counters.full()) == (2, True)
    counters.status_changed("CancelRequested", "Canceled")
    counters.status_changed("Running", "Finalizing")
    assert not counters.full()
    counters.job_added()
    counters.status_changed("Finalizing", "Completed")
    counters.status_changed("NotStarted", "Failed")
    snapshot = counters.snapshot()
    assert (snapshot["activeJobs"], snapshot["maxActiveJobs"], snapshot["completedJobs"]) == (0, 2, 1)
    assert (snapshot["invokes"], snapshot["capacityRefusals"]) == (1, 1)
    counters.reset()
    assert counters.snapshot()["maxActiveJobs"] == 0


def test_an_upload_retried_after_its_answer_was_lost_is_the_jobs_own_output(azurite: Azurite, tmp_path: Path) -> None:
    """Storage restarting mid-upload: the SDK's retry finds the file the first try wrote. Same bytes: ours."""
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"out{uuid.uuid4().hex[:8]}"
    )
    container.create_container()
    local = tmp_path / "predictions.csv"
    local.write_bytes(b"0,1.5,a.csv\n1,2.5,a.csv\n" * 1000)
    container.upload_blob("p.csv", local.read_bytes())
    assert same_content(container, "p.csv", local)
    container.upload_blob("other.csv", local.read_bytes().replace(b"2.5", b"9.5"))
    assert not same_content(container, "other.csv", local)  # same size, other bytes: someone else's
    container.upload_blob("short.csv", b"0,1.5,a.csv\n")
    assert not same_content(container, "short.csv", local)
