"""Each trigger called the way the host calls it: with real azure.functions objects, fakes behind."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.functions import timer

import function_app
from shared import runtime
from shared.models import EventType, JobState, RemoteStatus
from tests.fakes import World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    world = make_world()
    monkeypatch.setattr(runtime, "deps", lambda: world.deps)
    return world


def blob_stream(world: World, name: str, data: bytes, with_properties: bool = True) -> func.InputStream:
    etag = world.blobs.put("incoming", name, data)
    properties = {"ETag": f'"{etag}"', "Length": len(data), "ContentType": "text/csv"} if with_properties else None
    return func.blob.InputStream(
        data=data,
        name=f"incoming/{name}",
        uri=world.blobs.url("incoming", name),
        length=len(data),
        blob_properties=properties,
        metadata={},
    )


def test_the_app_indexes_with_no_settings_and_lists_every_function() -> None:
    # function_app was imported above with no dropscore settings in the environment
    names = {f.get_function_name(): f for f in _fresh_app().get_functions()}
    assert set(names) == {
        "on_input_blob",
        "poll_jobs",
        "complete_job",
        "give_up_completion",
        "get_job",
        "list_jobs",
        "health",
    }
    bindings = {name: json.loads(f.get_function_json())["bindings"] for name, f in names.items()}
    assert bindings["on_input_blob"][0]["path"] == "%INPUT_CONTAINER%/{name}"
    assert bindings["on_input_blob"][0]["source"] == "EventGrid"
    assert bindings["poll_jobs"][0]["schedule"] == "%POLL_SCHEDULE%"
    assert bindings["complete_job"][0]["queueName"] == "%COMPLETIONS_QUEUE%"
    assert bindings["give_up_completion"][0]["queueName"] == "%COMPLETIONS_QUEUE%-poison"
    assert bindings["get_job"][0]["route"] == "jobs/{id}"
    assert bindings["get_job"][0]["authLevel"] == "FUNCTION"
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


def test_blob_trigger_submits_once_per_version(world: World) -> None:
    stream = blob_stream(world, "a/x.csv", CSV)
    function_app.on_input_blob(stream)
    function_app.on_input_blob(stream)
    assert len(world.scoring.posts) == 1
    (job,) = world.store.rows.values()
    assert (job.container, job.name, job.state) == ("incoming", "a/x.csv", JobState.SUBMITTED)


def test_blob_trigger_without_properties_reads_the_etag(world: World) -> None:
    function_app.on_input_blob(blob_stream(world, "x.csv", CSV, with_properties=False))
    (job,) = world.store.rows.values()
    assert job.blob_etag == world.blobs.properties("incoming", "x.csv").etag  # type: ignore[union-attr]


def test_timer_and_queue_triggers_finish_a_job(world: World) -> None:
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["10", "20"])
    function_app.on_input_blob(blob_stream(world, "x.csv", CSV))
    function_app.poll_jobs(timer.TimerRequest(past_due=True))
    (job_id,) = world.queue.drain()
    message = func.QueueMessage(id="m1", body=json.dumps({"jobId": job_id}).encode(), pop_receipt="r")
    function_app.complete_job(message)
    assert world.store.rows[job_id].state is JobState.COMPLETED
    assert (
        world.blobs.data("predictions", "x.csv.predictions.csv") == b"carat,cut,prediction\n0.3,Ideal,10\n0.4,Good,20\n"
    )
    assert world.events.types()[-1] == EventType.JOB_COMPLETED.value


def test_a_malformed_queue_message_is_dropped_with_a_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    function_app.complete_job(func.QueueMessage(id="m2", body=b"\xff\xfe", pop_receipt="r"))
    assert "malformed message m2" in caplog.text


def test_http_get_job_and_list_jobs(world: World) -> None:
    function_app.on_input_blob(blob_stream(world, "x.csv", CSV))
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
    assert (listed.status_code, body["count"], body["jobs"][0]["jobId"]) == (200, 1, job_id)


@pytest.mark.parametrize("params", [{"state": "Done"}, {"limit": "0"}, {"limit": "x"}, {"limit": "1001"}])
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
