"""Each trigger called the way the host calls it: with real azure.functions objects, fakes behind."""

from __future__ import annotations

import json
from typing import cast

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_binding
import pytest
from azure.functions import timer
from azure.storage.blob import BlobClient

import function_app
from localdev.functions_host import indexing, sdk_bindings
from localdev.functions_host.sdk_bindings import blob_binding_data
from shared import runtime
from shared.errors import TransientError
from shared.models import EventType, JobState, RemoteStatus
from tests.fakes import World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    world = make_world()
    monkeypatch.setattr(runtime, "deps", lambda: world.deps)
    return world


# Nothing listens on port 9 (discard): a function that did storage I/O through the binding's client would fail.
UNREACHABLE_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1"
)


def blob_client(world: World, name: str, data: bytes) -> blob_binding.BlobClient:
    """What the worker passes the blob trigger: the extension's converter fed the host's model binding data."""
    world.blobs.put("incoming", name, data)
    binding_data = blob_binding_data("AzureWebJobsStorage", "incoming", name)
    client = sdk_bindings.decode("blobTrigger", binding_data, {}, blob_binding.BlobClient)
    assert isinstance(client, BlobClient)  # the converter returns azure.storage.blob's client, as in Azure
    return cast(blob_binding.BlobClient, client)


@pytest.fixture(autouse=True)
def storage_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding's client is built from the connection setting the host names (never used for I/O here)."""
    monkeypatch.setenv("AzureWebJobsStorage", UNREACHABLE_STORAGE)


def test_the_app_indexes_with_no_settings_and_lists_every_function() -> None:
    # function_app was imported above with no dropscore settings in the environment
    names = {f.get_function_name(): f for f in _fresh_app().get_functions()}
    assert set(names) == {
        "on_input_blob",
        "poll_jobs",
        "complete_job",
        "give_up_completion",
        "aml_run_events",
        "get_job",
        "list_jobs",
        "job_summary",
        "dashboard",
        "redrive_job",
        "cancel_job",
        "health",
    }
    bindings = {name: json.loads(f.get_function_json())["bindings"] for name, f in names.items()}
    assert bindings["on_input_blob"][0]["path"] == "%INPUT_CONTAINER%/{name}"
    assert bindings["on_input_blob"][0]["source"] == "EventGrid"
    assert bindings["poll_jobs"][0]["schedule"] == "%POLL_SCHEDULE%"
    assert bindings["complete_job"][0]["queueName"] == "%COMPLETIONS_QUEUE%"
    assert bindings["give_up_completion"][0]["queueName"] == "%COMPLETIONS_QUEUE%-poison"
    assert bindings["aml_run_events"][0]["type"] == "eventGridTrigger"
    assert bindings["get_job"][0]["route"] == "jobs/{id}"
    assert bindings["get_job"][0]["authLevel"] == "FUNCTION"
    for action in ("redrive", "cancel"):
        binding = bindings[f"{action}_job"][0]
        assert (binding["route"], binding["methods"], binding["authLevel"]) == (
            f"jobs/{{id}}/{action}",
            ["POST"],
            "FUNCTION",
        )
    assert (bindings["health"][0]["route"], bindings["health"][0]["authLevel"]) == ("health", "ADMIN")


def _fresh_app() -> func.FunctionApp:
    """get_functions() may run once per app object: index a fresh import of the module."""
    import importlib
    import sys

    sys.modules.pop("function_app_index_check", None)
    spec = importlib.util.spec_from_file_location("function_app_index_check", function_app.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app  # type: ignore[no-any-return]


def test_the_blob_trigger_is_an_sdk_type_binding_and_the_other_triggers_are_not() -> None:
    """What the worker reports to the host at indexing (dev host indexing, real extension registry)."""
    specs = {f.get_function_name(): indexing.build_spec(f) for f in _fresh_app().get_functions()}
    deferred = {name for name, spec in specs.items() if spec.is_deferred(spec.trigger)}
    assert deferred == {"on_input_blob"}
    assert specs["on_input_blob"].trigger["properties"] == {"SupportsDeferredBinding": True}


def test_blob_trigger_submits_once_per_version(world: World) -> None:
    client = blob_client(world, "a/x.csv", CSV)
    function_app.on_input_blob(client)
    function_app.on_input_blob(client)
    assert len(world.scoring.posts) == 1
    (job,) = world.store.rows.values()
    assert (job.container, job.name, job.state) == ("incoming", "a/x.csv", JobState.SUBMITTED)


def test_blob_trigger_takes_etag_and_size_from_one_properties_read_not_the_binding(world: World) -> None:
    function_app.on_input_blob(blob_client(world, "x.csv", CSV))
    (job,) = world.store.rows.values()
    properties = world.blobs.properties("incoming", "x.csv")
    assert properties is not None
    assert (job.blob_etag, job.size) == (properties.etag.strip('"'), len(CSV))
    assert job.input_url == "http://127.0.0.1:9/devstoreaccount1/incoming/x.csv"


def test_a_blob_deleted_before_the_trigger_runs_is_ignored(world: World) -> None:
    client = blob_client(world, "gone.csv", CSV)
    world.blobs.delete("incoming", "gone.csv")
    function_app.on_input_blob(client)
    assert world.store.rows == {}
    assert world.scoring.posts == []


def test_timer_and_queue_triggers_finish_a_job(world: World) -> None:
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["10", "20"])
    function_app.on_input_blob(blob_client(world, "x.csv", CSV))
    function_app.poll_jobs(timer.TimerRequest(past_due=True))
    (job_id,) = world.queue.drain()
    message = func.QueueMessage(id="m1", body=json.dumps({"jobId": job_id}).encode(), pop_receipt="r")
    function_app.complete_job(message)
    assert world.store.rows[job_id].state is JobState.COMPLETED
    assert (
        world.blobs.data("predictions", "x.csv.predictions.csv") == b"carat,cut,prediction\n0.3,Ideal,10\n0.4,Good,20\n"
    )
    assert world.events.types()[-1] == EventType.JOB_COMPLETED.value


def test_an_azure_ml_run_event_completes_its_job_through_the_event_grid_trigger(world: World) -> None:
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["10", "20"])
    function_app.on_input_blob(blob_client(world, "e.csv", CSV))
    (job,) = world.store.rows.values()
    world.scoring.jobs[job.aml_job_name].pop(0)  # Azure ML finished it
    event = func.EventGridEvent(
        id="e1",
        data={"runId": job.aml_job_name, "runStatus": "Completed", "experimentName": "dropscore-ep"},
        topic="/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w",
        subject=f"experiments/x/runs/{job.aml_job_name}",
        event_type="Microsoft.MachineLearningServices.RunStatusChanged",
        event_time=None,
        data_version="2",
    )
    function_app.aml_run_events(event)
    assert world.store.rows[job.job_id].state is JobState.SCORED
    assert world.queue.messages == [job.job_id]


def test_a_malformed_queue_message_is_dropped_with_a_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    function_app.complete_job(func.QueueMessage(id="m2", body=b"\xff\xfe", pop_receipt="r"))
    assert "malformed message m2" in caplog.text


def test_http_get_job_and_list_jobs(world: World) -> None:
    function_app.on_input_blob(blob_client(world, "x.csv", CSV))
    (job_id,) = world.store.rows
    found = function_app.get_job(func.HttpRequest("GET", f"/api/jobs/{job_id}", route_params={"id": job_id}, body=b""))
    assert found.status_code == 200
    assert json.loads(found.get_body())["state"] == "Submitted"
    unknown = "f" * 40
    missing = function_app.get_job(func.HttpRequest("GET", "/api/jobs/x", route_params={"id": unknown}, body=b""))
    assert missing.status_code == 404
    listed = function_app.list_jobs(
        func.HttpRequest("GET", "/api/jobs", params={"state": "submitted", "limit": "5"}, body=b"")
    )
    body = json.loads(listed.get_body())
    assert (listed.status_code, body["count"], body["jobs"][0]["jobId"], body["continuation"]) == (200, 1, job_id, None)
    summary = function_app.job_summary(func.HttpRequest("GET", "/api/summary", body=b""))
    assert (summary.status_code, json.loads(summary.get_body())["byState"]) == (200, {"Submitted": 1})


def test_http_list_pages_follow_the_continuation(world: World) -> None:
    for name in ("a.csv", "b.csv", "c.csv"):
        function_app.on_input_blob(blob_client(world, name, CSV))
        world.clock.advance(seconds=1)
    names, params = [], {"limit": "2"}
    while True:
        reply = json.loads(
            function_app.list_jobs(func.HttpRequest("GET", "/api/jobs", params=params, body=b"")).get_body()
        )
        names.append([job["input"]["name"] for job in reply["jobs"]])
        if reply["continuation"] is None:
            break
        params = {"limit": "2", "continuation": reply["continuation"]}
    assert names == [["c.csv", "b.csv"], ["a.csv"]]


@pytest.mark.parametrize(
    "params",
    [{"state": "Done"}, {"limit": "0"}, {"limit": "x"}, {"limit": "201"}, {"continuation": "bm9wZQ"}],
)
def test_list_jobs_rejects_bad_queries(world: World, params: dict[str, str]) -> None:
    response = function_app.list_jobs(func.HttpRequest("GET", "/api/jobs", params=params, body=b""))
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "BadRequest"


def test_a_config_error_is_a_500_with_the_details_in_the_log_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime, "_deps", None)
    for key in ("BATCH_ENDPOINT_URI", "EVENTGRID_TOPIC_ENDPOINT", "AzureWebJobsStorage"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AML_LOCAL_TOKEN", "s3cret-token")
    job_id = "0" * 40
    response = function_app.get_job(func.HttpRequest("GET", "/api/jobs/x", route_params={"id": job_id}, body=b""))
    assert response.status_code == 500
    body = response.get_body().decode()
    assert json.loads(body)["error"]["code"] == "ConfigError"
    assert "BATCH_ENDPOINT_URI" not in body
    assert "BATCH_ENDPOINT_URI" in caplog.text
    assert "EVENTGRID_TOPIC_ENDPOINT" in caplog.text
    assert "s3cret-token" not in caplog.text + body


def test_a_malformed_job_id_is_a_404_without_a_lookup(world: World) -> None:
    response = function_app.get_job(func.HttpRequest("GET", "/api/jobs/a'b", route_params={"id": "a'b"}, body=b""))
    assert response.status_code == 404


# ---- the operator's actions


def _post(function: object, job_id: str, action: str) -> tuple[int, dict[str, object]]:
    request = func.HttpRequest("POST", f"/api/jobs/{job_id}/{action}", route_params={"id": job_id}, body=b"")
    response = function(request)  # type: ignore[operator]
    return response.status_code, json.loads(response.get_body())


def test_http_cancel_then_redrive_then_repeat(world: World) -> None:
    world.scoring.script = [RemoteStatus.RUNNING]
    function_app.on_input_blob(blob_client(world, "x.csv", CSV))
    (job_id,) = world.store.rows
    status, body = _post(function_app.cancel_job, job_id, "cancel")
    assert (status, body["state"], body["error"]["code"]) == (202, "Canceled", "CanceledByOperator")
    assert body["actions"] == {"redrive": False, "cancel": False}  # its input is not filed yet
    assert _post(function_app.cancel_job, job_id, "cancel")[0] == 200
    status, body = _post(function_app.redrive_job, job_id, "redrive")
    assert (status, body["error"]["code"], body["error"]["state"]) == (409, "JobActive", "Canceled")
    for queued in world.queue.drain():
        function_app.complete_job(func.QueueMessage(id="m", body=json.dumps({"jobId": queued}).encode()))
    status, body = _post(function_app.cancel_job, job_id, "cancel")
    assert (status, body["stage"]) == (200, "Done")
    status, body = _post(function_app.redrive_job, job_id, "redrive")
    assert status == 202
    assert (body["previousJobId"], body["run"]) == (job_id, 2)
    assert body["job"]["redrivenTo"] == body["jobId"]
    assert body["job"]["actions"] == {"redrive": False, "cancel": False}
    assert _post(function_app.redrive_job, job_id, "redrive") == (200, body)
    function_app.on_input_blob(blob_client_of(world, "x.csv"))  # the copy's trigger
    found = function_app.get_job(
        func.HttpRequest("GET", "/api/jobs/x", route_params={"id": body["jobId"]}, body=b"")  # type: ignore[arg-type]
    )
    view = json.loads(found.get_body())
    assert (view["run"], view["previousJobId"], view["state"]) == (2, job_id, "Submitted")


def blob_client_of(world: World, name: str) -> blob_binding.BlobClient:
    """The binding's client for a blob already in the fake store (the redrive's copy)."""
    binding_data = blob_binding_data("AzureWebJobsStorage", "incoming", name)
    return cast(blob_binding.BlobClient, sdk_bindings.decode("blobTrigger", binding_data, {}, blob_binding.BlobClient))


@pytest.mark.parametrize("action", ["redrive", "cancel"])
def test_http_actions_on_unknown_or_malformed_ids_are_404(world: World, action: str) -> None:
    function = getattr(function_app, f"{action}_job")
    for job_id in ("f" * 40, "a'b", "../x"):
        status, body = _post(function, job_id, action)
        assert (status, body["error"]["code"]) == (404, "NotFound")


def test_http_cancel_of_a_finished_job_is_409_with_its_state(world: World) -> None:
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    function_app.on_input_blob(blob_client(world, "x.csv", CSV))
    function_app.poll_jobs(timer.TimerRequest(past_due=False))
    (job_id,) = world.store.rows
    status, body = _post(function_app.cancel_job, job_id, "cancel")
    assert status == 409
    assert body == {
        "error": {
            "code": "WrongState",
            "message": "the job already has its outcome (Scored): there is nothing to cancel",
            "state": "Scored",
        }
    }


def test_http_actions_answer_503_when_storage_cannot_answer_now(world: World) -> None:
    world.blobs.put("incoming", "x.csv", CSV)
    function_app.on_input_blob(blob_client_of(world, "x.csv"))
    (job_id,) = world.store.rows

    def down(job_id: str) -> None:
        raise TransientError("HTTP 503 from Table storage")

    world.store.get = down  # type: ignore[assignment,method-assign]
    status, body = _post(function_app.cancel_job, job_id, "cancel")
    assert (status, body["error"]["code"]) == (503, "Transient")
    assert "Table storage" not in body["error"]["message"]
