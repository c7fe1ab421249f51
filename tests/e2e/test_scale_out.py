"""Scale-out through the local stack: a big file split over the emulator's workers and joined back in order,
and a burst over a route's MAX_JOBS_IN_FLIGHT that never has more jobs in flight than the cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.stack_procs import processes_mentioning
from tests.e2e.support import DEMO_CSV, StackClient, demo_rows, run_cli, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETED = "DropScore.JobCompleted"
CAP = 2
ROUTES = [
    # the same endpoint as the default route, sent whole: the reference the sharded run must equal
    {"name": "whole", "prefix": "whole/", "endpointUri": "{BATCH_ENDPOINT_URI}", "shardThresholdMb": 0},
    {"name": "capped", "prefix": "capped/", "endpointUri": "{BATCH_ENDPOINT_URI}", "maxJobsInFlight": CAP},
]


@pytest.fixture(scope="module")
def scale_stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackClient]:
    directory = Path(tmp_path_factory.mktemp("scale-stack"))
    common = ["--dir", str(directory), "--models-dir", str(models_dir), "--job-seconds", "1"]
    settings = ["POLL_SCHEDULE=* * * * * *", "SHARD_THRESHOLD_MB=1", "SHARD_PART_MB=1", "MAX_JOBS_IN_FLIGHT=50"]
    # the stack puts its emulator's scoring URI where ROUTES says {BATCH_ENDPOINT_URI}
    settings.append("ROUTES=" + json.dumps(ROUTES))
    started = run_cli("up", *common, *[arg for setting in settings for arg in ("--set", setting)])
    try:
        assert started.returncode == 0, f"stack did not start:\n{started.stdout}\n{started.stderr}"
        yield StackClient.load(directory)
    finally:
        stopped = run_cli("down", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        assert not processes_mentioning(str(directory))


def big_csv(rows: int) -> bytes:
    lines = DEMO_CSV.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    return ("\n".join([header, *(body[i % len(body)] for i in range(rows))]) + "\n").encode()


def emulator(stack: StackClient, path: str) -> Any:
    response = requests.get(
        stack.env["BATCH_ENDPOINT_URI"].rsplit("/jobs", 1)[0] + path,
        headers={"Authorization": f"Bearer {stack.env['BATCH_ENDPOINT_TOKEN']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def minibatches(stack: StackClient, job_name: str) -> list[dict[str, Any]]:
    return list(emulator(stack, f"/_emulator/jobs/{job_name}/minibatches")["value"])


def job_records(stack: StackClient, names: set[str]) -> list[dict[str, Any]]:
    return [job for job in emulator(stack, "/jobs")["value"] if job["name"] in names]  # GET {scoring uri}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_big_file_is_split_over_the_workers_and_joined_back_in_input_order(scale_stack: StackClient) -> None:
    data = big_csv(80_000)  # about 3.4 MB: 4 parts of about 1 MB
    assert len(data) > 3 * 1024 * 1024
    sharded, whole = unique_name("big"), "whole/" + unique_name("big")
    scale_stack.upload(sharded, data)
    scale_stack.upload(whole, data)
    [event] = scale_stack.wait_event(COMPLETED, sharded, timeout=180)
    [reference] = scale_stack.wait_event(COMPLETED, whole, timeout=180)
    assert event["data"]["input"]["parts"] == 4
    assert "parts" not in reference["data"]["input"]
    assert (event["data"]["route"], reference["data"]["route"]) == ("default", "whole")
    output = scale_stack.read_blob(scale_stack.env["OUTPUT_CONTAINER"], f"{sharded}.predictions.csv")
    expected = scale_stack.read_blob(scale_stack.env["OUTPUT_CONTAINER"], f"{whole}.predictions.csv")
    assert output is not None
    assert expected is not None
    assert output == expected  # every input row, in input order, with the model's prediction for it
    assert len(output.splitlines()) == 80_001
    assert (event["data"]["output"]["rows"], event["data"]["output"]["rowsMissing"]) == (80_000, 0)
    # one part per mini-batch (MiniBatchSize 1), so a deployment with several workers spreads them; how many run at
    # once is the deployment's (instance count x concurrency; tests/integration/test_batch_endpoint_scaleout.py)
    batches = minibatches(scale_stack, event["data"]["aml"]["jobName"])
    assert sorted(name for batch in batches for name in batch["files"]) == [f"part-0000{i}.csv" for i in range(4)]
    assert [len(batch["files"]) for batch in batches] == [1, 1, 1, 1]
    # the parts and their manifest are gone
    folder = f"dropscore/{event['data']['jobId']}/parts"
    container = scale_stack.blobs.get_container_client(scale_stack.env["AML_OUTPUT_CONTAINER"])
    assert [blob.name for blob in container.list_blobs(name_starts_with=folder)] == []


def test_a_burst_over_a_routes_cap_never_has_more_jobs_in_flight(scale_stack: StackClient) -> None:
    names = ["capped/" + unique_name(f"burst{i}") for i in range(8)]
    for i, name in enumerate(names):
        scale_stack.upload(name, demo_rows(5, skip=i * 5))
    events = {name: scale_stack.wait_event(COMPLETED, name, timeout=120)[0] for name in names}
    assert {event["data"]["route"] for event in events.values()} == {"capped"}
    # from the emulator's own records: at no moment were more than CAP of these jobs between created and done
    jobs = job_records(scale_stack, {event["data"]["aml"]["jobName"] for event in events.values()})
    moments: list[tuple[float, int]] = []
    for job in jobs:
        moments += [(stamp(job["systemData"]["createdAt"]), 1), (stamp(job["systemData"]["lastModifiedAt"]), -1)]
    in_flight, most = 0, 0
    for _, change in sorted(moments, key=lambda moment: (moment[0], moment[1])):
        in_flight += change
        most = max(most, in_flight)
    assert most <= CAP
    assert len(jobs) == 8
    # and some of them did wait: submitted well after they were received
    waited = [
        e
        for e in events.values()
        if stamp(e["data"]["timings"]["submittedAt"]) - stamp(e["data"]["timings"]["receivedAt"]) > 1
    ]
    assert waited
