"""Redrive and cancel over HTTP on the local stack (dev host, Azurite, the batch endpoint and Event Grid emulators).

A failed job is redriven as a new linked run (its events say run 2 and name the job it redrives); a job that hangs
in Azure ML is canceled there, filed in the failed container and announced; wrong states answer 409.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from localdev.stack import function_key
from tests.e2e.support import FAIL_MATCH, HANG_MATCH, StackClient, demo_rows, unique_name, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAILED = "DropScore.JobFailed"
SUBMITTED = "DropScore.JobSubmitted"


def call(stack: StackClient, method: str, path: str, *, key: str | None = "") -> requests.Response:
    headers = {} if key is None else {"x-functions-key": key or function_key(stack.paths)}
    return requests.request(method, f"{stack.env['FUNCTIONS_URL']}/api/{path}", headers=headers, timeout=30)


def job(stack: StackClient, job_id: str) -> dict[str, Any]:
    response = call(stack, "GET", f"jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_failed_job_is_redriven_as_a_linked_run_once(stack: StackClient) -> None:
    name = unique_name(f"redrive-{FAIL_MATCH}")  # fails again in the emulator: the second run is seen end to end
    stack.upload(name, demo_rows(5))
    [failed] = stack.wait_event(FAILED, name, timeout=60)
    old_id = failed["data"]["jobId"]
    assert failed["data"]["run"] == 1
    wait_for(lambda: job(stack, old_id)["stage"] == "Done", f"job {old_id} done")
    assert job(stack, old_id)["actions"] == {"redrive": True, "cancel": False}

    assert call(stack, "POST", f"jobs/{old_id}/redrive", key=None).status_code == 401
    first = call(stack, "POST", f"jobs/{old_id}/redrive")
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["previousJobId"], body["run"], body["job"]["redrivenTo"]) == (old_id, 2, body["jobId"])
    again = call(stack, "POST", f"jobs/{old_id}/redrive")
    assert (again.status_code, again.json()["jobId"]) == (200, body["jobId"])

    second = stack.wait_event(FAILED, name, count=2, timeout=60)[1]
    assert second["data"]["jobId"] == body["jobId"]
    assert (second["data"]["run"], second["data"]["previousJobId"]) == (2, old_id)
    new = job(stack, body["jobId"])
    assert (new["run"], new["previousJobId"], new["state"]) == (2, old_id, "Failed")
    assert stack.read_blob(stack.env["FAILED_CONTAINER"], name) == demo_rows(5)
    assert [event["data"]["run"] for event in stack.events(SUBMITTED, name)] == [1, 2]

    refused = call(stack, "POST", f"jobs/{old_id}/cancel")
    assert refused.status_code == 409
    assert (refused.json()["error"]["code"], refused.json()["error"]["state"]) == ("WrongState", "Failed")


def test_a_hanging_job_is_canceled_in_azure_ml_filed_and_announced(stack: StackClient) -> None:
    name = unique_name(f"cancel-{HANG_MATCH}")
    stack.upload(name, demo_rows(5))
    [submitted] = stack.wait_event(SUBMITTED, name, timeout=60)
    job_id = submitted["data"]["jobId"]
    assert job(stack, job_id)["state"] in {"Submitted", "Running"}  # Running in Azure ML until canceled
    active = call(stack, "POST", f"jobs/{job_id}/redrive")
    assert (active.status_code, active.json()["error"]["code"]) == (409, "JobActive")

    canceled = call(stack, "POST", f"jobs/{job_id}/cancel")
    assert canceled.status_code == 202, canceled.text
    view = canceled.json()
    assert (view["state"], view["error"]["code"]) == ("Canceled", "CanceledByOperator")
    assert call(stack, "POST", f"jobs/{job_id}/cancel").status_code == 200

    [event] = stack.wait_event(FAILED, name, timeout=60)
    assert (event["data"]["state"], event["data"]["error"]["code"]) == ("Canceled", "CanceledByOperator")
    assert event["data"]["input"]["movedTo"] == stack.env["FAILED_CONTAINER"]
    assert stack.read_blob(stack.env["FAILED_CONTAINER"], name) == demo_rows(5)
    [remote] = stack.emulator_jobs(name)
    assert remote["properties"]["status"] in {"Canceled", "CancelRequested"}
    done = wait_for(lambda: (found := job(stack, job_id))["stage"] == "Done" and found, f"job {job_id} done")
    assert done["actions"] == {"redrive": True, "cancel": False}
