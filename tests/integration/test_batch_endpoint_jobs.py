"""Scoring-script deployments, faults, cancel, the status walk and restarts of the emulator."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.azurite import Azurite
from tests.integration.batch_endpoint_support import (
    Emulator,
    blob_exists,
    demo_models,
    get_blob,
    model_body,
    put_blob,
    running_emulator,
    unique,
)

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent / "batch_endpoint_fixtures"
SAMPLE = Path(__file__).resolve().parents[2] / "localdev" / "demo" / "diamonds.csv"
WALK = ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]


def out_uri(folder: str, file: str = "predictions.csv") -> str:
    return f"azureml://datastores/workspaceblobstore/paths/{folder}/{file}"


def folder_body(folder: str, **overrides: Any) -> dict[str, Any]:
    body = model_body(f"azureml://datastores/inputs/paths/{folder}", out_uri(folder), input_type="UriFolder")
    body["properties"].update(overrides)
    return body


# ---- scoring-script deployments -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripts(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    diamonds, _ = demo_models(tmp_path_factory.getbasetemp())
    broken_mlflow = tmp_path_factory.mktemp("broken") / "broken-mlflow"
    shutil.copytree(diamonds, broken_mlflow)
    (broken_mlflow / "model.pkl").write_bytes(b"this is not a pickle")
    deployments = {
        "env": FIXTURES / "env_script",
        "summary": FIXTURES / "summary_script",
        "broken-init": FIXTURES / "broken_init",
        "broken-mlflow": broken_mlflow,
        "crash": FIXTURES / "crash_script",
    }
    with running_emulator(azurite, tmp_path_factory.mktemp("scripts"), deployments) as emu:
        yield emu


def put_files(azurite: Azurite, folder: str, names: list[str]) -> None:
    for name in names:
        put_blob(azurite, "incoming", f"{folder}/{name}", f"content of {name}\n".encode())


def test_script_init_once_per_worker_env_vars_and_sidecar_files(scripts: Emulator, azurite: Azurite) -> None:
    folder = unique("env")
    put_files(azurite, folder, ["a.txt", "b.txt", "c.txt"])
    job = scripts.run(folder_body(folder), deployment="env")
    assert job["properties"]["status"] == "Completed", job["properties"].get("error")
    lines = get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv").decode().splitlines()
    # mini_batch_size 1 from deployment.json, one worker: init() ran once, then run() three times.
    assert lines == [f"{name}|model-v1|init=1|out_dir=True" for name in ["a.txt", "b.txt", "c.txt"]]
    # Files the script wrote to AZUREML_BI_OUTPUT_PATH land next to the output file.
    assert get_blob(azurite, "azureml-blobstore", f"{folder}/sidecar-b.txt.txt") == b"CONTENT OF B.TXT\n"


def test_script_error_threshold(scripts: Emulator, azurite: Azurite) -> None:
    folder = unique("threshold")
    put_files(azurite, folder, ["a.txt", "bad.txt", "c.txt"])
    tolerant = scripts.run(folder_body(folder, errorThreshold=1), deployment="env")
    assert tolerant["properties"]["status"] == "Completed"
    lines = get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv").decode().splitlines()
    assert [line.split("|")[0] for line in lines] == ["a.txt", "c.txt"]
    strict = folder_body(folder, errorThreshold=0)
    strict["properties"]["OutputData"]["score"]["Uri"] = out_uri(folder, "strict.csv")
    failed = scripts.run(strict, deployment="env")
    assert failed["properties"]["status"] == "Failed"
    assert "RuntimeError: cannot score bad.txt" in failed["properties"]["error"]["message"]
    assert not blob_exists(azurite, "azureml-blobstore", f"{folder}/strict.csv")


def test_summary_only_writes_no_merged_file(scripts: Emulator, azurite: Azurite) -> None:
    folder = unique("summary")
    put_files(azurite, folder, ["x.csv", "y.csv"])
    job = scripts.run(folder_body(folder), deployment="summary")
    assert job["properties"]["status"] == "Completed"
    assert not blob_exists(azurite, "azureml-blobstore", f"{folder}/predictions.csv")
    assert get_blob(azurite, "azureml-blobstore", f"{folder}/x.out") == b"done\n"
    assert get_blob(azurite, "azureml-blobstore", f"{folder}/y.out") == b"done\n"


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        ("broken-init", "init() of the scoring script failed: ValueError: model folder is corrupt"),
        ("broken-mlflow", "Failed to load the MLflow model: "),
    ],
)
def test_broken_model_fails_the_job_not_the_service(
    scripts: Emulator, azurite: Azurite, deployment: str, message: str
) -> None:
    folder = unique(deployment)
    put_blob(azurite, "incoming", f"{folder}/d.csv", SAMPLE.read_bytes())
    job = scripts.run(folder_body(folder), deployment=deployment)
    assert job["properties"]["status"] == "Failed"
    assert job["properties"]["error"]["message"].startswith(message)
    assert "\n" not in job["properties"]["error"]["message"]
    # The service still scores other jobs.
    put_files(azurite, folder + "-ok", ["ok.txt"])
    assert scripts.run(folder_body(folder + "-ok"), deployment="env")["properties"]["status"] == "Completed"


def test_crashed_worker_fails_the_job_and_is_replaced(scripts: Emulator, azurite: Azurite) -> None:
    folder = unique("crash")
    put_files(azurite, folder, ["a.txt"])
    job = scripts.run(folder_body(folder), deployment="crash")
    assert job["properties"]["status"] == "Failed"
    assert "A scoring worker process died" in job["properties"]["error"]["message"]
    put_files(azurite, folder + "-after", ["ok.txt"])
    assert scripts.run(folder_body(folder + "-after"), deployment="env")["properties"]["status"] == "Completed"


# ---- faults, status walk, cancel ------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    diamonds, _ = demo_models(tmp_path_factory.getbasetemp())
    put_blob(azurite, "incoming", "faults/diamonds.csv", SAMPLE.read_bytes())
    put_blob(azurite, "incoming", "faults/bad-model.csv", SAMPLE.read_bytes())
    put_blob(azurite, "incoming", "faults/stuck-input.csv", SAMPLE.read_bytes())
    spec = "invoke_429_first=2,retry_after=3,fail_match=bad-model,stuck_match=stuck-input"
    with running_emulator(
        azurite, tmp_path_factory.mktemp("faults"), {"diamonds": diamonds}, job_seconds=1.5, faults=spec
    ) as emu:
        yield emu


def set_faults(emulator: Emulator, spec: str) -> dict[str, Any]:
    response = requests.put(f"{emulator.base}/_emulator/faults", json={"spec": spec}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def faults_body(file: str) -> dict[str, Any]:
    return model_body(f"azureml://datastores/inputs/paths/faults/{file}", out_uri(unique("faults")))


def test_first_invokes_are_throttled(faulty: Emulator) -> None:
    set_faults(faulty, "invoke_429_first=2,retry_after=3")
    body = faults_body("diamonds.csv")
    for _ in range(2):
        throttled = faulty.invoke(body)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "3"
        assert throttled.json()["error"]["code"] == "TooManyRequests"
    accepted = faulty.invoke(body)
    assert accepted.status_code == 200
    faulty.wait(accepted.json()["name"])


def test_invoke_500_fraction_and_stats(faulty: Emulator) -> None:
    requests.delete(f"{faulty.base}/_emulator/stats", timeout=10)
    set_faults(faulty, "invoke_500=1.0")
    for _ in range(3):
        assert faulty.invoke(faults_body("diamonds.csv")).status_code == 500
    assert faulty.job("nope").status_code == 404
    set_faults(faulty, "")
    stats = requests.get(f"{faulty.base}/_emulator/stats", timeout=10).json()["routes"]
    assert stats["POST /jobs"] == {"count": 3, "500": 3}
    assert stats["GET /jobs/{name}"] == {"count": 1, "404": 1}


def test_bad_fault_spec_is_rejected(faulty: Emulator) -> None:
    response = requests.put(f"{faulty.base}/_emulator/faults", json={"spec": "explode=1"}, timeout=10)
    assert response.status_code == 400
    assert "unknown fault" in response.json()["error"]["message"]


def test_status_walk_and_fail_match(faulty: Emulator) -> None:
    set_faults(faulty, "fail_match=bad-model,fail_message=model says no")
    good = faulty.invoke(faults_body("diamonds.csv")).json()["name"]
    bad = faulty.invoke(faults_body("bad-model.csv")).json()["name"]
    seen: list[str] = []
    while not seen or seen[-1] not in {"Completed", "Failed", "Canceled"}:
        status = faulty.job(good).json()["properties"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.03)
    assert seen == [s for s in WALK if s in seen]
    assert {"Preparing", "Running", "Finalizing", "Completed"} <= set(seen)
    failed = faulty.wait(bad)
    assert failed["properties"]["status"] == "Failed"
    assert failed["properties"]["error"] == {"code": "UserError", "message": "model says no"}


def test_slow_status(faulty: Emulator) -> None:
    set_faults(faulty, "slow_status=0.6")
    started = time.monotonic()
    assert faulty.job("nope").status_code == 404
    assert time.monotonic() - started >= 0.6
    set_faults(faulty, "")


def test_cancel_stuck_job(faulty: Emulator, azurite: Azurite) -> None:
    set_faults(faulty, "stuck_match=stuck-input")
    body = faults_body("stuck-input.csv")
    name = faulty.invoke(body).json()["name"]
    time.sleep(2.0)  # longer than --job-seconds: a normal job would be done by now
    assert faulty.job(name).json()["properties"]["status"] == "Running"
    assert requests.post(faulty.cancel_url(name, None), headers=faulty.headers(), timeout=10).status_code == 400
    response = requests.post(faulty.cancel_url(name), headers=faulty.headers(), timeout=10)
    assert response.status_code == 202
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Location"].endswith(f"/jobs/{name}")
    assert faulty.job(name).json()["properties"]["status"] in {"CancelRequested", "Canceled"}
    job = faulty.wait(name)
    assert job["properties"]["status"] == "Canceled"
    output = body["properties"]["OutputData"]["score"]["Uri"].split("/paths/", 1)[1]
    assert not blob_exists(azurite, "azureml-blobstore", output)


def test_cancel_unknown_job_and_without_token(faulty: Emulator) -> None:
    response = requests.post(faulty.cancel_url("no-such-job"), headers=faulty.headers(), timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["message"]
    assert requests.post(faulty.cancel_url("no-such-job"), timeout=10).status_code == 401


# ---- restart with --state-dir ---------------------------------------------------------------------


def test_jobs_survive_a_restart(azurite: Azurite, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    diamonds, _ = demo_models(tmp_path_factory.getbasetemp())
    state = tmp_path / "state"
    put_blob(azurite, "incoming", "restart/diamonds.csv", SAMPLE.read_bytes())
    first_out, second_out = unique("restart-a"), unique("restart-b")
    source = "azureml://datastores/inputs/paths/restart/diamonds.csv"
    with running_emulator(azurite, tmp_path, {"diamonds": diamonds}, job_seconds=1.0, state_dir=state) as emu:
        done = emu.run(model_body(source, out_uri(first_out)))
        interrupted = emu.invoke(model_body(source, out_uri(second_out))).json()
        assert interrupted["properties"]["status"] not in {"Completed", "Failed"}
    with running_emulator(azurite, tmp_path, {"diamonds": diamonds}, job_seconds=0.3, state_dir=state) as emu:
        assert emu.job(done["name"]).json()["properties"]["status"] == "Completed"
        resumed = emu.wait(interrupted["name"])
        assert resumed["properties"]["status"] == "Completed", resumed["properties"].get("error")
        listed = [
            job["name"] for job in requests.get(emu.scoring_uri, headers=emu.headers(), timeout=10).json()["value"]
        ]
        assert listed[:2] == [interrupted["name"], done["name"]]
    first = get_blob(azurite, "azureml-blobstore", f"{first_out}/predictions.csv")
    assert get_blob(azurite, "azureml-blobstore", f"{second_out}/predictions.csv") == first
