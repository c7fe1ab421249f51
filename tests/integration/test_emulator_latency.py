"""The emulator's status latency knob (`slow_status=S`): what a round trip to Azure ML costs, per call and
concurrently (bench/poll_tick.py relies on both), and only on status reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from localdev.azurite import Azurite
from tests.integration.batch_endpoint_support import Emulator, model_body, put_blob, running_emulator, unique

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent / "batch_endpoint_fixtures" / "summary_script"
LATENCY = 0.05


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(
        azurite, tmp_path_factory.mktemp("latency"), {"script": SCRIPT}, job_seconds=0, faults="stuck_jobs=1"
    ) as emu:
        yield emu


def running_job(emulator: Emulator, azurite: Azurite) -> str:
    folder = unique("latency")
    put_blob(azurite, "incoming", f"{folder}/a.txt", b"a\n")
    body = model_body(
        f"azureml://datastores/inputs/paths/{folder}/a.txt",
        f"azureml://datastores/workspaceblobstore/paths/{folder}/predictions.csv",
    )
    response = emulator.invoke(body)
    assert response.status_code == 200, response.text
    name = str(response.json()["name"])
    deadline = time.monotonic() + 30
    while emulator.job(name).json()["properties"]["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return name


def timed_status(emulator: Emulator, name: str) -> float:
    started = time.perf_counter()
    response = emulator.job(name)
    assert response.status_code in {200, 404}
    return time.perf_counter() - started


def test_every_status_read_waits_the_latency_and_concurrent_reads_wait_together(
    emulator: Emulator, azurite: Azurite
) -> None:
    name = running_job(emulator, azurite)
    emulator.set_faults(f"slow_status={LATENCY},stuck_jobs=1")
    try:
        assert min(timed_status(emulator, name) for _ in range(5)) >= LATENCY
        assert timed_status(emulator, "no-such-job") >= LATENCY  # a 404 costs the round trip too
        calls = 40
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=calls) as pool:
            durations = list(pool.map(lambda _: timed_status(emulator, name), range(calls)))
        wall = time.perf_counter() - started
        assert min(durations) >= LATENCY
        assert wall < calls * LATENCY / 2  # a delay per call, not a queue: 40 calls overlap (in series: 2 s)
        invoke_started = time.perf_counter()
        emulator.invoke({"properties": {}})  # other routes are not slowed (an invalid body, answered 400)
        assert time.perf_counter() - invoke_started < LATENCY
    finally:
        emulator.set_faults("stuck_jobs=1")


def test_the_latency_knob_is_a_non_negative_number_of_seconds(emulator: Emulator) -> None:
    assert emulator.set_faults("slow_status=0.05")["spec"]["slow_status"] == 0.05
    for bad in ("slow_status=-1", "slow_status=fast"):
        response = requests.put(f"{emulator.base}/_emulator/faults", json={"spec": bad}, timeout=10)
        assert response.status_code == 400, bad
    emulator.set_faults("stuck_jobs=1")
