"""A CSV dropped into Azurite goes through the dev host, the batch endpoint and Event Grid emulators."""

from __future__ import annotations

import json

import pytest

from localdev.chaos.checks import emulator_predictions, joined_csv
from tests.e2e.support import (
    FAIL_MATCH,
    FAIL_MESSAGE,
    StackClient,
    demo_rows,
    unique_name,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETED = "DropScore.JobCompleted"
SUBMITTED = "DropScore.JobSubmitted"


def _aml_output(stack: StackClient, event: dict[str, object]) -> bytes:
    """The predictions file the emulator wrote for the job of `event` (dropscore/<job>/<attempt>/...)."""
    data = event["data"]
    assert isinstance(data, dict)
    path = f"dropscore/{data['jobId']}/{data['attempt']}/predictions.csv"
    raw = stack.read_blob(stack.env["AML_OUTPUT_CONTAINER"], path)
    assert raw is not None, f"the emulator wrote no {path}"
    return raw


def test_good_csv_gets_joined_predictions_and_a_completed_event(stack: StackClient) -> None:
    name = unique_name("good")
    data = demo_rows(25)
    etag = stack.upload(name, data)

    [event] = stack.wait_event(COMPLETED, name)

    # A subscriber acts on this event: the predictions must exist and be described when it arrives.
    assert event["data"]["state"] == "Completed", f"JobCompleted published in state {event['data']['state']}"
    expected = joined_csv(data, emulator_predictions(_aml_output(stack, event)))
    written = stack.read_blob(stack.env["OUTPUT_CONTAINER"], f"{name}.predictions.csv")
    assert written is not None
    assert written.decode() == expected
    assert len(written.decode().splitlines()) == 26
    assert all(float(line.rsplit(",", 1)[1]) > 0 for line in expected.splitlines()[1:])
    assert event["subject"] == f"/blobServices/default/containers/{stack.env['INPUT_CONTAINER']}/blobs/{name}"
    assert event["data"]["input"]["etag"] == etag
    output = event["data"]["output"]
    assert output["url"].endswith(f"/{stack.env['OUTPUT_CONTAINER']}/{name}.predictions.csv")
    assert (output["container"], output["name"]) == (stack.env["OUTPUT_CONTAINER"], f"{name}.predictions.csv")
    assert (output["rows"], output["rowsMissing"]) == (25, 0)
    # The input leaves the drop zone for the archive, byte for byte.
    assert stack.read_blob(stack.env["INPUT_CONTAINER"], name) is None
    assert stack.read_blob(stack.env["ARCHIVE_CONTAINER"], name) == data


def test_semicolon_csv_is_rejected_with_a_reason(stack: StackClient) -> None:
    name = unique_name("semicolons")
    data = demo_rows(5).replace(b",", b";")
    stack.upload(name, data)

    [event] = stack.wait_event("DropScore.InputRejected", name)

    assert event["data"]["state"] == "Rejected"
    error = event["data"]["error"]
    assert error["code"]
    assert ";" in error["message"] or "delimit" in error["message"].lower()
    rejected = stack.env["REJECTED_CONTAINER"]
    assert stack.read_blob(rejected, name) == data
    reason_blob = stack.read_blob(rejected, f"{name}.reason.json")
    assert reason_blob is not None
    reason = json.loads(reason_blob)
    assert reason["input"]["name"] == name
    assert reason["error"] == error
    assert stack.read_blob(stack.env["INPUT_CONTAINER"], name) is None
    assert stack.events(SUBMITTED, name) == []
    assert stack.emulator_jobs(name) == []


def test_a_failing_azure_ml_job_publishes_job_failed(stack: StackClient) -> None:
    name = unique_name(FAIL_MATCH)
    data = demo_rows(5)
    stack.upload(name, data)

    [event] = stack.wait_event("DropScore.JobFailed", name)

    assert event["data"]["state"] == "Failed"
    assert FAIL_MESSAGE in event["data"]["error"]["message"]
    assert stack.events(COMPLETED, name) == []
    assert stack.read_blob(stack.env["OUTPUT_CONTAINER"], f"{name}.predictions.csv") is None
    moved = wait_for(lambda: stack.read_blob(stack.env["FAILED_CONTAINER"], name), f"{name} in the failed container")
    assert moved == data
    assert stack.read_blob(stack.env["INPUT_CONTAINER"], name) is None
    [job] = stack.emulator_jobs(name)
    assert job["properties"]["status"] == "Failed"


def test_the_same_blob_version_delivered_twice_makes_one_azure_ml_job(stack: StackClient) -> None:
    name = unique_name("twice")
    stack.upload(name, demo_rows(8))
    [submitted] = stack.wait_event(SUBMITTED, name)

    # Deliver the same version again (what an at-least-once trigger does) while it is still in the drop zone.
    stack.run_function("on_input_blob", {"input": f"{stack.env['INPUT_CONTAINER']}/{name}"})
    wait_for(
        lambda: f"duplicate trigger for {stack.env['INPUT_CONTAINER']}/{name}" in stack.host_log(),
        "the second on_input_blob run to reach the app",
    )
    [completed] = stack.wait_event(COMPLETED, name)

    assert completed["data"]["jobId"] == submitted["data"]["jobId"]
    assert len(stack.emulator_jobs(name)) == 1
    assert len(stack.events(SUBMITTED, name)) == 1
    assert len(stack.events(COMPLETED, name)) == 1


def test_a_new_upload_under_the_same_name_is_a_new_job(stack: StackClient) -> None:
    name = unique_name("again")
    first, second = demo_rows(6), demo_rows(9, skip=20)
    first_etag = stack.upload(name, first)
    stack.wait_event(COMPLETED, name)
    second_etag = stack.upload(name, second)

    events = stack.wait_event(COMPLETED, name, count=2)

    assert [e["data"]["state"] for e in events] == ["Completed", "Completed"]
    assert first_etag != second_etag
    assert [e["data"]["input"]["etag"] for e in events] == [first_etag, second_etag]
    assert len({e["data"]["jobId"] for e in events}) == 2
    assert [e["data"]["output"]["rows"] for e in events] == [6, 9]
    assert len(stack.emulator_jobs(name)) == 2
    # The newest version's predictions and archive copy win.
    written = stack.read_blob(stack.env["OUTPUT_CONTAINER"], f"{name}.predictions.csv")
    assert written is not None
    assert written.decode() == joined_csv(second, emulator_predictions(_aml_output(stack, events[1])))
    assert stack.read_blob(stack.env["ARCHIVE_CONTAINER"], name) == second
